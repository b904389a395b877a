"""The platform's own clock, checked (平台承诺办结时间核验): open cases whose platform due date differs from ours.

Approval platforms compute their own due date (Epoint's `promiseenddate`, the 中间库's `promisedate`) on a working-day
table kept by hand, counting a pause's days with both ends included. A disagreement tells an office that its
platform's timers are wrong, and where. For each open case with a platform due date and a due date of ours:

- `difference_workdays`: working days from our due date to the platform's (positive: the platform is later);
- `likely_cause`, decided by `likely_cause()` from what the calendar and the case's pauses say:
  - the sentinel 1753-01-01: the platform's working-day table ran out (next year was never loaded);
  - pause ends counted twice: the platform is later by exactly the number of the case's ended pauses that start on
    a working day (it takes [S, E] where the rule is (S, E]);
  - a 调休 make-up working day missing from the platform's calendar: later, by no more than the make-up days
    between acceptance and the later due date;
  - a holiday missing from the platform's calendar: earlier, by no more than the weekday holidays in that span;
  - otherwise unexplained.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from config.rules import RuleBook
from tasks.clocks.calendar import WorkCalendar
from tasks.ingest.platform_codes import PLATFORM_SENTINEL

SENTINEL = "sentinel 1753-01-01: the platform's working-day table ran out"
PAUSE_ENDS_TWICE = "pause ends counted twice: the platform counts both ends of a pause"
MISSING_MAKEUP_DAY = "a 调休 make-up working day missing from the platform's calendar"
MISSING_HOLIDAY = "a holiday missing from the platform's calendar"
UNEXPLAINED = "unexplained"

DISAGREEMENT_COLUMNS = {
    "case_id": pl.String,
    "unit_code": pl.String,
    "matter_code": pl.String,
    "accepted_at": pl.Date,
    "due_date": pl.Date,
    "platform_due_date": pl.Date,
    "difference_workdays": pl.Int32,
    "likely_cause": pl.String,
}
OPEN_LEVELS = ("normal", "warning", "overdue", "escalated")


def likely_cause() -> pl.Expr:
    """The likely cause of each disagreement, from the columns platform_due_date, difference_workdays,
    pause_start_workdays (ended pauses of the case that start on a working day), makeup_days and holidays (调休
    working days and weekday holidays between acceptance and the later of the two due dates)."""
    difference = pl.col("difference_workdays")
    return (
        pl.when(pl.col("platform_due_date") == PLATFORM_SENTINEL)
        .then(pl.lit(SENTINEL))
        .when((difference > 0) & (difference == pl.col("pause_start_workdays")))
        .then(pl.lit(PAUSE_ENDS_TWICE))
        .when((difference > 0) & (difference <= pl.col("makeup_days")))
        .then(pl.lit(MISSING_MAKEUP_DAY))
        .when((difference < 0) & (-difference <= pl.col("holidays")))
        .then(pl.lit(MISSING_HOLIDAY))
        .otherwise(pl.lit(UNEXPLAINED))
        .alias("likely_cause")
    )


def platform_disagreements(
    cases: pl.DataFrame, evaluations: pl.DataFrame, pauses: pl.DataFrame, calendar: WorkCalendar, as_of: date
) -> pl.DataFrame:
    """The open case clocks whose platform due date differs from ours (DISAGREEMENT_COLUMNS), latest first.

    `cases`: case_id, accepted_at, platform_due_date (the stored cases); `evaluations`: the clocks evaluated as of
    `as_of` (case clocks are used); `pauses`: case_id, started_at, ended_at of the suspensions that pause
    (`pausing_suspensions`), of which those ended by `as_of` are known."""
    if "platform_due_date" not in cases.columns:
        return pl.DataFrame(schema=DISAGREEMENT_COLUMNS)
    open_cases = (
        evaluations.filter((pl.col("clock_type") == "case") & pl.col("level").is_in(OPEN_LEVELS))
        .select("case_id", "unit_code", "matter_code", "due_date")
        .join(cases.select("case_id", "accepted_at", "platform_due_date"), on="case_id", how="inner")
        .filter(pl.col("platform_due_date").is_not_null() & pl.col("due_date").is_not_null())
        .filter(pl.col("platform_due_date") != pl.col("due_date"))
    )
    if open_cases.is_empty():
        return pl.DataFrame(schema=DISAGREEMENT_COLUMNS)
    counts = _DayCounts(calendar)
    later = pl.max_horizontal("due_date", "platform_due_date")
    features = open_cases.with_columns(
        counts.between("due_date", "platform_due_date", counts.workdays).alias("difference_workdays"),
        counts.between("accepted_at", later, counts.makeup).alias("makeup_days"),
        counts.between("accepted_at", later, counts.holidays).alias("holidays"),
    ).join(_pause_start_workdays(pauses, calendar, as_of), on="case_id", how="left")
    return (
        features.with_columns(pl.col("pause_start_workdays").fill_null(0))
        .with_columns(likely_cause())
        .select(list(DISAGREEMENT_COLUMNS))
        .cast(DISAGREEMENT_COLUMNS)
        .sort("difference_workdays", "case_id", descending=[True, False], nulls_last=False)
    )


def cause_counts(disagreements: pl.DataFrame) -> dict[str, int]:
    """Likely cause → number of disagreements, the most common first (for run summaries)."""
    counts = disagreements.group_by("likely_cause").len().sort(["len", "likely_cause"], descending=[True, False])
    return {cause: int(count) for cause, count in counts.iter_rows()}


class _DayCounts:
    """Cumulative counts over the calendar's days, so that a count over (start, end] is two look-ups."""

    def __init__(self, calendar: WorkCalendar) -> None:
        table = calendar.table
        weekend = (table["date"].dt.weekday() >= 6).to_numpy()
        worked = table["is_workday"].to_numpy()
        self.first = calendar.first_date
        self.size = len(table)
        self.workdays = np.cumsum(worked, dtype=np.int32)
        self.makeup = np.cumsum(worked & weekend, dtype=np.int32)
        self.holidays = np.cumsum(~worked & ~weekend, dtype=np.int32)

    def between(self, start: str | pl.Expr, end: str | pl.Expr, cumulative: np.ndarray) -> pl.Expr:
        """Days counted by `cumulative` in (start, end], negative when end is before start; null outside the
        calendar (the sentinel 1753-01-01 is)."""
        values = pl.Series(np.concatenate([cumulative, [0]]), dtype=pl.Int32)
        outside = self.size  # the extra last element, selected only to be masked

        def at(day: pl.Expr) -> pl.Expr:
            offset = (day - pl.lit(self.first)).dt.total_days()
            inside = offset.is_between(0, self.size - 1)
            return pl.when(inside).then(offset).otherwise(outside).cast(pl.UInt32)

        start_expr = pl.col(start) if isinstance(start, str) else start
        end_expr = pl.col(end) if isinstance(end, str) else end
        known = _inside(start_expr, self.first, self.size) & _inside(end_expr, self.first, self.size)
        count = pl.lit(values).gather(at(end_expr)) - pl.lit(values).gather(at(start_expr))
        return pl.when(known).then(count)


def _inside(day: pl.Expr, first: date, size: int) -> pl.Expr:
    return (day - pl.lit(first)).dt.total_days().is_between(0, size - 1)


def pausing_suspensions(suspensions: pl.DataFrame, rules: RuleBook) -> pl.DataFrame:
    """case_id, started_at, ended_at of the suspensions that pause a case: an extension (effect `extend`) pauses
    nothing, so the platform cannot have counted its ends."""
    extensions = [kind.kind for kind in rules.suspension_kinds if kind.effect == "extend"]
    return suspensions.filter(~pl.col("kind").is_in(extensions)).select("case_id", "started_at", "ended_at")


def _pause_start_workdays(pauses: pl.DataFrame, calendar: WorkCalendar, as_of: date) -> pl.DataFrame:
    """case_id, pause_start_workdays: pauses ended by `as_of` whose start day is a working day."""
    workdays = calendar.table.select(pl.col("date").alias("started_at"), "is_workday")
    return (
        pauses.filter(pl.col("ended_at") <= as_of)
        .join(workdays, on="started_at", how="inner")
        .group_by("case_id")
        .agg(pl.col("is_workday").sum().cast(pl.Int32).alias("pause_start_workdays"))
    )
