"""`backfill`: evaluate past dates from what is stored, writing evaluation history only. It makes no cards and
alerts nobody.

The stored tables are read and the clocks built once; then each day is evaluated on its own (a clock is part of a
day from its start date on, and only pauses begun by that day are known), one task per calendar month.
"""

from __future__ import annotations

from datetime import date

import polars as pl
from prefect import flow, get_run_logger

from config.settings import load_settings, yesterday_in_shanghai
from tasks.alerts.apprise_setup import setup_apprise
from tasks.pipeline import RunContext, evaluate_history, make_clocks, read_stored
from tasks.store.runs import recorded_run

MAX_BACKFILL_DAYS = 400


def months(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end] cut at month ends: (first, last) day pairs."""
    month_starts = pl.date_range(start.replace(day=1), end, interval="1mo", eager=True, closed="both")
    spans = month_starts.to_frame("month").select(
        pl.max_horizontal("month", pl.lit(start)).alias("first"),
        pl.min_horizontal(pl.col("month").dt.month_end(), pl.lit(end)).alias("last"),
    )
    return list(spans.filter(pl.col("first") <= pl.col("last")).iter_rows())


@flow(name="backfill", flow_run_name="backfill-{start}-{end}")
def backfill(start: date, end: date) -> dict[str, int]:
    """Evaluation history for each day from `start` to `end` (inclusive, at most yesterday). Returns the number of
    evaluations stored per day."""
    if end < start:
        raise ValueError(f"backfill end {end} is before its start {start}")
    if (end - start).days >= MAX_BACKFILL_DAYS:
        raise ValueError(f"backfill spans more than {MAX_BACKFILL_DAYS} days; split it")
    if end > yesterday_in_shanghai():
        raise ValueError(f"backfill end {end} is after yesterday ({yesterday_in_shanghai()}): that day is not over")
    setup_apprise()
    context = RunContext.prepare(load_settings(), end)
    stored: dict[str, int] = {}
    with recorded_run(context.engine, "backfill", start) as run:
        run.close("completed", {"start": str(start), "end": str(end), "stored": stored})  # filled in month by month
        clock_set = make_clocks(context, context.io(read_stored)(context))
        for first, last in months(start, end):
            stored.update(context.io(evaluate_history)(context, clock_set, first, last, run.run_id))
    get_run_logger().info("backfill %s..%s: %d days, %d evaluations stored, no cards", start, end, len(stored),
                          sum(stored.values()))
    return stored
