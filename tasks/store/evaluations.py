"""Evaluation history: each run's clock states stored per (clock, as_of), and what changed since the last run."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from sqlalchemy import Engine, delete, func, select

from schemas.tables import Evaluation
from tasks.store.upsert import append_rows, read_rows

# Clocks completed longer ago than this are history the report recomputes; storing them nightly only grows the table.
KEEP_COMPLETED_FOR = timedelta(days=31)
STORED_COLUMNS = [column.name for column in Evaluation.__table__.columns if column.name not in ("as_of", "run_id")]
_POLARS_TYPES: dict[str, pl.DataType] = {
    "as_of": pl.Date(), "start_date": pl.Date(), "due_date": pl.Date(), "limit_days": pl.Int32(), "elapsed": pl.Int32(),
    "remaining": pl.Int32(), "overdue_workdays": pl.Int32(), "run_id": pl.Int64(),
}


def worth_storing(evaluations: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Open clocks, and clocks completed within the last month (so a late completion is still visible)."""
    return evaluations.filter(
        pl.col("completed_date").is_null()
        | (pl.col("completed_date") > as_of)
        | (pl.col("completed_date") >= as_of - KEEP_COMPLETED_FOR)
    )


def store_evaluations(engine: Engine, evaluations: pl.DataFrame, as_of: date, run_id: int | None) -> int:
    """Replace the stored states for `as_of` with these (a rerun for the same date leaves one copy)."""
    rows = worth_storing(evaluations, as_of).select(STORED_COLUMNS).with_columns(
        pl.lit(as_of).alias("as_of"), pl.lit(run_id, pl.Int64).alias("run_id")
    )
    # Dates as the ISO text SQLAlchemy's Date stores, written in bulk (COPY on PostgreSQL).
    rows = rows.with_columns(pl.col(pl.Date).dt.strftime("%Y-%m-%d"))
    with engine.begin() as connection:
        connection.execute(delete(Evaluation).where(Evaluation.as_of == as_of))
        append_rows(connection, Evaluation.__tablename__, rows)
    return rows.height


def read_evaluations(engine: Engine, as_of: date) -> pl.DataFrame:
    """The stored clock states of one as-of date."""
    table = Evaluation.__table__
    with engine.connect() as connection:
        rows = connection.execute(select(table).where(table.c.as_of == as_of)).all()
    return pl.DataFrame(
        [tuple(row) for row in rows],
        schema={column.name: _POLARS_TYPES.get(column.name, pl.String) for column in table.columns},
        orient="row",
    )


def previous_due_dates(engine: Engine, as_of: date) -> pl.DataFrame:
    """clock_id, due_date, calendar from the newest stored run on or before `as_of`."""
    with engine.connect() as connection:
        latest = connection.execute(select(func.max(Evaluation.as_of)).where(Evaluation.as_of <= as_of)).scalar()
        if latest is None:
            return pl.DataFrame(schema={"clock_id": pl.String, "due_date": pl.Date, "calendar": pl.String})
        # Read as text in bulk (a few hundred thousand rows a night): SQLAlchemy's row objects cost seconds here.
        day = latest.isoformat() if isinstance(latest, date) else str(latest)[:10]
        rows = read_rows(
            connection,
            f"SELECT clock_id, CAST(due_date AS VARCHAR(10)), calendar FROM evaluations WHERE as_of = '{day}'",
            {"clock_id": pl.String(), "due_date": pl.String(), "calendar": pl.String()},
        )
    return rows.with_columns(pl.col("due_date").str.slice(0, 10).str.to_date("%Y-%m-%d"))


def due_date_changes(evaluations: pl.DataFrame, previous: pl.DataFrame) -> pl.DataFrame:
    """Clocks whose due date moved since the previous run (a calendar import or a rule change moves them)."""
    return (
        evaluations.select("clock_id", "due_date", "calendar")
        .join(previous, on="clock_id", suffix="_before")
        .filter(
            pl.col("due_date").is_not_null()
            & pl.col("due_date_before").is_not_null()
            & (pl.col("due_date") != pl.col("due_date_before"))
        )
    )
