"""Report metrics (统计指标): plain functions over the canonical tables and the deadline engine's evaluations.

Every time figure comes from the deadline engine (tasks/clocks.evaluate_clocks), the same engine the alerts use, so a
report and an alert never disagree about whether a case was on time. Nothing here counts days itself.

Inputs
- `tables`: canonical frames (cases, steps, projects, …) with their canonical column names.
- `evaluations`: every clock evaluated at the report's as-of date (the engine's output). An optional `workdays_used`
  column gives the working days a clock used, pauses excluded; without it a `workday` clock's `elapsed` is used and a
  `calendar` clock (自然日) has no working-day figure (the report builder fills it by re-evaluating such clocks as
  workday clocks with the same engine).
- `snapshots`: case clocks evaluated at each period's last day, with an `as_of` column: the state of open cases then.
- `Dimensions`: names and groupings from configuration (units, matters with their 市县同权 mode, project categories).

Definitions (one period = [start, end], end ≤ as-of)
- accepted: cases whose accepted_at falls in the period. completed: case clocks whose completed_date falls in it.
- on-time rate 按时办结率 = completed with level `completed_on_time` / completed.
- working days used: the engine's elapsed working days of the cases completed in the period (pauses excluded);
  mean and P90 (linear interpolation, as Excel PERCENTILE.INC).
- open overdue 在办超期: cases open at the period's end whose level then is `overdue` or `escalated` (督办), with
  their overdue working days.
- step share 环节用时占比: the working days of each step of the cases completed in the period, over all their steps.
- deferral fulfilment 容缺后补按期补齐率: deferrals whose due date falls in the period, supplied by that date.
- claim rate 认领率: results pushed in the period and claimed by the as-of date; claim delay in working days.
Totals are computed over all rows, never by adding rates, and every count total equals the sum of its parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import polars as pl

PeriodKind = Literal["week", "month"]

TOTAL = "合计"
UNKNOWN = "未知"
NO_PROJECT = "非工程建设项目"
OVERDUE_LEVELS = ("overdue", "escalated")
P90 = 0.9
# Overdue-age bands (超期时长, working days): upper bounds, inclusive; the last band is open-ended.
OVERDUE_BANDS: tuple[tuple[str, int | None], ...] = (
    ("overdue_1_5", 5),
    ("overdue_6_10", 10),
    ("overdue_11_20", 20),
    ("overdue_over_20", None),
)


@dataclass(frozen=True)
class Period:
    """A report period: a calendar week (Monday–Sunday) or month, cut at the as-of date when it is the current one."""

    kind: PeriodKind
    start: date
    end: date

    @property
    def label(self) -> str:
        if self.kind == "week":
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.start.year}-{self.start.month:02d}"

    @property
    def full_end(self) -> date:
        if self.kind == "week":
            return self.start + timedelta(days=6)
        next_month = date(self.start.year + self.start.month // 12, self.start.month % 12 + 1, 1)
        return next_month - timedelta(days=1)

    @property
    def is_complete(self) -> bool:
        return self.end == self.full_end

    def previous(self) -> Period:
        """The whole period before this one."""
        return period_containing(self.kind, self.start - timedelta(days=1))

    def contains(self, column: str) -> pl.Expr:
        return pl.col(column).is_between(pl.lit(self.start), pl.lit(self.end), closed="both")


def period_containing(kind: PeriodKind, day: date, *, cut_at: date | None = None) -> Period:
    """The week or month holding `day`, ending at `cut_at` when that falls inside it."""
    if kind == "week":
        start = day - timedelta(days=day.weekday())
    elif kind == "month":
        start = day.replace(day=1)
    else:
        raise ValueError(f"unknown period kind {kind!r}: expected week or month")
    period = Period(kind, start, start)
    end = period.full_end if cut_at is None else min(period.full_end, cut_at)
    return Period(kind, start, end)


def report_periods(kind: PeriodKind, as_of: date, count: int) -> list[Period]:
    """The `count` periods up to the one holding `as_of` (cut there), oldest first."""
    if count < 1:
        raise ValueError("count must be at least 1")
    periods = [period_containing(kind, as_of, cut_at=as_of)]
    while len(periods) < count:
        periods.append(periods[-1].previous())
    return periods[::-1]


@dataclass(frozen=True)
class Dimensions:
    """Names and groupings from configuration.

    units: unit_code, unit_name, unit_region; regions: region_code, region_name; matters: matter_code, matter_name,
    mode (市县同权 mode); categories: category, category_name.
    """

    units: pl.DataFrame
    regions: pl.DataFrame
    matters: pl.DataFrame
    categories: pl.DataFrame


@dataclass(frozen=True)
class MetricInputs:
    tables: Mapping[str, pl.DataFrame]
    evaluations: pl.DataFrame
    snapshots: pl.DataFrame
    dimensions: Dimensions
    as_of: date


def _rate(numerator: str, denominator: str) -> pl.Expr:
    return pl.when(pl.col(denominator) > 0).then(pl.col(numerator) / pl.col(denominator)).otherwise(None)


def _workdays_used(evaluations: pl.DataFrame) -> pl.Expr:
    if "workdays_used" in evaluations.columns:
        return pl.col("workdays_used")
    return pl.when(pl.col("limit_kind") == "workday").then(pl.col("elapsed")).otherwise(None)


def _known_completion(as_of: date) -> pl.Expr:
    """A completion after the as-of date is not known then (the clock is open at T)."""
    return pl.when(pl.col("completed_date") <= as_of).then(pl.col("completed_date")).otherwise(None)


def _clock_rows(evaluations: pl.DataFrame, clock_type: str, as_of: date) -> pl.DataFrame:
    """Clocks of one type that had started by `as_of` (a report for a past date ignores later data)."""
    started = (pl.col("clock_type") == clock_type) & (pl.col("start_date") <= as_of)
    return evaluations.filter(started).with_columns(
        completed_date=_known_completion(as_of), workdays_used=_workdays_used(evaluations)
    )


def case_facts(
    cases: pl.DataFrame,
    projects: pl.DataFrame,
    evaluations: pl.DataFrame,
    dimensions: Dimensions,
    as_of: date,
) -> pl.DataFrame:
    """One row per case: its groupings (unit, region, matter, mode, project category) and its case clock at as-of."""
    clocks = _clock_rows(evaluations, "case", as_of).select(
        "case_id",
        "limit_days",
        "limit_kind",
        "due_date",
        "completed_date",
        "elapsed",
        "workdays_used",
        "overdue_workdays",
        "level",
        "calendar",
    )
    category = projects.select("project_code", "category")
    facts = (
        cases.filter(pl.col("accepted_at") <= as_of)
        .select("case_id", "unit_code", "matter_code", "region_code", "project_code", "accepted_at")
        .join(clocks, on="case_id", how="left")
        .join(category, on="project_code", how="left")
        .join(dimensions.units, on="unit_code", how="left")
        .join(dimensions.matters, on="matter_code", how="left")
        .join(dimensions.categories, on="category", how="left")
    )
    facts = facts.with_columns(region_code=pl.coalesce("region_code", "unit_region")).join(
        dimensions.regions, on="region_code", how="left"
    )
    return facts.with_columns(
        unit_name=pl.coalesce("unit_name", "unit_code"),
        region_code=pl.col("region_code").fill_null(UNKNOWN),
        region_name=pl.coalesce("region_name", "region_code", pl.lit(UNKNOWN)),
        matter_name=pl.coalesce("matter_name", "matter_code"),
        mode=pl.col("mode").fill_null(UNKNOWN),
        category=pl.col("category").fill_null(pl.when(pl.col("project_code").is_null()).then(pl.lit(NO_PROJECT))),
    ).with_columns(
        category=pl.col("category").fill_null(UNKNOWN),
        category_name=pl.coalesce("category_name", "category"),
    )


def open_states(facts: pl.DataFrame, snapshots: pl.DataFrame, days: Sequence[date]) -> dict[date, pl.DataFrame]:
    """Per day: the cases open at its end (accepted by then, not completed by then) with their level then.

    Open-case figures need the engine's state at every one of `days`; a day missing from `snapshots` while cases
    were open then is an error, since it would read as "nothing open".
    """
    wanted = sorted(set(days))
    state = snapshots.filter(
        pl.col("as_of").is_in(wanted)
        & (pl.col("clock_type") == "case")
        & (pl.col("start_date") <= pl.col("as_of"))
        & (pl.col("completed_date").is_null() | (pl.col("completed_date") > pl.col("as_of")))
    ).select("as_of", "case_id", "level", "due_date", "overdue_workdays")
    groupings = facts.drop("level", "due_date", "overdue_workdays", "completed_date")
    joined = state.join(groupings, on="case_id", how="inner")
    by_day = {key[0]: frame.drop("as_of") for key, frame in joined.partition_by("as_of", as_dict=True).items()}
    evaluated = set(snapshots.get_column("as_of").unique().to_list())
    empty = joined.drop("as_of").clear()
    for day in wanted:
        if day in evaluated:
            continue
        open_then = facts.filter(
            (pl.col("accepted_at") <= day) & (pl.col("completed_date").is_null() | (pl.col("completed_date") > day))
        ).height
        if open_then:
            raise ValueError(f"snapshots lack the evaluation at {day}, when {open_then} cases were open")
    return {day: by_day.get(day, empty) for day in wanted}


def _group(frame: pl.DataFrame, keys: Sequence[str], *aggregations: pl.Expr) -> pl.DataFrame:
    if keys:
        return frame.group_by(keys).agg(*aggregations)
    return frame.select(*aggregations)


def _case_metrics(facts: pl.DataFrame, state: pl.DataFrame, period: Period, keys: Sequence[str]) -> pl.DataFrame:
    accepted = _group(facts.filter(period.contains("accepted_at")), keys, pl.len().alias("accepted"))
    completed = _group(
        facts.filter(period.contains("completed_date")),
        keys,
        pl.len().alias("completed"),
        (pl.col("level") == "completed_on_time").sum().alias("on_time"),
        (pl.col("level") == "completed_late").sum().alias("late"),
        pl.col("workdays_used").mean().alias("avg_workdays"),
        pl.col("workdays_used").quantile(P90, interpolation="linear").alias("p90_workdays"),
    )
    overdue = state.filter(pl.col("level").is_in(OVERDUE_LEVELS))
    open_counts = _group(state, keys, pl.len().alias("open_cases"))
    open_overdue = _group(
        overdue,
        keys,
        pl.len().alias("open_overdue"),
        (pl.col("level") == "escalated").sum().alias("escalated"),
        pl.col("overdue_workdays").mean().alias("avg_overdue_workdays"),
        pl.col("overdue_workdays").max().alias("max_overdue_workdays"),
    )
    parts = [accepted, completed, open_counts, open_overdue]
    if keys:
        result = parts[0]
        for part in parts[1:]:
            result = result.join(part, on=list(keys), how="full", coalesce=True, nulls_equal=True)
    else:
        result = pl.concat(parts, how="horizontal")
    counts = ["accepted", "completed", "on_time", "late", "open_cases", "open_overdue", "escalated"]
    return result.with_columns(pl.col(counts).fill_null(0).cast(pl.Int64)).with_columns(
        on_time_rate=_rate("on_time", "completed")
    )


CASE_METRIC_COLUMNS = (
    "accepted",
    "completed",
    "on_time",
    "late",
    "on_time_rate",
    "avg_workdays",
    "p90_workdays",
    "open_cases",
    "open_overdue",
    "escalated",
    "avg_overdue_workdays",
    "max_overdue_workdays",
)


def case_breakdown(
    facts: pl.DataFrame,
    states: Mapping[date, pl.DataFrame],
    period: Period,
    keys: Sequence[str],
    *,
    labels: Sequence[str] = (),
) -> pl.DataFrame:
    """Case metrics for one period grouped by `keys` (with `labels` carried along), a 合计 row last, and the change
    of the completed count and the on-time rate against the previous period."""
    previous = period.previous()
    group_keys = [*keys, *labels]
    current = _case_metrics(facts, states[period.end], period, group_keys)
    before = _case_metrics(facts, states[previous.end], previous, group_keys).select(
        *group_keys,
        pl.col("completed").alias("completed_prev"),
        pl.col("on_time_rate").alias("on_time_rate_prev"),
    )
    rows = current.join(before, on=group_keys, how="left", nulls_equal=True).sort(
        ["completed", "accepted", *keys], descending=[True, True, *([False] * len(keys))]
    )
    total = _case_metrics(facts, states[period.end], period, [])
    total_before = _case_metrics(facts, states[previous.end], previous, [])
    total = total.with_columns(
        *(pl.lit(TOTAL if index == 0 else "").alias(name) for index, name in enumerate(group_keys)),
        completed_prev=pl.lit(total_before["completed"][0]),
        on_time_rate_prev=pl.lit(total_before["on_time_rate"][0], dtype=pl.Float64),
    )
    columns = [*group_keys, *CASE_METRIC_COLUMNS, "completed_prev", "on_time_rate_prev"]
    table = pl.concat([rows.select(columns), total.select(columns)], how="vertical_relaxed")
    return table.with_columns(
        completed_prev=pl.col("completed_prev").fill_null(0),
        on_time_rate_change=pl.col("on_time_rate") - pl.col("on_time_rate_prev"),
    )


def trend(facts: pl.DataFrame, states: Mapping[date, pl.DataFrame], periods: Sequence[Period]) -> pl.DataFrame:
    """One row per period (分期): intake, completions, on-time rate, time used, and the open overdue at its end."""
    rows = [
        _case_metrics(facts, states[period.end], period, []).with_columns(
            period=pl.lit(period.label), start=pl.lit(period.start), end=pl.lit(period.end)
        )
        for period in periods
    ]
    return pl.concat(rows, how="vertical_relaxed").select("period", "start", "end", *CASE_METRIC_COLUMNS)


def overdue_ages(state: pl.DataFrame) -> pl.DataFrame:
    """Open overdue cases of one `open_states` day per unit, by how long they have been overdue (超期时长分布), 合计
    row last."""
    overdue = state.filter(pl.col("level").is_in(OVERDUE_LEVELS))
    band = pl.lit(OVERDUE_BANDS[-1][0])
    for name, upper in reversed(OVERDUE_BANDS[:-1]):
        band = pl.when(pl.col("overdue_workdays") <= upper).then(pl.lit(name)).otherwise(band)
    banded = overdue.with_columns(band=band)
    bands = [name for name, _ in OVERDUE_BANDS]
    aggregations = [
        pl.len().alias("open_overdue"),
        *((pl.col("band") == name).sum().cast(pl.Int64).alias(name) for name in bands),
        pl.col("overdue_workdays").max().alias("max_overdue_workdays"),
    ]
    keys = ["unit_code", "unit_name"]
    rows = banded.group_by(keys).agg(*aggregations).sort(["open_overdue", "unit_code"], descending=[True, False])
    total = banded.select(*aggregations).with_columns(unit_code=pl.lit(TOTAL), unit_name=pl.lit(""))
    columns = [*keys, "open_overdue", *bands, "max_overdue_workdays"]
    return pl.concat([rows.select(columns), total.select(columns)], how="vertical_relaxed").with_columns(
        pl.col("open_overdue", *bands).cast(pl.Int64)
    )


def overdue_cases(state: pl.DataFrame) -> pl.DataFrame:
    """The open overdue cases of one `open_states` day, longest overdue first (超期明细). No applicant data."""
    return (
        state.filter(pl.col("level").is_in(OVERDUE_LEVELS))
        .select(
            "case_id",
            "unit_code",
            "unit_name",
            "region_name",
            "matter_code",
            "matter_name",
            "accepted_at",
            "due_date",
            "overdue_workdays",
            "level",
        )
        .sort(["overdue_workdays", "case_id"], descending=[True, False])
    )


def step_shares(steps: pl.DataFrame, evaluations: pl.DataFrame, facts: pl.DataFrame, period: Period) -> pl.DataFrame:
    """Each step's share of the working days of the cases completed in the period, per matter (环节用时占比)."""
    completed_cases = facts.filter(period.contains("completed_date")).select(
        "case_id", "mode", "matter_code", "matter_name"
    )
    # Narrow to the completed cases' steps first: a period's completions are a small share of all steps.
    step_clocks = (
        _clock_rows(evaluations, "step", period.end)
        .join(completed_cases, on="case_id", how="inner")
        .with_columns(step_no=pl.col("clock_id").str.split(":").list.last().cast(pl.Int64))
    )
    names = steps.join(completed_cases, on="case_id", how="semi").select(
        "case_id", pl.col("step_no").cast(pl.Int64), "step_name"
    )
    rows = (
        step_clocks.select("case_id", "step_no", "workdays_used", "level", "mode", "matter_code", "matter_name")
        .join(names, on=["case_id", "step_no"], how="left")
        .with_columns(step_name=pl.col("step_name").fill_null(UNKNOWN))
    )
    keys = ["mode", "matter_code", "matter_name", "step_no", "step_name"]
    grouped = rows.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("steps"),
        pl.col("workdays_used").sum().cast(pl.Int64).alias("workdays"),
        pl.col("workdays_used").mean().alias("avg_workdays"),
        (pl.col("level") == "completed_late").sum().cast(pl.Int64).alias("late_steps"),
    )
    return grouped.with_columns(
        share=pl.when(pl.col("workdays").sum().over("matter_code") > 0)
        .then(pl.col("workdays") / pl.col("workdays").sum().over("matter_code"))
        .otherwise(None)
    ).sort(["mode", "matter_code", "step_no"])


def project_limits(
    projects: pl.DataFrame, evaluations: pl.DataFrame, dimensions: Dimensions, period: Period, as_of: date
) -> pl.DataFrame:
    """Project total working days against the category limit (45 / 18 / 75 …), per category and limit in force."""
    clocks = _clock_rows(evaluations, "project", as_of).select(
        pl.col("subject_id").alias("project_code"),
        "limit_days",
        "completed_date",
        "workdays_used",
        "level",
        "overdue_workdays",
    )
    rows = (
        clocks.join(projects.select("project_code", "category"), on="project_code", how="left")
        .join(dimensions.categories, on="category", how="left")
        .with_columns(
            category=pl.col("category").fill_null(UNKNOWN), category_name=pl.coalesce("category_name", "category")
        )
    )
    done = period.contains("completed_date")
    still_open = pl.col("completed_date").is_null()
    aggregations = [
        done.sum().cast(pl.Int64).alias("completed"),
        (done & (pl.col("level") == "completed_on_time")).sum().cast(pl.Int64).alias("within_limit"),
        pl.col("workdays_used").filter(done).mean().alias("avg_workdays"),
        pl.col("workdays_used").filter(done).quantile(P90, interpolation="linear").alias("p90_workdays"),
        still_open.sum().cast(pl.Int64).alias("open_projects"),
        (still_open & pl.col("level").is_in(OVERDUE_LEVELS)).sum().cast(pl.Int64).alias("open_over_limit"),
        pl.col("overdue_workdays").filter(still_open).max().alias("max_overdue_workdays"),
    ]
    keys = ["category", "category_name", "limit_days"]
    grouped = rows.group_by(keys).agg(*aggregations).sort(["category", "limit_days"])
    total = rows.select(*aggregations).with_columns(
        category=pl.lit(TOTAL), category_name=pl.lit(""), limit_days=pl.lit(None, dtype=grouped["limit_days"].dtype)
    )
    table = pl.concat([grouped, total.select(grouped.columns)], how="vertical_relaxed")
    return table.with_columns(within_limit_rate=_rate("within_limit", "completed"))


def _unit_rate_table(
    rows: pl.DataFrame, keys: Sequence[str], aggregations: Sequence[pl.Expr], sort_by: Sequence[str]
) -> pl.DataFrame:
    grouped = rows.group_by(keys).agg(*aggregations).sort(sort_by)
    total = rows.select(*aggregations).with_columns(
        *(pl.lit(TOTAL if index == 0 else "").alias(name) for index, name in enumerate(keys))
    )
    return pl.concat([grouped, total.select(grouped.columns)], how="vertical_relaxed")


def deferral_fulfilment(evaluations: pl.DataFrame, dimensions: Dimensions, period: Period, as_of: date) -> pl.DataFrame:
    """容缺后补按期补齐率 per unit: deferrals due in the period and supplied by their due date."""
    previous = period.previous()
    clocks = _clock_rows(evaluations, "deferral", as_of).join(dimensions.units, on="unit_code", how="left")
    clocks = clocks.with_columns(unit_name=pl.coalesce("unit_name", "unit_code"))
    on_time = pl.col("level") == "completed_on_time"
    due_now = period.contains("due_date")
    due_before = previous.contains("due_date")
    aggregations = [
        due_now.sum().cast(pl.Int64).alias("due"),
        (due_now & on_time).sum().cast(pl.Int64).alias("supplied_on_time"),
        (due_now & (pl.col("level") == "completed_late")).sum().cast(pl.Int64).alias("supplied_late"),
        (due_now & pl.col("completed_date").is_null()).sum().cast(pl.Int64).alias("not_supplied"),
        due_before.sum().cast(pl.Int64).alias("due_prev"),
        (due_before & on_time).sum().cast(pl.Int64).alias("supplied_on_time_prev"),
    ]
    table = _unit_rate_table(
        clocks.filter(due_now | due_before), ["unit_code", "unit_name"], aggregations, ["unit_code"]
    )
    return table.with_columns(
        fulfilment_rate=_rate("supplied_on_time", "due"),
        fulfilment_rate_prev=_rate("supplied_on_time_prev", "due_prev"),
    ).with_columns(fulfilment_rate_change=pl.col("fulfilment_rate") - pl.col("fulfilment_rate_prev"))


def claim_rates(evaluations: pl.DataFrame, dimensions: Dimensions, period: Period, as_of: date) -> pl.DataFrame:
    """审管互动认领率 per supervising unit for results pushed in the period, ranked (排名) by claim rate."""
    previous = period.previous()
    clocks = _clock_rows(evaluations, "claim", as_of).join(dimensions.units, on="unit_code", how="left")
    clocks = clocks.with_columns(unit_name=pl.coalesce("unit_name", "unit_code"))
    pushed_now = period.contains("start_date")
    pushed_before = previous.contains("start_date")
    claimed = pl.col("completed_date").is_not_null()
    aggregations = [
        pushed_now.sum().cast(pl.Int64).alias("pushed"),
        (pushed_now & claimed).sum().cast(pl.Int64).alias("claimed"),
        (pushed_now & (pl.col("level") == "completed_on_time")).sum().cast(pl.Int64).alias("claimed_on_time"),
        pl.col("workdays_used").filter(pushed_now & claimed).mean().alias("avg_claim_workdays"),
        pushed_before.sum().cast(pl.Int64).alias("pushed_prev"),
        (pushed_before & claimed).sum().cast(pl.Int64).alias("claimed_prev"),
        pl.col("workdays_used").filter(pushed_before & claimed).mean().alias("avg_claim_workdays_prev"),
    ]
    table = _unit_rate_table(
        clocks.filter(pushed_now | pushed_before), ["unit_code", "unit_name"], aggregations, ["unit_code"]
    ).with_columns(
        claim_rate=_rate("claimed", "pushed"),
        on_time_claim_rate=_rate("claimed_on_time", "pushed"),
        claim_rate_prev=_rate("claimed_prev", "pushed_prev"),
    )
    table = table.with_columns(claim_rate_change=pl.col("claim_rate") - pl.col("claim_rate_prev"))
    is_total = pl.col("unit_code") == TOTAL
    ranked = (
        table.filter(~is_total & (pl.col("pushed") > 0))
        .sort(["claim_rate", "on_time_claim_rate", "unit_code"], descending=[True, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
    )
    unranked = table.filter(~is_total & (pl.col("pushed") == 0)).with_columns(rank=pl.lit(None, dtype=pl.Int64))
    total = table.filter(is_total).with_columns(rank=pl.lit(None, dtype=pl.Int64))
    return pl.concat([ranked, unranked, total], how="vertical_relaxed").select("rank", *table.columns)


@dataclass(frozen=True)
class ReportViews:
    """Everything a report shows, each view a frame with English column names (report.py labels them)."""

    period: Period
    previous: Period
    as_of: date
    overview: pl.DataFrame
    views: dict[str, pl.DataFrame]
    provisional_clocks: int


def _overview(views: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Key figures 关键指标: this period, the previous one and the change."""
    trend_rows = views["trend"]
    current, before = trend_rows.row(-1, named=True), trend_rows.row(-2, named=True)
    deferral = views["deferrals"].filter(pl.col("unit_code") == TOTAL).row(0, named=True)
    claims = views["claims"].filter(pl.col("unit_code") == TOTAL).row(0, named=True)
    figures: list[tuple[str, float | None, float | None]] = [
        ("accepted", current["accepted"], before["accepted"]),
        ("completed", current["completed"], before["completed"]),
        ("on_time_rate", current["on_time_rate"], before["on_time_rate"]),
        ("avg_workdays", current["avg_workdays"], before["avg_workdays"]),
        ("p90_workdays", current["p90_workdays"], before["p90_workdays"]),
        ("open_cases", current["open_cases"], before["open_cases"]),
        ("open_overdue", current["open_overdue"], before["open_overdue"]),
        ("escalated", current["escalated"], before["escalated"]),
        ("avg_overdue_workdays", current["avg_overdue_workdays"], before["avg_overdue_workdays"]),
        ("fulfilment_rate", deferral["fulfilment_rate"], deferral["fulfilment_rate_prev"]),
        ("claim_rate", claims["claim_rate"], claims["claim_rate_prev"]),
        ("avg_claim_workdays", claims["avg_claim_workdays"], claims["avg_claim_workdays_prev"]),
    ]
    frame = pl.DataFrame(
        figures, schema={"metric": pl.String, "current": pl.Float64, "previous": pl.Float64}, orient="row"
    )
    return frame.with_columns(change=pl.col("current") - pl.col("previous"))


def build_views(inputs: MetricInputs, kind: PeriodKind, trend_periods: int = 8) -> ReportViews:
    """All report views for the period holding `inputs.as_of` (cut there), compared with the whole previous one."""
    periods = report_periods(kind, inputs.as_of, max(trend_periods, 2))
    period, previous = periods[-1], periods[-2]
    tables, evaluations, dimensions = inputs.tables, inputs.evaluations, inputs.dimensions
    # One pass splits the (large) evaluation frame by clock type; each view then reads only its own clocks.
    by_type = {key[0]: frame for key, frame in evaluations.partition_by("clock_type", as_dict=True).items()}

    def clocks(clock_type: str) -> pl.DataFrame:
        return by_type.get(clock_type, evaluations.clear())

    facts = case_facts(tables["cases"], tables["projects"], clocks("case"), dimensions, inputs.as_of)
    states = open_states(facts, inputs.snapshots, [p.end for p in periods])
    views = {
        "trend": trend(facts, states, periods),
        "by_unit": case_breakdown(facts, states, period, ["unit_code"], labels=["unit_name"]),
        "by_region": case_breakdown(facts, states, period, ["region_code"], labels=["region_name"]),
        "by_matter": case_breakdown(facts, states, period, ["matter_code"], labels=["matter_name", "mode"]),
        "by_mode": case_breakdown(facts, states, period, ["mode"]),
        "by_category": case_breakdown(facts, states, period, ["category"], labels=["category_name"]),
        "overdue_ages": overdue_ages(states[period.end]),
        "overdue_cases": overdue_cases(states[period.end]),
        "steps": step_shares(tables["steps"], clocks("step"), facts, period),
        "projects": project_limits(tables["projects"], clocks("project"), dimensions, period, inputs.as_of),
        "deferrals": deferral_fulfilment(clocks("deferral"), dimensions, period, inputs.as_of),
        "claims": claim_rates(clocks("claim"), dimensions, period, inputs.as_of),
    }
    provisional = evaluations.filter(pl.col("calendar") == "provisional").height
    return ReportViews(period, previous, inputs.as_of, _overview(views), views, provisional)
