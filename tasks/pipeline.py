"""Prefect tasks: each a thin wrapper that names a stage for the UI and calls the plain function that does the work.

I/O stages (reading a source, writing or reading the database) retry with backoff: `RunContext.io(task)` gives the
task the delays of the `retry_delays` setting. Pure stages do not retry, and neither does sending (a message that
may have arrived is repeated only by the next delivery). No task works on a single row: a task is a whole source, a
whole table, the whole run, all of a delivery's messages or (backfill) a month of days.
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.logging import get_run_logger
from prefect.states import Failed, State
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from config.bundle import PermitwatchConfig, load_config
from config.canonical import TABLES
from config.settings import Settings
from config.sources import Source
from schemas.database import ensure_schema
from tasks import artifacts
from tasks.alerts.card_store import issue_cards
from tasks.alerts.cards import CardPlan
from tasks.alerts.delivery import DeliveryPlan, DeliveryReport, plan_delivery, send_digests, settle_delivery
from tasks.alerts.digests import DigestTemplates
from tasks.alerts.ops_notices import notify_ops_once
from tasks.alerts.review import waiting_escalations
from tasks.alerts.sending import SendOptions
from tasks.clocks.builders import ClockSet, build_clocks
from tasks.clocks.calendar import WorkCalendar, load_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tasks.clocks.platform_check import pausing_suspensions, platform_disagreements
from tasks.clocks.reconcile import clock_rejects
from tasks.ingest.freshness import Freshness, judge, last_loads
from tasks.ingest.load import LoadResult, case_reference, load_source
from tasks.ingest.platform_codes import KnownCodes
from tasks.store.evaluations import due_date_changes, previous_due_dates, store_evaluations
from tasks.store.runs import nightly_ledger, nightly_problem
from tasks.store.settled import (
    EvaluationPlan,
    Settlement,
    plan_evaluation,
    read_settled_counts,
    record_settlement,
    settle_groups,
)
from tasks.store.upsert import (
    count_rows,
    read_case_reference,
    read_open_tables,
    read_tables,
    store_rejects,
    store_table,
    stored_watermark,
    tables_written_by,
)

STAGE = {"cache_policy": NO_CACHE}  # stages pass frames in memory; nothing to cache between runs
TaskT = TypeVar("TaskT", bound=Task[Any, Any])


class SourceUnavailable(RuntimeError):
    """A source could not be read for now (no file yet, a share or database briefly away). Prefect retries the read
    (see `refuse`): an export still being copied is there a minute later."""


class SourceRefused(RuntimeError):
    """A source that retrying cannot fix: an empty file, an undecodable encoding, a missing column, more rejected
    rows than its limit. The task fails at once (red in the UI graph) and nothing from the source is stored."""


# Worth another try: a source not there yet, a file system or network error, a database that is busy, restarting or
# (IntegrityError) was written by a concurrent run first. A bug, bad input or bad config fails at once.
TRANSIENT = (SourceUnavailable, OSError, OperationalError, InterfaceError, IntegrityError)


def refuse(message: str, *, transient: bool = False) -> State[Any]:
    """A failed stage for an expected failure: red in the UI graph with the message, retried only when `transient`,
    and with no traceback in the log (the message says all there is)."""
    return Failed(message=message, data=(SourceUnavailable if transient else SourceRefused)(message))


def is_transient(stage: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry condition for I/O stages."""
    error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(error, TRANSIENT)


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run shares: settings, the checked config, the database and the calendar."""

    settings: Settings
    config: PermitwatchConfig
    engine: Engine
    calendar: WorkCalendar
    as_of: date

    @classmethod
    def prepare(cls, settings: Settings, as_of: date | None = None) -> RunContext:
        """Load and check all configuration first: bad config fails here, before anything is read or sent."""
        config = load_config(settings.config_dir)
        return cls(
            settings=settings,
            config=config,
            engine=ensure_schema(settings.database_url),
            calendar=load_work_calendar(config.calendar_files),
            as_of=as_of or settings.effective_as_of,
        )

    def io(self, stage: TaskT) -> TaskT:
        """The stage with this run's retry policy: transient errors retried once per configured delay."""
        delays = [float(delay) for delay in self.settings.retry_delays]
        return stage.with_options(  # type: ignore[return-value]
            retries=len(delays), retry_delay_seconds=delays or 0, retry_condition_fn=is_transient
        )

    def select_sources(self, names: list[str] | None) -> list[Source]:
        """The named sources (all when None), in catalog order; an unknown name is an error naming the known ones."""
        catalog = self.config.sources
        if not names:
            return list(catalog.sources)
        unknown = sorted(set(names) - {source.name for source in catalog.sources})
        if unknown:
            known = ", ".join(source.name for source in catalog.sources)
            raise ValueError(f"no source named {', '.join(unknown)} in sources.yaml (known: {known})")
        return [source for source in catalog.sources if source.name in names]


@dataclass(frozen=True)
class Verdict:
    """A load the validate stage let through, and how many of its rows it quarantined."""

    source: str
    table: str
    quarantined: int
    warning: str | None = None  # stored, but not as fresh as it should be (tasks.ingest.freshness)


@dataclass(frozen=True)
class StoredSource:
    source: str
    table: str
    stored: bool
    counts: dict[str, int]
    note: str | None
    warning: str | None = None


# Reading an export takes several times its size in memory for a moment (its text, the rows as read, the checked
# rows), so the large ones are read one at a time; small exports and sql sources (which mostly wait on the platform's
# database) go on beside them. On a million-case rerun the reading stage then peaks at 1.2 GB instead of 1.3-1.6 GB,
# in the same time (5.9-6.1 s against 6.2-6.4 s).
LARGE_EXPORT_BYTES = 32 << 20
_one_large_export = threading.Lock()


def export_bytes(source: Source, inbox_dir: Path) -> int:
    """The size of a file source's exports on disk (0 for a sql source, or when they cannot be looked at)."""
    try:
        return sum(path.stat().st_size for path in source.files(inbox_dir))
    except OSError:
        return 0


@task(name="ingest", task_run_name="ingest-{source.name}", **STAGE)
def ingest_source(
    context: RunContext, source: Source, cases: list[LoadResult] | None = None, full: bool = False
) -> LoadResult | State[Any]:
    """Read one source and check every row against its contract, splitting accepted and rejected rows.

    Suspensions are checked against their case's life: the cases of this load (`cases`) first, then the stored ones.
    Rows identical to ones checked before take their checked values from the source's memo in the var dir
    (tasks/ingest/memo.py); `full` (`run --full`) checks every row and writes the memo afresh. Exports of
    LARGE_EXPORT_BYTES or more are read one at a time.
    """
    reference = None
    if source.table == "suspensions":
        loaded = [result.accepted for result in cases or [] if result.storable]
        reference = case_reference(loaded, read_case_reference(context.engine))
    watermark = stored_watermark(context.engine, source.table, source.watermark) if source.watermark else None
    inbox_dir = context.settings.effective_inbox_dir
    large = export_bytes(source, inbox_dir) >= LARGE_EXPORT_BYTES
    with _one_large_export if large else nullcontext():
        result = load_source(
            source,
            inbox_dir=inbox_dir,
            case_reference=reference,
            codes=KnownCodes.of(context.config),
            watermark=watermark,
            memo_dir=context.settings.memo_dir,
            reuse_memo=not full,
        )
    log = get_run_logger()
    if result.error:
        log.error("%s failed: %s", source.name, result.error)
        return refuse(result.error, transient=result.error_transient)
    log.info("%s: read %d, accepted %d, rejected %d", source.name, result.rows_read, result.accepted.height,
             result.rejected.height)
    return result


@task(name="validate", task_run_name="validate-{result.source}", **STAGE)
def validate_source(context: RunContext, result: LoadResult, run_id: int) -> Verdict | State[Any]:
    """The acceptance gate: quarantine the rejected rows (with file, line and reasons) and decide whether the accepted
    rows may be stored. A source that failed, whose reject share is over its limit or whose row count fell too far
    since its last stored load stores nothing, and this task fails (SourceRefused): the source is red in the UI graph.
    """
    quarantined = store_rejects(context.engine, result.rejected, run_id)
    log = get_run_logger()
    freshness = Freshness()
    if result.error:
        note = result.error
    elif result.over_threshold:
        note = f"{result.reject_fraction:.1%} rejected exceeds the {result.max_reject_fraction:.0%} limit"
    else:
        last = last_loads(nightly_ledger(context.engine, run_id)).get(result.source)
        freshness = judge(context.config.sources.get(result.source), result.rows_read, result.files,
                          result.content_hash, last)
        note = freshness.refusal
    if note is None:
        if freshness.warning:
            log.warning("%s", freshness.warning)
        return Verdict(result.source, result.table, quarantined, freshness.warning)
    log.error("%s: nothing stored: %s", result.source, note)
    return refuse(note)


@task(name="store", task_run_name="store-{result.source}", **STAGE)
def store_source(context: RunContext, result: LoadResult, run_id: int) -> StoredSource:
    """Upsert the accepted rows (unchanged rows are not written, so a retry or a rerun stores nothing twice)."""
    stats = store_table(context.engine, result.table, result.accepted, run_id)
    return StoredSource(result.source, result.table, True, stats.as_dict(), None)


@dataclass(frozen=True)
class ReadBack:
    """The stored rows this run builds its clocks from, and whether they are all of them (the full path)."""

    plan: EvaluationPlan
    tables: dict[str, pl.DataFrame]
    counts: dict[str, int]  # stored rows per table, read back or not


@task(name="read-stored", **STAGE)
def read_stored(context: RunContext) -> dict[str, pl.DataFrame]:
    """All canonical tables as stored (this run's loads and everything before them)."""
    return read_tables(context.engine)


@task(name="read-back", **STAGE)
def read_back(
    context: RunContext, run_id: int, loads: list[LoadResult], stored: list[StoredSource], full: bool = False
) -> ReadBack:
    """The nightly run's read-back: the stored rows of the groups that have not settled (tasks/store/settled.py), or, on
    the full path, every row. `loads` and `stored` (one entry per source, in the same order): a table this run wrote
    whole (the first load) is taken from the accepted rows it stored rather than read back."""
    plan = plan_evaluation(context.engine, context.config, context.calendar, context.as_of, full=full)
    log = get_run_logger()
    log.info("evaluation: %s", plan.reason)
    if plan.full:
        written: dict[str, list[pl.DataFrame]] = {}
        for load, entry in zip(loads, stored, strict=True):
            if entry.stored:
                written.setdefault(load.table, []).append(load.accepted)
        tables = tables_written_by(context.engine, run_id, written)
        if tables:
            log.info("not read back, this run wrote them whole: %s", ", ".join(tables))
        tables |= read_tables(context.engine, [table for table in TABLES if table not in tables])
        tables = {table: tables[table] for table in TABLES}
        return ReadBack(plan, tables, {table: frame.height for table, frame in tables.items()})
    return ReadBack(plan, read_open_tables(context.engine), count_rows(context.engine))


@task(name="build-clocks", **STAGE)
def make_clocks(context: RunContext, tables: dict[str, pl.DataFrame]) -> ClockSet:
    """All six kinds of clock (case, step, project, deferral, claim, special) with their pauses, as recorded; each
    evaluation takes what is known at its own date from them."""
    return build_clocks(tables, context.config.rules)


@task(name="quarantine-clock-rejects", **STAGE)
def store_clock_rejects(context: RunContext, clock_set: ClockSet, loads: list[LoadResult], run_id: int) -> pl.DataFrame:
    """The rows the clock builder refused, into `rejects` with their file, line and reason (tasks.clocks.reconcile)."""
    refused = clock_rejects(clock_set.rejects, loads)
    store_rejects(context.engine, refused, run_id)
    if refused.height:
        get_run_logger().warning("the clock builder refused %d stored rows (see the rejects)", refused.height)
    return refused


def evaluate_known(clock_set: ClockSet, calendar: WorkCalendar, as_of: date) -> pl.DataFrame:
    """The clocks that exist at the end of `as_of`, as known then, evaluated: the nightly run and every backfilled
    day go through here, so a replay of a date gives what the nightly run of that date gave."""
    known = clock_set.known_at(as_of, calendar)
    return evaluate_clocks(known.clocks, known.pauses, calendar, as_of)


@task(name="evaluate", **STAGE)
def evaluate(context: RunContext, clock_set: ClockSet) -> pl.DataFrame:
    """Every clock's due date and level as of the run's date."""
    return evaluate_known(clock_set, context.calendar, context.as_of)


@task(name="check-platform-due-dates", **STAGE)
def check_platform_due_dates(
    context: RunContext, tables: dict[str, pl.DataFrame], evaluations: pl.DataFrame
) -> pl.DataFrame:
    """Open cases whose platform due date (承诺办结时间) differs from ours, with a likely cause."""
    pauses = pausing_suspensions(tables["suspensions"], context.config.rules)
    return platform_disagreements(tables["cases"], evaluations, pauses, context.calendar, context.as_of)


@task(name="settle", **STAGE)
def settle_clocks(
    context: RunContext, stored: ReadBack, clock_rejects: pl.DataFrame, evaluations: pl.DataFrame, run_id: int
) -> Settlement:
    """Keep the evaluations of the unsettled groups and record the groups that settled now; on the full path, the
    settled groups are decided again from scratch. `clock_rejects`: the clock builder's rejected rows, whose groups
    do not settle."""
    earlier = read_settled_counts(context.engine) if not stored.plan.full else None
    settlement = settle_groups(stored.tables, evaluations, clock_rejects, context.as_of, earlier)
    moved = record_settlement(context.engine, settlement, stored.plan, context.as_of, run_id)
    return replace(settlement, moved=moved)


@task(name="store-evaluations", **STAGE)
def save_evaluations(context: RunContext, evaluations: pl.DataFrame, run_id: int) -> dict[str, int]:
    moved = due_date_changes(evaluations, previous_due_dates(context.engine, context.as_of))
    stored = store_evaluations(context.engine, evaluations, context.as_of, run_id)
    return {"stored": stored, "due_date_changed": moved.height}


@task(name="evaluate-history", task_run_name="evaluate-history-{first}-{last}", **STAGE)
def evaluate_history(context: RunContext, clock_set: ClockSet, first: date, last: date, run_id: int) -> dict[str, int]:
    """Backfill: each day's evaluations from `first` to `last`, stored as that day's history (a rerun replaces
    them), each from what was known that day (a clock that had not started yet is not part of it)."""
    stored: dict[str, int] = {}
    day = first
    while day <= last:
        evaluations = evaluate_known(clock_set, context.calendar, day)
        stored[day.isoformat()] = store_evaluations(context.engine, evaluations, day, run_id)
        day += timedelta(days=1)
    return stored


@task(name="cards", **STAGE)
def make_cards(context: RunContext, evaluations: pl.DataFrame, run_id: int, deliverable: bool | None) -> CardPlan:
    """Plan this run's cards against the stored ones and store them with their pending deliveries, in one
    transaction. A concurrent run that stored the same cards first makes it fail whole; its retry then finds them."""
    return issue_cards(
        context.engine, evaluations, context.config.units, as_of=context.as_of, run_id=run_id, deliverable=deliverable
    )


@task(name="check-nightly", **STAGE)
def check_nightly(context: RunContext, now: datetime) -> str | None:
    """Whether the nightly run for the day before completed. If not (none, failed, crashed), ops are told once that
    day, before any card goes out: the cards may rest on stale data. Returns the problem, or None."""
    as_of = now.date() - timedelta(days=1)
    problem = nightly_problem(context.engine, as_of)
    if problem is None:
        return None
    log = get_run_logger()
    log.warning("%s; the pending cards are sent anyway, but they may rest on stale data", problem)
    title = f"permitwatch：{as_of} 夜间运行未完成"
    body = (
        f"审批时限预警系统：{problem}。\n"
        f"今日 {now:%H:%M} 的预警照常发送，但可能基于过期数据。请在 Prefect 界面查看 nightly 运行并按需重跑："
        f"permitwatch run --as-of {as_of}"
    )
    told = notify_ops_once(context.engine, f"nightly-incomplete:{as_of}", context.config.units, title, body,
                           context.settings.effective_outbox_dir, now)
    if told is not None:
        log.log(logging.INFO if told else logging.ERROR, "ops %s about it", "told" if told else "could NOT be told")
    return problem


@task(name="plan-delivery", **STAGE)
def plan_digests(context: RunContext, now: datetime) -> DeliveryPlan:
    """Give back the rows of a delivery that died mid-send, then one digest per recipient target of what is pending."""
    return plan_delivery(context.engine, context.config, now)


# Not retried: a retry could repeat a message that reached its recipient without an answer; the next delivery
# retries what is still pending.
@task(name="send-digests", **STAGE)
def send_planned(context: RunContext, plan: DeliveryPlan, flow_run_id: str | None) -> DeliveryReport:
    """Claim each digest just before sending it, send, record the result right after; `parallel_sends` at a time.
    Claim and record are part of this stage, per digest, not stages of their own: see `send_digests`."""
    options = SendOptions.from_settings(context.settings, flow_run_id)
    return send_digests(context.engine, context.config, plan, context.settings.effective_outbox_dir, options)


@task(name="settle-delivery", **STAGE)
def settle(context: RunContext, plan: DeliveryPlan, report: DeliveryReport) -> DeliveryReport:
    """Cards whose deliveries are done become sent or failed; targets failed for good are reported to ops."""
    return settle_delivery(context.engine, context.config, plan, report, context.settings.effective_outbox_dir)


@task(name="publish-artifacts", **STAGE)
def publish_nightly_artifacts(
    context: RunContext,
    summary: dict[str, Any],
    evaluations: pl.DataFrame,
    results: list[LoadResult],
    refused: pl.DataFrame,
    disagreements: pl.DataFrame,
) -> None:
    sources = {source.name: source for source in context.config.sources.sources}
    names = {
        "unit": {code: unit.name for code, unit in context.config.units.units.items()},
        "matter": {matter.code: matter.name for matter in context.config.rules.matters},
    }
    artifacts.publish_nightly(summary, evaluations, results, sources, refused, names)
    artifacts.publish_platform_disagreements(disagreements, summary["as_of"])


@task(name="publish-delivery-artifact", **STAGE)
def publish_delivery_artifact(context: RunContext, report: DeliveryReport) -> None:
    artifacts.publish_delivery(context.engine, report, context.config.units)


@task(name="review-waiting", **STAGE)
def review_waiting(context: RunContext) -> pl.DataFrame:
    """The escalations waiting for the 督办 review."""
    return waiting_escalations(context.engine, context.config.units, DigestTemplates(context.config.templates_dir))


@task(name="publish-review-artifact", **STAGE)
def publish_review_artifact(context: RunContext, waiting: pl.DataFrame, timeout_text: str) -> None:
    artifacts.publish_review(waiting, timeout_text)
