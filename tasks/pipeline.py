"""Prefect tasks: each a thin wrapper that names a stage for the UI and calls the plain function that does the work.

I/O stages (reading a source, writing the database, sending) retry with backoff; pure stages do not. No task works
on a single row: a task is a whole source, a whole table or the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from sqlalchemy import Engine

from config.bundle import PermitwatchConfig, load_config
from config.settings import Settings
from config.sources import Source
from schemas.database import ensure_schema
from tasks import artifacts
from tasks.calendar import WorkCalendar, load_work_calendar
from tasks.cards import CardPlan
from tasks.clock_builders import ClockSet, build_clocks
from tasks.clocks import evaluate_clocks
from tasks.delivery import DeliveryReport, deliver_pending, issue_cards
from tasks.evaluations import due_date_changes, previous_due_dates, store_evaluations
from tasks.ingest import LoadResult, case_reference, load_source
from tasks.store import read_tables, store_rejects, store_table

IO_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30], "cache_policy": NO_CACHE}
PURE = {"cache_policy": NO_CACHE}


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


@dataclass(frozen=True)
class StoredSource:
    source: str
    table: str
    stored: bool
    counts: dict[str, int]
    note: str | None


@task(name="ingest", task_run_name="ingest-{source.name}", **IO_RETRIES)
def ingest_source(context: RunContext, source: Source, cases: LoadResult | None = None) -> LoadResult:
    """Read one source and check it against its contract, splitting accepted and rejected rows."""
    reference = None
    if source.table == "suspensions":
        stored_cases = read_tables(context.engine, ["cases"])["cases"]
        loaded = [cases.accepted] if cases is not None and cases.storable else []
        reference = case_reference(loaded, stored_cases)
    progress = artifacts.LoadProgress(f"load-{_slug(source.name)}", source.name)
    result = load_source(source, inbox_dir=context.settings.effective_inbox_dir, case_reference=reference,
                         progress=progress)
    progress.finish()
    log = get_run_logger()
    log.info("%s: read %d, accepted %d, rejected %d", source.name, result.rows_read, result.accepted.height,
             result.rejected.height)
    if result.error:
        log.error("%s failed: %s", source.name, result.error)
    elif result.over_threshold:
        log.error("%s: %.1f%% rejected, over the %.0f%% limit: nothing from it is stored", source.name,
                  100 * result.reject_fraction, 100 * result.max_reject_fraction)
    return result


@task(name="store", task_run_name="store-{result.source}", **IO_RETRIES)
def store_source(context: RunContext, result: LoadResult, run_id: int) -> StoredSource:
    """Quarantine the rejects and upsert the accepted rows (unless the source failed or tripped its threshold)."""
    store_rejects(context.engine, result.rejected, run_id)
    if not result.storable:
        note = result.error or f"{result.reject_fraction:.1%} rejected exceeds {result.max_reject_fraction:.0%}"
        return StoredSource(result.source, result.table, False, {}, note)
    stats = store_table(context.engine, result.table, result.accepted, run_id)
    return StoredSource(result.source, result.table, True, stats.as_dict(), None)


@task(name="evaluate", **PURE)
def evaluate(context: RunContext) -> tuple[pl.DataFrame, ClockSet]:
    """Build all six kinds of clock from the stored tables and evaluate them as of the run's date."""
    clock_set = build_clocks(read_tables(context.engine), context.config.rules)
    return evaluate_clocks(clock_set.clocks, clock_set.pauses, context.calendar, context.as_of), clock_set


@task(name="store-evaluations", **IO_RETRIES)
def save_evaluations(context: RunContext, evaluations: pl.DataFrame, run_id: int) -> dict[str, int]:
    moved = due_date_changes(evaluations, previous_due_dates(context.engine, context.as_of))
    stored = store_evaluations(context.engine, evaluations, context.as_of, run_id)
    return {"stored": stored, "due_date_changed": moved.height}


@task(name="cards", **IO_RETRIES)
def make_cards(context: RunContext, evaluations: pl.DataFrame, run_id: int, deliverable: bool | None) -> CardPlan:
    """Plan this run's cards against the stored ones and store them with their pending deliveries, in one go."""
    return issue_cards(
        context.engine, evaluations, context.config.units, as_of=context.as_of, run_id=run_id, deliverable=deliverable
    )


@task(name="deliver", **IO_RETRIES)
def deliver(context: RunContext, now: datetime, force: bool) -> DeliveryReport:
    return deliver_pending(
        context.engine, context.config, now, context.settings.effective_outbox_dir, force=force,
        calendar=context.calendar,
    )


@task(name="publish-artifacts", **PURE)
def publish_nightly_artifacts(summary: dict[str, Any], evaluations: pl.DataFrame, results: list[LoadResult]) -> None:
    artifacts.publish_nightly(summary, evaluations, results)


@task(name="publish-delivery-artifact", **PURE)
def publish_delivery_artifact(context: RunContext, report: DeliveryReport) -> None:
    artifacts.publish_delivery(context.engine, report)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")

