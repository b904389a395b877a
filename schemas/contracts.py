"""Data contracts (pandera, polars backend): each canonical table's model (config/canonical.py) checked on a frame,
and the row checks around it.

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

import polars as pl
from pandera.errors import SchemaErrors

from config.canonical import CANONICAL_COLUMNS, TABLE_MODELS, TOO_LONG
from schemas.messages import message

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

VIOLATION_SCHEMA = {"row": pl.UInt32, "column": pl.String, "reason": pl.String}
# Messages for pandera's built-in checks, which carry code-like names.
_BUILTIN_MESSAGES = {"not_nullable": "missing", "dtype": "wrong type"}
# Reasons worded without the value: a missing one has none, and a too long one would be repeated in full.
_TOO_LONG = "^" + TOO_LONG.format(length=r"\d+") + "$"
_UNQUOTED = (pl.col("check") == "not_nullable") | pl.col("check").str.contains(_TOO_LONG)


def key_columns(table: str) -> list[str]:
    """The table's primary key: the identity of a row across loads."""
    return [column.name for column in CANONICAL_COLUMNS[table] if column.key]


def canonical_schema(table: str) -> dict[str, pl.DataType]:
    """Column → polars dtype of the canonical frame (config/canonical.py)."""
    return {column.name: column.dtype for column in CANONICAL_COLUMNS[table]}


def empty_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=canonical_schema(table))


def violations(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Every broken contract rule of `frame` (canonical columns only): row (0-based position), column (null for a
    rule over several columns), reason."""
    return _pandera_violations(table, frame).sort("row", maintain_order=True)


def _pandera_violations(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    try:
        TABLE_MODELS[table].validate(frame, lazy=True)
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
    # whole columns first (see schemas.messages.message), then the condition only picks one.
    check = pl.col("check").replace(_BUILTIN_MESSAGES)
    worded = failures.with_columns(
        message(pl.col("column"), ": ", check).alias("__bare"),
        message(pl.col("column"), ": ", check, " '", pl.col("failure_case").fill_null(""), "'").alias("__quoted"),
    )
    reason = (
        pl.when(pl.col("schema_context") == "DataFrameSchema")
        .then(pl.col("check"))
        .when(_UNQUOTED)
        .then(pl.col("__bare"))
        .otherwise(pl.col("__quoted"))
    )
    column = pl.when(pl.col("schema_context") == "Column").then(pl.col("column"))
    return (
        worded.select(pl.col("index").cast(pl.UInt32).alias("row"), column.alias("column"), reason.alias("reason"))
        .unique(maintain_order=True)
        .cast(VIOLATION_SCHEMA)
    )


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
