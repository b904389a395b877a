"""Notices to ops (运维值班): plain messages to every contact of the units tagged `ops`, at once and whatever the hour.

Ops are told when a run fails or crashes (flows/hooks.py), once a day when the nightly run before a delivery did not
complete (`notify_ops_once`, remembered in `ops_notices`), and when a delivery failed targets for good after
`max_attempts` (`report_failed_targets`). A notice is a `Notice`, not a digest: it carries no cards.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from config.settings import TIMEZONE
from config.units import UnitDirectory
from schemas.tables import OpsNotice
from tasks.alerts.digests import DigestTemplates, cut_sms, sms_length
from tasks.alerts.sending import Notice, send_message

logger = logging.getLogger("permitwatch.alerts")


def report_failed_targets(
    failures: list[dict[str, Any]],
    units: UnitDirectory,
    templates: DigestTemplates,
    outbox_dir: Path,
    now: datetime,
) -> bool:
    """Tell ops which targets failed for good (unit, channel, target, attempts, last error), from the
    ops_failure template. True when at least one ops contact got it."""
    for failure in failures:
        failure["unit_name"] = units[failure["recipient_unit"]].name if failure["recipient_unit"] in units else "?"
    text = templates.ops_failure.render(failures=failures, now=now.astimezone(TIMEZONE).isoformat(timespec="minutes"))
    delivered = notify_ops(units, text.strip().splitlines()[0], text, outbox_dir, now)
    logger.error(
        "%d targets failed after the maximum attempts; ops %s",
        len(failures),
        "notified" if delivered else "NOT notified",
    )
    return delivered


def notify_ops(units: UnitDirectory, title: str, text: str, outbox_dir: Path, now: datetime) -> bool:
    """Send a plain-text notice (a failed run, failed deliveries) to every contact of the units tagged `ops`, at
    once and whatever the hour. The SMS carries the title only. True when at least one contact got it."""
    stamp = now.astimezone(TIMEZONE).strftime("%Y%m%dT%H%M%S") + "-ops"
    bodies = {"email": f"<pre>{escape(text)}</pre>", "sms": _cut_sms(title, units)}
    delivered = False
    for ops_code in units.ops_units():
        for contact in units[ops_code].contacts:
            message = Notice(recipient_unit=ops_code, title=title, body=bodies.get(contact.channel, text))
            ok, error = send_message(contact, message, outbox_dir=outbox_dir, stamp=stamp)
            delivered = delivered or ok
            if not ok:
                logger.error("could not notify ops unit %s at %s: %s", ops_code, contact.target, error)
    return delivered


def notify_ops_once(
    engine: Engine, key: str, units: UnitDirectory, title: str, text: str, outbox_dir: Path, now: datetime
) -> bool | None:
    """`notify_ops`, unless ops were already told about `key`: None then. Recorded only once ops got it, so a notice
    no ops contact received is tried again by the next delivery."""
    with engine.connect() as connection:
        if connection.execute(select(OpsNotice.key).where(OpsNotice.key == key)).first() is not None:
            return None
    delivered = notify_ops(units, title, text, outbox_dir, now)
    if delivered:
        with engine.begin() as connection:
            connection.execute(insert(OpsNotice).values(key=key, sent_at=now.astimezone(UTC)))
    return delivered


def _cut_sms(text: str, units: UnitDirectory) -> str:
    limits = units.alerting.sms
    cap = limits.max_segments * limits.multipart_segment_chars
    return text if sms_length(text) <= cap else cut_sms(text, cap)
