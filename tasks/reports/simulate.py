"""What if (拟调整时限测算): the effect of a proposed rule change on the stored clocks, before it is decided.

Plain functions over polars frames; nothing is stored or sent. Every clock is built by tasks/clocks/builders.py and
evaluated by tasks/clocks/engine.py, the calls the nightly run makes, once under the rules in force and once under the
proposal (config/proposal.py); the two results are compared clock by clock.

- Retrospective (回溯): the clocks finished in the window before the as-of date T (completed_date in
  [window start, T]), judged on time or late under the rules in force and under `retrospective_rules` (the proposed
  limits as if they had always applied). Rates are on-time clocks over finished clocks, per group and in total,
  never averaged; each rate carries the number of clocks behind it.
- Prospective (在办): the clocks open at T (started by T, not completed by T), evaluated at T under `merged_rules`,
  the proposal's versions beside the rules in force: a clock uses the version in force on its start date, so a
  version effective after T changes no clock open at T.

Only the rows whose clocks the proposal can change are built again (`touched_tables`); every other clock keeps its
result under the rules in force, which is what the proposal leaves it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from config.labels import bundled_report_labels
from config.proposal import ProposedRules, changed_versions, merged_rules, retrospective_rules
from config.rules import RuleBook
from tasks.clocks.builders import build_clocks
from tasks.clocks.calendar import WorkCalendar
from tasks.clocks.engine import evaluate_clocks
from tasks.reports.metrics import P90, TOTAL, UNKNOWN, Dimensions

OVERDUE_LEVELS = ("overdue", "escalated")
LEVEL_ORDER = ("normal", "warning", "overdue", "escalated", "paused")
COMPARED = ("limit_days", "due_date", "elapsed", "level")
WINDOW_PATTERN = re.compile(r"^\s*(\d{1,3})\s*([dwmy])\s*$")
# Which kinds of clock take their limit from each section of the rules.
SECTION_CLOCK_TYPES = {
    "matters": ("case", "step"),
    "project_categories": ("project",),
    "deferral": ("deferral",),
    "claim": ("claim",),
}
# The groupings of the retrospective view: name → (grouping columns, rows kept).
RETROSPECTIVE_VIEWS: dict[str, tuple[tuple[str, ...], pl.Expr | None]] = {
    "by_kind": (("clock_type",), None),
    "by_unit": (("unit_code", "unit_name"), None),
    "by_region": (("region_code", "region_name"), None),
    "by_matter": (("matter_code", "matter_name"), pl.col("matter_code").is_not_null()),
    "by_category": (("category", "category_name"), pl.col("clock_type") == "project"),
    "by_mode": (("mode",), pl.col("matter_code").is_not_null()),
}


def window_start(as_of: date, window: str, name: str = "window") -> date:
    """The first day of the window that ends at `as_of`: `12m` (months), `26w`, `90d` or `1y`, e.g. 12m as of
    2026-11-27 starts on 2025-11-28. Raises ValueError naming `name` (the option or parameter) and the accepted
    forms."""
    match = WINDOW_PATTERN.match(window)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{name} {window!r}: expected a positive number and d, w, m or y, e.g. 12m, 26w, 90d")
    count, unit = int(match.group(1)), match.group(2)
    if unit in "dw":
        return as_of - timedelta(days=count * (7 if unit == "w" else 1)) + timedelta(days=1)
    months = count * (12 if unit == "y" else 1)
    year, month = divmod(as_of.year * 12 + as_of.month - 1 - months, 12)
    # The same day `months` back (the month's last day when it is shorter); the window starts the day after it.
    next_month = date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    day = min(as_of.day, (next_month - timedelta(days=1)).day)
    return date(year, month + 1, day) + timedelta(days=1)


@dataclass(frozen=True)
class WhatIf:
    as_of: date
    window_start: date
    changes: list[str]
    overview: pl.DataFrame  # metric, label, before, after, change
    retrospective: dict[str, pl.DataFrame]  # RETROSPECTIVE_VIEWS, each with a 合计 row
    elapsed: pl.DataFrame  # elapsed P50 / P90 / max against the old and new limit, per kind of clock and rule entry
    finished_changed: pl.DataFrame  # finished clocks judged differently
    open_levels: pl.DataFrame  # level, before, after, change
    open_by_unit: pl.DataFrame  # per unit: open, changed, due earlier / later, newly overdue
    open_changed: pl.DataFrame  # open clocks whose due date or level changes
    # The earliest proposed version's date when every one takes effect after the as-of date (and nothing unversioned
    # changes): then no clock open at as-of can change, since each started under an older version.
    takes_effect_later: date | None = None


def affected_clock_types(proposal: ProposedRules) -> tuple[str, ...] | None:
    """The kinds of clock whose rules the proposal touches; None for all (defaults and suspension kinds reach every
    clock: thresholds, pauses that restart, special-procedure limits)."""
    if proposal.defaults is not None or proposal.suspension_kinds:
        return None
    return tuple(t for section, types in SECTION_CLOCK_TYPES.items() if getattr(proposal, section) for t in types)


def evaluate_known(
    tables: Mapping[str, pl.DataFrame],
    rules: RuleBook,
    calendar: WorkCalendar,
    as_of: date,
    clock_types: tuple[str, ...] | None = None,
    keep: pl.Expr | None = None,
) -> pl.DataFrame:
    """The clocks as known at `as_of` (ClockSet.known_at, as every evaluation: a clock that has not started does not
    exist yet), or those of them that `keep` selects, evaluated then."""
    known = build_clocks(dict(tables), rules, clock_types).known_at(as_of, calendar)
    kept = known.clocks.filter(keep) if keep is not None else known.clocks
    return evaluate_clocks(kept, known.pauses, calendar, as_of)


def touched_tables(tables: Mapping[str, pl.DataFrame], proposal: ProposedRules) -> dict[str, pl.DataFrame]:
    """The rows whose clocks the proposal can change: for changed matters their cases with steps and suspensions,
    for changed project categories their projects with all member cases; every row when the proposal reaches every
    clock (defaults, suspension kinds) or the deferral or claim rule. A clock depends only on its own rows, so the
    others need not be built again."""
    if affected_clock_types(proposal) is None or proposal.deferral or proposal.claim:
        return dict(tables)
    cases, projects = tables["cases"], tables.get("projects")
    categories = [category.code for category in proposal.project_categories]
    projects = projects.filter(pl.col("category").is_in(categories)) if projects is not None and categories else None
    kept = pl.col("matter_code").is_in([matter.code for matter in proposal.matters])
    if projects is not None:
        kept = kept | pl.col("project_code").is_in(projects["project_code"].implode())
    cases = cases.filter(kept)
    subset: dict[str, pl.DataFrame] = {"cases": cases}
    if projects is not None:
        subset["projects"] = projects
    for table in ("steps", "suspensions"):
        if table in tables:
            subset[table] = tables[table].filter(pl.col("case_id").is_in(cases["case_id"].implode()))
    return subset


def _compare(before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """`before` with the proposal's limit, due date, elapsed and level beside each clock (`*_after`); a clock the
    proposal does not reach (not built again) keeps its own values."""
    joined = before.join(
        after.select("clock_id", *(pl.col(c).alias(f"{c}_after") for c in COMPARED)),
        on="clock_id",
        how="left",
        maintain_order="left",
    )
    return joined.with_columns(pl.coalesce(f"{c}_after", c).alias(f"{c}_after") for c in COMPARED)


def _lookup(column: str, table: pl.DataFrame, key: str, value: str) -> pl.Expr:
    """`column`'s value looked up in a small dimension table (null when absent): a replace, not a join, so that the
    million-row frame is not gathered again for every name added."""
    return pl.col(column).replace_strict(
        table.get_column(key), table.get_column(value), default=None, return_dtype=pl.String
    )


def _groupings(frame: pl.DataFrame, projects: pl.DataFrame, dimensions: Dimensions) -> pl.DataFrame:
    """Unit, region, matter, project category and 市县同权 mode of each clock, with their names."""
    categories = projects.select("project_code", "category").unique("project_code")
    frame = frame.with_columns(
        category=pl.when(pl.col("clock_type") == "project").then(
            _lookup("subject_id", categories, "project_code", "category")
        ),
        unit_name=_lookup("unit_code", dimensions.units, "unit_code", "unit_name"),
        region_code=pl.coalesce("region_code", _lookup("unit_code", dimensions.units, "unit_code", "unit_region")),
        matter_name=_lookup("matter_code", dimensions.matters, "matter_code", "matter_name"),
        mode=_lookup("matter_code", dimensions.matters, "matter_code", "mode"),
    ).with_columns(
        category_name=_lookup("category", dimensions.categories, "category", "category_name"),
        region_name=_lookup("region_code", dimensions.regions, "region_code", "region_name"),
    )
    return frame.with_columns(
        unit_name=pl.coalesce("unit_name", "unit_code"),
        region_code=pl.col("region_code").fill_null(UNKNOWN),
        region_name=pl.coalesce("region_name", "region_code", pl.lit(UNKNOWN)),
        matter_name=pl.coalesce("matter_name", "matter_code"),
        mode=pl.col("mode").fill_null(UNKNOWN),
        category=pl.col("category").fill_null(UNKNOWN),
        category_name=pl.coalesce("category_name", "category", pl.lit(UNKNOWN)),
    )


def _rates(frame: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """Per group of finished clocks (old_ok, new_ok, changed flags): clocks, on time under each rule set, rates."""
    aggregations = [
        pl.len().cast(pl.Int64).alias("clocks"),
        pl.col("old_ok").sum().cast(pl.Int64).alias("old_on_time"),
        pl.col("new_ok").sum().cast(pl.Int64).alias("new_on_time"),
        pl.col("changed").sum().cast(pl.Int64).alias("changed"),
    ]
    # Grouped by the code alone; its name (the other keys) comes along as the first value of the group.
    grouped = (
        frame.group_by(keys[0]).agg(*(pl.col(label).first() for label in keys[1:]), *aggregations)
        if keys else frame.select(aggregations)
    )
    return grouped.with_columns(
        old_on_time_rate=pl.when(pl.col("clocks") > 0).then(pl.col("old_on_time") / pl.col("clocks")),
        new_on_time_rate=pl.when(pl.col("clocks") > 0).then(pl.col("new_on_time") / pl.col("clocks")),
    ).with_columns(on_time_rate_change=pl.col("new_on_time_rate") - pl.col("old_on_time_rate"))


RATE_COLUMNS = ("clocks", "old_on_time", "new_on_time", "old_on_time_rate", "new_on_time_rate", "on_time_rate_change",
                "changed")


def rate_table(frame: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """On-time rate under the rules in force and under the proposal per group, most changed first, 合计 last."""
    rows = _rates(frame, keys).sort(["changed", "clocks", *keys], descending=[True, True, *([False] * len(keys))])
    total = _rates(frame, ()).with_columns(
        pl.lit(TOTAL if index == 0 else "").alias(key) for index, key in enumerate(keys)
    )
    columns = [*keys, *RATE_COLUMNS]
    return pl.concat([rows.select(columns), total.select(columns)], how="vertical_relaxed")


def _retrospective_views(retro: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """RETROSPECTIVE_VIEWS over only the columns they read: each view's filter then copies a few columns, not all."""
    keys = {key for view_keys, _ in RETROSPECTIVE_VIEWS.values() for key in view_keys}
    slim = retro.select(*sorted(keys), "old_ok", "new_ok", "changed")
    return {
        name: rate_table(slim.filter(rows) if rows is not None else slim, view_keys)
        for name, (view_keys, rows) in RETROSPECTIVE_VIEWS.items()
    }


def elapsed_table(frame: pl.DataFrame) -> pl.DataFrame:
    """Elapsed days of the finished clocks (P50, P90 as Excel's PERCENTILE.INC, max) against the limit in force and
    the proposed one (their medians), with both on-time rates, per kind of clock and rule entry (the project category,
    else the matter); the entries whose limit changes first."""
    entry = pl.when(pl.col("clock_type") == "project").then(pl.col("category")).otherwise(pl.col("matter_code"))
    with_entry = frame.with_columns(entry=entry.fill_null("—"))
    rows = with_entry.group_by("clock_type", "entry").agg(
        pl.len().cast(pl.Int64).alias("clocks"),
        pl.col("elapsed").median().alias("elapsed_p50"),
        pl.col("elapsed").quantile(P90, interpolation="linear").alias("elapsed_p90"),
        pl.col("elapsed").max().cast(pl.Int64).alias("elapsed_max"),
        pl.col("limit_days").median().alias("old_limit_p50"),
        pl.col("limit_days_after").median().alias("new_limit_p50"),
        (pl.col("limit_days") != pl.col("limit_days_after")).sum().cast(pl.Int64).alias("limit_changed"),
        pl.col("old_ok").mean().alias("old_on_time_rate"),
        pl.col("new_ok").mean().alias("new_on_time_rate"),
    )
    return rows.sort(["limit_changed", "clocks", "clock_type", "entry"], descending=[True, True, False, False])


def _level_counts(frame: pl.DataFrame) -> pl.DataFrame:
    before = frame.group_by(pl.col("level")).agg(pl.len().cast(pl.Int64).alias("before"))
    after = frame.group_by(pl.col("level_after").alias("level")).agg(pl.len().cast(pl.Int64).alias("after"))
    levels = pl.DataFrame({"level": list(LEVEL_ORDER)})
    table = levels.join(before, on="level", how="left").join(after, on="level", how="left").fill_null(0)
    table = table.with_columns(change=pl.col("after") - pl.col("before"))
    total = table.select(pl.lit(TOTAL).alias("level"), pl.col("before", "after", "change").sum())
    return pl.concat([table, total], how="vertical_relaxed")


def _open_by_unit(frame: pl.DataFrame) -> pl.DataFrame:
    newly_overdue = pl.col("level_after").is_in(OVERDUE_LEVELS) & ~pl.col("level").is_in(OVERDUE_LEVELS)
    aggregations = [
        pl.len().cast(pl.Int64).alias("open"),
        pl.col("changed").sum().cast(pl.Int64).alias("changed"),
        (pl.col("due_date_after") < pl.col("due_date")).sum().cast(pl.Int64).alias("due_earlier"),
        (pl.col("due_date_after") > pl.col("due_date")).sum().cast(pl.Int64).alias("due_later"),
        newly_overdue.sum().cast(pl.Int64).alias("newly_overdue"),
    ]
    rows = frame.group_by("unit_code", "unit_name").agg(aggregations).sort(
        ["changed", "open", "unit_code"], descending=[True, True, False]
    )
    total = frame.select(aggregations).with_columns(unit_code=pl.lit(TOTAL), unit_name=pl.lit(""))
    return pl.concat([rows, total.select(rows.columns)], how="vertical_relaxed")


CHANGED_COLUMNS = (
    "clock_id", "clock_type", "unit_code", "unit_name", "start_date", "limit_days", "limit_days_after", "due_date",
    "due_date_after", "elapsed", "level", "level_after",
)


def simulate(
    tables: Mapping[str, pl.DataFrame],
    rules: RuleBook,
    proposal: ProposedRules,
    calendar: WorkCalendar,
    dimensions: Dimensions,
    as_of: date,
    window: str = "12m",
) -> WhatIf:
    """The retrospective and prospective effect of `proposal` on the clocks in `tables`, as of `as_of`."""
    first = window_start(as_of, window)
    types = affected_clock_types(proposal)
    touched = touched_tables(tables, proposal)
    finished_rows = pl.col("completed_date").is_between(pl.lit(first), pl.lit(as_of))
    open_rows = pl.col("completed_date").is_null() | (pl.col("completed_date") > as_of)
    before = evaluate_known(tables, rules, calendar, as_of, keep=finished_rows | open_rows)
    projects = tables.get("projects", pl.DataFrame(schema={"project_code": pl.String, "category": pl.String}))

    retro_after = evaluate_known(touched, retrospective_rules(rules, proposal), calendar, as_of, types, finished_rows)
    retro = _groupings(_compare(before.filter(finished_rows), retro_after), projects, dimensions).with_columns(
        old_ok=pl.col("level") == "completed_on_time",
        new_ok=pl.col("level_after") == "completed_on_time",
        changed=pl.col("level") != pl.col("level_after"),
    )
    prospective_after = evaluate_known(touched, merged_rules(rules, proposal), calendar, as_of, types, open_rows)
    prospective = _groupings(_compare(before.filter(open_rows), prospective_after), projects, dimensions)
    prospective = prospective.with_columns(
        changed=(pl.col("level") != pl.col("level_after")) | pl.col("due_date").ne_missing(pl.col("due_date_after"))
    )

    open_changed = prospective.filter("changed").select(CHANGED_COLUMNS).sort("due_date_after", "clock_id")
    finished_changed = retro.filter("changed").select(
        *CHANGED_COLUMNS[:5], "completed_date", *CHANGED_COLUMNS[5:]
    ).sort("completed_date", "clock_id")
    versions = [entry.effective_from for section in SECTION_CLOCK_TYPES for entry in getattr(proposal, section)]
    takes_effect_later = min(versions) if types is not None and versions and min(versions) > as_of else None
    return WhatIf(
        as_of=as_of,
        window_start=first,
        changes=changed_versions(rules, proposal),
        overview=_overview(retro, prospective),
        retrospective=_retrospective_views(retro),
        elapsed=elapsed_table(retro),
        finished_changed=finished_changed,
        open_levels=_level_counts(prospective),
        open_by_unit=_open_by_unit(prospective),
        open_changed=open_changed,
        takes_effect_later=takes_effect_later,
    )



def _overview(retro: pl.DataFrame, prospective: pl.DataFrame) -> pl.DataFrame:
    total = _rates(retro, ())
    rows = [
        ("finished", retro.height, retro.height),
        ("on_time", total["old_on_time"][0], total["new_on_time"][0]),
        ("on_time_rate", total["old_on_time_rate"][0], total["new_on_time_rate"][0]),
        ("open", prospective.height, prospective.height),
        (
            "open_overdue",
            prospective["level"].is_in(OVERDUE_LEVELS).sum(),
            prospective["level_after"].is_in(OVERDUE_LEVELS).sum(),
        ),
        ("open_warning", (prospective["level"] == "warning").sum(), (prospective["level_after"] == "warning").sum()),
        ("open_changed", 0, prospective["changed"].sum()),
    ]
    frame = pl.DataFrame(
        [(name, bundled_report_labels().what_if_overview[name], before, after) for name, before, after in rows],
        schema={"metric": pl.String, "label": pl.String, "before": pl.Float64, "after": pl.Float64},
        orient="row",
    )
    return frame.with_columns(change=pl.col("after") - pl.col("before"))
