"""`permitwatch report`: the statistics report (XLSX + HTML with charts) for a week or a month."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import typer
from rich.table import Table

from cli.common import console, date_option, fail, state
from config.canonical import TABLES

if TYPE_CHECKING:
    from config.bundle import PermitwatchConfig


class PeriodChoice(StrEnum):
    week = "week"
    month = "month"


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        ctx: typer.Context,
        period: PeriodChoice = typer.Option(
            PeriodChoice.week, "--period", help="week (Monday–Sunday) or month; the one holding --as-of."
        ),
        as_of: str | None = typer.Option(
            None, "--as-of", help="Report date YYYY-MM-DD (end of day). Default: yesterday in Asia/Shanghai."
        ),
        output: Path | None = typer.Option(
            None, "-o", "--output", help="Directory for the XLSX, HTML and PNG files (default: <var>/reports)."
        ),
        trend: int = typer.Option(8, "--trend", min=2, max=60, help="Periods shown in the trend view and chart."),
        data: Path | None = typer.Option(
            None,
            "--data",
            help="Read cases.csv, steps.csv, … (canonical columns, as `permitwatch sample` writes) from this "
            "directory instead of the database. Rows are checked as at ingestion; rejected rows are counted.",
        ),
    ) -> None:
        """Statistics report: on-time rates, time used, overdue cases, deferrals, claims (统计报表)."""
        # Imported here, not with the module: matplotlib, pandera and SQLAlchemy would slow every other command.
        from tasks.reports.report import build_report, display_overview, period_title, write_report
        from tasks.store.upsert import read_tables

        cli = state(ctx)
        settings = cli.settings()
        day = date_option(as_of, "--as-of", up_to_yesterday=True) or settings.effective_as_of
        config = cli.config()
        tables = _tables_from_directory(config, data) if data else read_tables(cli.engine())
        if tables["cases"].is_empty():
            fail("no cases to report on: load data first (`permitwatch run` or `permitwatch demo`), or give --data")
        views = build_report(tables, config, period.value, day, trend_periods=trend)
        files = write_report(views, output or settings.var_dir / "reports", config.templates_dir)

        shown = display_overview(views.overview)
        table = Table(title=period_title(views))
        for column in shown.columns:
            table.add_column(column, justify="left" if column == "指标" else "right")
        for row in shown.rows():
            table.add_row(*row)
        console.print(table)
        for path in [files.xlsx, files.html, *files.charts.values()]:
            console.print(f"wrote {path}", highlight=False)


def _tables_from_directory(config: PermitwatchConfig, directory: Path) -> dict[str, pl.DataFrame]:
    """The canonical tables from `<table>.csv` files (cases.csv required), read and checked as the nightly run reads
    and checks them (tasks/ingest/load.py); a table without its file is empty."""
    from schemas.contracts import empty_frame
    from tasks.ingest.load import load_files, sources_for_files
    from tasks.ingest.platform_codes import KnownCodes

    if not directory.is_dir():
        fail(f"--data {directory}: not a directory")
    if not (directory / "cases.csv").is_file():
        fail(f"--data {directory}: no cases.csv")
    files = {table: directory / f"{table}.csv" for table in TABLES if (directory / f"{table}.csv").is_file()}
    tables = {table: empty_frame(table) for table in TABLES}
    for result in load_files(sources_for_files(files, config.sources.sources), codes=KnownCodes.of(config)):
        if result.error:
            fail(result.error)
        if result.rejected.height:
            console.print(
                f"{', '.join(result.files)}: {result.rejected.height} of {result.rows_read} rows rejected "
                "(`permitwatch validate` lists them)",
                highlight=False,
            )
        tables[result.table] = result.accepted
    return tables
