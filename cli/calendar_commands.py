"""`permitwatch calendar …`: import a State Council holiday notice, show a year, check coverage (工作日历)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import console, date_option, error_console, fail, state
from config.calendar_files import (
    CalendarFile,
    calendar_dir,
    calendar_file_path,
    dump_calendar_file,
    load_calendar_file,
    load_calendar_files,
)
from config.loader import ConfigError
from config.settings import yesterday_in_shanghai

# The calendar itself (numpy, polars, the calendar packages) is imported by the functions that build one, so that
# other commands start fast.
if TYPE_CHECKING:
    from tasks.clocks.calendar import WorkCalendar, YearCoverage
    from tasks.clocks.holiday_notice import ParsedNotice

_WEEKDAY_NAMES = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")

calendar_app = typer.Typer(
    help="The official working-day calendar: import a State Council holiday notice, show a year, check coverage.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(calendar_app, name="calendar")


@calendar_app.command("import")
def import_notice(
    ctx: typer.Context,
    notice: Path = typer.Argument(
        ..., help="The notice's full text as published (国务院办公厅关于YYYY年部分节假日安排的通知)."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Calendar file to write (default: calendar/YYYY.yaml in the config directory)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and compare only; write nothing."),
) -> None:
    """Read a holiday notice, check it, show what changes, and write config/calendar/YYYY.yaml."""
    from tasks.clocks.calendar import load_work_calendar
    from tasks.clocks.holiday_notice import NoticeError, read_notice

    try:
        parsed = read_notice(notice)
    except NoticeError as exc:
        fail(f"{escape(str(exc))}\nNothing was written.")
    calendar = parsed.calendar
    config_dir = state(ctx).settings().config_dir
    target = output or calendar_file_path(config_dir, calendar.year)
    if output is not None and output.name != f"{calendar.year}.yaml":
        fail(f"{output}: the notice arranges {calendar.year}, so the file must be named {calendar.year}.yaml")
    others = _files_besides(config_dir, target)

    _print_notice(parsed)
    before = load_work_calendar(others + _still_valid(target))
    after = load_work_calendar([*others, calendar])
    _print_changes(before, after, calendar)
    if dry_run:
        console.print(f"Dry run: {target} not written.", soft_wrap=True)
        return
    dump_calendar_file(calendar, target)
    load_calendar_file(target)  # the file just written reads back under the same checks as every other
    console.print(f"Wrote {target}. The next run uses the official calendar for {calendar.year}.", soft_wrap=True)


@calendar_app.command("show")
def show(ctx: typer.Context, year: int = typer.Argument(..., help="The year to show.")) -> None:
    """A year's holidays and make-up workdays, with their source and counts."""
    from tasks.clocks.calendar import load_work_calendar

    files = _load_files(ctx)
    work_calendar = load_work_calendar(files)
    coverage = {entry.year: entry for entry in work_calendar.coverage()}
    if year not in coverage:
        fail(f"{year} is outside the calendar ({work_calendar.first_date.year}–{work_calendar.last_date.year})")
    entry = coverage[year]
    days = work_calendar.days(date(year, 1, 1), date(year, 12, 31))
    rest = days.filter(~days["is_workday"] & days["note"].is_not_null())
    makeup = days.filter(days["is_workday"] & (days["date"].dt.weekday() >= 6))

    console.print(f"[bold]{year}[/]: {_kind(entry)} — {entry.source}", highlight=False, soft_wrap=True)
    cited = next((f for f in files if f.year == year), None)
    if cited is not None:
        number = f" {cited.source.document_number}" if cited.source.document_number else ""
        console.print(
            f"  cites {cited.source.title}{number}, issued {cited.source.issued}", highlight=False, soft_wrap=True
        )
    spans = Table("from", "to", "days", "note", title=f"Holidays ({rest.height} dates)", title_justify="left")
    for first, last, notes in _runs(rest["date"].to_list(), rest["note"].to_list()):
        spans.add_row(_day(first), _day(last), str((last - first).days + 1), "、".join(notes))
    console.print(spans)
    if makeup.height:
        lines = [f"{_day(d)}  {note}" for d, note in zip(makeup["date"], makeup["note"], strict=True)]
        console.print(
            f"Make-up workdays (调休上班, {makeup.height}):\n  " + "\n  ".join(lines), highlight=False, soft_wrap=True
        )
    else:
        console.print("Make-up workdays (调休上班): none", soft_wrap=True)
    weekday_holidays = rest.filter(rest["date"].dt.weekday() <= 5).height
    working = int(days["is_workday"].sum())
    console.print(
        f"Counts: {rest.height} holiday dates ({weekday_holidays} on weekdays), {makeup.height} make-up workdays, "
        f"{working} working days, {days.height - working} rest days.",
        highlight=False,
        soft_wrap=True,
    )


@calendar_app.command("check")
def check(
    ctx: typer.Context,
    as_of: str | None = typer.Option(None, "--as-of", help="Reference date YYYY-MM-DD (default: yesterday, Shanghai)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a needed year is only provisional."),
) -> None:
    """Check every calendar file and report which years are official or provisional.

    The years needed are the reference date's year and the next: a clock started now can end there.
    """
    from tasks.clocks.calendar import load_work_calendar

    reference = _reference_date(as_of)
    files = _load_files(ctx)
    work_calendar = load_work_calendar(files)
    directory = calendar_dir(state(ctx).settings().config_dir)
    if files:
        for calendar in files:
            console.print(
                f"{directory / f'{calendar.year}.yaml'}: ok — {calendar.source.title}, "
                f"issued {calendar.source.issued}, {len(calendar.holidays)} holidays, "
                f"{len(calendar.workdays)} make-up workdays",
                highlight=False,
                soft_wrap=True,
            )
            _warn_if_overriding_package(calendar, work_calendar)
    else:
        console.print(f"No calendar files in {directory}.", highlight=False, soft_wrap=True)

    coverage = {entry.year: entry for entry in work_calendar.coverage()}
    official = [entry.year for entry in coverage.values() if not entry.provisional]
    needed = [reference.year, reference.year + 1]
    console.print(
        f"Official calendar: {official[0]}–{max(official)}"
        + ("" if official == list(range(official[0], max(official) + 1)) else " (with gaps)")
        + f"; later years are provisional. Needed as of {reference}: {needed[0]}–{needed[-1]}."
    )
    missing = []
    for year in needed:
        entry = coverage[year]
        if entry.provisional:
            missing.append(year)
            error_console.print(
                f"[yellow]warning:[/] {year} is provisional (weekends plus estimated holidays) until its notice is "
                f"imported: permitwatch calendar import NOTICE.txt. Due dates in {year} are marked 预计.",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(f"  {year}: {_kind(entry)} — {entry.source}", highlight=False, soft_wrap=True)
    if missing and strict:
        raise typer.Exit(1)


def _load_files(ctx: typer.Context) -> list[CalendarFile]:
    try:
        return load_calendar_files(state(ctx).settings().config_dir)
    except ConfigError as exc:
        fail(f"invalid calendar file:\n{escape(str(exc))}")


def _files_besides(config_dir: Path, target: Path) -> list[CalendarFile]:
    """The other calendar files in force; the one about to be replaced is left out, even when it is broken."""
    directory = calendar_dir(config_dir)
    paths = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    files = []
    for path in paths:
        if path.resolve() == target.resolve():
            continue
        try:
            files.append(load_calendar_file(path))
        except ConfigError as exc:
            fail(f"fix or remove the invalid calendar file first:\n{escape(str(exc))}")
    return files


def _still_valid(target: Path) -> list[CalendarFile]:
    """The file being replaced, when it exists and reads: the calendar the import is compared against."""
    if not target.is_file():
        return []
    try:
        return [load_calendar_file(target)]
    except ConfigError as exc:
        error_console.print(
            f"[yellow]warning:[/] replacing an invalid file: {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        return []


def _print_notice(parsed: ParsedNotice) -> None:
    source = parsed.calendar.source
    number = f" {source.document_number}" if source.document_number else ""
    console.print(f"[bold]{source.title}[/]{number}, issued {source.issued}", highlight=False, soft_wrap=True)
    table = Table("clause", "holidays", "days", "make-up workdays (上班)")
    year = parsed.calendar.year
    for clause in parsed.clauses:
        first, last = clause.holidays[0], clause.holidays[-1]
        table.add_row(
            "、".join(clause.festivals),
            _short(first, year) if first == last else f"{_short(first, year)} – {_short(last, year)}",
            str(len(clause.holidays)),
            ", ".join(_short(d, year) for d in clause.workdays) or "—",
        )
    console.print(table)


def _print_changes(before: WorkCalendar, after: WorkCalendar, calendar: CalendarFile) -> None:
    from tasks.clocks.holiday_notice import calendar_changes, notice_window

    first, last = notice_window(calendar)
    previous = {entry.year: entry for entry in before.coverage()}[calendar.year]
    changes = calendar_changes(before, after, first, last)
    console.print(
        f"Against the current calendar for {calendar.year} ({_kind(previous)} — {previous.source}):",
        highlight=False,
        soft_wrap=True,
    )
    if changes.empty:
        console.print("  no change", soft_wrap=True)
        return
    for label, dates in (
        ("holidays added", changes.holidays_added),
        ("holidays removed", changes.holidays_removed),
        ("make-up workdays added", changes.workdays_added),
        ("make-up workdays removed", changes.workdays_removed),
    ):
        if dates:
            console.print(f"  {label} ({len(dates)}): {_dates(dates)}", highlight=False, soft_wrap=True)
    console.print(
        f"  {len(changes.status_changed)} days change between working day and rest day"
        + (f": {_dates(changes.status_changed)}" if changes.status_changed else ""),
        highlight=False,
        soft_wrap=True,
    )


def _warn_if_overriding_package(calendar: CalendarFile, work_calendar: WorkCalendar) -> None:
    """A file for a year chinese-calendar covers replaces the package's data: say where they differ."""
    from tasks.clocks.calendar import PACKAGE_SOURCE, load_work_calendar
    from tasks.clocks.holiday_notice import calendar_changes, notice_window

    package = load_work_calendar(())
    if any(entry.year == calendar.year and entry.source == PACKAGE_SOURCE for entry in package.coverage()):
        changes = calendar_changes(package, work_calendar, *notice_window(calendar))
        detail = f"; working days differ on {_dates(changes.status_changed)}" if changes.status_changed else ""
        error_console.print(
            f"[yellow]note:[/] {calendar.year}.yaml replaces the chinese-calendar package's data for {calendar.year}"
            + detail,
            highlight=False,
            soft_wrap=True,
        )


def _reference_date(as_of: str | None) -> date:
    return date_option(as_of, "--as-of") or yesterday_in_shanghai()


def _kind(entry: YearCoverage) -> str:
    from tasks.clocks.calendar import PACKAGE_SOURCE

    if entry.provisional:
        return "PROVISIONAL"
    return "official (chinese-calendar)" if entry.source == PACKAGE_SOURCE else "official (file)"


def _day(day: date) -> str:
    return f"{day.isoformat()} {_WEEKDAY_NAMES[day.weekday()]}"


def _short(day: date, year: int) -> str:
    """Month, day and weekday under a title naming the year; the full date for the previous December's days."""
    return f"{day:%m-%d} {_WEEKDAY_NAMES[day.weekday()]}" if day.year == year else _day(day)


def _runs(dates: list[date], notes: list[str]) -> list[tuple[date, date, list[str]]]:
    """Consecutive dates grouped into spans, each with its distinct notes in order."""
    runs: list[tuple[date, date, list[str]]] = []
    for day, note in zip(dates, notes, strict=True):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            first, _, seen = runs[-1]
            runs[-1] = (first, day, seen if note in seen else [*seen, note])
        else:
            runs.append((day, day, [note]))
    return runs


def _dates(dates: list[date]) -> str:
    return ", ".join(
        _day(first) if first == last else f"{_day(first)} – {_day(last)}"
        for first, last, _ in _runs(dates, [""] * len(dates))
    )
