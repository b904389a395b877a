"""`permitwatch evaluate` (stateless case clocks from files) and `permitwatch explain` (why a due date and level).

Neither needs Prefect; `evaluate` and `explain --cases` need no database either. Files are read by the nightly run's
ingestion (tasks/clocks/from_files.py); this module parses the options and prints.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

from cli.common import console, fail, state
from config.loader import ConfigError
from config.settings import yesterday_in_shanghai

# The deadline engine (numpy, the calendar packages) and the loader (pandera) are imported by the commands that run
# them, not by `permitwatch` itself: every other command starts faster.
if TYPE_CHECKING:
    from config.bundle import PermitwatchConfig
    from tasks.clocks.builders import ClockSet
    from tasks.clocks.calendar import WorkCalendar
    from tasks.clocks.explain import Explanation, Subject
    from tasks.clocks.from_files import LoadedFiles
    from tasks.ingest.load import LoadResult

_SHOWN_REJECTS = 20


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("explain")(explain)


def evaluate(
    ctx: typer.Context,
    cases: Path = typer.Argument(..., help="Cases file (csv, xlsx, parquet or jsonl), read as the nightly run would."),
    suspensions: Path | None = typer.Option(None, "--suspensions", help="Suspensions (特别程序) file."),
    as_of: str | None = typer.Option(None, "--as-of", help="Evaluate as of the end of this day (default: yesterday)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.csv or .parquet)."),
    rejects_path: Path | None = typer.Option(
        None, "--rejects", help="Also write every rejected row here (.csv): file, line, reasons, masked values."
    ),
) -> None:
    """Evaluate case clocks from files: due_date, elapsed, remaining, overdue_workdays, level, calendar per case."""
    from tasks.clocks.calendar import load_work_calendar
    from tasks.clocks.from_files import evaluate_case_files

    if output.suffix.lower() not in (".csv", ".parquet"):
        fail(f"{output}: the output must be .csv or .parquet")
    day = _as_of(as_of)
    config = state(ctx).config()
    calendar = load_work_calendar(config.calendar_files)
    loaded = _load_files(config, cases, suspensions)
    result = evaluate_case_files(loaded, config.rules, calendar, day)
    evaluations = result.evaluations
    if evaluations.height:
        _write(evaluations, output)
    if rejects_path is not None:
        _write(result.rejects.select("source", "line", "table", "reasons", "raw"), rejects_path)

    console.print(
        f"Evaluated {evaluations.height} case(s) as of {day} → {escape(str(output))}"
        + ("" if evaluations.height else " (not written)"),
        highlight=False,
    )
    _print_summary(evaluations, result.rejects, calendar, day)
    _print_over_threshold(loaded.loads)
    if evaluations.height == 0:
        raise typer.Exit(1)


def explain(
    ctx: typer.Context,
    clock: str | None = typer.Argument(
        None,
        help="An id as printed in an alert: a case id, a push id (审管推送) or a project code; or a clock id such "
        "as step:C1:2. Read from the database.",
    ),
    which: str | None = typer.Option(
        None,
        "--clock",
        help="Which of the subject's clocks to explain: step:2, deferral, case, special:专家评审, or the label as "
        "printed (环节「城市审批」). Default: the most urgent.",
    ),
    cases: Path | None = typer.Option(None, "--cases", help="Read the case from this file instead of the database."),
    suspensions: Path | None = typer.Option(None, "--suspensions", help="Suspensions file (with --cases)."),
    case_id: str | None = typer.Option(None, "--case-id", help="The case (or clock id) to explain (with --cases)."),
    as_of: str | None = typer.Option(None, "--as-of", help="As of the end of this day (default: yesterday)."),
) -> None:
    """Why a clock has its due date and level: the subject's clocks with their state, then the counted days, pauses,
    holidays and make-up working days of the most urgent (or the one --clock names)."""
    from tasks.clocks.builders import build_clocks
    from tasks.clocks.calendar import load_work_calendar
    from tasks.clocks.explain import parse_subject
    from tasks.clocks.from_files import case_reasons
    from tasks.store.upsert import read_subject_tables

    wanted = case_id or clock
    if wanted is None:
        fail("name the case, push or project: `permitwatch explain ID`, or `--cases FILE --case-id CASE_ID`")
    subject = parse_subject(wanted.strip())
    day = _as_of(as_of)
    config = state(ctx).config()
    calendar = load_work_calendar(config.calendar_files)
    loaded = _load_files(config, cases, suspensions) if cases is not None else None
    if loaded is not None:
        tables = loaded.tables
        subject = subject if subject.kind else replace(subject, kind="case")
    else:
        if suspensions is not None:
            fail("--suspensions goes with --cases")
        found = read_subject_tables(state(ctx).engine(), subject.kind, subject.id)
        if found is None:
            fail(f"{subject.id}: no case, push (审管推送) or project with this id in the database")
        subject, tables = replace(subject, kind=found[0]), found[1]
    clock_set = build_clocks(tables, config.rules)
    refused = clock_set.rejects if subject.kind == "case" else clock_set.rejects.clear()
    if loaded is not None:
        rejected = case_reasons(loaded, refused, subject.id)
    else:
        rejected = refused.filter(pl.col("case_id") == subject.id)["reason"].to_list()
    _explain_subject(config, subject, which, tables, clock_set, calendar, day, rejected)


def _load_files(config: PermitwatchConfig, cases: Path, suspensions: Path | None) -> LoadedFiles:
    """The files loaded as the nightly run loads them; a file that cannot be read as a whole stops the command."""
    from tasks.clocks.from_files import load_case_files
    from tasks.ingest.load import SourceError

    for path in (cases, suspensions):
        if path is not None and not path.is_file():
            fail(f"{path}: no such file")
    try:
        return load_case_files(cases, suspensions, config)
    except (SourceError, ConfigError) as exc:
        fail(str(exc))


def _explain_subject(
    config: PermitwatchConfig,
    subject: Subject,
    which: str | None,
    tables: dict[str, pl.DataFrame],
    clock_set: ClockSet,
    calendar: WorkCalendar,
    day: date,
    rejected: list[str],
) -> None:
    """The subject's clocks with their state, then the account of the chosen (or most urgent) one."""
    from tasks.alerts.digests import DigestTemplates
    from tasks.clocks.engine import evaluate_clocks
    from tasks.clocks.explain import (
        NotStartedError,
        choose_clock,
        clock_labels,
        explain_clock,
        of_subject,
        pause_labels,
        subject_clocks,
    )

    known = clock_set.known_at(day, calendar)
    evaluated = evaluate_clocks(known.clocks, known.pauses, calendar, day)
    listing = subject_clocks(evaluated, subject)
    labels = DigestTemplates(config.templates_dir).labels
    listing = listing.with_columns(clock_labels(listing, tables, labels).alias("label"))
    later = clock_set.clocks.filter(of_subject(subject) & (pl.col("start_date") > day)).sort("start_date")
    if listing.is_empty() and not later.is_empty() and not rejected:  # recorded, but not started by the as-of date
        first = later.row(0, named=True)
        fail(f"{first['clock_id']} starts on {first['start_date']}, after {day}: it does not exist on that day yet")
    try:
        clock_id = choose_clock(listing, which or subject.clock_id)
    except LookupError as exc:
        reasons = "; ".join(rejected) or str(exc)
        fail(f"{_subject_name(subject)}: {reasons}")
    _print_clock_list(subject, listing, clock_id)
    try:
        account = explain_clock(clock_id, clock_set, calendar, day, pause_labels(tables))
    except NotStartedError as exc:
        fail(f"no clock on {day}: {exc}")
    _print_explanation(account)
    for reason in rejected:
        console.print(f"[yellow]note:[/] a row of this case was rejected: {escape(reason)}", highlight=False)


def _subject_name(subject: Subject) -> str:
    return {"case": "case", "claim": "push", "project": "project"}.get(subject.kind, "id") + f" {subject.id}"


def _print_clock_list(subject: Subject, listing: pl.DataFrame, chosen: str) -> None:
    from tasks.clocks.explain import LEVEL_NAMES

    table = Table("", "clock", "--clock", "level", "due date", "remaining", "overdue", title=_subject_name(subject),
                  title_justify="left")
    for row in listing.iter_rows(named=True):
        table.add_row(
            "→" if row["clock_id"] == chosen else "",
            escape(row["label"]),
            escape(row["selector"]),
            LEVEL_NAMES.get(row["level"], row["level"]),
            "—" if row["due_date"] is None else row["due_date"].isoformat()
            + (" (预计)" if row["calendar"] == "provisional" else ""),
            "" if row["remaining"] is None else str(row["remaining"]),
            str(row["overdue_workdays"] or ""),
        )
    console.print(table)


# -- inputs --------------------------------------------------------------------------------------------------------


def _as_of(text: str | None) -> date:
    if text is None:
        return yesterday_in_shanghai()
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--as-of: not a date (YYYY-MM-DD): {text!r}")


# -- output --------------------------------------------------------------------------------------------------------


def _write(frame: pl.DataFrame, path: Path) -> None:
    try:
        if path.suffix.lower() == ".parquet":
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
    except OSError as exc:
        fail(f"{path}: cannot write: {exc.strerror}")


def _print_summary(evaluations: pl.DataFrame, rejects: pl.DataFrame, calendar: WorkCalendar, day: date) -> None:
    if evaluations.height:
        levels = evaluations.group_by("level").len().sort("len", descending=True)
        console.print(
            "Levels: " + ", ".join(f"{level} {count}" for level, count in levels.iter_rows()), highlight=False
        )
        provisional = evaluations.filter(pl.col("calendar") == "provisional")
        if provisional.height:
            last = provisional["due_date"].max() or day
            years = ", ".join(str(year) for year in calendar.provisional_years(None, max(last, day).year))  # type: ignore[type-var]
            console.print(
                f"[yellow]{provisional.height} case(s) use the provisional calendar (预计): no official holiday "
                f"notice for {years} yet.[/]",
                highlight=False,
            )
    console.print(f"Rejected {rejects.height} row(s).", highlight=False)
    if rejects.is_empty():
        return
    reasons = (
        rejects.select(pl.col("reasons").str.split("; ").alias("example"))
        .explode("example")
        .with_columns(kind=pl.col("example").str.replace_all(r"'[^']*'|\d{4}-\d{2}-\d{2}|\bline \d+", "…"))
        .group_by("kind")
        .agg(pl.len().alias("count"), pl.col("example").first())
        .sort(["count", "kind"], descending=[True, False])
    )
    table = Table("count", "reason (example)", title="Reject reasons")
    for _, count, example in reasons.head(_SHOWN_REJECTS).iter_rows():
        table.add_row(str(count), escape(example))
    console.print(table)
    shown = rejects.head(_SHOWN_REJECTS)
    for source, line, reason in shown.select("source", "line", "reasons").iter_rows():
        where = source if line is None else f"{source} line {line}"
        console.print(f"  {escape(where)}: {escape(reason)}", highlight=False)
    if rejects.height > shown.height:
        console.print(f"  … and {rejects.height - shown.height} more (use --rejects FILE to get them all)")


def _print_over_threshold(loads: list[LoadResult]) -> None:
    for load in loads:
        if load.over_threshold:
            console.print(
                f"[yellow]{escape(', '.join(load.files))}: {load.reject_fraction:.1%} of the rows rejected, over the "
                f"{load.max_reject_fraction:.0%} limit: the nightly run would store nothing from it.[/]",
                highlight=False,
            )


def _print_explanation(account: Explanation) -> None:
    from tasks.clocks.explain import stretch_text

    console.print(f"[bold]{escape(account.headline())}[/]", highlight=False)
    for line in account.facts():
        console.print(escape(line), highlight=False)
    if account.members:
        known = sum(member.known for member in account.members)
        console.print(f"[bold]Member cases[/] ({known} of {len(account.members)} accepted by {account.as_of} count)")
        for line in account.member_texts():
            console.print(f"  {escape(line)}", highlight=False)
    if account.extensions:
        console.print("[bold]Extensions (延期)[/] of the limit")
        for line in account.extension_texts():
            console.print(f"  {escape(line)}", highlight=False)
    if account.pauses:
        console.print("[bold]Pauses[/] (the days after the start, up to and including the end, are not counted)")
        for line in account.pause_texts():
            console.print(f"  {escape(line)}", highlight=False)
    table = Table("days", "", title="Day by day", title_justify="left", show_header=False)
    for stretch in account.stretches:
        style = {"counted": "", "paused": "cyan", "rest day": "dim"}.get(stretch.what, "dim")
        text = stretch_text(stretch)
        when, _, what = text.partition("  ")
        table.add_row(escape(when), escape(what), style=style + (" italic" if stretch.after_as_of else ""))
    console.print(table)
    if account.calendar_notes:
        console.print("[bold]Holidays and make-up working days met[/]")
        for first, last, note in account.calendar_notes:
            span = first.isoformat() if first == last else f"{first} – {last}"
            console.print(f"  {span} {escape(note)}", highlight=False)
    for line in account.outcome():
        console.print(f"[bold]{escape(line)}[/]", highlight=False)
