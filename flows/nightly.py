"""`nightly`: ingest → validate → store → evaluate → cards. Runs at 01:30 Asia/Shanghai; sends nothing itself.

The UI graph shows one ingest, validate and store task per source, then read-back, build-clocks, evaluate, settle,
store-evaluations, cards and publish-artifacts. An export row identical to one checked the night before takes its
checked values from the source's memo (tasks/ingest/memo.py). Only the clocks that can change are read back and
evaluated: open ones and those whose rows changed (tasks/store/settled.py); `full=True`, a rule or calendar change, or
the first run evaluate every clock. A source that fails (after its retries) or trips its reject threshold does not
stop the others: everything else is stored, evaluated and carded, and then the run ends Failed so that it is red in
the UI and ops are alerted. Only one nightly run works at a time (a database lock); a second one stands down cleanly
and stores nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from config.settings import check_as_of, load_settings
from config.sources import Source
from flows.hooks import alert_ops_on_failure
from tasks.alerts.apprise_setup import setup_apprise
from tasks.artifacts import PROGRESS_KEY, RunProgress, level_table, overdue_by_unit
from tasks.clocks.platform_check import cause_counts
from tasks.clocks.reconcile import reconciliation
from tasks.ingest.load import LoadResult
from tasks.pipeline import (
    RunContext,
    SourceRefused,
    StoredSource,
    check_platform_due_dates,
    evaluate,
    ingest_source,
    make_cards,
    make_clocks,
    publish_nightly_artifacts,
    read_back,
    save_evaluations,
    settle_clocks,
    store_clock_rejects,
    store_source,
    validate_source,
)
from tasks.store.runs import RunIncomplete, RunLocked, recorded_run, run_lock
from tasks.store.settled import EvaluationPlan, Settlement, settled_totals

NIGHTLY_LOCK = "nightly"
TOP_OVERDUE_UNITS = 10
AFTER_SOURCES = 4  # stages after the sources, for the progress artifact: clocks, evaluate, cards, artifacts


def nightly_run_name() -> str:
    as_of = flow_run.parameters.get("as_of") or load_settings().effective_as_of
    return f"nightly-{as_of}"


@flow(name="nightly", flow_run_name=nightly_run_name, on_failure=[alert_ops_on_failure],
      on_crashed=[alert_ops_on_failure])
def nightly(
    as_of: date | None = None,
    sources: list[str] | None = None,
    deliverable: bool | None = None,
    full: bool = False,
) -> State:
    """The nightly run as of `as_of` (default: yesterday, Asia/Shanghai). `sources` limits it to the named sources
    (a rerun after a late export); `deliverable=False` stores no alertable cards (default: only for as-of dates
    before yesterday, which replay history); `full=True` checks every exported row (rewriting the memo of rows
    checked before) and reads back and evaluates every clock, settled or not."""
    setup_apprise()
    context = RunContext.prepare(load_settings(), check_as_of(as_of) if as_of else None)
    selected = context.select_sources(sources)
    log = get_run_logger()
    with recorded_run(context.engine, "nightly", context.as_of) as run:
        holder = f"{flow_run.get_name() or 'nightly'} (run {run.run_id})"
        try:
            with run_lock(context.engine, NIGHTLY_LOCK, holder=holder):
                summary = _nightly_stages(context, run.run_id, selected, deliverable, full)
        except RunLocked as exc:
            run.close("skipped", {"reason": str(exc)})
            log.warning("standing down, nothing done: %s", exc)
            return Completed(message=f"skipped: {exc}", data={"as_of": str(context.as_of), "skipped": str(exc)})
        failure = run_failure(summary)
        run.close("failed" if failure else "completed", summary)
    if failure:
        return Failed(message=failure, data=RunIncomplete(failure, summary))
    return Completed(message=f"nightly run as of {context.as_of} completed", data=summary)


def run_failure(summary: dict[str, Any]) -> str | None:
    """Why the run is red, or None: a source not stored (named with why), or nothing read at all (an empty inbox
    never makes a green run)."""
    failed = summary["failed_sources"]
    if failed:
        notes = "; ".join(f"{row['source']}: {row['note']}" for row in summary["sources"] if not row["stored"])
        return f"sources not stored: {', '.join(failed)} ({notes})"
    if not summary["rows_read"]:
        return "no rows read from any source: the inbox is empty or every export is empty"
    return None


def _nightly_stages(
    context: RunContext, run_id: int, selected: list[Source], deliverable: bool | None, full: bool
) -> dict[str, Any]:
    progress = RunProgress(PROGRESS_KEY, f"nightly {context.as_of}", 2 * len(selected) + AFTER_SOURCES)
    results = _ingest(context, selected, progress, full)
    stored = [_validate_and_store(context, results[source.name], run_id, progress) for source in selected]

    loads = [results[source.name] for source in selected]
    stored_rows = context.io(read_back)(context, run_id, loads, stored, full)
    clock_set = make_clocks(context, stored_rows.tables)
    refused = context.io(store_clock_rejects)(context, clock_set, loads, run_id)
    progress.advance("clocks built")
    evaluated, clock_rejects = evaluate(context, clock_set), clock_set.rejects
    del clock_set  # only the builder's rejects are needed from here: the clocks (0.5 GB on 1 M cases) go now
    settlement = context.io(settle_clocks)(context, stored_rows, clock_rejects, evaluated, run_id)
    evaluations = settlement.evaluations
    disagreements = check_platform_due_dates(context, stored_rows.tables, evaluations)
    evaluation_counts = context.io(save_evaluations)(context, evaluations, run_id)
    progress.advance("clocks evaluated")
    plan = context.io(make_cards)(context, evaluations, run_id, deliverable)
    progress.advance("cards stored")

    summary = _summary(context, loads, stored, settlement, stored_rows.plan, evaluation_counts, plan.counts,
                       reconciliation(stored_rows.counts, clock_rejects))
    summary["platform_due_date_disagreements"] = disagreements.height
    summary["platform_due_date_causes"] = cause_counts(disagreements)
    publish_nightly_artifacts(context, summary, evaluations, loads, refused, disagreements)
    failed = summary["failed_sources"]
    progress.finish(f"done, {len(failed)} source(s) failed" if failed else "done")
    return summary


def _ingest(context: RunContext, selected: list[Source], progress: RunProgress, full: bool) -> dict[str, LoadResult]:
    """Read every source in parallel; suspensions wait for this load's cases, to check pauses against them. `full`:
    every row is checked, none taken from the memo of rows checked before (tasks/ingest/memo.py)."""
    ingest = context.io(ingest_source)
    first = {ingest.submit(context, source, full=full): source for source in selected if source.table != "suspensions"}
    results: dict[str, LoadResult] = {}
    for future, source in first.items():
        if source.table == "cases":
            results[source.name] = _loaded(future, source)
            progress.advance(f"read {source.name}")
    cases = [results[source.name] for source in selected if source.table == "cases"]
    later = {
        ingest.submit(context, source, cases, full): source for source in selected if source.table == "suspensions"
    }
    pending = {future: source for future, source in {**first, **later}.items() if source.name not in results}
    for future in as_completed(list(pending)):
        source = pending[future]
        results[source.name] = _loaded(future, source)
        progress.advance(f"read {source.name}")
    return results


def _loaded(future: PrefectFuture[LoadResult], source: Source) -> LoadResult:
    """The load, or (the source failed after its retries) an empty load carrying the error, so the run goes on."""
    try:
        return future.result()
    except Exception as exc:
        return LoadResult(source=source.name, table=source.table, error=str(exc) or type(exc).__name__,
                          max_reject_fraction=source.max_reject_fraction)


def _validate_and_store(context: RunContext, result: LoadResult, run_id: int, progress: RunProgress) -> StoredSource:
    verdict_state = context.io(validate_source)(context, result, run_id, return_state=True)
    if verdict_state.is_failed():
        refused = verdict_state.result(raise_on_failure=False)
        note = str(refused) if isinstance(refused, SourceRefused) else f"validate failed: {verdict_state.message}"
        stored = StoredSource(result.source, result.table, False, {}, note)
    else:
        warning = verdict_state.result().warning
        state = context.io(store_source)(context, result, run_id, return_state=True)
        stored = replace(state.result(), warning=warning) if not state.is_failed() else StoredSource(
            result.source, result.table, False, {}, f"store failed: {state.message}", warning
        )
    progress.advance(f"{'stored' if stored.stored else 'did not store'} {result.source}")
    return stored


def _summary(
    context: RunContext,
    results: list[LoadResult],
    stored: list[StoredSource],
    settlement: Settlement,
    evaluation_plan: EvaluationPlan,
    evaluation_counts: dict[str, int],
    card_counts: dict[str, int],
    reconciled: pl.DataFrame,
) -> dict[str, Any]:
    """The run summary. Counts of clocks cover every clock: the ones evaluated now and the settled ones."""
    evaluations = settlement.evaluations
    totals = settled_totals(evaluations, settlement.earlier)
    return {
        "as_of": str(context.as_of),
        "sources": [
            {**result.summary(), "stored": entry.stored, "note": entry.note, "counts": entry.counts}
            for result, entry in zip(results, stored, strict=True)
        ],
        "failed_sources": [entry.source for entry in stored if not entry.stored],
        "warnings": [entry.warning for entry in stored if entry.warning],
        "rows_read": sum(result.rows_read for result in results),
        "rows_rejected": sum(result.rejected.height for result in results),
        "evaluation": {
            **evaluation_plan.as_dict(),
            "evaluated_clocks": evaluations.height,
            "settled_moved": settlement.moved,
        },
        "clocks": int(totals["clocks"].sum()),
        "level_table": level_table(totals).to_dicts(),
        "top_overdue_units": overdue_by_unit(evaluations).head(TOP_OVERDUE_UNITS).to_dicts(),
        "provisional_clocks": int(totals.filter(pl.col("calendar") == "provisional")["clocks"].sum()),
        "provisional_years": context.calendar.provisional_years(context.as_of.year - 1, context.as_of.year + 2),
        "due_date_changed": evaluation_counts["due_date_changed"],
        "clock_rejects": int(reconciled["refused"].sum()),
        "clock_reconciliation": reconciled.to_dicts(),
        "cards": card_counts,
    }
