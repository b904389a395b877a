"""Clocks from the canonical tables: case, step, project, deferral, claim and special-procedure clocks, and pauses.

`build_clocks(tables, rules)` turns the six canonical frames into one clock frame and one pause frame for
tasks/clocks/engine.py, plus the rows it could not turn into a clock (`rejects`: table, row_key, case_id, reason). Every
rule look-up is a join_asof on the rule's effective_from (the version in force on the clock's start date).

clock (clock_id)                         start → end                  owner                    limit
- case (case:C1)                         accepted_at → completed_at   unit_code                own, else matter rule
- step (step:C1:2)                       started_at → ended_at        step unit (市县同权)      own, else step rule
- project (project:P1)                   first acceptance → last one  lead_unit_code           project category
- deferral (deferral:C1)                 accepted_at → supplied_at    case unit                due date/days, rule
- claim (claim:PUSH1)                    pushed_at → claimed_at       supervisor_unit_code     claim rule
- special (special:C1:专家评审:2026-03-02) started_at → ended_at        case unit                own, else kind rule

Suspensions (特别程序) pause every clock of their case running during them: the case clock and each step whose
running period overlaps (S, E], even a step that started after S. Kinds configured as `restart` (补正 by default)
start the case clock over when they end, and the step running at E; a step that ended before E is only paused. Kinds
configured as `extend` (延期) pause nothing: each row's limit_days are added to the case clock's limit from the day
it is granted (its started_at). A special-procedure clock is never paused by other suspensions. A project clock counts
the days on which at least one of its cases is open and not suspended: the gaps between those days become the
project clock's pauses.

Known at T: `build_clocks` lays out everything recorded; `ClockSet.known_at(T, calendar)` keeps what exists at the
end of day T and is the only way any entry point (nightly run, backfill, evaluate, explain, report) gets the clocks
it evaluates. A clock whose start is after T does not exist; a project counts only the member cases accepted on or
before T, with their completions and suspensions as known at T; only the extensions granted by T lengthen a limit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from config.canonical import CANONICAL_COLUMNS, MAX_LIMIT_DAYS
from config.rules import DEFAULT_RESTART_KINDS, RuleBook
from schemas.contracts import LIMIT_KIND_SPELLINGS
from tasks.clocks.calendar import CALENDAR_FIRST_DATE, WorkCalendar
from tasks.clocks.engine import CLOCK_COLUMNS, PAUSE_COLUMNS
from tasks.clocks.kernels import rows_of

# Dates accepted on input. The calendar runs further (tasks/clocks/calendar.py) so that a start this late, a long pause
# and the largest limit still find their due date inside it.
LATEST_INPUT_DATE = date(2040, 12, 31)
_SPELLINGS = "|".join(LIMIT_KIND_SPELLINGS)
REJECT_COLUMNS = {"table": pl.String, "row_key": pl.String, "case_id": pl.String, "reason": pl.String}
FAR_FUTURE = date(9999, 12, 31)  # "never" for an open end while intervals are combined
MEMBER_COLUMNS = {"project_code": pl.String, "case_id": pl.String, "accepted_at": pl.Date, "completed_at": pl.Date}
MEMBER_SUSPENSION_COLUMNS = {"case_id": pl.String, "started_at": pl.Date, "ended_at": pl.Date}
EXTENSION_COLUMNS = {
    "case_id": pl.String,
    "kind": pl.String,
    "started_at": pl.Date,  # the day the extension is granted
    "limit_days": pl.Int32,  # the days it adds
    "extension_kind": pl.String,  # workday | calendar: how those days are counted
}

# How the rejects name a row of each table (row_key): its primary key, as text.
ROW_KEYS: dict[str, pl.Expr] = {
    "cases": pl.col("case_id"),
    "steps": pl.format("{} step {}", "case_id", "step_no"),
    "suspensions": pl.format("{} {} {}", "case_id", "kind", "started_at"),
    "projects": pl.col("project_code"),
    "deferrals": pl.col("case_id"),
    "pushes": pl.col("push_id"),
}


@dataclass(frozen=True)
class ClockSet:
    clocks: pl.DataFrame  # tasks.clocks.engine.CLOCK_COLUMNS
    pauses: pl.DataFrame  # tasks.clocks.engine.PAUSE_COLUMNS
    rejects: pl.DataFrame  # REJECT_COLUMNS: rows that make no clock (or no pause), with the reason
    # What a project clock and an extended case clock are made of, to be cut to what is known at a date:
    members: pl.DataFrame = field(default_factory=lambda: _empty(MEMBER_COLUMNS))  # cases of the projects with a clock
    member_suspensions: pl.DataFrame = field(default_factory=lambda: _empty(MEMBER_SUSPENSION_COLUMNS))
    extensions: pl.DataFrame = field(default_factory=lambda: _empty(EXTENSION_COLUMNS))  # 延期, every one recorded
    as_of: date | None = None  # None: everything recorded; else the day known_at cut it to

    def known_at(self, as_of: date, calendar: WorkCalendar) -> ClockSet:
        """The clocks as they stand at the end of day `as_of`: only those started by then; project clocks made of the
        member cases accepted by then, with the completions and suspensions known then; case limits lengthened by
        the extensions granted by then. Pauses that start later stay listed (an explanation shows them as not yet
        known); the engine ignores them. Only a set of everything recorded can be cut (its extensions would count
        twice otherwise)."""
        if self.as_of is not None:
            raise ValueError(f"these clocks are already as known at {self.as_of}")
        clocks = self.clocks.filter(pl.col("start_date") <= as_of)
        pauses = self.pauses
        if not self.members.is_empty():
            clocks, pauses = self._projects_known_at(clocks, pauses, as_of)
        extensions = self.extensions.filter(pl.col("started_at") <= as_of)
        if not extensions.is_empty():
            clocks = _extended(clocks, extensions, calendar)
        return ClockSet(clocks, pauses, self.rejects, self.members, self.member_suspensions, self.extensions, as_of)

    def _projects_known_at(
        self, clocks: pl.DataFrame, pauses: pl.DataFrame, as_of: date
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Project completions and pauses from the member cases accepted by `as_of`, as known then (a completion
        or a suspension's end after `as_of` is not known yet: open)."""

        def known(column: str) -> pl.Expr:
            return pl.when(pl.col(column) <= as_of).then(pl.col(column))

        members = self.members.filter(pl.col("accepted_at") <= as_of).with_columns(completed_at=known("completed_at"))
        suspensions = self.member_suspensions.filter(pl.col("started_at") <= as_of).with_columns(
            ended_at=known("ended_at")
        )
        completion = members.group_by("project_code").agg(
            pl.when(pl.col("completed_at").null_count() == 0).then(pl.col("completed_at").max()).alias("completed")
        )
        project_rows = (clocks["clock_type"] == "project").arg_true()
        projects = clocks[project_rows].select(
            pl.col("subject_id").alias("project_code")
        ).join(completion, on="project_code", how="left", maintain_order="left")
        clocks = clocks.with_columns(clocks["completed_date"].scatter(project_rows, projects["completed"]))
        pauses = pl.concat(
            [pauses.filter(~pl.col("clock_id").str.starts_with("project:")), _project_gaps(members, suspensions)],
            how="vertical",
        )
        return clocks, pauses


def build_clocks(
    tables: Mapping[str, pl.DataFrame], rules: RuleBook, clock_types: Collection[str] | None = None
) -> ClockSet:
    """All six kinds of clock from the canonical tables, or only those of `clock_types`; a missing table counts as
    empty. Cases and suspensions are always checked (every clock needs them); the rows of the other tables are
    checked, and rejected, only when their kind of clock is built."""
    frames = {name: _input(tables.get(name), input_columns(name)) for name in CANONICAL_COLUMNS}
    builder = _Builder(rules)

    def wanted(clock_type: str, table: str | None = None) -> bool:
        # Tables without rows make no clocks: skip their joins against the (possibly large) cases.
        return (clock_types is None or clock_type in clock_types) and (table is None or frames[table].height > 0)

    none = (_empty(CLOCK_COLUMNS), None)
    cases = builder.cases(frames["cases"])
    recorded = builder.suspensions(frames["suspensions"], cases)
    suspensions = recorded.filter(~pl.col("extend"))  # extensions pause nothing
    extensions = recorded.filter(pl.col("extend")).select(
        "case_id", "kind", "started_at", "limit_days", pl.col("special_kind").alias("extension_kind")
    )
    parts = [
        builder.case_clocks(cases) if wanted("case") else none,
        builder.step_clocks(frames["steps"], cases, suspensions) if wanted("step", "steps") else none,
        builder.project_clocks(frames["projects"], cases) if wanted("project", "projects") else none,
        builder.deferral_clocks(frames["deferrals"], cases) if wanted("deferral", "deferrals") else none,
        builder.claim_clocks(frames["pushes"], cases) if wanted("claim", "pushes") else none,
        builder.special_clocks(suspensions) if wanted("special") else none,
    ]
    case_pauses = suspensions.select(
        pl.format("case:{}", "case_id").alias("clock_id"),
        pl.col("started_at").alias("start_date"),
        pl.col("ended_at").alias("end_date"),
        "restart",
    )
    members = _empty(MEMBER_COLUMNS) if builder.members is None else builder.members
    member_suspensions = suspensions.join(members.select("case_id"), on="case_id", how="semi").select(
        *MEMBER_SUSPENSION_COLUMNS
    )
    project_pauses = _project_gaps(members, member_suspensions)
    return ClockSet(
        clocks=pl.concat([clocks for clocks, _ in parts], how="vertical"),
        pauses=pl.concat(
            [_pause_frame(case_pauses), *(pauses for _, pauses in parts if pauses is not None), project_pauses],
            how="vertical",
        ),
        rejects=pl.concat(builder.rejects, how="vertical") if builder.rejects else _empty(REJECT_COLUMNS),
        members=members,
        member_suspensions=member_suspensions,
        extensions=extensions.select(pl.col(name).cast(dtype) for name, dtype in EXTENSION_COLUMNS.items())
        if wanted("case")
        else _empty(EXTENSION_COLUMNS),
    )


def normalize_limit_kind(column: str = "limit_kind") -> pl.Expr:
    """workday / calendar from any spelling in LIMIT_KIND_SPELLINGS (trimmed); anything else null."""
    return pl.col(column).str.strip_chars().replace_strict(LIMIT_KIND_SPELLINGS, default=None, return_dtype=pl.String)


def _limit_kinds(frame: pl.DataFrame, column: str = "limit_kind") -> pl.Expr:
    """normalize_limit_kind(column) for this frame. When every spelling present is exact (no stray space, the usual
    case), one comparison per spelling replaces trimming and looking up each of a million values."""
    present = frame[column].drop_nulls().unique().to_list()
    if not all(spelling in LIMIT_KIND_SPELLINGS for spelling in present):
        return normalize_limit_kind(column)
    kinds = pl.lit(None, pl.String)
    for spelling in present:
        kinds = pl.when(pl.col(column) == spelling).then(pl.lit(LIMIT_KIND_SPELLINGS[spelling])).otherwise(kinds)
    return kinds


def _repeated(frame: pl.DataFrame, column: str) -> pl.Expr:
    """Whether each row's value appeared in an earlier row. Usually every value is distinct, which counting them
    shows several times faster than marking the first of each (70 against 170 ms of CPU for a million case ids)."""
    if frame[column].n_unique() == frame.height:
        return pl.lit(False)
    return ~pl.col(column).is_first_distinct()


class _Builder:
    def __init__(self, rules: RuleBook) -> None:
        self.rules = rules
        self.rejects: list[pl.DataFrame] = []
        self.members: pl.DataFrame | None = None  # the cases of the projects that make a clock, once built

    # -- rejects -------------------------------------------------------------------------------------------------

    def _split(
        self,
        frame: pl.DataFrame,
        table: str,
        key: pl.Expr,
        case_id: pl.Expr,
        checks: Sequence[tuple[pl.Expr, pl.Expr]],
    ) -> pl.DataFrame:
        """The rows for which no check holds; the others become rejects with the reason of their first failed
        check (worded only for those rows: formatting a reason for a million good rows would cost more than the
        rest of the build)."""
        flagged = frame.with_columns(pl.any_horizontal(c.fill_null(False) for c, _ in checks).alias("__bad"))
        # One chunk: the reasons use pl.format, which panics on short columns holding an empty chunk (see
        # schemas.messages.message), and a file read without a final newline leaves such chunks after filtering.
        bad = flagged.filter(pl.col("__bad")).rechunk()
        if bad.height == 0:
            return frame
        self.rejects.append(
            bad.select(
                pl.lit(table).alias("table"),
                key.cast(pl.String).alias("row_key"),
                case_id.cast(pl.String).alias("case_id"),
                _first_reason(*checks).alias("reason"),
            )
        )
        return flagged.filter(~pl.col("__bad")).drop("__bad")

    # -- cases ---------------------------------------------------------------------------------------------------

    def cases(self, cases: pl.DataFrame) -> pl.DataFrame:
        """The cases that make a clock, with their limit resolved; rejects for the others."""
        rules = self.rules.matter_versions().select(
            "matter_code",
            "effective_from",
            pl.col("limit_days").alias("rule_limit"),
            pl.col("limit_kind").alias("rule_kind"),
            *_THRESHOLDS,
        )
        cases = cases.with_columns(own_kind=_limit_kinds(cases))
        cases = RuleBook.in_force(cases, rules, on="accepted_at", by="matter_code")
        cases = cases.with_columns(
            clock_limit=pl.coalesce("limit_days", "rule_limit"),
            clock_kind=pl.coalesce("own_kind", "rule_kind", pl.lit("workday")),
            duplicate=_repeated(cases, "case_id"),
        )
        checks = (
            (pl.col("case_id").is_null(), pl.lit("case_id missing")),
            (pl.col("duplicate"), pl.lit("duplicate case_id (the first row is kept)")),
            (pl.col("unit_code").is_null(), pl.lit("unit_code missing")),
            *_date_checks("accepted_at", required=True),
            *_date_checks("completed_at"),
            (
                pl.col("completed_at") < pl.col("accepted_at"),
                pl.format("completed_at {} is before accepted_at {}", "completed_at", "accepted_at"),
            ),
            (
                pl.col("limit_kind").is_not_null() & pl.col("own_kind").is_null(),
                pl.format(f"unknown limit_kind '{{}}' ({_SPELLINGS})", "limit_kind"),
            ),
            (
                pl.col("clock_limit").is_null() & ~pl.col("matter_code").is_in(rules["matter_code"].implode()),
                pl.format("unknown matter '{}' and no limit_days", pl.col("matter_code").fill_null("")),
            ),
            (
                pl.col("clock_limit").is_null(),
                pl.format(
                    "no rule for matter '{}' in force on {} and no limit_days",
                    pl.col("matter_code").fill_null(""),
                    "accepted_at",
                ),
            ),
            *_limit_checks("clock_limit"),
        )
        return self._split(cases, "cases", ROW_KEYS["cases"], pl.col("case_id"), checks)

    def case_clocks(self, cases: pl.DataFrame) -> tuple[pl.DataFrame, None]:
        clocks = cases.select(
            self._clock_columns(
                "case", pl.format("case:{}", "case_id"), subject="case_id", start="accepted_at", end="completed_at"
            )
        )
        return _clock_frame(clocks), None

    # -- suspensions: case pauses and special-procedure clocks ---------------------------------------------------

    def suspensions(self, suspensions: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
        """Suspensions within their case's life, with restart, extend and their own limit (if any) resolved. For an
        extension (延期) limit_days is the days it adds, counted as special_kind says."""
        kinds = self.rules.suspension_kind_table().select(
            "kind",
            pl.col("restart").alias("kind_restart"),
            pl.col("extend").alias("kind_extend"),
            pl.col("limit_days").alias("kind_limit"),
            pl.col("limit_kind").alias("kind_limit_kind"),
            *_THRESHOLDS,
        )
        # Each suspension's case by the hash join of tasks/clocks/kernels.py on the (unique) case ids: a million cases
        # make polars' join several times slower. Rows keep the suspensions' order.
        case_row = pl.Series(rows_of(cases["case_id"], suspensions["case_id"])).cast(pl.UInt32, strict=False)
        joined = suspensions.hstack(
            cases.select(
                pl.col("accepted_at", "completed_at", "unit_code", "matter_code", "region_code").gather(case_row)
            ).get_columns()
        ).with_columns(case_found=case_row.is_not_null())
        joined = joined.join(kinds, on="kind", how="left", maintain_order="left")
        extend = pl.col("extend")
        pause = ~extend
        joined = joined.with_columns(
            restart=pl.coalesce("kind_restart", pl.col("kind").is_in(list(DEFAULT_RESTART_KINDS))),
            extend=pl.col("kind_extend").fill_null(False),
            special_limit=pl.when(~pl.col("kind_extend").fill_null(False)).then(
                pl.coalesce("limit_days", "kind_limit")
            ),
            special_kind=pl.coalesce("kind_limit_kind", pl.lit("workday")),
        )
        key = ROW_KEYS["suspensions"]
        checks = (
            (~pl.col("case_found"), pl.format("no case '{}' among the cases", pl.col("case_id").fill_null(""))),
            (pl.col("kind").is_null(), pl.lit("kind missing")),
            *_date_checks("started_at", required=True),
            *_date_checks("ended_at"),
            (
                pl.col("ended_at") < pl.col("started_at"),
                pl.format("ended_at {} is before started_at {}", "ended_at", "started_at"),
            ),
            (
                pause & (pl.col("started_at") < pl.col("accepted_at")),
                pl.format("pause starts {} before the case was accepted on {}", "started_at", "accepted_at"),
            ),
            (
                pause & pl.col("completed_at").is_not_null() & pl.col("ended_at").is_null(),
                pl.format("pause has no end but the case was completed on {}", "completed_at"),
            ),
            (
                pause & (pl.col("ended_at") > pl.col("completed_at")),
                pl.format("pause ends {} after the case was completed on {}", "ended_at", "completed_at"),
            ),
            (extend & pl.col("limit_days").is_null(), pl.lit("extension without its days (limit_days)")),
            (
                extend & (pl.col("started_at") < pl.col("accepted_at")),
                pl.format("extension granted {} before the case was accepted on {}", "started_at", "accepted_at"),
            ),
            (
                extend & (pl.col("started_at") > pl.col("completed_at")),
                pl.format("extension granted {} after the case was completed on {}", "started_at", "completed_at"),
            ),
            *_limit_checks("special_limit"),
            *_limit_checks("limit_days"),
        )
        return self._split(joined, "suspensions", key, pl.col("case_id"), checks)

    def special_clocks(self, suspensions: pl.DataFrame) -> tuple[pl.DataFrame, None]:
        """特别程序 with a limit of its own: the procedure itself must end within it."""
        clocks = suspensions.filter(pl.col("special_limit").is_not_null()).select(
            self._clock_columns(
                "special",
                pl.format("special:{}:{}:{}", "case_id", "kind", "started_at"),
                subject="case_id",
                start="started_at",
                end="ended_at",
                limit="special_limit",
                kind="special_kind",
            )
        )
        return _clock_frame(clocks), None

    # -- steps (市县同权) ---------------------------------------------------------------------------------------

    def step_clocks(
        self, steps: pl.DataFrame, cases: pl.DataFrame, suspensions: pl.DataFrame
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """One clock per step. The rule's step (same matter and step number, version in force when the step started)
        gives the limit when the row has none, and the unit when the row has none: the city unit for a city step of
        a devolved matter, else the case's own unit."""
        rules = self.rules.step_versions().select(
            "matter_code",
            "step_no",
            "effective_from",
            "level",
            "step_unit",
            pl.col("limit_days").alias("rule_limit"),
            pl.col("limit_kind").alias("rule_kind"),
            *_THRESHOLDS,
        )
        joined = steps.join(
            cases.select(
                "case_id",
                "matter_code",
                "region_code",
                "accepted_at",
                pl.col("unit_code").alias("case_unit"),
                pl.lit(True).alias("case_found"),
            ),
            on="case_id",
            how="left",
        )
        joined = RuleBook.in_force(joined, rules, on="started_at", by=["matter_code", "step_no"]).with_columns(
            clock_limit=pl.coalesce("limit_days", "rule_limit"),
            clock_kind=pl.coalesce("rule_kind", pl.lit("workday")),
            owner=pl.coalesce("unit_code", "step_unit", "case_unit"),
            duplicate=~pl.struct("case_id", "step_no").is_first_distinct(),
        )
        key = ROW_KEYS["steps"]
        checks = (
            (
                pl.col("case_found").is_null(),
                pl.format("no case '{}' among the cases", pl.col("case_id").fill_null("")),
            ),
            (pl.col("step_no").is_null(), pl.lit("step_no missing")),
            (pl.col("duplicate"), pl.lit("duplicate step (the first row is kept)")),
            *_date_checks("started_at", required=True),
            *_date_checks("ended_at"),
            (
                pl.col("ended_at") < pl.col("started_at"),
                pl.format("ended_at {} is before started_at {}", "ended_at", "started_at"),
            ),
            (
                pl.col("clock_limit").is_null(),
                pl.format(
                    "no limit for step {} of matter '{}' and no limit_days",
                    "step_no",
                    pl.col("matter_code").fill_null(""),
                ),
            ),
            *_limit_checks("clock_limit"),
        )
        steps = self._split(joined, "steps", key, pl.col("case_id"), checks)
        clocks = steps.select(
            self._clock_columns(
                "step",
                pl.format("step:{}:{}", "case_id", "step_no"),
                subject="case_id",
                start="started_at",
                end="ended_at",
                unit="owner",
            )
        )
        # A suspension pauses every step whose running period (started_at, ended_at] overlaps it, (S, E]: S before
        # the step's end and E (none: open) after its start, even when the step started after S. A restart kind
        # restarts only the step still running at E; a step that ended before E keeps it as a plain pause.
        pauses = (
            suspensions.select("case_id", pl.col("started_at").alias("pause_start"), "ended_at", "restart")
            .join(steps.select("case_id", "step_no", "started_at", pl.col("ended_at").alias("step_end")), on="case_id")
            .filter(
                (pl.col("step_end").is_null() | (pl.col("pause_start") < pl.col("step_end")))
                & (pl.col("ended_at").is_null() | (pl.col("ended_at") > pl.col("started_at")))
            )
            .select(
                pl.format("step:{}:{}", "case_id", "step_no").alias("clock_id"),
                pl.col("pause_start").alias("start_date"),
                pl.col("ended_at").alias("end_date"),
                pl.col("restart") & ~(pl.col("step_end") < pl.col("ended_at")).fill_null(False),
            )
        )
        return _clock_frame(clocks), _pause_frame(pauses)

    # -- projects ----------------------------------------------------------------------------------------------

    def project_clocks(self, projects: pl.DataFrame, cases: pl.DataFrame) -> tuple[pl.DataFrame, None]:
        """工程建设项目: from the first acceptance among its cases to the last completion, counting only the days on
        which at least one of them is open and not suspended (parallel approvals are not counted twice). The
        member cases are kept (`self.members`): the pauses, and what is known at a date, are made from them."""
        member_cases = cases.filter(pl.col("project_code").is_not_null()).select(
            "case_id", "project_code", "accepted_at", "completed_at"
        )
        span = member_cases.group_by("project_code").agg(
            start_date=pl.col("accepted_at").min(),
            completed_date=pl.when(pl.col("completed_at").null_count() == 0).then(pl.col("completed_at").max()),
        )
        categories = self.rules.category_versions().select(
            "category",
            "effective_from",
            pl.col("limit_days").alias("rule_limit"),
            pl.col("limit_kind").alias("rule_kind"),
            *_THRESHOLDS,
        )
        joined = projects.join(span, on="project_code", how="inner")  # a project without cases has nothing to count
        joined = RuleBook.in_force(joined, categories, on="start_date", by="category").with_columns(
            known_category=pl.col("category").is_in(categories["category"].implode()),
            duplicate=~pl.col("project_code").is_first_distinct(),
        )
        checks = (
            (pl.col("duplicate"), pl.lit("duplicate project_code (the first row is kept)")),
            (pl.col("lead_unit_code").is_null(), pl.lit("lead_unit_code missing")),
            (~pl.col("known_category"), pl.format("unknown project category '{}'", pl.col("category").fill_null(""))),
            (
                pl.col("rule_limit").is_null(),
                pl.format(
                    "no rule for project category '{}' in force on {}", pl.col("category").fill_null(""), "start_date"
                ),
            ),
        )
        projects = self._split(joined, "projects", ROW_KEYS["projects"], pl.lit(None, pl.String), checks)
        clocks = projects.select(
            self._clock_columns(
                "project",
                pl.format("project:{}", "project_code"),
                subject="project_code",
                start="start_date",
                end="completed_date",
                limit="rule_limit",
                kind="rule_kind",
                unit="lead_unit_code",
                case=None,
                matter=None,
            )
        )
        self.members = member_cases.filter(pl.col("project_code").is_in(projects["project_code"].implode())).select(
            *MEMBER_COLUMNS
        )
        return _clock_frame(clocks), None

    # -- deferrals and claims -----------------------------------------------------------------------------------

    def deferral_clocks(self, deferrals: pl.DataFrame, cases: pl.DataFrame) -> tuple[pl.DataFrame, None]:
        """容缺后补: the applicant supplies the missing materials by a fixed due_date (a calendar deadline, moved to the
        next working day when it is not one), within due_days working days, or else within the rule's limit."""
        rule = self.rules.deferral_versions().select(
            "effective_from",
            pl.col("limit_days").alias("rule_limit"),
            pl.col("limit_kind").alias("rule_kind"),
            *_THRESHOLDS,
        )
        joined = deferrals.join(
            cases.select(
                "case_id", "accepted_at", "unit_code", "matter_code", "region_code", pl.lit(True).alias("found")
            ),
            on="case_id",
            how="left",
        )
        joined = RuleBook.in_force(joined, rule, on="accepted_at").with_columns(
            clock_limit=pl.when(pl.col("due_date").is_not_null())
            .then((pl.col("due_date") - pl.col("accepted_at")).dt.total_days().cast(pl.Int32))
            .otherwise(pl.coalesce("due_days", "rule_limit")),
            clock_kind=pl.when(pl.col("due_date").is_not_null())
            .then(pl.lit("calendar"))
            .when(pl.col("due_days").is_not_null())
            .then(pl.lit("workday"))
            .otherwise(pl.col("rule_kind")),
            duplicate=~pl.col("case_id").is_first_distinct(),
        )
        checks = (
            (pl.col("found").is_null(), pl.format("no case '{}' among the cases", pl.col("case_id").fill_null(""))),
            (pl.col("duplicate"), pl.lit("duplicate deferral (the first row is kept)")),
            *_date_checks("due_date"),
            *_date_checks("supplied_at"),
            (
                pl.col("due_date") < pl.col("accepted_at"),
                pl.format("due_date {} is before the case was accepted on {}", "due_date", "accepted_at"),
            ),
            (
                pl.col("supplied_at") < pl.col("accepted_at"),
                pl.format("supplied_at {} is before the case was accepted on {}", "supplied_at", "accepted_at"),
            ),
            (pl.col("clock_limit").is_null(), pl.format("no deferral rule in force on {}", "accepted_at")),
            *_limit_checks("clock_limit"),
        )
        deferrals = self._split(joined, "deferrals", ROW_KEYS["deferrals"], pl.col("case_id"), checks)
        clocks = deferrals.select(
            self._clock_columns(
                "deferral",
                pl.format("deferral:{}", "case_id"),
                subject="case_id",
                start="accepted_at",
                end="supplied_at",
            )
        )
        return _clock_frame(clocks), None

    def claim_clocks(self, pushes: pl.DataFrame, cases: pl.DataFrame) -> tuple[pl.DataFrame, None]:
        """审管互动: the supervising department claims (认领) a pushed approval result within the claim rule's limit."""
        rule = self.rules.claim_versions().select(
            "effective_from",
            pl.col("limit_days").alias("rule_limit"),
            pl.col("limit_kind").alias("rule_kind"),
            *_THRESHOLDS,
        )
        joined = pushes.join(cases.select("case_id", "matter_code", "region_code"), on="case_id", how="left")
        joined = RuleBook.in_force(joined, rule, on="pushed_at").with_columns(
            duplicate=~pl.col("push_id").is_first_distinct(),
        )
        checks = (
            (pl.col("push_id").is_null(), pl.lit("push_id missing")),
            (pl.col("duplicate"), pl.lit("duplicate push_id (the first row is kept)")),
            (pl.col("supervisor_unit_code").is_null(), pl.lit("supervisor_unit_code missing")),
            *_date_checks("pushed_at", required=True),
            *_date_checks("claimed_at"),
            (
                pl.col("claimed_at") < pl.col("pushed_at"),
                pl.format("claimed_at {} is before pushed_at {}", "claimed_at", "pushed_at"),
            ),
            (pl.col("rule_limit").is_null(), pl.format("no claim rule in force on {}", "pushed_at")),
        )
        pushes = self._split(joined, "pushes", ROW_KEYS["pushes"], pl.col("case_id"), checks)
        clocks = pushes.select(
            self._clock_columns(
                "claim",
                pl.format("claim:{}", "push_id"),
                subject="push_id",
                start="pushed_at",
                end="claimed_at",
                limit="rule_limit",
                kind="rule_kind",
                unit="supervisor_unit_code",
            )
        )
        return _clock_frame(clocks), None

    # -- helpers ------------------------------------------------------------------------------------------------

    def _clock_columns(
        self,
        clock_type: str,
        clock_id: pl.Expr,
        *,
        subject: str,
        start: str,
        end: str,
        limit: str = "clock_limit",
        kind: str = "clock_kind",
        unit: str = "unit_code",
        case: str | None = "case_id",
        matter: str | None = "matter_code",
    ) -> list[pl.Expr]:
        """The engine's clock columns (tasks.clocks.engine.CLOCK_COLUMNS) from one builder's frame: every kind of clock
        is laid out here, and differs only in which of its columns play each part."""

        def column_or_null(name: str | None) -> pl.Expr:
            return pl.col(name) if name else pl.lit(None, pl.String)

        return [
            clock_id.alias("clock_id"),
            pl.lit(clock_type).alias("clock_type"),
            pl.col(subject).alias("subject_id"),
            column_or_null(case).alias("case_id"),
            pl.col(unit).alias("unit_code"),
            column_or_null(matter).alias("matter_code"),
            pl.col("region_code"),
            pl.col(start).alias("start_date"),
            pl.col(limit).alias("limit_days"),
            pl.col(kind).alias("limit_kind"),
            pl.col(end).alias("completed_date"),
            *self._thresholds(limit),
        ]

    def _thresholds(self, limit: str) -> list[pl.Expr]:
        """The rule's own thresholds (columns of the joined rule version) or the defaults."""
        defaults = self.rules.defaults
        return [
            pl.coalesce("warning_days", defaults.warning_days_expr(pl.col(limit))).alias("warning_days"),
            pl.coalesce("escalate_after", pl.lit(defaults.escalate_after)).cast(pl.Int32).alias("escalate_after"),
            pl.coalesce("repeat_every", pl.lit(defaults.repeat_every)).cast(pl.Int32).alias("repeat_every"),
        ]


_THRESHOLDS = ("warning_days", "escalate_after", "repeat_every")


def _project_gaps(member_cases: pl.DataFrame, suspensions: pl.DataFrame) -> pl.DataFrame:
    """Pauses of project clocks: the days on which none of the project's cases is open and unsuspended.

    Each case is active on (accepted_at, completed_at] less its merged suspensions; a missing end is FAR_FUTURE.
    Activity changes only at interval ends: +1 where a case's active stretch begins after that day, -1 where it
    ends. Summed per project and day in date order, a running total of 0 opens a gap that the next day with a change
    closes; a gap closed only by FAR_FUTURE is open (end_date null). The gap after the last completion is not a pause:
    the project clock is complete then.
    """
    if member_cases.is_empty():
        return _empty(PAUSE_COLUMNS)
    pauses = (
        suspensions.join(member_cases.select("case_id", "project_code"), on="case_id")
        .select(
            "case_id",
            "project_code",
            pl.col("started_at").alias("start"),
            pl.col("ended_at").fill_null(FAR_FUTURE).alias("end"),
        )
        .sort("case_id", "start")
    )
    # Merge each case's overlapping suspensions: a new stretch begins where a start passes every earlier end.
    merged = (
        pauses.with_columns(previous_end=pl.col("end").cum_max().shift(1).over("case_id"))
        .with_columns(
            stretch=(pl.col("previous_end").is_null() | (pl.col("start") > pl.col("previous_end")))
            .cum_sum()
            .over("case_id")
        )
        .group_by("case_id", "project_code", "stretch")
        .agg(pl.col("start").min(), pl.col("end").max())
    )
    changes = pl.concat(
        [
            member_cases.select("project_code", pl.col("accepted_at").alias("day"), pl.lit(1).alias("change")),
            member_cases.select(
                "project_code", pl.col("completed_at").fill_null(FAR_FUTURE).alias("day"), pl.lit(-1).alias("change")
            ),
            merged.select("project_code", pl.col("start").alias("day"), pl.lit(-1).alias("change")),
            merged.select("project_code", pl.col("end").alias("day"), pl.lit(1).alias("change")),
        ]
    )
    totals = (
        changes.group_by("project_code", "day")
        .agg(pl.col("change").sum())
        .sort("project_code", "day")
        .with_columns(
            active=pl.col("change").cum_sum().over("project_code"),
            next_day=pl.col("day").shift(-1).over("project_code"),
        )
    )
    gaps = totals.filter((pl.col("active") == 0) & pl.col("next_day").is_not_null() & (pl.col("day") < FAR_FUTURE))
    return _pause_frame(
        gaps.select(
            pl.format("project:{}", "project_code").alias("clock_id"),
            pl.col("day").alias("start_date"),
            pl.when(pl.col("next_day") < FAR_FUTURE).then(pl.col("next_day")).alias("end_date"),
            pl.lit(False).alias("restart"),
        )
    )


def _extended(clocks: pl.DataFrame, extensions: pl.DataFrame, calendar: WorkCalendar) -> pl.DataFrame:
    """Case clocks with the days of their extensions added to the limit."""
    rows = rows_of(clocks["clock_id"], extensions.select(pl.format("case:{}", "case_id")).to_series())
    found = rows >= 0
    rows = rows[found]
    if len(rows) == 0:
        return clocks
    added = extension_days(clocks["limit_kind"].gather(rows), extensions.filter(pl.Series(found)), calendar)
    limits = clocks["limit_days"].to_numpy().copy()
    np.add.at(limits, rows, np.array(added, dtype=limits.dtype))
    return clocks.with_columns(limit_days=pl.Series(limits, dtype=pl.Int32))


def extension_days(clock_kinds: pl.Series, extensions: pl.DataFrame, calendar: WorkCalendar) -> list[int]:
    """The days each extension adds to its clock's limit (EXTENSION_COLUMNS rows, with the kind of their clocks). An
    extension counted in the other kind of days than its clock is converted from the day it is granted, g: k
    calendar days add the working days in (g, g + k] to a working-day clock; k working days add the calendar days
    from g to the k-th working day after it to a calendar-day clock."""
    added = []
    for clock_kind, granted, days, kind in zip(
        clock_kinds, extensions["started_at"], extensions["limit_days"], extensions["extension_kind"], strict=True
    ):
        if kind == clock_kind:
            added.append(days)
        elif kind == "calendar":
            added.append(calendar.workdays_between(granted, min(calendar.last_date, granted + timedelta(days=days))))
        else:
            added.append((calendar.add_workdays(granted, days) - granted).days)
    return added


def _first_reason(*checks: tuple[pl.Expr, pl.Expr]) -> pl.Expr:
    """The reason of the first check that holds (null conditions do not hold), or null."""
    expression = pl.lit(None, pl.String)
    for condition, reason in reversed(checks):
        expression = pl.when(condition.fill_null(False)).then(reason).otherwise(expression)
    return expression


def _date_checks(column: str, *, required: bool = False) -> list[tuple[pl.Expr, pl.Expr]]:
    checks = [
        (
            ~pl.col(column).is_between(CALENDAR_FIRST_DATE, LATEST_INPUT_DATE),
            pl.format(f"{column} {{}} outside {CALENDAR_FIRST_DATE}..{LATEST_INPUT_DATE}", column),
        )
    ]
    if required:
        checks.insert(0, (pl.col(column).is_null(), pl.lit(f"{column} missing")))
    return checks


def _limit_checks(column: str) -> list[tuple[pl.Expr, pl.Expr]]:
    return [
        (
            ~pl.col(column).is_between(0, MAX_LIMIT_DAYS),
            pl.format(f"limit {{}} outside 0..{MAX_LIMIT_DAYS} days", column),
        )
    ]


def input_columns(table: str) -> dict[str, pl.DataType]:
    """The columns the builder reads of a canonical table: those declared with clock=True (config/canonical.py)."""
    return {column.name: column.dtype for column in CANONICAL_COLUMNS[table] if column.clock}


def _input(frame: pl.DataFrame | None, columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """The columns the builder reads, in canonical dtypes; an absent column or table is all null."""
    if frame is None:
        return _empty(columns)
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in columns.items()
    )


def _empty(columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(columns))


def _clock_frame(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.col(name).cast(dtype) for name, dtype in CLOCK_COLUMNS.items())


def _pause_frame(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.col(name).cast(dtype) for name, dtype in PAUSE_COLUMNS.items())
