"""`backfill`: evaluate past dates from what is stored, writing evaluation history only. It alerts nobody."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from prefect import flow, get_run_logger

from config.settings import load_settings
from tasks.pipeline import RunContext, evaluate, save_evaluations
from tasks.runs import close_run, open_run

MAX_BACKFILL_DAYS = 400


@flow(name="backfill", flow_run_name="backfill-{start}-{end}")
def backfill(start: date, end: date) -> dict[str, int]:
    if end < start:
        raise ValueError(f"backfill end {end} is before its start {start}")
    if (end - start).days >= MAX_BACKFILL_DAYS:
        raise ValueError(f"backfill spans more than {MAX_BACKFILL_DAYS} days; split it")
    base = RunContext.prepare(load_settings(), start)
    stored: dict[str, int] = {}
    day = start
    while day <= end:
        context = replace(base, as_of=day)
        run_id = open_run(context.engine, "backfill", day)
        evaluations, _ = evaluate(context)
        counts = save_evaluations(context, evaluations, run_id)
        close_run(context.engine, run_id, "completed", counts)
        stored[day.isoformat()] = counts["stored"]
        day += timedelta(days=1)
    get_run_logger().info("backfill %s..%s: %d days, %d evaluations stored, no cards", start, end, len(stored),
                          sum(stored.values()))
    return stored
