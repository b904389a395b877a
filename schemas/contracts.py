"""Data contracts (pandera, polars backend): one DataFrameModel per canonical table, and the row checks around them.

A contract is checked on a canonical frame: every canonical column present and already parsed (tasks.ingest.parsing),
with `row` positions referring back to the frame. `violations(table, frame)` returns one row per broken rule
(row, reason); a row with any reason is rejected, the others are accepted.
Checks that need more than one row live beside the models:
- duplicate keys within one load (`duplicate_violations`): the newest by `updated_at` is kept (cases; the other
  tables have no `updated_at`, so the last line of the load wins), every other copy is rejected "duplicate of line N";
- a pause within its case's life (`pause_violations`): checked against the cases of the same load, then those already
  stored. A suspension of a case seen in neither is accepted unchecked (the case may arrive in a later export) and the
  clock builder ignores it until then.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandera.polars as pa
import polars as pl
from pandera.api.polars.model_config import BaseConfig
from pandera.errors import SchemaErrors
from sqlalchemy import String

from config.sources import CANONICAL_COLUMNS
from schemas import tables
from tasks.ingest.parsing import message

REGION_CODE = r"^\d{6}$"
# National fixed-assets investment project code (全国投资项目在线审批监管平台 项目代码, GB/T 40058-2021):
# time code - region code - department code - project type - random code, e.g. 2301-360702-04-01-123456.
# The time code is the year (YYYY) on codes issued before GB/T 40058-2021 and year+month (YYMM) since.
PROJECT_CODE = r"^(?:(?:19|20)\d{2}|\d{2}(?:0[1-9]|1[0-2]))-\d{6}-\d{2}-\d{2}-\d{6}$"
LIMIT_KINDS = ("workday", "calendar")
# Every spelling of 时限类型 (limit kind) accepted on input, nightly load and `evaluate` alike, to its canonical kind.
LIMIT_KIND_SPELLINGS = {
    "工作日": "workday",
    "workday": "workday",
    "working day": "workday",
    "自然日": "calendar",
    "日历日": "calendar",
    "calendar": "calendar",
    "calendar day": "calendar",
}
# Units a platform may give (中间库 PROMISETIMEUNIT 3, 4, 5) that no clock counts in: rejected with a reason, never
# converted by guess.
UNSUPPORTED_LIMIT_UNITS = {"hours": "小时", "minutes": "分钟", "months": "月"}
MAX_LIMIT_DAYS = 3650

VIOLATION_SCHEMA = {"row": pl.UInt32, "column": pl.String, "reason": pl.String}
# Messages for pandera's built-in checks, which carry code-like names.
_BUILTIN_MESSAGES = {"not_nullable": "missing", "dtype": "wrong type"}
_DTYPES: dict[str, pl.DataType] = {
    "text": pl.String(),
    "code": pl.String(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
    "integer": pl.Int32(),
}


def _matches(data: pa.PolarsData, pattern: str) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).str.contains(pattern))


def _within(data: pa.PolarsData, low: int, high: int) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).is_between(low, high))


def _not_before(data: pa.PolarsData, later: str, earlier: str) -> pl.LazyFrame:
    return data.lazyframe.select(
        pl.col(later).is_null() | pl.col(earlier).is_null() | (pl.col(later) >= pl.col(earlier))
    )


class _Contract(pa.DataFrameModel):
    class Config(BaseConfig):
        strict = True
        coerce = False


class CaseContract(_Contract):
    """办件."""

    case_id: str = pa.Field(nullable=False)
    matter_code: str = pa.Field(nullable=False)
    matter_name: str = pa.Field(nullable=True)
    unit_code: str = pa.Field(nullable=False)
    unit_name: str = pa.Field(nullable=True)
    region_code: str = pa.Field(nullable=True)
    project_code: str = pa.Field(nullable=True)
    accepted_at: pl.Date = pa.Field(nullable=False)
    completed_at: pl.Date = pa.Field(nullable=True)
    limit_days: pl.Int32 = pa.Field(nullable=True)
    limit_kind: str = pa.Field(nullable=True)
    status: str = pa.Field(nullable=True)
    updated_at: pl.Datetime = pa.Field(nullable=True)
    applicant_name: str = pa.Field(nullable=True)
    applicant_phone: str = pa.Field(nullable=True)
    platform_due_date: pl.Date = pa.Field(nullable=True)

    @pa.check("region_code", name="not a 6-digit region code")
    @classmethod
    def region_code_format(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _matches(data, REGION_CODE)

    @pa.check("project_code", name="not a national project code (e.g. 2301-360702-04-01-123456)")
    @classmethod
    def project_code_format(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _matches(data, PROJECT_CODE)

    @pa.check("limit_days", name=f"not within 0..{MAX_LIMIT_DAYS}")
    @classmethod
    def limit_in_range(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _within(data, 0, MAX_LIMIT_DAYS)

    @pa.check("limit_kind", name="not 工作日/workday or 自然日/calendar")
    @classmethod
    def limit_kind_known(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_in(LIMIT_KINDS))

    @pa.dataframe_check(name="completed_at is before accepted_at")
    @classmethod
    def completion_after_acceptance(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _not_before(data, "completed_at", "accepted_at")


class StepContract(_Contract):
    """环节."""

    case_id: str = pa.Field(nullable=False)
    step_no: pl.Int32 = pa.Field(nullable=False)
    step_name: str = pa.Field(nullable=True)
    unit_code: str = pa.Field(nullable=False)
    started_at: pl.Date = pa.Field(nullable=False)
    ended_at: pl.Date = pa.Field(nullable=True)
    limit_days: pl.Int32 = pa.Field(nullable=True)

    @pa.check("step_no", name="not within 1..99")
    @classmethod
    def step_no_in_range(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _within(data, 1, 99)

    @pa.check("limit_days", name=f"not within 0..{MAX_LIMIT_DAYS}")
    @classmethod
    def limit_in_range(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _within(data, 0, MAX_LIMIT_DAYS)

    @pa.dataframe_check(name="ended_at is before started_at")
    @classmethod
    def end_after_start(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _not_before(data, "ended_at", "started_at")


class SuspensionContract(_Contract):
    """特别程序."""

    case_id: str = pa.Field(nullable=False)
    kind: str = pa.Field(nullable=False)
    started_at: pl.Date = pa.Field(nullable=False)
    ended_at: pl.Date = pa.Field(nullable=True)
    limit_days: pl.Int32 = pa.Field(nullable=True)
    reason: str = pa.Field(nullable=True)

    @pa.check("limit_days", name=f"not within 0..{MAX_LIMIT_DAYS}")
    @classmethod
    def limit_in_range(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _within(data, 0, MAX_LIMIT_DAYS)

    @pa.dataframe_check(name="ended_at is before started_at")
    @classmethod
    def end_after_start(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _not_before(data, "ended_at", "started_at")


class ProjectContract(_Contract):
    """工程建设项目."""

    project_code: str = pa.Field(nullable=False)
    project_name: str = pa.Field(nullable=True)
    category: str = pa.Field(nullable=False)
    region_code: str = pa.Field(nullable=True)
    lead_unit_code: str = pa.Field(nullable=False)

    @pa.check("project_code", name="not a national project code (e.g. 2301-360702-04-01-123456)")
    @classmethod
    def project_code_format(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _matches(data, PROJECT_CODE)

    @pa.check("region_code", name="not a 6-digit region code")
    @classmethod
    def region_code_format(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _matches(data, REGION_CODE)


class DeferralContract(_Contract):
    """容缺后补."""

    case_id: str = pa.Field(nullable=False)
    due_days: pl.Int32 = pa.Field(nullable=True)
    due_date: pl.Date = pa.Field(nullable=True)
    supplied_at: pl.Date = pa.Field(nullable=True)

    @pa.check("due_days", name=f"not within 0..{MAX_LIMIT_DAYS}")
    @classmethod
    def due_days_in_range(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _within(data, 0, MAX_LIMIT_DAYS)


class PushContract(_Contract):
    """审管互动."""

    push_id: str = pa.Field(nullable=False)
    case_id: str = pa.Field(nullable=False)
    supervisor_unit_code: str = pa.Field(nullable=False)
    pushed_at: pl.Date = pa.Field(nullable=False)
    claimed_at: pl.Date = pa.Field(nullable=True)

    @pa.dataframe_check(name="claimed_at is before pushed_at")
    @classmethod
    def claim_after_push(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _not_before(data, "claimed_at", "pushed_at")


CONTRACTS: dict[str, type[_Contract]] = {
    "cases": CaseContract,
    "steps": StepContract,
    "suspensions": SuspensionContract,
    "projects": ProjectContract,
    "deferrals": DeferralContract,
    "pushes": PushContract,
}

MODELS: dict[str, type[tables.Base]] = {
    "cases": tables.Case,
    "steps": tables.Step,
    "suspensions": tables.Suspension,
    "projects": tables.Project,
    "deferrals": tables.Deferral,
    "pushes": tables.Push,
}


def key_columns(table: str) -> list[str]:
    """The table's primary key (schemas/tables.py): the identity of a row across loads."""
    return [column.name for column in MODELS[table].__table__.primary_key.columns]


def canonical_schema(table: str) -> dict[str, pl.DataType]:
    """Column → polars dtype of the canonical frame (names and kinds from config.sources.CANONICAL_COLUMNS)."""
    return {column.name: _DTYPES[column.kind] for column in CANONICAL_COLUMNS[table]}


def empty_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=canonical_schema(table))


def violations(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Every broken contract rule of `frame` (canonical columns only): row (0-based position), column (null for a
    rule over several columns), reason."""
    parts = [_pandera_violations(table, frame), _length_violations(table, frame)]
    return pl.concat(parts).sort("row", maintain_order=True)


def _pandera_violations(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    try:
        CONTRACTS[table].validate(frame, lazy=True)
    except SchemaErrors as errors:
        failures = errors.failure_cases
    else:
        return pl.DataFrame(schema=VIOLATION_SCHEMA)
    whole_column = failures.filter(pl.col("index").is_null())
    if whole_column.height:
        # A column-level failure (a wrong dtype, a missing column) is a bug upstream of the contract, not bad data.
        problems = "; ".join(
            f"{c}: {k} {v}" for c, k, v in whole_column.select("column", "check", "failure_case").rows()
        )
        raise ValueError(f"{table}: frame does not fit the contract: {problems}")
    # pandera's failure cases are pieces of the checked frame, empty chunks included: both wordings are built over
    # whole columns first (see tasks.ingest.parsing.message), then the condition only picks one.
    check = pl.col("check").replace(_BUILTIN_MESSAGES)
    worded = failures.with_columns(
        message(pl.col("column"), ": ", check).alias("__bare"),
        message(pl.col("column"), ": ", check, " '", pl.col("failure_case").fill_null(""), "'").alias("__quoted"),
    )
    reason = (
        pl.when(pl.col("schema_context") == "DataFrameSchema")
        .then(pl.col("check"))
        .when(pl.col("check") == "not_nullable")
        .then(pl.col("__bare"))
        .otherwise(pl.col("__quoted"))
    )
    column = pl.when(pl.col("schema_context") == "Column").then(pl.col("column"))
    return (
        worded.select(pl.col("index").cast(pl.UInt32).alias("row"), column.alias("column"), reason.alias("reason"))
        .unique(maintain_order=True)
        .cast(VIOLATION_SCHEMA)
    )


def _length_violations(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Text longer than its database column (a PostgreSQL VARCHAR would refuse the whole batch)."""
    parts = []
    for column in MODELS[table].__table__.columns:
        if isinstance(column.type, String) and column.type.length and column.name in frame.columns:
            too_long = pl.col(column.name).str.len_chars() > column.type.length
            parts.append(
                frame.lazy()
                .with_row_index("row")
                .filter(too_long)
                .select(
                    "row",
                    pl.lit(column.name).alias("column"),
                    pl.lit(f"{column.name}: longer than {column.type.length} characters").alias("reason"),
                )
            )
    if not parts:
        return pl.DataFrame(schema=VIOLATION_SCHEMA)
    return pl.concat(parts).collect().cast(VIOLATION_SCHEMA)


def duplicate_violations(
    table: str,
    frame: pl.DataFrame,
    lines: pl.Series,
    files: pl.Series | None = None,
    file_names: Sequence[str] = (),
) -> pl.DataFrame:
    """Rows whose key repeats within one load: all but the newest copy are rejected "duplicate of line N".

    Newest means the latest `updated_at` (when the table has it, null counting as oldest), then the last position in
    the load (file index in `files`, then physical line in `lines`). With `file_names` (a load of several files) the
    reason names the kept copy's file too: "duplicate of line 2 of b.csv". Rows with a null key are left to the
    contract.
    """
    keys = key_columns(table)
    timed = "updated_at" in frame.columns
    file_index = files if files is not None else pl.Series([0] * frame.height, dtype=pl.UInt32)
    staged = (
        frame.lazy()
        .select(*keys, *(["updated_at"] if timed else []))
        .with_columns(lines.alias("__line"), file_index.alias("__file"))
        .with_row_index("row")
        .filter(pl.all_horizontal(pl.col(key).is_not_null() for key in keys))
        .filter(pl.len().over(keys) > 1)
    )
    sort_by = ["updated_at", "__file", "__line"] if timed else ["__file", "__line"]
    newest = [
        pl.col(name).sort_by(sort_by, nulls_last=[False] * len(sort_by)).last().over(keys)
        for name in ("row", "__line", "__file")
    ]
    kept = staged.with_columns(
        newest[0].alias("__kept"), newest[1].alias("__kept_line"), newest[2].alias("__kept_file")
    ).filter(pl.col("row") != pl.col("__kept"))
    if file_names:
        kept_file = pl.col("__kept_file").replace_strict(
            list(range(len(file_names))), list(file_names), return_dtype=pl.String
        )
        label = message("duplicate of line ", pl.col("__kept_line"), " of ", kept_file)
    else:
        label = message("duplicate of line ", pl.col("__kept_line"))
    return (
        kept.select("row", pl.lit(None, pl.String).alias("column"), label.alias("reason"))
        .collect()
        .cast(VIOLATION_SCHEMA)
    )


def pause_violations(suspensions: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """Suspensions outside their case's life; `cases` holds case_id, accepted_at, completed_at."""
    reference = cases.select(
        "case_id", pl.col("accepted_at").alias("__accepted"), pl.col("completed_at").alias("__completed")
    )
    joined = (
        suspensions.lazy()
        .select("case_id", "started_at", "ended_at")
        .with_row_index("row")
        .join(reference.lazy().unique("case_id", keep="first"), on="case_id", how="inner")
    )
    started, ended = pl.col("started_at"), pl.col("ended_at")
    accepted, completed = pl.col("__accepted"), pl.col("__completed")
    rules = [
        (started < accepted, message("started_at ", started, " is before the case was accepted (", accepted, ")")),
        (started > completed, message("started_at ", started, " is after the case was completed (", completed, ")")),
        (ended > completed, message("ended_at ", ended, " is after the case was completed (", completed, ")")),
    ]
    parts = [
        joined.filter(broken.fill_null(False)).select(
            "row", pl.lit(None, pl.String).alias("column"), message.alias("reason")
        )
        for broken, message in rules
    ]
    return pl.concat(parts).collect().cast(VIOLATION_SCHEMA)
