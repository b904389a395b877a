"""The names an alert shows beside its codes: a step's name (环节名称) for a step clock and a project's name for a
project clock, read from the stored tables for the items of a delivery (cards carry codes only)."""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy import Engine, select, tuple_

from schemas.database import in_batches
from schemas.tables import Project, Step

# Two bound parameters per (case_id, step_no) key.
_STEP_KEYS_PER_QUERY = 2000


def add_subject_names(engine: Engine, items: pl.DataFrame) -> pl.DataFrame:
    """`items` (clock_type, subject_id, clock_id) with step_name and project_name added (null when unknown)."""
    steps = items.filter(pl.col("clock_type") == "step").select(
        pl.col("clock_id"),
        pl.col("clock_id").str.split(":").list.get(1, null_on_oob=True).alias("case_id"),
        pl.col("clock_id").str.split(":").list.get(2, null_on_oob=True).cast(pl.Int64, strict=False).alias("step_no"),
    ).drop_nulls().unique()
    projects = items.filter(pl.col("clock_type") == "project").get_column("subject_id").unique().to_list()
    step_rows: list[tuple[Any, ...]] = []
    project_rows: list[tuple[Any, ...]] = []
    with engine.connect() as connection:
        keys = list(steps.select("case_id", "step_no").iter_rows())
        for chunk in in_batches(keys, _STEP_KEYS_PER_QUERY):
            step_rows.extend(
                connection.execute(
                    select(Step.case_id, Step.step_no, Step.step_name).where(
                        tuple_(Step.case_id, Step.step_no).in_(chunk)
                    )
                ).all()
            )
        for chunk in in_batches(projects):
            project_rows.extend(
                connection.execute(
                    select(Project.project_code, Project.project_name).where(Project.project_code.in_(chunk))
                ).all()
            )
    step_names = steps.join(
        pl.DataFrame(
            step_rows, schema={"case_id": pl.String, "step_no": pl.Int64, "step_name": pl.String}, orient="row"
        ),
        on=["case_id", "step_no"],
    ).select("clock_id", "step_name")
    project_names = pl.DataFrame(
        project_rows, schema={"subject_id": pl.String, "project_name": pl.String}, orient="row"
    ).with_columns(pl.lit("project").alias("clock_type"))
    return (
        items.drop("step_name", "project_name", strict=False)
        .join(step_names, on="clock_id", how="left")
        .join(project_names, on=["clock_type", "subject_id"], how="left")
    )

