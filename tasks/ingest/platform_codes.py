"""Platform spellings made canonical at ingestion: unit and matter aliases, 12-digit region codes, limit units that no
clock counts in, and the platform's sentinel due date.

- A unit or matter given by an alias (config/aliases.py) becomes its code; with `unknown_codes: reject` on the source,
  a code that no entry knows is a reject naming the file it is missing from.
- A 12-digit 区划代码 (down to township and village, as the platforms store it) becomes its 6-digit county prefix.
- A limit in hours (小时), minutes (分钟) or months (月), as the 中间库's PROMISETIMEUNIT 3, 4 and 5 say, is a reject.
- A platform due date of 1753-01-01 is kept although no case date may be that early (see PLATFORM_SENTINEL).

Reasons come as (row, column, reason), like the contract's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from config.bundle import PermitwatchConfig
from config.canonical import MATTER_CODE_COLUMNS, UNIT_CODE_COLUMNS
from config.sources import Source
from schemas.contracts import UNSUPPORTED_LIMIT_UNITS
from schemas.messages import message
from tasks.ingest.parsing import local_datetimes

# A 12-digit 区划代码 (down to township and village) is stored as its 6-digit county prefix.
LONG_REGION_CODE = r"^\d{12}$"
REGION_COLUMNS = {"cases": "region_code", "projects": "region_code"}
# Epoint's due-date function returns 1753-01-01 when its working-day table has run out: kept, as evidence.
PLATFORM_SENTINEL = date(1753, 1, 1)


@dataclass(frozen=True)
class KnownCodes:
    """The unit and matter codes of units.yaml and rules.yaml with their aliases (alias key → code)."""

    units: dict[str, str]
    matters: dict[str, str]

    @classmethod
    def of(cls, config: PermitwatchConfig) -> KnownCodes:
        return cls(units=config.units.aliases, matters=config.rules.matter_aliases())

    def lookup(self, table: str) -> list[tuple[str, str, dict[str, str]]]:
        """(column, what, alias table) for each code column of `table`."""
        columns = [(column, "unit", self.units) for column in UNIT_CODE_COLUMNS.get(table, ())]
        return columns + [(column, "matter", self.matters) for column in MATTER_CODE_COLUMNS.get(table, ())]


_REASON_SCHEMA = {"row": pl.UInt32, "column": pl.String, "reason": pl.String}


def keep_platform_sentinel(
    unparsed: pl.DataFrame, parsed: pl.DataFrame, problems: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A platform due date of 1753-01-01 is outside the dates a case may have, but it is what the platform says (its
    working-day table ran out): keep it, so that the disagreement check can name it."""
    if "platform_due_date" not in unparsed.columns:
        return parsed, problems
    moments = local_datetimes(unparsed.get_column("platform_due_date"))
    sentinel = moments.dt.date() == PLATFORM_SENTINEL
    if not sentinel.fill_null(False).any():
        return parsed, problems
    rows = sentinel.fill_null(False).arg_true().cast(pl.UInt32)
    kept = parsed.with_columns(
        pl.when(pl.lit(sentinel).fill_null(False))
        .then(pl.lit(PLATFORM_SENTINEL))
        .otherwise(pl.col("platform_due_date"))
        .alias("platform_due_date")
    )
    dropped = (pl.col("column") == "platform_due_date") & pl.col("row").is_in(rows.implode())
    return kept, problems.filter(~dropped)


def resolve_codes(
    source: Source, frame: pl.DataFrame, codes: KnownCodes | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Unit and matter codes given by an alias become the code; 12-digit region codes their county prefix. With
    `unknown_codes: reject`, a code that no entry knows is a reason (row, column, reason)."""
    region = REGION_COLUMNS.get(source.table)
    if region is not None:
        long_code = pl.col(region).str.contains(LONG_REGION_CODE).fill_null(False)
        frame = frame.with_columns(pl.when(long_code).then(pl.col(region).str.slice(0, 6)).otherwise(pl.col(region)))
    if codes is None:
        return frame, pl.DataFrame(schema=_REASON_SCHEMA)
    reasons = []
    replaced = []
    for column, what, table in codes.lookup(source.table):
        folded = pl.col(column).str.strip_chars().str.to_lowercase()
        code = folded.replace_strict(table, default=None, return_dtype=pl.String)
        replaced.append(pl.coalesce(code, pl.col(column)).alias(column))
        if source.unknown_codes == "reject":
            configured = "units.yaml" if what == "unit" else "rules.yaml"
            unknown = pl.col(column).is_not_null() & code.is_null()
            reason = message(f"{column}: unknown {what} '", pl.col(column), f"' (no code or alias in {configured})")
            reasons.append(
                frame.lazy()
                .with_row_index("row")
                .filter(unknown)
                .select("row", pl.lit(column).alias("column"), reason.alias("reason"))
            )
    found = pl.concat(reasons).collect().cast(_REASON_SCHEMA) if reasons else pl.DataFrame(schema=_REASON_SCHEMA)
    return frame.with_columns(replaced) if replaced else frame, found


def unsupported_limit_units(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Reasons (row, column, reason) for limits in hours, minutes or months: never converted by guess."""
    if table != "cases":
        return pl.DataFrame(schema=_REASON_SCHEMA)
    unsupported = pl.col("limit_kind").is_in(list(UNSUPPORTED_LIMIT_UNITS))
    chinese = pl.col("limit_kind").replace_strict(UNSUPPORTED_LIMIT_UNITS, default="", return_dtype=pl.String)
    reason = message(
        "limit_kind: a limit in ", pl.col("limit_kind"), " (", chinese, ") is not supported: only 工作日 or 自然日"
    )
    return (
        frame.lazy()
        .with_row_index("row")
        .filter(unsupported)
        .select("row", pl.lit("limit_kind").alias("column"), reason.alias("reason"))
        .collect()
        .cast(_REASON_SCHEMA)
    )
