"""`permitwatch validate` (a dry run of one export against its contract) and `permitwatch db upgrade`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import console, fail, state
from config.canonical import TABLES
from config.loader import ConfigError
from config.sources import Encoding, Source

# Loading (pandera, SQLAlchemy) and spreadsheet escaping (the alert templates) are imported by the commands that use
# them, so that other commands start fast.
if TYPE_CHECKING:
    from tasks.ingest.load import LoadResult, ProgressCallback


@contextmanager
def rich_progress() -> Iterator[ProgressCallback]:
    """A progress callback drawing one rich bar per stage."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bars:
        tasks: dict[str, TaskID] = {}

        def update(what: str, done: int, total: int) -> None:
            stage = what.split(":")[0]
            if stage not in tasks:
                tasks[stage] = bars.add_task(what, total=total or None)
            bars.update(tasks[stage], description=what, completed=done, total=total or None)

        yield update


def accepted_for_output(result: LoadResult) -> pl.DataFrame:
    """Canonical columns, dates as ISO text."""
    return result.accepted.with_columns(
        pl.col(pl.Date).dt.strftime("%Y-%m-%d"),
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def rejected_for_output(result: LoadResult) -> pl.DataFrame:
    """The rejected rows' original values (by source header), then source, line, reasons."""
    if result.rejected.height == 0:
        return pl.DataFrame(schema={"source": pl.String, "line": pl.Int64, "reasons": pl.String})
    records = [json.loads(raw) if raw else {} for raw in result.rejected["raw"].to_list()]
    headers = list(dict.fromkeys(key for record in records for key in record))
    originals = pl.DataFrame(
        {header: pl.Series([record.get(header) for record in records], dtype=pl.String) for header in headers}
    )
    taken = {"source", "line", "reasons"}
    originals = originals.rename({h: f"{h} (source)" for h in originals.columns if h in taken})
    return pl.concat([originals, result.rejected.select("source", "line", "reasons")], how="horizontal")


def _write(frame: pl.DataFrame, path: Path) -> None:
    """CSV (UTF-8 with BOM, so Excel reads the Chinese), XLSX or Parquet by suffix."""
    from tasks.alerts.digests import escape_formula

    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.write_parquet(path)
    elif suffix == ".xlsx":
        escape_formula(frame).write_excel(path, autofit=True)
    else:
        path.write_bytes("\ufeff".encode() + escape_formula(frame).write_csv().encode())


def _print_result(result: LoadResult) -> None:
    counts = Table(title=f"{result.source} → {result.table}", show_header=True)
    for column in ("file", "read", "accepted", "rejected"):
        counts.add_column(column, justify="left" if column == "file" else "right")
    for count in result.file_counts:
        counts.add_row(count.file, str(count.rows_read), str(count.accepted), str(count.rejected))
    counts.add_row(
        "total", str(result.rows_read), str(result.accepted.height), str(result.rejected.height), style="bold"
    )
    console.print(counts)
    if result.rejected.height:
        reasons = Table(title="most common reasons", show_header=True)
        reasons.add_column("rows", justify="right")
        reasons.add_column("reason")
        reasons.add_column("example")
        for reason, count, example in result.top_reasons().iter_rows():
            reasons.add_row(str(count), reason, example)
        console.print(reasons)
    console.print(
        f"reject fraction {result.reject_fraction:.1%} (limit {result.max_reject_fraction:.0%})",
        style="red" if result.over_threshold else "green",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate(
        ctx: typer.Context,
        file: Path = typer.Argument(
            ..., exists=True, dir_okay=False, readable=True, help="csv, xlsx, parquet or jsonl"
        ),
        kind: str = typer.Option(..., "--kind", help=f"Canonical table: {'|'.join(TABLES)}."),
        accepted: Path | None = typer.Option(None, "--accepted", help="Write accepted rows (canonical, ISO dates)."),
        rejected: Path | None = typer.Option(None, "--rejected", help="Write rejected rows (original values)."),
        source: str | None = typer.Option(
            None, "--source", help="Use this configured source's mapping, encoding and date formats."
        ),
        encoding: str = typer.Option("auto", "--encoding", help="auto|utf-8|utf-8-sig|gb18030|gbk"),
    ) -> None:
        """Dry run: check FILE against the contract of --kind; print counts and the most common reasons."""
        from tasks.ingest.load import load_source
        from tasks.ingest.platform_codes import KnownCodes

        if kind not in TABLES:
            fail(f"--kind must be one of {', '.join(TABLES)}, not {kind!r}")
        if encoding not in ("auto", "utf-8", "utf-8-sig", "gb18030", "gbk"):
            fail(f"--encoding must be auto, utf-8, utf-8-sig, gb18030 or gbk, not {encoding!r}")
        try:
            spec = _source_for(ctx, file, kind, source, encoding)  # type: ignore[arg-type]
        except ConfigError as exc:
            fail(str(exc))
        # A configured source resolves unit and matter aliases as the nightly run does.
        codes = KnownCodes.of(state(ctx).config()) if source else None
        with rich_progress() as progress:
            result = load_source(spec, inbox_dir=file.parent, progress=progress, codes=codes)
        if result.error:
            fail(result.error)
        _print_result(result)
        if accepted:
            _write(accepted_for_output(result), accepted)
            console.print(f"accepted rows written to {accepted}", highlight=False)
        if rejected:
            _write(rejected_for_output(result), rejected)
            console.print(f"rejected rows written to {rejected}", highlight=False)
        if result.over_threshold:
            raise typer.Exit(1)

    db = typer.Typer(help="Database schema.", no_args_is_help=True)

    @db.command("upgrade")
    def upgrade(ctx: typer.Context) -> None:
        """Apply the Alembic migrations to the configured database (also done automatically on first use)."""
        from schemas.database import make_engine
        from schemas.database import upgrade as apply_migrations

        engine = make_engine(state(ctx).settings().database_url)
        try:
            apply_migrations(engine)
        finally:
            engine.dispose()
        console.print(f"database at the newest schema: {engine.url.render_as_string(hide_password=True)}")

    app.add_typer(db, name="db")


def _source_for(ctx: typer.Context, file: Path, kind: str, name: str | None, encoding: Encoding) -> Source:
    """The source FILE is read through: the configured source `name`'s definition pointed at it, or the default."""
    from tasks.ingest.load import file_source

    template = None
    if name is not None:
        try:
            template = state(ctx).config().sources.get(name)
        except KeyError as exc:
            raise ConfigError(str(exc)) from None
    return file_source(file, kind, template, encoding)
