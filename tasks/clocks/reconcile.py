"""Every accepted row yields its clocks or is a reject with a reason (对账).

The clock builder refuses rows it cannot turn into a clock (an unknown matter code, a step with no limit, …). Those
refusals become rows of the `rejects` table like the ingest rejects: traced back to the file and line they were
loaded from tonight (or, for a row stored by an earlier load, to the table with no line), with the reason. The
reconciliation per table is then: rows stored = rows the builder used + rows it refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from tasks.clocks.builders import ROW_KEYS
from tasks.ingest.load import REJECTED_SCHEMA, LoadResult

RECONCILIATION_COLUMNS = ("table", "stored", "used", "refused")


def clock_rejects(refused: pl.DataFrame, loads: list[LoadResult]) -> pl.DataFrame:
    """The clock builder's refusals (table, row_key, case_id, reason) as rejects (REJECTED_SCHEMA): source file and
    line from tonight's loads where the row came from one, raw holding the row's key, never applicant data."""
    if refused.height == 0:
        return pl.DataFrame(schema=REJECTED_SCHEMA)
    origins = [
        load.accepted.select(pl.lit(load.table).alias("table"), ROW_KEYS[load.table].cast(pl.String).alias("row_key"))
        .hstack(load.accepted_origin)
        .join(refused.select("table", "row_key").unique(), on=["table", "row_key"], how="semi")
        for load in loads
        if load.accepted.height and load.table in set(refused["table"])
    ]
    origin = (
        pl.concat(origins).unique(["table", "row_key"], keep="last")
        if origins
        else pl.DataFrame(schema={"table": pl.String, "row_key": pl.String, "source": pl.String, "line": pl.Int64})
    )
    raw = pl.struct(pl.col("row_key").alias("key"), pl.col("case_id")).struct.json_encode()
    return (
        refused.join(origin, on=["table", "row_key"], how="left", maintain_order="left")
        .select(
            pl.coalesce("source", pl.concat_str(pl.lit("stored "), "table")).alias("source"),
            "table",
            "line",
            raw.alias("raw"),
            pl.concat_str(pl.lit("clock builder: "), "reason").alias("reasons"),
        )
        .cast(REJECTED_SCHEMA)
    )


def reconciliation(stored_rows: Mapping[str, int], refused: pl.DataFrame) -> pl.DataFrame:
    """table, stored, used, refused: per table (`stored_rows`: its stored rows), stored = used + refused."""
    counts = refused.group_by("table").agg(pl.len().cast(pl.Int64).alias("refused"))
    stored = pl.DataFrame(
        {"table": list(stored_rows), "stored": list(stored_rows.values())},
        schema={"table": pl.String, "stored": pl.Int64},
    )
    return (
        stored.join(counts, on="table", how="left")
        .with_columns(pl.col("refused").fill_null(0))
        .with_columns((pl.col("stored") - pl.col("refused")).alias("used"))
        .select(RECONCILIATION_COLUMNS)
    )
