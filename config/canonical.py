"""The canonical tables (标准表): 办件 cases, 环节 steps, 特别程序 suspensions, 工程建设项目 projects,
容缺后补 deferrals, 审管互动 pushes. Each is declared here once, as a pandera DataFrameModel, and nowhere else.

A field states everything known of its column: the polars dtype (annotation), whether it is required (not nullable),
the row rules (pandera builtin checks with a readable `error`) and, in `metadata`, its value kind for parsing, the
Chinese export headers accepted without a mapping, its largest length, whether it is part of the key, indexed, held
by the clock builder, an applicant's personal data (PII) or a unit/matter code. Everything else is derived from
these models: the ingest columns (CANONICAL_COLUMNS), the contracts and length checks (schemas/contracts.py), the
SQLAlchemy tables (schemas/tables.py) and the clock builder's inputs (tasks/clocks/builders.py).

Adding a column is one field here plus an Alembic migration (README, "Sources and ingestion").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandera.polars as pa
import polars as pl
from pandera.api.polars.model_config import BaseConfig

# Value kinds understood by tasks.ingest.parsing.ColumnKind, and the polars dtype each parses to.
ValueKind = Literal["text", "code", "date", "datetime", "integer"]
DTYPES: dict[str, pl.DataType] = {
    "text": pl.String(),
    "code": pl.String(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
    "integer": pl.Int32(),
}
CodeKind = Literal["unit", "matter"]

REGION_CODE = r"^\d{6}$"
# National fixed-assets investment project code (全国投资项目在线审批监管平台 项目代码, GB/T 40058-2021):
# time code - region code - department code - project type - random code, e.g. 2301-360702-04-01-123456.
# The time code is the year (YYYY) on codes issued before GB/T 40058-2021 and year+month (YYMM) since.
PROJECT_CODE = r"^(?:(?:19|20)\d{2}|\d{2}(?:0[1-9]|1[0-2]))-\d{6}-\d{2}-\d{2}-\d{6}$"
LIMIT_KINDS = ("workday", "calendar")
MAX_LIMIT_DAYS = 3650


# The reason of a text longer than its column (a PostgreSQL VARCHAR would refuse the whole batch).
TOO_LONG = "longer than {length} characters"


def column(
    kind: ValueKind,
    *headers: str,
    required: bool = False,
    max_length: int | None = None,
    key: bool = False,
    index: bool = False,
    clock: bool = False,
    pii: bool = False,
    code: CodeKind | None = None,
    **checks: Any,
) -> Any:
    """A canonical column: `headers` are the export headers accepted for it by default, `checks` pandera builtin
    checks (each a dict with its readable `error`); a `max_length` adds the length check."""
    if max_length is not None:
        checks["str_length"] = {"max_value": max_length, "error": TOO_LONG.format(length=max_length)}
    metadata = {
        "kind": kind,
        "headers": headers,
        "max_length": max_length,
        "key": key,
        "index": index,
        "clock": clock,
        "pii": pii,
        "code": code,
    }
    return pa.Field(nullable=not required, metadata=metadata, **checks)


def _in_range(low: int, high: int) -> dict[str, Any]:
    return {"min_value": low, "max_value": high, "error": f"not within {low}..{high}"}


_REGION = {"pattern": REGION_CODE, "error": "not a 6-digit region code"}
_PROJECT = {"pattern": PROJECT_CODE, "error": "not a national project code (e.g. 2301-360702-04-01-123456)"}
_LIMIT = _in_range(0, MAX_LIMIT_DAYS)


def _not_before(data: pa.PolarsData, later: str, earlier: str) -> pl.LazyFrame:
    return data.lazyframe.select(
        pl.col(later).is_null() | pl.col(earlier).is_null() | (pl.col(later) >= pl.col(earlier))
    )


class CanonicalTable(pa.DataFrameModel):
    """A canonical frame: every column present, already parsed (tasks.ingest.parsing), nothing coerced."""

    class Config(BaseConfig):
        strict = True
        coerce = False


class Cases(CanonicalTable):
    """办件."""

    case_id: str = column("code", "办件编号", "办件号", "受理编号", required=True, max_length=64, key=True, clock=True)
    matter_code: str = column(
        "code", "事项编码", "事项代码", required=True, max_length=64, index=True, clock=True, code="matter"
    )
    matter_name: str = column("text", "事项名称", max_length=200)
    unit_code: str = column(
        "code", "承办单位编码", "办理单位编码", required=True, max_length=64, index=True, clock=True, code="unit"
    )
    unit_name: str = column("text", "承办单位", "办理单位", "承办单位名称", max_length=200)
    region_code: str = column(
        "code", "行政区划代码", "区划代码", "行政区划编码", max_length=6, clock=True, str_matches=_REGION
    )
    project_code: str = column(
        "code", "项目代码", "项目编码", max_length=64, index=True, clock=True, str_matches=_PROJECT
    )
    accepted_at: pl.Date = column("date", "受理时间", "受理日期", required=True, clock=True)
    completed_at: pl.Date = column("date", "办结时间", "办结日期", clock=True)
    limit_days: pl.Int32 = column("integer", "承诺时限", "承诺时限(工作日)", "时限", clock=True, in_range=_LIMIT)
    limit_kind: str = column(
        "text",
        "时限类型",
        max_length=10,
        clock=True,
        isin={"allowed_values": LIMIT_KINDS, "error": "not 工作日/workday or 自然日/calendar"},
    )
    status: str = column("text", "办件状态", "状态", max_length=40)
    updated_at: pl.Datetime = column("datetime", "更新时间", "最后更新时间")
    applicant_name: str = column("text", "申请人", "申请人姓名", max_length=200, pii=True)
    applicant_phone: str = column("code", "联系电话", "申请人电话", "手机号码", max_length=40, pii=True)
    # The platform's own 承诺办结时间, kept to check its timers against ours (tasks/clocks/platform_check.py);
    # 1753-01-01 when its calendar ran out.
    platform_due_date: pl.Date = column("date", "承诺办结时间", "承诺办结日期", "平台承诺办结日期")

    @pa.dataframe_check(name="completed_at is before accepted_at")
    @classmethod
    def completion_after_acceptance(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _not_before(data, "completed_at", "accepted_at")


class Steps(CanonicalTable):
    """环节: one stage of a case, possibly at another unit (市县同权)."""

    case_id: str = column("code", "办件编号", "办件号", required=True, max_length=64, key=True, clock=True)
    step_no: pl.Int32 = column(
        "integer", "环节序号", "环节编号", "序号", required=True, key=True, clock=True, in_range=_in_range(1, 99)
    )
    step_name: str = column("text", "环节名称", max_length=200, clock=True)
    unit_code: str = column(
        "code",
        "办理单位编码",
        "承办单位编码",
        "环节单位编码",
        required=True,
        max_length=64,
        index=True,
        clock=True,
        code="unit",
    )
    started_at: pl.Date = column("date", "开始时间", "环节开始时间", required=True, clock=True)
    ended_at: pl.Date = column("date", "结束时间", "环节结束时间", clock=True)
    limit_days: pl.Int32 = column("integer", "环节时限", "时限", "承诺时限", clock=True, in_range=_LIMIT)

    @pa.dataframe_check(name="ended_at is before started_at")
    @classmethod
    def end_after_start(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _not_before(data, "ended_at", "started_at")


class Suspensions(CanonicalTable):
    """特别程序: a pause (or restart) of a case's clock."""

    case_id: str = column("code", "办件编号", "办件号", required=True, max_length=64, key=True, clock=True)
    kind: str = column(
        "text", "特别程序种类", "特别程序类型", "特别程序", required=True, max_length=40, key=True, clock=True
    )
    started_at: pl.Date = column("date", "开始时间", "特别程序开始时间", required=True, key=True, clock=True)
    ended_at: pl.Date = column("date", "结束时间", "特别程序结束时间", clock=True)
    limit_days: pl.Int32 = column("integer", "特别程序时限", "时限", clock=True, in_range=_LIMIT)
    reason: str = column("text", "原因", "特别程序原因", "事由")  # free text of any length (TEXT)

    @pa.dataframe_check(name="ended_at is before started_at")
    @classmethod
    def end_after_start(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _not_before(data, "ended_at", "started_at")


class Projects(CanonicalTable):
    """工程建设项目."""

    project_code: str = column(
        "code", "项目代码", "项目编码", required=True, max_length=64, key=True, clock=True, str_matches=_PROJECT
    )
    project_name: str = column("text", "项目名称", max_length=300)
    category: str = column("text", "项目类别", "项目类型", required=True, max_length=60, clock=True)
    region_code: str = column(
        "code", "行政区划代码", "区划代码", "行政区划编码", max_length=6, clock=True, str_matches=_REGION
    )
    lead_unit_code: str = column(
        "code", "牵头单位", "牵头单位编码", required=True, max_length=64, clock=True, code="unit"
    )


class Deferrals(CanonicalTable):
    """容缺后补: materials the applicant must supply by a deadline."""

    case_id: str = column("code", "办件编号", "办件号", required=True, max_length=64, key=True, clock=True)
    due_days: pl.Int32 = column("integer", "补交时限", "限期补交天数", clock=True, in_range=_LIMIT)
    due_date: pl.Date = column("date", "补交截止日期", "限期补交日期", clock=True)
    supplied_at: pl.Date = column("date", "补交时间", "补齐时间", "补交日期", clock=True)


class Pushes(CanonicalTable):
    """审管互动: an approval result pushed to a supervising department, to be claimed (认领)."""

    push_id: str = column("code", "推送编号", "推送ID", required=True, max_length=64, key=True, clock=True)
    case_id: str = column("code", "办件编号", "办件号", required=True, max_length=64, index=True, clock=True)
    supervisor_unit_code: str = column(
        "code",
        "监管单位编码",
        "监管部门编码",
        "认领单位编码",
        required=True,
        max_length=64,
        clock=True,
        code="unit",
    )
    pushed_at: pl.Date = column("date", "推送时间", "推送日期", required=True, clock=True)
    claimed_at: pl.Date = column("date", "认领时间", "认领日期", clock=True)

    @pa.dataframe_check(name="claimed_at is before pushed_at")
    @classmethod
    def claim_after_push(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _not_before(data, "claimed_at", "pushed_at")


# In load order: a suspension is checked against the cases loaded before it.
TABLE_MODELS: dict[str, type[CanonicalTable]] = {
    "cases": Cases,
    "steps": Steps,
    "suspensions": Suspensions,
    "projects": Projects,
    "deferrals": Deferrals,
    "pushes": Pushes,
}
TABLES: tuple[str, ...] = tuple(TABLE_MODELS)


@dataclass(frozen=True)
class CanonicalColumn:
    """One field of a canonical table's model, as ingestion, storage and the clock builder read it."""

    name: str
    kind: ValueKind
    required: bool = False
    headers: tuple[str, ...] = ()  # Chinese (and other) export headers accepted without a mapping
    max_length: int | None = None  # text columns: the database column's length (none: unbounded TEXT)
    key: bool = False  # part of the primary key: the identity of a row across loads
    index: bool = False  # indexed in the database
    clock: bool = False  # read by the clock builder (tasks/clocks/builders.py)
    pii: bool = False  # an applicant's personal data, masked wherever shown (tasks/pii.py)
    code: CodeKind | None = None  # a unit or matter code, resolved through the aliases of units.yaml / rules.yaml

    @property
    def dtype(self) -> pl.DataType:
        return DTYPES[self.kind]


def columns_of(model: type[CanonicalTable]) -> tuple[CanonicalColumn, ...]:
    """The columns of a canonical table's model, in declaration order."""
    return tuple(
        CanonicalColumn(name=name, required=not field.nullable, **field.metadata)
        for name, field in model.to_schema().columns.items()
    )


CANONICAL_COLUMNS: dict[str, tuple[CanonicalColumn, ...]] = {
    table: columns_of(model) for table, model in TABLE_MODELS.items()
}
PII_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(column.name for columns in CANONICAL_COLUMNS.values() for column in columns if column.pii)
)


def code_columns(kind: CodeKind) -> dict[str, tuple[str, ...]]:
    """Table → its columns holding a unit (or matter) code, for the tables that have any."""
    found = {
        table: tuple(column.name for column in columns if column.code == kind)
        for table, columns in CANONICAL_COLUMNS.items()
    }
    return {table: names for table, names in found.items() if names}


UNIT_CODE_COLUMNS = code_columns("unit")
MATTER_CODE_COLUMNS = code_columns("matter")


def canonical_names(table: str) -> list[str]:
    return [column.name for column in CANONICAL_COLUMNS[table]]


def default_header_map(table: str) -> dict[str, str]:
    """Export header → canonical name, for the canonical names themselves and the accepted Chinese headers."""
    mapping: dict[str, str] = {}
    for entry in CANONICAL_COLUMNS[table]:
        mapping[entry.name] = entry.name
        for header in entry.headers:
            mapping.setdefault(header, entry.name)
    return mapping
