"""`nightly`: ingest → validate → store → evaluate → cards. Runs at 01:30 Asia/Shanghai; sends nothing itself."""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from config.settings import load_settings, yesterday_in_shanghai
from flows.hooks import alert_ops_on_failure
from tasks.artifacts import level_table, overdue_by_unit
from tasks.ingest import LoadResult
from tasks.pipeline import (
    RunContext,
    StoredSource,
    evaluate,
    ingest_source,
    make_cards,
    publish_nightly_artifacts,
    save_evaluations,
    store_source,
)
from tasks.runs import RunLocked, close_run, open_run, run_lock

NIGHTLY_LOCK = "nightly"
TOP_OVERDUE_UNITS = 10


def nightly_run_name() -> str:
    as_of = flow_run.parameters.get("as_of") or yesterday_in_shanghai()
    return f"nightly-{as_of}"


@flow(name="nightly", flow_run_name=nightly_run_name, on_failure=[alert_ops_on_failure],
      on_crashed=[alert_ops_on_failure])
def nightly(as_of: date | None = None, sources: list[str] | None = None, deliverable: bool | None = None) -> State:
    """The nightly run. `sources` limits it to the named sources; `deliverable=False` stores no alertable cards."""
    context = RunContext.prepare(load_settings(), as_of)
    log = get_run_logger()
    run_id = open_run(context.engine, "nightly", context.as_of)
    try:
        with run_lock(context.engine, NIGHTLY_LOCK, holder=f"{flow_run.get_name() or 'nightly'} (run {run_id})"):
            summary = _nightly_stages(context, run_id, sources, deliverable)
    except RunLocked as exc:
        close_run(context.engine, run_id, "skipped", {"reason": str(exc)})
        log.warning("standing down: %s", exc)
        return Completed(message=f"skipped: {exc}", data={"as_of": str(context.as_of), "skipped": str(exc)})
    failed = summary["failed_sources"]
    close_run(context.engine, run_id, "failed" if failed else "completed", summary)
    if failed:
        return Failed(message=f"sources failed or over their reject limit: {', '.join(failed)}", data=summary)
    return Completed(message=f"nightly run as of {context.as_of} completed", data=summary)


def _nightly_stages(
    context: RunContext, run_id: int, names: list[str] | None, deliverable: bool | None
) -> dict[str, Any]:
    catalog = context.config.sources
    selected = [catalog.get(name) for name in names] if names else list(catalog.sources)
    case_sources = [s for s in selected if s.table == "cases"]
    other_sources = [s for s in selected if s.table not in ("cases", "suspensions")]
    case_loads = [ingest_source.submit(context, source) for source in case_sources]
    other_loads = [ingest_source.submit(context, source) for source in other_sources]
    cases = case_loads[0].result() if case_loads else None
    suspension_loads = [
        ingest_source.submit(context, source, cases) for source in selected if source.table == "suspensions"
    ]
    results: list[LoadResult] = [future.result() for future in (*case_loads, *other_loads, *suspension_loads)]
    stored = [store_source(context, result, run_id) for result in results]

    evaluations, clock_set = evaluate(context)
    evaluation_counts = save_evaluations(context, evaluations, run_id)
    plan = make_cards(context, evaluations, run_id, deliverable)

    summary = _summary(context, results, stored, evaluations, evaluation_counts, plan.counts, clock_set.rejects.height)
    publish_nightly_artifacts(summary, evaluations, results)
    return summary


def _summary(
    context: RunContext,
    results: list[LoadResult],
    stored: list[StoredSource],
    evaluations: pl.DataFrame,
    evaluation_counts: dict[str, int],
    card_counts: dict[str, int],
    clock_rejects: int,
) -> dict[str, Any]:
    provisional = evaluations.filter(evaluations["calendar"] == "provisional")
    return {
        "as_of": str(context.as_of),
        "sources": [
            {**result.summary(), "stored": entry.stored, "note": entry.note, "counts": entry.counts}
            for result, entry in zip(results, stored, strict=True)
        ],
        "failed_sources": [entry.source for entry in stored if not entry.stored],
        "rows_read": sum(result.rows_read for result in results),
        "rows_rejected": sum(result.rejected.height for result in results),
        "clocks": evaluations.height,
        "level_table": level_table(evaluations).to_dicts(),
        "top_overdue_units": overdue_by_unit(evaluations).head(TOP_OVERDUE_UNITS).to_dicts(),
        "provisional_clocks": provisional.height,
        "provisional_years": context.calendar.provisional_years(context.as_of.year - 1, context.as_of.year + 2),
        "due_date_changed": evaluation_counts["due_date_changed"],
        "clock_rejects": clock_rejects,
        "cards": card_counts,
    }
