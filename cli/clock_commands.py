"""`permitwatch evaluate` (stateless case clocks from files) and `permitwatch explain` (why a due date and level).

Neither needs Prefect; `evaluate` and `explain --cases` need no database either.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

from cli.common import console, fail, state
from config.calendar_files import load_calendar_files
from config.canonical import CANONICAL_COLUMNS, default_header_map
from config.loader import ConfigError
from config.rules import load_rules
from config.settings import yesterday_in_shanghai
from tasks.ingest.parsing import (
    EARLIEST_DATE,
    LATEST_DATE,
    NULL_TOKENS,
    PROBLEM_SCHEMA,
    ColumnKind,
    ParseResult,
    header_key,
    parse_columns,
)

# The deadline engine (numpy, the calendar packages) is imported by the commands that run it, not by `permitwatch`
# itself: every other command starts faster.
if TYPE_CHECKING:
    from config.rules import RuleBook
    from tasks.clocks.builders import ClockSet
    from tasks.clocks.calendar import WorkCalendar
    from tasks.clocks.explain import Explanation, Subject

OUTPUT_COLUMNS = ["case_id", "due_date", "elapsed", "remaining", "overdue_workdays", "level", "calendar"]
# A code made only of these characters, and not a spelling of "empty", is already what the code parser would return.
_PLAIN_CODE = r"^[0-9A-Za-z_:\-]+$"
_SHOWN_REJECTS = 20
# A string column with at most one distinct value per this many rows is parsed one distinct value at a time.
_FEW_DISTINCT = 8


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("explain")(explain)


def evaluate(
    ctx: typer.Context,
    cases: Path = typer.Argument(..., help="Cases file (.csv or .parquet): canonical columns or Chinese headers."),
    suspensions: Path | None = typer.Option(None, "--suspensions", help="Suspensions (特别程序) file."),
    as_of: str | None = typer.Option(None, "--as-of", help="Evaluate as of the end of this day (default: yesterday)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.csv or .parquet)."),
    rejects_path: Path | None = typer.Option(None, "--rejects", help="Also write every rejected row here (.csv)."),
) -> None:
    """Evaluate case clocks from files: due_date, elapsed, remaining, overdue_workdays, level, calendar per case."""
    from tasks.clocks.builders import build_clocks
    from tasks.clocks.engine import evaluate_clocks

    if output.suffix.lower() not in (".csv", ".parquet"):
        fail(f"{output}: the output must be .csv or .parquet")
    day = _as_of(as_of)
    rules, calendar = _rules_and_calendar(ctx)
    tables, rejects = _read_inputs(cases, suspensions)
    clock_set = build_clocks(tables, rules, clock_types={"case"})
    rejects.append(clock_set.rejects)
    clocks = clock_set.clocks
    future = clocks.filter(pl.col("start_date") > day)
    if future.height:
        rejects.append(
            future.select(
                pl.lit("cases").alias("table"),
                pl.col("case_id").alias("row_key"),
                "case_id",
                pl.format(f"accepted_at {{}} is after the as-of date {day}", "start_date").alias("reason"),
            )
        )
    known = clock_set.known_at(day, calendar)
    pauses = known.pauses.filter(pl.col("clock_id").str.starts_with("case:"))
    evaluations = evaluate_clocks(known.clocks, pauses, calendar, day).select(OUTPUT_COLUMNS)
    if evaluations.height:
        _write(evaluations, output)
    all_rejects = pl.concat(rejects, how="vertical")
    if rejects_path is not None:
        all_rejects.write_csv(rejects_path)

    console.print(
        f"Evaluated {evaluations.height} case(s) as of {day} → {escape(str(output))}"
        + ("" if evaluations.height else " (not written)"),
        highlight=False,
    )
    _print_summary(evaluations, all_rejects, calendar, day)
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
    from tasks.clocks.builders import REJECT_COLUMNS, build_clocks
    from tasks.clocks.explain import parse_subject

    wanted = case_id or clock
    if wanted is None:
        fail("name the case, push or project: `permitwatch explain ID`, or `--cases FILE --case-id CASE_ID`")
    subject = parse_subject(wanted.strip())
    day = _as_of(as_of)
    rules, calendar = _rules_and_calendar(ctx)
    if cases is not None:
        tables, rejects = _read_inputs(cases, suspensions)
        subject = subject if subject.kind else replace(subject, kind="case")
        bad = pl.concat(rejects, how="vertical").filter(pl.col("case_id") == subject.id)
    else:
        if suspensions is not None:
            fail("--suspensions goes with --cases")
        subject, tables = _read_from_database(ctx, subject)
        bad = pl.DataFrame(schema=REJECT_COLUMNS)
    clock_set = build_clocks(tables, rules)
    if subject.kind == "case":
        bad = pl.concat([bad, clock_set.rejects.filter(pl.col("case_id") == subject.id)], how="vertical")
    _explain_subject(ctx, subject, which, tables, clock_set, calendar, day, bad["reason"].to_list())


def _explain_subject(
    ctx: typer.Context,
    subject: Subject,
    which: str | None,
    tables: dict[str, pl.DataFrame],
    clock_set: ClockSet,
    calendar: WorkCalendar,
    day: date,
    rejected: list[str],
) -> None:
    """The subject's clocks with their state, then the account of the chosen (or most urgent) one."""
    from tasks.clocks.engine import evaluate_clocks
    from tasks.clocks.explain import NotStartedError, choose_clock, explain_clock, of_subject, subject_clocks

    known = clock_set.known_at(day, calendar)
    evaluated = evaluate_clocks(known.clocks, known.pauses, calendar, day)
    listing = subject_clocks(evaluated, subject)
    listing = listing.with_columns(_clock_labels(ctx, listing, tables).alias("label"))
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
        account = explain_clock(clock_id, clock_set, calendar, day, _pause_labels(tables))
    except NotStartedError as exc:
        fail(f"no clock on {day}: {exc}")
    _print_explanation(account)
    for reason in rejected:
        console.print(f"[yellow]note:[/] a row of this case was rejected: {escape(reason)}", highlight=False)


def _clock_labels(ctx: typer.Context, listing: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> pl.Series:
    """Each clock's label as the alerts print it (the vocabulary of the config's templates)."""
    from tasks.alerts.digests import DigestTemplates, clock_label

    templates = DigestTemplates(state(ctx).settings().config_dir / "templates")
    steps = tables.get("steps")
    named = listing
    if steps is not None and not steps.is_empty():
        names = steps.select(
            pl.format("step:{}:{}", "case_id", "step_no").alias("clock_id"), pl.col("step_name").cast(pl.String)
        )
        named = listing.join(names, on="clock_id", how="left", maintain_order="left")
    return named.select(clock_label(named, templates)).to_series()


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


def _rules_and_calendar(ctx: typer.Context) -> tuple[RuleBook, WorkCalendar]:
    """Only what the clocks need from the config directory (rules and calendar files), checked."""
    from tasks.clocks.calendar import load_work_calendar

    config_dir = state(ctx).settings().config_dir
    try:
        rules = load_rules(config_dir)
        calendar_files = load_calendar_files(config_dir)
    except ConfigError as exc:
        fail(f"bad configuration:\n{exc}")
    return rules, load_work_calendar(calendar_files)


def _read_inputs(cases: Path, suspensions: Path | None) -> tuple[dict[str, pl.DataFrame], list[pl.DataFrame]]:
    tables, rejects = {}, []
    for table, path in (("cases", cases), ("suspensions", suspensions)):
        if path is None:
            continue
        read = _read_table(path, table)
        tables[table] = read.frame
        rejects.append(read.rejects)
    return tables, rejects


@dataclass(frozen=True)
class _Read:
    frame: pl.DataFrame
    rejects: pl.DataFrame


def _read_table(path: Path, table: str) -> _Read:
    """A CSV or Parquet file as a canonical frame: headers mapped, values parsed by tasks.ingest.parsing; rows with an
    unreadable value become rejects naming their line."""
    from tasks.clocks.builders import REJECT_COLUMNS

    mapping = {header_key(header): canonical for header, canonical in default_header_map(table).items()}
    raw = _read_file(path, mapping)
    renamed = {name: mapping[header_key(name)] for name in raw.columns}
    raw = raw.select(pl.col(name).alias(canonical) for name, canonical in renamed.items())
    columns = {column.name: column for column in CANONICAL_COLUMNS[table]}
    missing = [name for name, column in columns.items() if column.required and name not in raw.columns]
    if missing:
        fail(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(renamed) or 'none'})")
    parsed_columns, problems = [], []
    for name in raw.columns:
        kind = ColumnKind(columns[name].kind)
        if kind is ColumnKind.CODE:  # codes have no unreadable values: a blank or "无" is simply absent
            parsed_columns.append(_parse_codes(raw[name]))
        else:
            parsed, found = _parse_column(raw[name], kind)
            parsed_columns.append(parsed)
            problems.append(found)
    frame = raw.with_columns(parsed_columns)
    found = pl.concat(problems).sort("row", maintain_order=True) if problems else pl.DataFrame(schema=PROBLEM_SCHEMA)
    if found.is_empty():
        return _Read(frame, pl.DataFrame(schema=REJECT_COLUMNS))
    first_line = 2 if path.suffix.lower() == ".csv" else 1  # a CSV's line 1 is the header
    where = "line" if first_line == 2 else "row"
    reasons = ParseResult(frame, found).reasons_by_row()
    bad = reasons.with_columns(frame["case_id"].gather(reasons["row"]).alias("case_id"))
    rejects = bad.select(
        pl.lit(table).alias("table"),
        pl.format(f"{path.name} {where} {{}}", pl.col("row") + first_line).alias("row_key"),
        pl.col("case_id"),
        pl.col("reason"),
    )
    keep = pl.int_range(0, frame.height, dtype=pl.UInt32, eager=True).is_in(bad["row"].implode()).not_()
    return _Read(frame.filter(keep), rejects.cast(REJECT_COLUMNS))


def _read_file(path: Path, mapping: dict[str, str]) -> pl.DataFrame:
    """The file's columns whose header_key is in `mapping` (a Parquet file reads only those)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            wanted = [name for name in pl.read_parquet_schema(path) if header_key(name) in mapping]
            return pl.read_parquet(path, columns=wanted).rechunk()  # one chunk: later gathers are much faster
        if suffix == ".csv":
            frame = pl.read_csv(io.BytesIO(_utf8(path.read_bytes())), infer_schema=False)
            return frame.select(name for name in frame.columns if header_key(name) in mapping)
    except (OSError, pl.exceptions.PolarsError) as exc:
        fail(f"{path}: cannot read: {exc}")
    fail(f"{path}: the file must be .csv or .parquet")


def _parse_column(values: pl.Series, kind: ColumnKind) -> tuple[pl.Series, pl.DataFrame]:
    """One column through tasks.ingest.parsing: (parsed values, problems), doing only the work the values need."""
    name = values.name
    if kind is ColumnKind.DATE and values.dtype == pl.Date:
        low, high = values.min(), values.max()
        if low is None or (low >= EARLIEST_DATE and high <= LATEST_DATE):  # type: ignore[operator]
            return values, pl.DataFrame(schema=PROBLEM_SCHEMA)  # dates already, all plausible
    if kind is ColumnKind.TEXT and values.dtype == pl.String:
        distinct = values.unique()
        if distinct.len() * _FEW_DISTINCT <= values.len():
            return _parse_distinct(values, distinct, kind)
    result = parse_columns(values.to_frame(), {name: kind})
    return result.frame[name], result.problems


def _parse_distinct(values: pl.Series, distinct: pl.Series, kind: ColumnKind) -> tuple[pl.Series, pl.DataFrame]:
    """A column of few distinct strings: each distinct value parsed once (parsing looks at one value at a time),
    then the results and problems mapped back onto the rows."""
    name = values.name
    distinct = distinct.drop_nulls()
    result = parse_columns(distinct.to_frame(), {name: kind})
    if not result.problems.is_empty():  # unreadable values are reported by row: parse the whole column
        whole = parse_columns(values.to_frame(), {name: kind})
        return whole.frame[name], whole.problems
    parsed = result.frame[name]
    if parsed.eq_missing(distinct).all():
        return values, result.problems  # nothing to change: the common case
    return values.replace_strict(distinct, parsed, default=None, return_dtype=parsed.dtype), result.problems


def _utf8(data: bytes) -> bytes:
    """UTF-8 (a BOM dropped) as is; anything else is read as GB18030, the superset of GBK that exports use."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace").encode("utf-8")
    return data


def _parse_codes(column: pl.Series) -> pl.Series:
    """A code column through the code parser, which only some values need: each distinct value once when there are
    few (matter and unit codes), else only the values that are not plain codes: the parser leaves a plain code
    (letters, digits, _ : -) unchanged, and most of a million ids are plain."""
    name = column.name
    values = column.cast(pl.String)
    distinct = values.unique()
    if distinct.len() * _FEW_DISTINCT <= values.len():
        return _parse_distinct(values, distinct, ColumnKind.CODE)[0]
    needs = (~values.str.contains(_PLAIN_CODE) | values.is_in(list(NULL_TOKENS))).fill_null(False)
    if needs.any():
        rows = needs.arg_true()
        parsed = parse_columns(values.gather(rows).to_frame(), {name: ColumnKind.CODE}).frame[name]
        values = values.scatter(rows, parsed)
    return values


def _read_from_database(ctx: typer.Context, subject: Subject) -> tuple[Subject, dict[str, pl.DataFrame]]:
    """The subject an id names (a bare id is looked up as a case id, a push id, then a project code) and the stored
    rows its clocks need: the case with its steps, suspensions, deferral and pushes; for a push, its case too; for a
    project, the project and all its cases."""
    from sqlalchemy import select

    from schemas import tables as models

    engine = state(ctx).engine()
    with engine.connect() as connection:

        def rows(model: type[models.Base], *conditions: object) -> pl.DataFrame:
            table = model.__table__
            result = connection.execute(select(table).where(*conditions)).mappings().all()  # type: ignore[arg-type]
            return pl.DataFrame([dict(row) for row in result], schema=_db_schema(table), orient="row")

        if not subject.kind:
            lookups = (
                ("case", models.Case.case_id),
                ("claim", models.Push.push_id),
                ("project", models.Project.project_code),
            )
            for kind, column in lookups:
                if connection.execute(select(column).where(column == subject.id).limit(1)).first() is not None:
                    subject = replace(subject, kind=kind)
                    break
            else:
                fail(f"{subject.id}: no case, push (审管推送) or project with this id in the database")
        if subject.kind == "project":
            projects = rows(models.Project, models.Project.project_code == subject.id)
            cases = rows(models.Case, models.Case.project_code == subject.id)
        elif subject.kind == "claim":
            pushes = rows(models.Push, models.Push.push_id == subject.id)
            cases = rows(models.Case, models.Case.case_id.in_(pushes["case_id"].to_list()))
            return subject, {"cases": cases, "pushes": pushes}
        else:
            cases = rows(models.Case, models.Case.case_id == subject.id)
            codes = cases["project_code"].drop_nulls().to_list()
            projects = rows(models.Project, models.Project.project_code.in_(codes))
        case_ids = cases["case_id"].to_list()
        return subject, {
            "cases": cases,
            "projects": projects,
            "steps": rows(models.Step, models.Step.case_id.in_(case_ids)),
            "suspensions": rows(models.Suspension, models.Suspension.case_id.in_(case_ids)),
            "deferrals": rows(models.Deferral, models.Deferral.case_id.in_(case_ids)),
            "pushes": rows(models.Push, models.Push.case_id.in_(case_ids)),
        }


def _db_schema(table: object) -> dict[str, pl.DataType]:
    from sqlalchemy import Date, DateTime, Integer

    schema: dict[str, pl.DataType] = {}
    for column in table.columns:  # type: ignore[attr-defined]
        if isinstance(column.type, DateTime):
            schema[column.name] = pl.Datetime()
        elif isinstance(column.type, Date):
            schema[column.name] = pl.Date()
        elif isinstance(column.type, Integer):
            schema[column.name] = pl.Int64()
        else:
            schema[column.name] = pl.String()
    return schema


def _pause_labels(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Pauses named by their suspension kind, for the case clock and its steps."""
    suspensions = tables.get("suspensions")
    if suspensions is None or suspensions.is_empty():
        return pl.DataFrame(schema={"clock_id": pl.String, "start_date": pl.Date, "label": pl.String})
    named = suspensions.select(
        "case_id", pl.col("started_at").cast(pl.Date).alias("start_date"), pl.col("kind").alias("label")
    )
    return pl.concat(
        [
            named.select(pl.format("case:{}", "case_id").alias("clock_id"), "start_date", "label"),
            *(
                named.join(steps.select("case_id", "step_no"), on="case_id").select(
                    pl.format("step:{}:{}", "case_id", "step_no").alias("clock_id"), "start_date", "label"
                )
                for steps in [tables.get("steps")]
                if steps is not None and not steps.is_empty()
            ),
        ]
    )


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
        rejects.with_columns(kind=pl.col("reason").str.replace_all(r"'[^']*'|\d{4}-\d{2}-\d{2}", "…"))
        .group_by("kind")
        .agg(pl.len().alias("count"), pl.col("reason").first().alias("example"))
        .sort("count", descending=True)
    )
    table = Table("count", "reason (example)", title="Reject reasons")
    for _, count, example in reasons.head(_SHOWN_REJECTS).iter_rows():
        table.add_row(str(count), escape(example))
    console.print(table)
    shown = rejects.head(_SHOWN_REJECTS)
    for row in shown.iter_rows(named=True):
        console.print(f"  {escape(row['row_key'] or '(no case_id)')}: {escape(row['reason'])}", highlight=False)
    if rejects.height > shown.height:
        console.print(f"  … and {rejects.height - shown.height} more (use --rejects FILE to get them all)")


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
