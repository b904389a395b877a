"""The alert outbox: cards and their deliveries stored in one transaction, silences, and delivery through apprise.

Evaluation and delivery are separate. The nightly run calls `issue_cards` (plan + store, nothing sent);
`deliver_pending` sends, inside the delivery window, one digest per recipient unit and channel target holding all its
pending cards, in three stages (the `deliver` flow's tasks): plan, send, settle. It records apprise's result for every
card and target:
- success: the delivery is `sent` and never sent again;
- failure: it stays `pending` with the error and an attempt count and is retried at the next delivery; after
  `max_attempts` it is `failed` and the ops unit(s) get a report. A timeout is a failure too ("timeout: may have been
  delivered"), retried at the next delivery only.
A digest's rows are claimed (`sending`) just before it is sent (`tasks.alerts.claims`), so two deliveries running at
once never send the same card, and a delivery that dies gives back only the digests it was sending.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import apprise
import polars as pl
from apprise.plugins.email import NotifyEmail
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from sqlalchemy import Engine, case, func, insert, select, update

from config.bundle import PermitwatchConfig
from config.settings import TIMEZONE, Settings, load_settings
from config.units import CHANNELS, Contact, DeliveryWindow, UnitDirectory
from schemas.database import in_batches
from schemas.tables import Card, Case, Delivery, OpsNotice, Silence
from tasks.alerts.cards import (
    AWAITING_REVIEW,
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
from tasks.alerts.claims import SENDING, Attempt, claim, delivery_lease, flow_run_ended, held_by, release_dead
from tasks.alerts.digests import Digest, DigestTemplates, build_digests, cut_sms, sms_length
from tasks.alerts.idempotency import add_gateway_key, digest_key, install_message_id_hook, message_id
from tasks.alerts.outbox import OUTBOX_SCHEME, outbox_url
from tasks.alerts.review import read_holds
from tasks.alerts.subjects import add_subject_names
from tasks.clocks.calendar import WorkCalendar, load_work_calendar
from tasks.pii import mask_phone
from tasks.store.runs import RunIncomplete

logger = logging.getLogger("permitwatch.alerts")

# apprise's own fields of a json:// or form:// body (`:message=content` renames one); any other `:name=value` of a
# contact URL is a field of its own, usually the recipient's number.
_APPRISE_FIELDS = frozenset({"message", "title", "version", "type", "attachments"})
_TIMED_OUT = "timed out"
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
                for chunk in in_batches(list(dict.fromkeys(clock_ids)))
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
                "status",
                pl.lit(0).alias("attempts"),
            )
            if deliveries.height:
                connection.execute(insert(Delivery), deliveries.to_dicts())
            delivery_count = deliveries.height
        for reason, card_ids in _by_reason(plan.superseded, "superseded_by"):
            for chunk in in_batches(card_ids):
                connection.execute(
                    update(Card)
                    .where(Card.card_id.in_(chunk), Card.status == PENDING)
                    .values(status=SUPERSEDED, suppressed_by=reason[:200])
                )
        for chunk in in_batches(plan.superseded.get_column("card_id").to_list()):
            connection.execute(
                update(Delivery)
                .where(Delivery.card_id.in_(chunk), Delivery.status.in_([PENDING, AWAITING_REVIEW]))
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
    plan = plan_cards(
        evaluations,
        units,
        as_of=as_of,
        existing=existing,
        silences=silences,
        holds=read_holds(engine) if units.alerting.review is not None else None,
        deliverable=deliverable,
    )
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

# A send that got no answer in time may still have reached the recipient: it is kept pending, saying so.
TIMEOUT_ERROR = "timeout: may have been delivered"


@dataclass(frozen=True)
class SendOptions:
    """How messages go out (from the PERMITWATCH_* settings): per-channel timeouts, the idempotency key's header or
    field for HTTP SMS gateways, the claim lease and the Prefect flow run the delivery belongs to."""

    timeouts: dict[str, float]
    connect_timeout: float
    sms_idempotency_header: str
    sms_idempotency_field: str
    lease_seconds: float
    flow_run_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, flow_run_id: str | None = None) -> SendOptions:
        return cls(
            timeouts={channel: settings.send_timeout(channel) for channel in CHANNELS},
            connect_timeout=settings.connect_timeout,
            sms_idempotency_header=settings.sms_idempotency_header,
            sms_idempotency_field=settings.sms_idempotency_field,
            lease_seconds=settings.delivery_lease_seconds,
            flow_run_id=flow_run_id,
        )


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
    items = _pending_items(engine)
    items = _suppress_silenced(engine, items, now, report)
    items = _drop_unknown_targets(engine, items, units, units.alerting.max_attempts, now.astimezone(UTC))
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
    log = run_logger()
    report = plan.report
    policy = config.units.alerting
    stamp = plan.now.strftime("%Y%m%dT%H%M%S")
    tally = threading.Lock()

    def claim_send_record(attempt: Attempt, digest: Digest) -> None:
        if not claim(engine, attempt, digest.delivery_ids, plan.stamp):
            with tally:
                report.busy += 1
            return
        ok, error = _send_digest(digest, config.units, outbox_dir, stamp, options)
        outcome = _record(engine, attempt, digest, ok, error, plan.stamp, policy.max_attempts)
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
    _settle_cards(engine, plan.card_ids)
    newly_failed = _failures_since(engine, plan.stamp)
    report.deliveries_failed = sum(failure["cards"] for failure in newly_failed)
    if newly_failed:
        templates = DigestTemplates(config.templates_dir)
        report.ops_notified = _notify_ops(newly_failed, config.units, templates, outbox_dir, plan.now)
    run_logger().info("delivery at %s: %s", plan.now.isoformat(timespec="seconds"), report.summary())
    return report


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run's logger inside a flow or task run (its lines reach the run's log in the UI), else ours."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


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
            for chunk in in_batches(card_ids):
                connection.execute(
                    update(Card).where(Card.card_id.in_(chunk)).values(status=SUPPRESSED, suppressed_by=reason)
                )
        for chunk in in_batches(matched.get_column("card_id").to_list()):
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
        for chunk in in_batches(ids):
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


def _send_digest(
    digest: Digest, units: UnitDirectory, outbox_dir: Path, stamp: str, options: SendOptions
) -> tuple[bool, str | None]:
    contact = units.contact(digest.recipient_unit, digest.channel, digest.target)
    if contact is None:  # unknown targets were failed before digests were built
        return False, "target no longer configured in units.yaml"
    try:
        return send_message(contact, digest, outbox_dir=outbox_dir, stamp=stamp, options=options)
    except Exception as exc:  # a plugin error must become a recorded failure, not rows left `sending`
        return False, f"{type(exc).__name__}: {exc}"[:1000]


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    error: str | None
    recorded: int  # card deliveries whose result was recorded
    retrying: int  # of them, kept pending for the next delivery
    attempt: int  # the attempt this was, for the target


def _record(
    engine: Engine,
    attempt: Attempt,
    digest: Digest,
    ok: bool,
    error: str | None,
    stamp: datetime,
    max_attempts: int,
) -> _Outcome:
    """apprise's result for one message, on every card delivery it carried, in one transaction."""
    ids = list(digest.delivery_ids)
    if ok:
        mine = held_by(attempt)
        values: dict[str, Any] = {"status": SENT, "last_error": None}
    else:
        mine = (Delivery.status == SENDING) & (Delivery.claimed_by == attempt.attempt_id)
        values = {"status": _retry_or_fail(max_attempts), "last_error": error}
    recorded = 0
    retrying = 0
    attempts = 0
    with engine.begin() as connection:
        for chunk in in_batches(ids):
            recorded += connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), mine)
                .values(attempts=Delivery.attempts + 1, sent_at=stamp, claimed_by=None, **values)
            ).rowcount
            if not ok:
                pending, most = connection.execute(
                    select(func.count().filter(Delivery.status == PENDING), func.max(Delivery.attempts)).where(
                        Delivery.id.in_(chunk)
                    )
                ).one()
                retrying += int(pending or 0)
                attempts = max(attempts, int(most or 0))
    return _Outcome(ok, error, recorded, retrying, attempts)


def _tally(
    report: DeliveryReport,
    digest: Digest,
    outcome: _Outcome,
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


def display_target(target: str, limit: int = 60) -> str:
    """A contact URL as written in units.yaml, short enough for a log line or a table cell: scheme, host and the
    recipient, without credentials, and with phone numbers masked (139****1234)."""
    parts = urlsplit(target)
    host = parts.netloc.rsplit("@", 1)[-1]
    recipients = [
        value
        for key, value in parse_qsl(parts.query)
        if key == "to" or (key.startswith(":") and key[1:] not in _APPRISE_FIELDS and value)
    ]
    shown = [mask_phone(value) if _looks_like_phone(value) else value for value in recipients]
    text = f"{parts.scheme}://{host}" + (f" to {','.join(shown)}" if shown else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _looks_like_phone(value: str) -> bool:
    digits = sum(character.isdigit() for character in value)
    return digits >= 7 and digits >= len(value.replace("-", "").replace("+", "").replace(" ", "")) - 1



def _retry_or_fail(max_attempts: int) -> Any:
    """SQL: after this failed attempt, the row is failed for good once attempts reach max_attempts."""
    return case((Delivery.attempts + 1 >= max_attempts, FAILED), else_=PENDING)



def _settle_cards(engine: Engine, card_ids: Iterable[int]) -> None:
    """A card is sent when all its deliveries are, failed when none is outstanding and one failed."""
    ids = sorted(set(card_ids))
    if not ids:
        return
    with engine.begin() as connection:
        for chunk in in_batches(ids):
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


def send_message(
    contact: Contact, digest: Digest, *, outbox_dir: Path, stamp: str, options: SendOptions | None = None
) -> tuple[bool, str | None]:
    """Send one message to one target through apprise, once: apprise's own retries are off, since a repeat of a
    message that may have arrived is the next delivery's decision. With `options`, the channel's timeouts apply and
    the digest's idempotency key goes with it (Message-ID, SMS gateway header or field). Returns (ok, error), the
    error from apprise's log of the call; a send that timed out waiting for an answer is TIMEOUT_ERROR."""
    url = contact.url
    if contact.target.split("://", 1)[0].lower() == OUTBOX_SCHEME:
        url = outbox_url(contact.channel, digest.recipient_unit, outbox_dir, stamp)
    service = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if service is None:
        return False, f"apprise cannot load {contact.safe_url}"
    # Only a digest of cards has an identity to repeat; a notice to ops (no card deliveries) is always new.
    key = digest_key(digest) if digest.delivery_ids else None
    service.retry = 0
    timeout = None
    if options is not None:
        timeout = _apply_timeouts(service, contact.channel, options)
        if key and contact.channel == "sms":
            add_gateway_key(service, key, options.sms_idempotency_header, options.sms_idempotency_field)
    notifier = apprise.Apprise()
    notifier.add(service)
    body_format = _BODY_FORMATS.get(contact.channel, apprise.NotifyFormat.TEXT)
    with contextlib.ExitStack() as stack:
        if key:
            stack.enter_context(message_id(key))
        attach = None
        if digest.attachments:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="permitwatch-")))
            attach = apprise.AppriseAttachment()
            for name, content in digest.attachments.items():
                (folder / name).write_bytes(content)
                attach.add(str(folder / name))
        started = time.monotonic()
        result = notifier.notify(body=digest.body, title=digest.title, body_format=body_format, attach=attach)
        elapsed = time.monotonic() - started
    if result:
        return True, None
    # The service's own log of this call (per call, so parallel sends do not mix their errors). apprise logs why a
    # request failed only at DEBUG, which it captures per call only by lowering its logger's level for every
    # thread; a failed call that lasted the whole timeout is the timeout instead.
    entries = [entry for outcome in result for entry in outcome.logs()]
    if (timeout is not None and elapsed >= timeout) or any(_TIMED_OUT in entry.message.lower() for entry in entries):
        return False, TIMEOUT_ERROR
    problems = [entry.message for entry in entries if entry.level in {"WARNING", "ERROR"}]
    return False, ("; ".join(problems[-3:]) or "apprise reported failure")[:1000]


def _apply_timeouts(service: Any, channel: str, options: SendOptions) -> float:
    """Set the channel's timeouts on the service; returns how long an answer may take."""
    timeout = options.timeouts.get(channel, max(options.timeouts.values()))
    if isinstance(service, NotifyEmail):
        # smtplib has one timeout, for connecting and for every answer of the server.
        service.socket_connect_timeout = timeout
        return timeout
    service.socket_connect_timeout = min(options.connect_timeout, timeout)
    service.socket_read_timeout = timeout
    return timeout


def _by_reason(frame: pl.DataFrame, column: str) -> list[tuple[str, list[int]]]:
    """Card ids grouped by their reason, so that one UPDATE covers many cards."""
    grouped = frame.group_by(column, maintain_order=True).agg(pl.col("card_id").unique())
    return [(reason, card_ids) for reason, card_ids in grouped.iter_rows()]

