"""Delivery: one delivery of the pending cards, stage by stage — plan, send, settle.

Evaluation and delivery are separate. The nightly run only stores cards (`tasks.alerts.card_store.issue_cards`);
`deliver_pending` sends, inside the delivery window, one digest per recipient unit and channel target holding all its
pending cards, in three stages (the `deliver` flow's tasks):
- plan: rows of a delivery that died mid-send are given back (`tasks.alerts.claims`), silenced cards suppressed
  (`tasks.alerts.silences`), deliveries to targets removed from units.yaml failed, and the digests built
  (`tasks.alerts.digests`). Nothing is claimed yet.
- send: each digest is claimed (`tasks.alerts.claims`), sent (`tasks.alerts.sending`) and its result recorded
  (`tasks.alerts.card_store`), `parallel_sends` at a time; claim and record happen per digest inside this stage
  (see `send_digests` for why).
- settle: cards whose deliveries are all done become sent or failed; targets failed for good are reported to ops.
apprise's result is recorded for every card and target:
- success: the delivery is `sent` and never sent again;
- failure: it stays `pending` with the error and an attempt count and is retried at the next delivery; after
  `max_attempts` it is `failed` and the ops unit(s) get a report. A timeout is a failure too ("timeout: may have been
  delivered"), retried at the next delivery only.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from config.bundle import PermitwatchConfig
from config.settings import TIMEZONE, load_settings
from config.units import DeliveryWindow, UnitDirectory
from tasks.alerts.card_store import (
    Outcome,
    drop_unknown_targets,
    failed_for_good,
    pending_items,
    record_outcome,
    settle_cards,
)
from tasks.alerts.claims import Attempt, claim, delivery_lease, flow_run_ended, release_dead
from tasks.alerts.digests import Digest, DigestTemplates, build_digests
from tasks.alerts.idempotency import install_message_id_hook
from tasks.alerts.ops_notices import report_failed_targets
from tasks.alerts.sending import SendOptions, display_target, send_digest
from tasks.alerts.silences import suppress_silenced
from tasks.alerts.subjects import add_subject_names
from tasks.clocks.calendar import WorkCalendar, load_work_calendar
from tasks.run_log import run_logger
from tasks.store.runs import RunIncomplete

logger = logging.getLogger("permitwatch.alerts")


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
    released: int = 0  # rows given back from a delivery that died mid-send
    ops_notified: bool | None = None
    nightly_problem: str | None = None  # the previous nightly run did not complete
    errors: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # one per message not sent, for logs and the state

    @property
    def messages(self) -> int:
        return self.messages_sent + self.messages_failed

    def summary(self) -> str:
        if self.skipped:
            return f"nothing sent: {self.skipped}"
        text = (
            f"{self.messages_sent} messages sent ({self.deliveries_sent} card deliveries), "
            f"{self.messages_failed} failed ({self.deliveries_retrying} card deliveries to retry, "
            f"{self.deliveries_failed} failed for good), {self.suppressed_cards} cards suppressed by silences"
        )
        if self.released:
            text += f", {self.released} card deliveries given back from a delivery that died mid-send"
        if self.busy:
            text += f", {self.busy} digests left to a delivery already running"
        if self.ops_notified is not None:
            text += "; ops notified" if self.ops_notified else "; ops could NOT be notified"
        if self.nightly_problem:
            text += f"; warning: {self.nightly_problem}"
        return text

    def failure_line(self) -> str:
        """One line for the run's final state: how many messages were not sent, and to whom, why."""
        shown = "; ".join(
            f"{failure['unit']} {failure['channel']}: {failure['error']}" for failure in self.failures[:3]
        )
        more = f" (and {len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
        return f"{self.messages_failed} of {self.messages} messages not sent: {shown}{more}"[:1000]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the Prefect state and the runs ledger."""
        data = asdict(self)
        data["now"] = self.now.isoformat(timespec="seconds")
        data["summary"] = self.summary()
        return data


class DeliveryIncomplete(RunIncomplete):
    """Some messages were not sent: the data of a Failed `deliver` run, its summary the delivery report."""


@dataclass
class DeliveryPlan:
    """What one delivery will send: the digests built from the pending rows, and the cards they touch."""

    now: datetime
    digests: list[Digest]
    card_ids: list[int]
    report: DeliveryReport

    @property
    def stamp(self) -> datetime:
        """Times are stored in UTC: SQLite keeps no offset, and rows are matched on the exact time of the delivery."""
        return self.now.astimezone(UTC)


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
    options: SendOptions | None = None,
) -> DeliveryReport:
    """Send every pending card as digests. Outside the delivery window nothing is sent unless `force`.

    The `deliver` flow runs the same three stages as tasks: plan, send, settle."""
    now = local_moment(now)
    if not force:
        calendar = calendar or load_work_calendar(config.calendar_files)
        reason = outside_window(now, config.units.alerting.window, calendar)
        if reason:
            logger.info("delivery skipped: %s", reason)
            return DeliveryReport(now=now, skipped=reason)
    options = options or SendOptions.from_settings(load_settings())
    plan = plan_delivery(engine, config, now)
    report = send_digests(engine, config, plan, outbox_dir, options)
    return settle_delivery(engine, config, plan, report, outbox_dir)


def local_moment(now: datetime) -> datetime:
    """`now` in Asia/Shanghai (a naive time is taken as Asia/Shanghai)."""
    return (now if now.tzinfo else now.replace(tzinfo=TIMEZONE)).astimezone(TIMEZONE)


def plan_delivery(engine: Engine, config: PermitwatchConfig, now: datetime) -> DeliveryPlan:
    """Give back the rows of deliveries that died mid-send, then build one digest per recipient target from the
    pending rows (silenced cards suppressed, removed targets failed). Nothing is claimed yet."""
    now = local_moment(now)
    report = DeliveryReport(now=now)
    report.released = release_dead(engine, flow_run_ended)
    units = config.units
    items, report.suppressed_cards = suppress_silenced(engine, pending_items(engine), now)
    items = drop_unknown_targets(engine, items, units, units.alerting.max_attempts, now.astimezone(UTC))
    items = add_subject_names(engine, items)
    templates = DigestTemplates(config.templates_dir)
    digests = build_digests(items, units, templates, as_of=now.date()) if items.height else []
    return DeliveryPlan(now, digests, items.get_column("card_id").to_list(), report)


def send_digests(
    engine: Engine, config: PermitwatchConfig, plan: DeliveryPlan, outbox_dir: Path, options: SendOptions
) -> DeliveryReport:
    """Send the plan's digests, `parallel_sends` at a time. Each digest is claimed just before it is sent and its
    result recorded right after (one transaction each), under a lease this delivery renews while it runs, so a
    crash leaves at most `parallel_sends` digests claimed, and the next delivery gives them back at once."""
    install_message_id_hook()
    log = run_logger(logger)
    report = plan.report
    policy = config.units.alerting
    stamp = plan.now.strftime("%Y%m%dT%H%M%S")
    tally = threading.Lock()

    # Claim, send and record are one step per digest rather than three stages over all digests: claims taken up
    # front would leave every digest `sending` at a crash (all of them then repeat), and results recorded after the
    # last send would let a crash repeat digests that had already arrived. A Prefect task per digest would cost
    # about a second each.
    def claim_send_record(attempt: Attempt, digest: Digest) -> None:
        if not claim(engine, attempt, digest.delivery_ids, plan.stamp):
            with tally:
                report.busy += 1
            return
        ok, error = send_digest(digest, config.units, outbox_dir, stamp, options)
        outcome = record_outcome(engine, attempt, digest.delivery_ids, ok, error, plan.stamp, policy.max_attempts)
        with tally:
            _tally(report, digest, outcome, config.units, policy.max_attempts, log)

    with (
        delivery_lease(engine, options.lease_seconds, options.flow_run_id) as attempt,
        ThreadPoolExecutor(max_workers=policy.parallel_sends, thread_name_prefix="permitwatch-send") as pool,
    ):
        for future in [pool.submit(claim_send_record, attempt, digest) for digest in plan.digests]:
            future.result()
    return report


def settle_delivery(
    engine: Engine, config: PermitwatchConfig, plan: DeliveryPlan, report: DeliveryReport, outbox_dir: Path
) -> DeliveryReport:
    """Cards whose deliveries are all done become sent (or failed); targets failed for good are reported to ops."""
    settle_cards(engine, plan.card_ids)
    newly_failed = failed_for_good(engine, plan.stamp)
    report.deliveries_failed = sum(failure["cards"] for failure in newly_failed)
    if newly_failed:
        templates = DigestTemplates(config.templates_dir)
        report.ops_notified = report_failed_targets(newly_failed, config.units, templates, outbox_dir, plan.now)
    run_logger(logger).info("delivery at %s: %s", plan.now.isoformat(timespec="seconds"), report.summary())
    return report


def _tally(
    report: DeliveryReport,
    digest: Digest,
    outcome: Outcome,
    units: UnitDirectory,
    max_attempts: int,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> None:
    """Count the message in the report and log it: one WARNING line per message not sent, for the run's log."""
    unit = digest.recipient_unit
    name = units[unit].name if unit in units else "?"
    target = display_target(digest.target)
    if outcome.ok:
        report.messages_sent += 1
        report.deliveries_sent += outcome.recorded
        # Not in the run's log: one line per message sent would bury the failures; the artifact lists them all.
        logger.info("sent %s digest to %s %s (%d cards)", digest.channel, unit, target, digest.card_count)
        return
    error = " ".join((outcome.error or "unknown error").split())
    report.messages_failed += 1
    report.deliveries_retrying += outcome.retrying
    report.errors.append(f"{unit} {digest.channel} {target}: {error}")
    report.failures.append(
        {"unit": unit, "unit_name": name, "channel": digest.channel, "target": target,
         "attempt": outcome.attempt, "error": error}
    )
    log.warning(
        "not sent: unit %s %s, %s to %s, attempt %d of %d: %s",
        unit, name, digest.channel, target, outcome.attempt, max_attempts, error,
    )
