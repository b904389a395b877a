"""The alert outbox: cards and their deliveries stored in one transaction, silences, and delivery through apprise.

Evaluation and delivery are separate. The nightly run calls `issue_cards` (plan + store, nothing sent);
`deliver_pending`
sends, inside the delivery window, one digest per recipient unit and channel target holding all its pending cards,
and records apprise's result for every card and target:
- success: the delivery is `sent` and never sent again;
- failure: it stays `pending` with the error and an attempt count and is retried at the next delivery; after
  `max_attempts` it is `failed` and the ops unit(s) get a report.
While a digest is being sent its rows are `sending`, so that two deliveries running at once never send the same card.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import apprise
import polars as pl
from sqlalchemy import Connection, Engine, case, func, insert, select, update

from config.bundle import PermitwatchConfig
from config.settings import TIMEZONE
from config.units import Contact, DeliveryWindow, UnitDirectory
from schemas.tables import Card, Case, Delivery, Silence
from tasks.calendar import WorkCalendar, load_work_calendar
from tasks.cards import (
    CARD_KEY,
    EXISTING_SCHEMA,
    FAILED,
    PENDING,
    SENT,
    SILENCE_SCHEMA,
    SILENCE_SCOPES,
    SUPERSEDED,
    SUPPRESSED,
    CardPlan,
    is_backfill,
    match_silences,
    plan_cards,
)
from tasks.digests import Digest, DigestTemplates, build_digests, cut_sms, sms_length
from tasks.outbox import OUTBOX_SCHEME, outbox_url

logger = logging.getLogger("permitwatch.alerts")

SENDING = "sending"
# A row left `sending` this long (the process died mid-send) is put back to pending; it may be sent twice.
STALE_SENDING = timedelta(minutes=30)
_CHUNK = 5000
_BODY_FORMATS = {
    "email": apprise.NotifyFormat.HTML,
    "sms": apprise.NotifyFormat.TEXT,
    "im": apprise.NotifyFormat.MARKDOWN,
}


# ---------------------------------------------------------------------------------------------------- cards -> outbox


def read_silences(engine: Engine) -> pl.DataFrame:
    """Silences not removed (expired ones included: `plan_cards` compares `until` with the as-of date)."""
    query = select(Silence.id, Silence.scope, Silence.value, Silence.until, Silence.reason).where(
        Silence.removed.is_(False)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=SILENCE_SCHEMA, orient="row")


def read_card_state(engine: Engine, clock_ids: Sequence[str] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(existing cards, silences not removed) as frames for `plan_cards`."""
    columns = [Card.card_id, Card.clock_id, Card.level, Card.due_date, Card.reminder_no, Card.status]
    with engine.connect() as connection:
        if clock_ids is None:
            rows = connection.execute(select(*columns)).all()
        else:
            rows = [
                row
                for chunk in _chunks(list(dict.fromkeys(clock_ids)))
                for row in connection.execute(select(*columns).where(Card.clock_id.in_(chunk))).all()
            ]
    existing = pl.DataFrame([tuple(row) for row in rows], schema=EXISTING_SCHEMA, orient="row")
    return existing, read_silences(engine)


def store_plan(engine: Engine, plan: CardPlan, run_id: int | None = None) -> dict[str, int]:
    """New cards, their pending deliveries and the supersession of older cards, in ONE transaction.

    A backfill plan stores nothing. A concurrent run that stored the same card makes this transaction fail as a
    whole (unique card identity), so nothing is half-stored.
    """
    if not plan.deliverable or (plan.cards.height == 0 and plan.superseded.height == 0):
        return {"cards": 0, "deliveries": 0, "superseded": 0}
    card_rows = plan.cards.with_columns(pl.lit(run_id, pl.Int64).alias("run_id")).to_dicts()
    with engine.begin() as connection:
        card_ids: list[tuple[Any, ...]] = []
        if card_rows:
            returned = connection.execute(
                insert(Card).returning(Card.card_id, sort_by_parameter_order=True), card_rows
            ).all()
            card_ids = [(row[0],) for row in returned]
        delivery_count = 0
        if card_ids and plan.routes.height:
            keyed = plan.cards.select(CARD_KEY).with_columns(
                pl.Series("card_id", [row[0] for row in card_ids], dtype=pl.Int64)
            )
            deliveries = plan.routes.join(keyed, on=list(CARD_KEY)).select(
                "card_id",
                "recipient_unit",
                "channel",
                "target",
                pl.lit(PENDING).alias("status"),
                pl.lit(0).alias("attempts"),
            )
            if deliveries.height:
                connection.execute(insert(Delivery), deliveries.to_dicts())
            delivery_count = deliveries.height
        for reason, card_ids in _by_reason(plan.superseded, "superseded_by"):
            for chunk in _chunks(card_ids):
                connection.execute(
                    update(Card)
                    .where(Card.card_id.in_(chunk), Card.status == PENDING)
                    .values(status=SUPERSEDED, suppressed_by=reason[:200])
                )
        for chunk in _chunks(plan.superseded.get_column("card_id").to_list()):
            connection.execute(
                update(Delivery)
                .where(Delivery.card_id.in_(chunk), Delivery.status == PENDING)
                .values(status=SUPERSEDED)
            )
    return {"cards": len(card_ids), "deliveries": delivery_count, "superseded": plan.superseded.height}


def issue_cards(
    engine: Engine,
    evaluations: pl.DataFrame,
    units: UnitDirectory,
    *,
    as_of: date,
    run_id: int | None = None,
    deliverable: bool | None = None,
    now: datetime | None = None,
) -> CardPlan:
    """Plan this run's cards against the stored ones and store them (nightly run). A backfill stores nothing.

    `deliverable` defaults to "as_of is yesterday or later" (Asia/Shanghai), so a replay of history alerts nobody.
    """
    if deliverable is None:
        deliverable = not is_backfill(as_of, now)
    existing, silences = read_card_state(engine)
    plan = plan_cards(evaluations, units, as_of=as_of, existing=existing, silences=silences, deliverable=deliverable)
    stored = store_plan(engine, plan, run_id)
    logger.info("cards as of %s: %s; stored %s", as_of, plan.counts, stored)
    return plan


# ---------------------------------------------------------------------------------------------------- silences


def add_silence(engine: Engine, scope: str, value: str, until: date, reason: str, now: datetime | None = None) -> int:
    if scope not in SILENCE_SCOPES:
        raise ValueError(f"silence scope must be one of {sorted(SILENCE_SCOPES)}, not {scope!r}")
    if not value.strip() or not reason.strip():
        raise ValueError("a silence needs a value and a reason")
    created = now or datetime.now(TIMEZONE)
    if until < created.astimezone(TIMEZONE).date():
        raise ValueError(f"silence until {until} is already in the past")
    with engine.begin() as connection:
        result = connection.execute(
            insert(Silence).values(
                scope=scope,
                value=value.strip(),
                until=until,
                reason=reason.strip(),
                created_at=created.astimezone(UTC),
                removed=False,
            )
        )
        return int(result.inserted_primary_key[0])


def list_silences(engine: Engine, *, include_removed: bool = False) -> pl.DataFrame:
    query = select(
        Silence.id, Silence.scope, Silence.value, Silence.until, Silence.reason, Silence.created_at, Silence.removed
    ).order_by(Silence.id)
    if not include_removed:
        query = query.where(Silence.removed.is_(False))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    schema = {**SILENCE_SCHEMA, "created_at": pl.Datetime(time_zone="UTC"), "removed": pl.Boolean()}
    # SQLite hands back stored UTC times without an offset; PostgreSQL with one.
    normalised = [(*row[:5], row[5] if row[5].tzinfo else row[5].replace(tzinfo=UTC), row[6]) for row in rows]
    return pl.DataFrame(normalised, schema=schema, orient="row")


def remove_silence(engine: Engine, silence_id: int) -> bool:
    """Lift a silence (kept, marked removed). False when there is no such active silence."""
    with engine.begin() as connection:
        result = connection.execute(
            update(Silence).where(Silence.id == silence_id, Silence.removed.is_(False)).values(removed=True)
        )
        return result.rowcount == 1


# ---------------------------------------------------------------------------------------------------- delivery


@dataclass
class DeliveryReport:
    now: datetime
    skipped: str | None = None  # why nothing was sent (outside the window)
    messages_sent: int = 0
    messages_failed: int = 0
    deliveries_sent: int = 0
    deliveries_retrying: int = 0
    deliveries_failed: int = 0  # failed for good in this delivery (after max_attempts)
    suppressed_cards: int = 0
    busy: int = 0  # digests skipped because another delivery holds some of their rows
    ops_notified: bool | None = None
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.skipped:
            return f"nothing sent: {self.skipped}"
        text = (
            f"{self.messages_sent} messages sent ({self.deliveries_sent} card deliveries), "
            f"{self.messages_failed} failed ({self.deliveries_retrying} card deliveries to retry, "
            f"{self.deliveries_failed} failed for good), {self.suppressed_cards} cards suppressed by silences"
        )
        if self.busy:
            text += f", {self.busy} digests left to a delivery already running"
        if self.ops_notified is not None:
            text += "; ops notified" if self.ops_notified else "; ops could NOT be notified"
        return text


def outside_window(now: datetime, window: DeliveryWindow, calendar: WorkCalendar) -> str | None:
    """Why `now` is outside the delivery window, or None when sending is allowed."""
    local = now.astimezone(TIMEZONE)
    if window.workdays == "official" and not calendar.is_workday(local.date()):
        return f"{local.date()} ({local:%A}) is not an official working day"
    if not window.start <= local.time() < window.end:
        return f"{local:%H:%M} is outside the delivery window {window.start:%H:%M}-{window.end:%H:%M} Asia/Shanghai"
    return None


def deliver_pending(
    engine: Engine,
    config: PermitwatchConfig,
    now: datetime,
    outbox_dir: Path,
    *,
    force: bool = False,
    calendar: WorkCalendar | None = None,
) -> DeliveryReport:
    """Send every pending card as digests. Outside the delivery window nothing is sent unless `force`."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=TIMEZONE)
    now = now.astimezone(TIMEZONE)
    # Times are stored in UTC: SQLite keeps no offset, and rows are matched on the exact time of this delivery.
    stored_at = now.astimezone(UTC)
    report = DeliveryReport(now=now)
    units = config.units
    policy = units.alerting
    if not force:
        reason = outside_window(now, policy.window, calendar or load_work_calendar(config.calendar_files))
        if reason:
            report.skipped = reason
            logger.info("delivery skipped: %s", reason)
            return report
    _release_stale(engine, stored_at)
    items = _pending_items(engine)
    items = _suppress_silenced(engine, items, now, report)
    items = _drop_unknown_targets(engine, items, units, policy.max_attempts, stored_at)
    templates = DigestTemplates(config.templates_dir)
    today = now.astimezone(TIMEZONE).date()
    digests = build_digests(items, units, templates, as_of=today) if items.height else []
    stamp = now.astimezone(TIMEZONE).strftime("%Y%m%dT%H%M%S")
    owned = _claim(engine, digests, stored_at)
    report.busy = len(digests) - len(owned)
    # Messages go out in parallel (network-bound); results are recorded here, one transaction per message, so that
    # a message apprise reported sent is recorded sent before the next result is handled.
    with ThreadPoolExecutor(max_workers=policy.parallel_sends, thread_name_prefix="permitwatch-send") as pool:
        futures = {pool.submit(_send_digest, digest, units, outbox_dir, stamp): digest for digest in owned}
        for future in as_completed(futures):
            ok, error = future.result()
            _record(engine, futures[future], ok, error, stored_at, policy.max_attempts, report)
    _settle_cards(engine, items.get_column("card_id").to_list())
    newly_failed = _failures_since(engine, stored_at)
    report.deliveries_failed = sum(failure["cards"] for failure in newly_failed)
    if newly_failed:
        report.ops_notified = _notify_ops(newly_failed, units, templates, outbox_dir, now)
    logger.info("delivery at %s: %s", now.isoformat(timespec="seconds"), report.summary())
    return report


def _pending_items(engine: Engine) -> pl.DataFrame:
    """Pending deliveries of pending cards, with the case details the email shows (masked later)."""
    query = (
        select(
            Delivery.id.label("delivery_id"),
            Delivery.card_id,
            Delivery.recipient_unit,
            Delivery.channel,
            Delivery.target,
            Delivery.attempts,
            Card.clock_id,
            Card.level,
            Card.clock_type,
            Card.subject_id,
            Card.case_id,
            Card.unit_code,
            Card.matter_code,
            Card.due_date,
            Card.remaining,
            Card.overdue_workdays,
            Card.calendar,
            Card.as_of,
            Case.matter_name,
            Case.applicant_name,
            Case.applicant_phone,
        )
        .join(Card, Card.card_id == Delivery.card_id)
        .outerjoin(Case, Case.case_id == Card.case_id)
        .where(Delivery.status == PENDING, Card.status == PENDING)
        .order_by(Delivery.id)
    )
    schema = {
        "delivery_id": pl.Int64(),
        "card_id": pl.Int64(),
        "recipient_unit": pl.String(),
        "channel": pl.String(),
        "target": pl.String(),
        "attempts": pl.Int32(),
        "clock_id": pl.String(),
        "level": pl.String(),
        "clock_type": pl.String(),
        "subject_id": pl.String(),
        "case_id": pl.String(),
        "unit_code": pl.String(),
        "matter_code": pl.String(),
        "due_date": pl.Date(),
        "remaining": pl.Int32(),
        "overdue_workdays": pl.Int32(),
        "calendar": pl.String(),
        "as_of": pl.Date(),
        "matter_name": pl.String(),
        "applicant_name": pl.String(),
        "applicant_phone": pl.String(),
    }
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=schema, orient="row")


def _suppress_silenced(engine: Engine, items: pl.DataFrame, now: datetime, report: DeliveryReport) -> pl.DataFrame:
    """A silence added after the cards were issued still holds them back: they become suppressed, not sent."""
    if items.height == 0:
        return items
    silences = read_silences(engine)
    if silences.height == 0:
        return items
    cards = items.select("card_id", "clock_id", "case_id", "unit_code", "matter_code").unique("card_id")
    matched = cards.join(match_silences(cards, silences, now.astimezone(TIMEZONE).date()), on="clock_id")
    if matched.height == 0:
        return items
    with engine.begin() as connection:
        for reason, card_ids in _by_reason(matched, "suppressed_by"):
            for chunk in _chunks(card_ids):
                connection.execute(
                    update(Card).where(Card.card_id.in_(chunk)).values(status=SUPPRESSED, suppressed_by=reason)
                )
        for chunk in _chunks(matched.get_column("card_id").to_list()):
            connection.execute(
                update(Delivery)
                .where(Delivery.card_id.in_(chunk), Delivery.status == PENDING)
                .values(status=SUPPRESSED)
            )
    report.suppressed_cards = matched.height
    return items.filter(~pl.col("card_id").is_in(matched.get_column("card_id").to_list()))


def _drop_unknown_targets(
    engine: Engine, items: pl.DataFrame, units: UnitDirectory, max_attempts: int, now: datetime
) -> pl.DataFrame:
    """Deliveries whose target was removed from units.yaml since the card was issued fail at once (ops are told)."""
    known = units.targets_frame()
    orphans = items.join(known, on=["recipient_unit", "channel", "target"], how="anti")
    if orphans.height == 0:
        return items
    ids = orphans.get_column("delivery_id").to_list()
    with engine.begin() as connection:
        for chunk in _chunks(ids):
            connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk))
                .values(
                    status=FAILED,
                    attempts=max_attempts,
                    sent_at=now,
                    last_error="target no longer configured in units.yaml",
                )
            )
    _settle_cards(engine, set(orphans.get_column("card_id").to_list()))
    return items.join(known, on=["recipient_unit", "channel", "target"], how="semi")


def _send_digest(digest: Digest, units: UnitDirectory, outbox_dir: Path, stamp: str) -> tuple[bool, str | None]:
    contact = units.contact(digest.recipient_unit, digest.channel, digest.target)
    if contact is None:  # unknown targets were failed before digests were built
        return False, "target no longer configured in units.yaml"
    try:
        return send_message(contact, digest, outbox_dir=outbox_dir, stamp=stamp)
    except Exception as exc:  # a plugin error must become a recorded failure, not rows left `sending`
        return False, f"{type(exc).__name__}: {exc}"[:1000]


def _record(
    engine: Engine,
    digest: Digest,
    ok: bool,
    error: str | None,
    stored_at: datetime,
    max_attempts: int,
    report: DeliveryReport,
) -> None:
    """apprise's result for one message, on every card delivery it carried."""
    ids = list(digest.delivery_ids)
    if ok:
        values: dict[str, Any] = {"status": SENT, "last_error": None}
    else:
        values = {"status": _retry_or_fail(max_attempts), "last_error": error}
    with engine.begin() as connection:
        for chunk in _chunks(ids):
            connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.status == SENDING)
                .values(attempts=Delivery.attempts + 1, sent_at=stored_at, **values)
            )
        retrying = 0 if ok else _count(connection, ids, PENDING)
    where = f"{digest.recipient_unit} {digest.channel} {digest.target}"
    if ok:
        report.messages_sent += 1
        report.deliveries_sent += len(ids)
        logger.info("sent %s digest to %s (%d cards)", digest.channel, where, digest.card_count)
    else:
        report.messages_failed += 1
        report.deliveries_retrying += retrying
        report.errors.append(f"{where}: {error}")
        logger.warning("could not send %s digest to %s: %s", digest.channel, where, error)


def _count(connection: Connection, ids: list[int], status: str) -> int:
    return sum(
        connection.execute(
            select(func.count()).select_from(Delivery).where(Delivery.id.in_(chunk), Delivery.status == status)
        ).scalar_one()
        for chunk in _chunks(ids)
    )


def _retry_or_fail(max_attempts: int) -> Any:
    """SQL: after this failed attempt, the row is failed for good once attempts reach max_attempts."""
    return case((Delivery.attempts + 1 >= max_attempts, FAILED), else_=PENDING)


def _claim(engine: Engine, digests: list[Digest], stored_at: datetime) -> list[Digest]:
    """Mark the digests' rows `sending` in one transaction. A digest some of whose rows another delivery running at
    the same time took first is left to it (our rows of it go back to pending)."""
    ids = [delivery_id for digest in digests for delivery_id in digest.delivery_ids]
    ours: set[int] = set()
    with engine.begin() as connection:
        for chunk in _chunks(ids):
            connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.status == PENDING)
                .values(status=SENDING, sent_at=stored_at)
            )
            ours.update(
                connection.execute(
                    select(Delivery.id).where(
                        Delivery.id.in_(chunk), Delivery.status == SENDING, Delivery.sent_at == stored_at
                    )
                ).scalars()
            )
        owned = [digest for digest in digests if ours.issuperset(digest.delivery_ids)]
        release = sorted(ours.difference(i for digest in owned for i in digest.delivery_ids))
        for chunk in _chunks(release):
            connection.execute(update(Delivery).where(Delivery.id.in_(chunk)).values(status=PENDING, sent_at=None))
    return owned


def _release_stale(engine: Engine, now: datetime) -> None:
    with engine.begin() as connection:
        released = connection.execute(
            update(Delivery)
            .where(Delivery.status == SENDING, Delivery.sent_at < now - STALE_SENDING)
            .values(status=PENDING, last_error="interrupted while sending: result unknown, sending again")
        ).rowcount
    if released:
        logger.warning("%d deliveries were left mid-send by an interrupted delivery; they will be sent again", released)


def _settle_cards(engine: Engine, card_ids: Iterable[int]) -> None:
    """A card is sent when all its deliveries are, failed when none is outstanding and one failed."""
    ids = sorted(set(card_ids))
    if not ids:
        return
    with engine.begin() as connection:
        for chunk in _chunks(ids):
            rows = connection.execute(
                select(Delivery.card_id, Delivery.status, func.count())
                .where(Delivery.card_id.in_(chunk))
                .group_by(Delivery.card_id, Delivery.status)
            ).all()
            states: dict[int, set[str]] = {}
            for card_id, status, _count in rows:
                states.setdefault(card_id, set()).add(status)
            for status in (SENT, FAILED):
                settled = [
                    card_id
                    for card_id, seen in states.items()
                    if not seen & {PENDING, SENDING} and (FAILED in seen) == (status == FAILED)
                ]
                if settled:
                    connection.execute(
                        update(Card).where(Card.card_id.in_(settled), Card.status == PENDING).values(status=status)
                    )


def _failures_since(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Targets whose deliveries were failed for good by this delivery, grouped for the ops report."""
    query = (
        select(
            Delivery.recipient_unit,
            Delivery.channel,
            Delivery.target,
            func.max(Delivery.attempts),
            func.max(Delivery.last_error),
            func.count(),
        )
        .where(Delivery.status == FAILED, Delivery.sent_at == now)
        .group_by(Delivery.recipient_unit, Delivery.channel, Delivery.target)
        .order_by(Delivery.recipient_unit, Delivery.channel)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        {
            "recipient_unit": unit,
            "channel": channel,
            "target": target,
            "attempts": attempts,
            "last_error": error,
            "cards": count,
        }
        for unit, channel, target, attempts, error, count in rows
    ]


def _notify_ops(
    failures: list[dict[str, Any]],
    units: UnitDirectory,
    templates: DigestTemplates,
    outbox_dir: Path,
    now: datetime,
) -> bool:
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
            message = Digest(
                recipient_unit=ops_code,
                channel=contact.channel,
                target=contact.target,
                title=title,
                body=bodies.get(contact.channel, text),
            )
            ok, error = send_message(contact, message, outbox_dir=outbox_dir, stamp=stamp)
            delivered = delivered or ok
            if not ok:
                logger.error("could not notify ops unit %s at %s: %s", ops_code, contact.target, error)
    return delivered


def _cut_sms(text: str, units: UnitDirectory) -> str:
    limits = units.alerting.sms
    cap = limits.max_segments * limits.multipart_segment_chars
    return text if sms_length(text) <= cap else cut_sms(text, cap)


def send_message(contact: Contact, digest: Digest, *, outbox_dir: Path, stamp: str) -> tuple[bool, str | None]:
    """Send one message to one target through apprise. Returns (ok, error), the error from apprise's log of the call."""
    url = contact.url
    if contact.target.split("://", 1)[0].lower() == OUTBOX_SCHEME:
        url = outbox_url(contact.channel, digest.recipient_unit, outbox_dir, stamp)
    notifier = apprise.Apprise()
    added = notifier.add(url)
    if not added:
        return False, f"apprise cannot load {contact.safe_url}"
    body_format = _BODY_FORMATS.get(contact.channel, apprise.NotifyFormat.TEXT)
    with contextlib.ExitStack() as stack:
        attach = None
        if digest.attachments:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="permitwatch-")))
            attach = apprise.AppriseAttachment()
            for name, content in digest.attachments.items():
                (folder / name).write_bytes(content)
                attach.add(str(folder / name))
        result = notifier.notify(body=digest.body, title=digest.title, body_format=body_format, attach=attach)
    if result:
        return True, None
    # The service's own log of this call (per call, so parallel sends do not mix their errors).
    problems = [entry.message for service in result for entry in service.logs() if entry.level in {"WARNING", "ERROR"}]
    return False, ("; ".join(problems[-3:]) or "apprise reported failure")[:1000]


def _by_reason(frame: pl.DataFrame, column: str) -> list[tuple[str, list[int]]]:
    """Card ids grouped by their reason, so that one UPDATE covers many cards."""
    grouped = frame.group_by(column, maintain_order=True).agg(pl.col("card_id").unique())
    return [(reason, card_ids) for reason, card_ids in grouped.iter_rows()]


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
