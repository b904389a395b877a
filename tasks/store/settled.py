"""Settled clocks (落定): what a nightly run need not evaluate again, and when it must evaluate everything.

Most of a city's history is closed for good. A **group** is the unit that settles:

- a case group: every row with one case_id (the case, its steps, suspensions, deferral and pushes), which makes the
  case, step, special-procedure, deferral and claim clocks of that case;
- a project group: the project clock (its inputs are the project row and its member cases with their suspensions).

A group settles at an evaluation as of T when every clock it makes is completed (completed_on_time or
completed_late), nothing of it was rejected, and every date of its rows is non-empty where it ends something
(completed_at, ended_at, supplied_at, claimed_at) and lies before T − KEEP_COMPLETED_FOR. Such a clock's evaluation no
longer depends on T (everything about it is known and over), and it is too old for the evaluation history
(tasks/store/evaluations.py keeps clocks completed within that month), so a later run needs only its count per clock
type, level and calendar (settled_groups). The groups not settled are listed in open_groups: a new or changed row
puts its group, and its project, there in the same transaction as the change (tasks/store/upsert.py), and the next run
reads back exactly those.

Everything is evaluated again (the full path) when asked (`permitwatch run --full`), on the first run, when the as-of
date is before the one the groups settled at, or when the fingerprint of the evaluation's basis changed: the rules,
the calendar (a new config/calendar/YYYY.yaml), the unit codes, or the code of the clock builder and engine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

import polars as pl
from sqlalchemy import Engine, delete, func, select

from config.bundle import PermitwatchConfig
from schemas.contracts import canonical_schema
from schemas.tables import OpenGroup, SettledBasis, SettledGroup
from tasks.clocks.calendar import WorkCalendar
from tasks.code_version import add_module_sources
from tasks.store.evaluations import KEEP_COMPLETED_FOR
from tasks.store.upsert import OPEN_FLAG, append_rows, read_rows

BASIS = "nightly"
COMPLETED_LEVELS = ("completed_on_time", "completed_late")
# The column of each table that ends what the row describes; empty, the group is still running.
END_COLUMNS = {
    "cases": "completed_at",
    "steps": "ended_at",
    "suspensions": "ended_at",
    "deferrals": "supplied_at",
    "pushes": "claimed_at",
}
# The code whose change changes evaluations: the builder's and the engine's rules, and this module's.
ENGINE_MODULES = (
    "tasks.clocks.builders",
    "tasks.clocks.engine",
    "tasks.clocks.kernels",
    "tasks.clocks.calendar",
    "tasks.store.settled",
)
_DIGEST_SEED = 0x5E77_1ED0
_GROUP_COLUMNS: dict[str, pl.DataType] = {"kind": pl.String(), "group_id": pl.String(), "digest": pl.Int64()}
COUNT_COLUMNS = {"clock_type": pl.String, "level": pl.String, "calendar": pl.String, "clocks": pl.Int64}


@dataclass(frozen=True)
class EvaluationPlan:
    """Whether this run evaluates every clock (full) or only the unsettled groups, and why."""

    full: bool
    reason: str
    fingerprint: str

    def as_dict(self) -> dict[str, str]:
        return {"mode": "full" if self.full else "incremental", "reason": self.reason}


@dataclass(frozen=True)
class Settlement:
    """One run's verdict: the evaluations of the unsettled groups (what the run stores, cards and reports clock by
    clock), the groups that settled now with their counts, and the counts of the groups settled before."""

    evaluations: pl.DataFrame
    groups: pl.DataFrame  # kind, group_id, counts, digest
    still_open: pl.DataFrame  # kind, group_id: the groups read that have not settled
    earlier: pl.DataFrame  # COUNT_COLUMNS: groups settled by earlier runs (empty on the full path)
    moved: int = 0  # full path: groups settled before whose final evaluation is another now (record_settlement)


def fingerprint(config: PermitwatchConfig, calendar: WorkCalendar) -> str:
    """A digest of everything besides the data that decides an evaluation."""
    digest = hashlib.sha256()
    digest.update(config.rules.model_dump_json().encode())
    digest.update("\n".join(sorted(config.units.units)).encode())
    digest.update(calendar.table.select("date", "is_workday", "provisional").write_csv().encode())
    add_module_sources(digest, ENGINE_MODULES)
    return digest.hexdigest()


def plan_evaluation(engine: Engine, config: PermitwatchConfig, calendar: WorkCalendar, as_of: date,
                    *, full: bool = False) -> EvaluationPlan:
    digest = fingerprint(config, calendar)
    with engine.connect() as connection:
        basis = connection.execute(
            select(SettledBasis.fingerprint, SettledBasis.as_of).where(SettledBasis.name == BASIS)
        ).first()
    if full:
        reason = "full evaluation requested (--full)"
    elif basis is None:
        reason = "first evaluation: every clock"
    elif basis.fingerprint != digest:
        reason = "rules, calendar, unit codes or clock engine changed since the last run: every clock evaluated again"
    elif as_of < basis.as_of:
        reason = f"as-of date before {basis.as_of}, the date the settled clocks were decided on: every clock"
    else:
        return EvaluationPlan(False, "unsettled clocks only: open ones and those whose rows changed", digest)
    return EvaluationPlan(True, reason, digest)


# ------------------------------------------------------------------------------------------------ the verdict


def settle_groups(
    tables: dict[str, pl.DataFrame],
    evaluations: pl.DataFrame,
    rejects: pl.DataFrame,
    as_of: date,
    earlier: pl.DataFrame | None = None,
) -> Settlement:
    """Which groups read for this run settle now. `tables` are the frames the clocks were built from; a row without
    OPEN_FLAG (the full path) is open. `rejects` are the clock builder's (table, row_key, case_id, reason)."""
    cutoff = as_of - KEEP_COMPLETED_FOR
    # In the order read (by key), so that the settled groups are stored in key order.
    open_cases = pl.concat(
        [_flagged(tables, table).filter(OPEN_FLAG).select("case_id") for table in END_COLUMNS], how="vertical"
    ).unique(maintain_order=True)
    open_projects = _flagged(tables, "projects").filter(OPEN_FLAG).select("project_code").unique()
    is_project = pl.col("clock_type") == "project"
    read_in_part = any(OPEN_FLAG in frame.columns for frame in tables.values())
    kept = (
        evaluations.filter(
            (is_project & pl.col("subject_id").is_in(open_projects["project_code"].implode()))
            | (~is_project & pl.col("case_id").is_in(open_cases["case_id"].implode()))
        )
        if read_in_part
        else evaluations  # the full path: every clock is its own group's, and no copy of a million rows is made
    )
    # What the verdict needs of each clock, narrow: the digest term (32 bits of the hash of its whole evaluation,
    # summed per group in any order, so that a later full evaluation sees whether a settled group's final
    # evaluation moved) instead of the evaluation itself.
    signature = kept.select(sorted(kept.columns)).hash_rows(seed=_DIGEST_SEED) // (1 << 32)
    narrow = kept.select(
        pl.when(is_project).then("subject_id").otherwise("case_id").alias("group_id"),
        is_project.alias("project"),
        # A few distinct values each: as categories they group far more cheaply than as text.
        pl.col("clock_type", "level", "calendar").cast(pl.Categorical),
    ).with_columns(signature.cast(pl.Int64).alias("signature"))
    not_over = _cases_not_over(tables, cutoff)
    running = pl.concat(
        [
            not_over,
            rejects.filter(pl.col("case_id").is_not_null()).select("case_id"),
            narrow.filter(~pl.col("project") & ~pl.col("level").is_in(COMPLETED_LEVELS))
            .select(pl.col("group_id").alias("case_id")),
        ]
    )
    settled_cases = open_cases.join(running, on="case_id", how="anti")["case_id"]
    settled_projects = _settled_projects(tables, narrow.filter("project"), rejects, not_over)
    still_open = pl.concat(
        [
            open_cases.filter(~pl.col("case_id").is_in(settled_cases.implode()))
            .select(pl.lit("case").alias("kind"), pl.col("case_id").alias("group_id")),
            open_projects.filter(~pl.col("project_code").is_in(settled_projects.implode()))
            .select(pl.lit("project").alias("kind"), pl.col("project_code").alias("group_id")),
        ]
    )
    return Settlement(
        kept,
        pl.concat(
            [
                _final(narrow.filter(~pl.col("project")), settled_cases, "case"),
                _final(narrow.filter("project"), settled_projects, "project"),
            ]
        ),
        still_open,
        earlier if earlier is not None else pl.DataFrame(schema=COUNT_COLUMNS),
    )


_GROUPS_AT_ONCE = 200_000
_FINAL_SCHEMA = {"group": pl.UInt32, "counts": pl.String, "digest": pl.Int64}


def _final(clocks: pl.DataFrame, settled: pl.Series, kind: str) -> pl.DataFrame:
    """kind, group_id, counts, digest of the settled groups among `clocks` (settle's narrow frame). `counts` lists
    "clock_type level calendar clocks" per combination, sorted, joined by ";"."""
    # Groups are numbered once (one join on the text id, lazily, so that only the number, the three parts and the
    # signature go through it), and the group-bys and sorts run on integers. The text of the counts is then made
    # _GROUPS_AT_ONCE groups at a time. On the 3.5 M clocks of a million-case first load: 2.5 s and 0.4 GB of
    # working memory, against 3.2 s and 1 GB for the text ids all at once.
    groups = settled.alias("group_id").to_frame().with_row_index("group")
    parts = ("clock_type", "level", "calendar")
    counted = (
        clocks.lazy()
        .join(groups.lazy(), on="group_id")
        .group_by("group", *parts)
        .agg(pl.len().alias("clocks"), pl.col("signature").sum())
        .sort("group")
        .collect()
    )
    term = pl.format("{} {} {} {}", *parts, "clocks").alias("term")
    texts = [
        counted.filter(pl.col("group").is_between(first, first + _GROUPS_AT_ONCE - 1))
        .with_columns(term)
        .sort("group", "term")
        .group_by("group", maintain_order=True)
        .agg(pl.col("term").str.join(";").alias("counts"), pl.col("signature").sum().alias("digest"))
        for first in range(0, groups.height, _GROUPS_AT_ONCE)
    ]
    per_group = pl.concat(texts) if texts else pl.DataFrame(schema=_FINAL_SCHEMA)
    return groups.join(per_group, on="group", how="left").select(
        pl.lit(kind).alias("kind"), "group_id", pl.col("counts").fill_null(""), "digest"
    )


def _flagged(tables: dict[str, pl.DataFrame], table: str) -> pl.DataFrame:
    frame = tables.get(table, pl.DataFrame(schema=canonical_schema(table)))
    return frame if OPEN_FLAG in frame.columns else frame.with_columns(pl.lit(True).alias(OPEN_FLAG))


def _cases_not_over(tables: dict[str, pl.DataFrame], cutoff: date) -> pl.DataFrame:
    """case_id of the cases with a row (as read) that has not ended or has a date on or after `cutoff`. A case read
    only for a project's sake is judged on its case row and suspensions, all that was read of it."""
    parts = []
    for table, end in END_COLUMNS.items():
        frame = _flagged(tables, table)
        dates = [name for name, dtype in canonical_schema(table).items() if dtype == pl.Date]
        going = pl.col(end).is_null() | pl.any_horizontal(pl.col(name) >= cutoff for name in dates)
        parts.append(frame.filter(going).select("case_id"))
    return pl.concat(parts).unique()


def _settled_projects(
    tables: dict[str, pl.DataFrame], project_clocks: pl.DataFrame, rejects: pl.DataFrame, not_over: pl.DataFrame
) -> pl.Series:
    """The projects read that settle: their clock completed, nothing rejected, every member over."""
    members = _flagged(tables, "cases").select("case_id", "project_code").drop_nulls("project_code")
    running_members = members.join(not_over, on="case_id").select("project_code")
    rejected = rejects.filter(pl.col("table") == "projects").select(pl.col("row_key").alias("project_code"))
    return (
        project_clocks.filter(pl.col("level").is_in(COMPLETED_LEVELS))
        .select(pl.col("group_id").alias("project_code"))
        .join(pl.concat([running_members, rejected]), on="project_code", how="anti")["project_code"]
    )


def settled_totals(evaluations: pl.DataFrame, earlier: pl.DataFrame) -> pl.DataFrame:
    """clock_type, level, calendar, clocks over every clock: the ones evaluated now and the settled ones."""
    counted = evaluations.group_by("clock_type", "level", "calendar").len("clocks")
    return (
        pl.concat([counted.cast(COUNT_COLUMNS), earlier.cast(COUNT_COLUMNS)])  # type: ignore[arg-type]
        .group_by("clock_type", "level", "calendar")
        .agg(pl.col("clocks").sum())
        .sort("clock_type", "level", "calendar")
    )


# ------------------------------------------------------------------------------------------------ the database


def read_settled_counts(engine: Engine) -> pl.DataFrame:
    """COUNT_COLUMNS over every settled group. Groups share few distinct `counts`, so the database counts those."""
    query = select(SettledGroup.counts, func.count()).group_by(SettledGroup.counts)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    shared = pl.DataFrame([tuple(row) for row in rows], schema={"counts": pl.String, "groups": pl.Int64}, orient="row")
    parts = (
        shared.filter(pl.col("counts") != "")
        .with_columns(pl.col("counts").str.split(";"))
        .explode("counts")
        .with_columns(pl.col("counts").str.split(" ").list.to_struct(fields=["clock_type", "level", "calendar", "n"]))
        .unnest("counts")
    )
    return (
        parts.group_by("clock_type", "level", "calendar")
        .agg((pl.col("n").cast(pl.Int64) * pl.col("groups")).sum().alias("clocks"))
        .cast(COUNT_COLUMNS)  # type: ignore[arg-type]
    )


def record_settlement(
    engine: Engine, settlement: Settlement, plan: EvaluationPlan, as_of: date, run_id: int | None
) -> int:
    """Add the groups settled now and take them out of the open ones (the full path decides both sets afresh), and
    record the basis they rest on. Returns
    how many groups settled before have another final evaluation now (only the full path sees them: after a rule or
    calendar change they are expected, otherwise they point at a change the incremental path missed)."""
    moved = 0
    with engine.begin() as connection:
        if plan.full:
            before = read_rows(connection, "SELECT kind, group_id, digest FROM settled_groups", _GROUP_COLUMNS)
            moved = before.join(settlement.groups, on=["kind", "group_id"]).filter(
                pl.col("digest").ne_missing(pl.col("digest_right"))
            ).height
            connection.execute(delete(SettledGroup))
            connection.execute(delete(OpenGroup))
            append_rows(connection, OpenGroup.__tablename__, settlement.still_open)
        elif settlement.groups.height:
            lookup = "pw_settled_now"
            connection.exec_driver_sql(f"CREATE TEMP TABLE {lookup} (kind VARCHAR(10), group_id VARCHAR(64))")
            append_rows(connection, lookup, settlement.groups.select("kind", "group_id"))
            connection.exec_driver_sql(
                f"DELETE FROM open_groups WHERE (kind, group_id) IN (SELECT kind, group_id FROM {lookup})"
            )
            connection.exec_driver_sql(f"DROP TABLE {lookup}")
        run = pl.lit(run_id, pl.Int64).alias("run_id")
        append_rows(connection, SettledGroup.__tablename__, settlement.groups.with_columns(run))
        # An incremental run is never before the basis date (plan_evaluation), and what settled by then is still
        # settled now: the basis moves to this run's date.
        connection.execute(delete(SettledBasis).where(SettledBasis.name == BASIS))
        connection.execute(
            SettledBasis.__table__.insert().values(name=BASIS, fingerprint=plan.fingerprint, as_of=as_of, run_id=run_id)
        )
    return moved

