"""Deadline rules (时限规则) in config/rules.yaml: matters, project categories, suspension kinds, deferral, claim.

Every limit is versioned by `effective_from`; a clock uses the version in force on its start date (the newest version
whose effective_from is on or before that date). The builders look versions up for whole frames at once with
`RuleBook.in_force`, a polars join_asof (strategy backward), never row by row.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.aliases import alias_table
from config.loader import load_model

RULES_FILE = "rules.yaml"

LimitKind = Literal["workday", "calendar"]  # 工作日 | 自然日
# pause: (S, E] is not counted; restart: counting starts over at E with the full limit; extend (延期, 行政许可法
# 第四十二条): the row's limit_days are added to the case clock's limit from the day it is granted (started_at).
Effect = Literal["pause", "restart", "extend"]
# 市县同权 modes: 直接下放, 下放实质性审核权, 服务窗口前移, and city matters that were not devolved.
Mode = Literal["county_end_to_end", "county_review_city_approve", "county_forward_city_handle", "city"]
StepLevel = Literal["county", "city"]

# 补正 restarts the limit unless configured otherwise; every other unconfigured kind pauses it.
DEFAULT_RESTART_KINDS = frozenset({"补正"})

# Columns every versioned rule table carries (see RuleBook.*_versions).
THRESHOLD_COLUMNS = ("warning_days", "escalate_after", "repeat_every")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """Per-rule overrides of the defaults; None means "use the default"."""

    warning_days: int | None = Field(default=None, ge=0)
    escalate_after: int | None = Field(default=None, ge=0)
    repeat_every: int | None = Field(default=None, ge=1)


class Defaults(_Strict):
    warning_fraction: float = Field(default=0.2, gt=0, le=1)  # warning when remaining <= max(1, ceil(f * N))
    escalate_after: int = Field(default=5, ge=0)  # 督办 after this many working days overdue
    repeat_every: int = Field(default=3, ge=1)  # an overdue clock is reminded every this many working days

    @property
    def warning_ratio(self) -> Fraction:
        # Exact: 0.2 * 35 is 7.000000000000001 in floating point, and ceil would make it 8.
        return Fraction(str(self.warning_fraction))

    def warning_days(self, limit: int) -> int:
        ratio = self.warning_ratio
        return max(1, -(-limit * ratio.numerator // ratio.denominator))

    def warning_days_expr(self, limit: pl.Expr) -> pl.Expr:
        """max(1, ceil(f * N)) in integer arithmetic, for a column of limits."""
        ratio = self.warning_ratio
        ceiling = -((-limit.cast(pl.Int64) * ratio.numerator) // ratio.denominator)
        return pl.max_horizontal(pl.lit(1, pl.Int64), ceiling).cast(pl.Int32)


class LimitRule(Thresholds):
    """A plain versioned limit: 容缺后补 (deferral) and 审管互动认领 (claim)."""

    limit: int = Field(ge=0)
    limit_kind: LimitKind = "workday"
    effective_from: date


class SuspensionKind(Thresholds):
    """特别程序: whether it pauses, restarts or extends (延期) the case clock, and its own limit when it has one. An
    extension's limit_kind says in which days its rows' limit_days are counted."""

    kind: str = Field(min_length=1)
    effect: Effect = "pause"
    limit: int | None = Field(default=None, ge=0)
    limit_kind: LimitKind = "workday"

    @model_validator(mode="after")
    def _extension_has_no_limit(self) -> SuspensionKind:
        # An extension is not a procedure with a deadline of its own: its days are on each granted row.
        if self.effect == "extend" and self.limit is not None:
            raise ValueError(f"kind '{self.kind}' extends the limit by each row's limit_days: it takes no limit")
        return self


class ProjectCategory(Thresholds):
    """工程建设项目 category: the total limit counted over the union of its cases' open, unpaused days."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    limit: int = Field(ge=0)
    limit_kind: LimitKind = "workday"
    effective_from: date


class MatterStep(Thresholds):
    """环节 of a matter: who handles it (county or city) and its own limit."""

    step_no: int = Field(ge=1)
    name: str = Field(min_length=1)
    level: StepLevel
    unit: str | None = None  # the city unit for city-level steps; None = the case's own unit
    limit: int = Field(ge=0)
    limit_kind: LimitKind | None = None  # None = the matter's limit_kind


class Matter(Thresholds):
    """事项: its 市县同权 mode, total limit and steps, in force from effective_from."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    mode: Mode
    limit: int = Field(ge=0)
    limit_kind: LimitKind = "workday"
    effective_from: date
    steps: tuple[MatterStep, ...] = ()
    # Other codes a platform uses for this matter: the 31–33 character 实施编码, a provincial item number, a name.
    aliases: tuple[str, ...] = ()

    @field_validator("steps")
    @classmethod
    def _steps_numbered(cls, steps: tuple[MatterStep, ...]) -> tuple[MatterStep, ...]:
        numbers = [step.step_no for step in steps]
        if numbers != sorted(set(numbers)):
            raise ValueError(f"step numbers must be ascending without repeats, got {numbers}")
        return steps

    @model_validator(mode="after")
    def _steps_follow_mode(self) -> Matter:
        levels = [step.level for step in self.steps]
        expected: dict[str, str] = {
            "county_end_to_end": "only county steps",
            "city": "only city steps",
            "county_review_city_approve": "county steps, then city steps",
            "county_forward_city_handle": "county steps, then city steps",
        }
        if self.mode == "county_end_to_end":
            valid = all(level == "county" for level in levels)
        elif self.mode == "city":
            valid = all(level == "city" for level in levels)
        else:
            valid = levels == sorted(levels, key=lambda level: level == "city") and set(levels) == {"county", "city"}
        if self.steps and not valid:
            raise ValueError(f"mode {self.mode} needs {expected[self.mode]}, got {levels}")
        return self


def _versions_unique(entries: list[Any], what: str) -> None:
    seen: set[tuple[str, date]] = set()
    for entry in entries:
        key = (entry.code, entry.effective_from)
        if key in seen:
            raise ValueError(f"{what} '{entry.code}' has two versions effective from {entry.effective_from}")
        seen.add(key)


class RuleBook(_Strict):
    defaults: Defaults = Defaults()
    deferral: tuple[LimitRule, ...]
    claim: tuple[LimitRule, ...]
    suspension_kinds: tuple[SuspensionKind, ...] = ()
    project_categories: tuple[ProjectCategory, ...] = ()
    matters: tuple[Matter, ...] = ()

    @field_validator("deferral", "claim", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        # A single mapping is the common case; a list holds several versions.
        return [value] if isinstance(value, dict) else value

    @field_validator("deferral", "claim")
    @classmethod
    def _distinct_dates(cls, versions: tuple[LimitRule, ...]) -> tuple[LimitRule, ...]:
        dates = [version.effective_from for version in versions]
        if len(set(dates)) != len(dates):
            raise ValueError(f"two versions share an effective_from: {sorted(d.isoformat() for d in dates)}")
        if not versions:
            raise ValueError("at least one version is required")
        return versions

    @field_validator("suspension_kinds")
    @classmethod
    def _kinds_unique(cls, kinds: tuple[SuspensionKind, ...]) -> tuple[SuspensionKind, ...]:
        names = [kind.kind for kind in kinds]
        for name, group in itertools.groupby(sorted(names)):
            if len(list(group)) > 1:
                raise ValueError(f"suspension kind '{name}' is listed twice")
        return kinds

    @field_validator("project_categories")
    @classmethod
    def _categories_unique(cls, categories: tuple[ProjectCategory, ...]) -> tuple[ProjectCategory, ...]:
        _versions_unique(list(categories), "project category")
        return categories

    @field_validator("matters")
    @classmethod
    def _matters_unique(cls, matters: tuple[Matter, ...]) -> tuple[Matter, ...]:
        _versions_unique(list(matters), "matter")
        _, problems = alias_table(((m.code, m.aliases) for m in matters), what="matter", where="matters")
        if problems:
            raise ValueError("; ".join(problems))
        return matters

    def matter_aliases(self) -> dict[str, str]:
        """Alias key (config.aliases.alias_key) → matter code, every version's aliases included."""
        return alias_table(((m.code, m.aliases) for m in self.matters), what="matter", where="matters")[0]

    # -- scalar look-ups (explain, tests) ------------------------------------------------------------------------

    def matter(self, code: str, on: date) -> Matter | None:
        """The version of matter `code` in force on `on`, or None."""
        candidates = [m for m in self.matters if m.code == code and m.effective_from <= on]
        return max(candidates, key=lambda m: m.effective_from, default=None)

    def suspension_effect(self, kind: str) -> Effect:
        for entry in self.suspension_kinds:
            if entry.kind == kind:
                return entry.effect
        return "restart" if kind in DEFAULT_RESTART_KINDS else "pause"

    # -- versioned tables for vectorised look-ups ----------------------------------------------------------------

    def matter_versions(self) -> pl.DataFrame:
        """matter_code, effective_from, matter_name, mode, limit_days, limit_kind, thresholds."""
        return _frame(
            [
                {
                    "matter_code": m.code,
                    "effective_from": m.effective_from,
                    "matter_name": m.name,
                    "mode": m.mode,
                    "limit_days": m.limit,
                    "limit_kind": m.limit_kind,
                    **_thresholds(m),
                }
                for m in self.matters
            ],
            {"matter_code": pl.String, "matter_name": pl.String, "mode": pl.String},
        )

    def step_versions(self) -> pl.DataFrame:
        """matter_code, effective_from, step_no, step_name, level, step_unit, limit_days, limit_kind, thresholds."""
        return _frame(
            [
                {
                    "matter_code": m.code,
                    "effective_from": m.effective_from,
                    "step_no": s.step_no,
                    "step_name": s.name,
                    "level": s.level,
                    "step_unit": s.unit,
                    "limit_days": s.limit,
                    "limit_kind": s.limit_kind or m.limit_kind,
                    **_thresholds(s, fallback=m),
                }
                for m in self.matters
                for s in m.steps
            ],
            {
                "matter_code": pl.String,
                "step_no": pl.Int32,
                "step_name": pl.String,
                "level": pl.String,
                "step_unit": pl.String,
            },
        )

    def category_versions(self) -> pl.DataFrame:
        """category, effective_from, category_name, limit_days, limit_kind, thresholds."""
        return _frame(
            [
                {
                    "category": c.code,
                    "effective_from": c.effective_from,
                    "category_name": c.name,
                    "limit_days": c.limit,
                    "limit_kind": c.limit_kind,
                    **_thresholds(c),
                }
                for c in self.project_categories
            ],
            {"category": pl.String, "category_name": pl.String},
        )

    def deferral_versions(self) -> pl.DataFrame:
        return _limit_frame(self.deferral)

    def claim_versions(self) -> pl.DataFrame:
        return _limit_frame(self.claim)

    def suspension_kind_table(self) -> pl.DataFrame:
        """kind, restart, extend, limit_days (nullable), limit_kind, thresholds: one row per configured kind."""
        return pl.DataFrame(
            [
                {
                    "kind": k.kind,
                    "restart": k.effect == "restart",
                    "extend": k.effect == "extend",
                    "limit_days": k.limit,
                    "limit_kind": k.limit_kind,
                    **_thresholds(k),
                }
                for k in self.suspension_kinds
            ],
            schema={
                "kind": pl.String,
                "restart": pl.Boolean,
                "extend": pl.Boolean,
                "limit_days": pl.Int32,
                "limit_kind": pl.String,
                **dict.fromkeys(THRESHOLD_COLUMNS, pl.Int32),
            },
        )

    @staticmethod
    def in_force(
        frame: pl.DataFrame, versions: pl.DataFrame, *, on: str, by: str | Sequence[str] | None = None
    ) -> pl.DataFrame:
        """`frame` with the columns of the version in force on each row's date `on` (matched on `by` when given):
        the newest version whose effective_from is on or before that date.

        Rows whose date is null, or earlier than every version of their key, get nulls; the order is kept, and the
        frame must not already have the versions' column names. The as-of join runs on the distinct (key, date) pairs
        (a few thousand, against a million rows), which each row then finds by an ordinary join.
        """
        keys = [by] if isinstance(by, str) else list(by or [])
        pairs = frame.select(*keys, on).unique().drop_nulls().sort(on)
        # Both sides are sorted here; polars cannot check that itself when `by` is given, and would warn.
        chosen = pairs.join_asof(
            versions.sort("effective_from"),
            left_on=on,
            right_on="effective_from",
            by=keys or None,
            strategy="backward",
            check_sortedness=False,
        )
        return frame.join(chosen, on=[*keys, on], how="left", maintain_order="left")


def _thresholds(entry: Thresholds, fallback: Thresholds | None = None) -> dict[str, int | None]:
    values = {}
    for column in THRESHOLD_COLUMNS:
        value = getattr(entry, column)
        if value is None and fallback is not None:
            value = getattr(fallback, column)
        values[column] = value
    return values


def _frame(rows: list[dict[str, Any]], text_columns: dict[str, Any]) -> pl.DataFrame:
    schema = {
        **text_columns,
        "effective_from": pl.Date,
        "limit_days": pl.Int32,
        "limit_kind": pl.String,
        **dict.fromkeys(THRESHOLD_COLUMNS, pl.Int32),
    }
    return pl.DataFrame(rows, schema=schema).sort("effective_from")


def _limit_frame(versions: tuple[LimitRule, ...]) -> pl.DataFrame:
    return _frame(
        [
            {"effective_from": v.effective_from, "limit_days": v.limit, "limit_kind": v.limit_kind, **_thresholds(v)}
            for v in versions
        ],
        {},
    )


def load_rules(config_dir: Path) -> RuleBook:
    """config/rules.yaml, checked: a bad entry fails here, naming the file, the entry and the field."""
    return load_model(config_dir / RULES_FILE, RuleBook)
