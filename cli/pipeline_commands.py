"""Commands that run the pipeline: `sample`, `run`, `demo`, `serve`."""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import CliState, console, date_option, fail, state
from config.settings import TIMEZONE

# Prefect, SQLAlchemy and the sample generator (numpy, the calendar, apprise through the units) are imported by the
# commands that use them: `permitwatch` itself, and every other command, start without them.
if TYPE_CHECKING:
    from tasks.ingest.sample import SampleSpec

DEMO_CASES = 4000


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
    app.command("run")(run)
    app.command("demo")(demo)
    app.command("serve")(serve)
    app.command("backfill")(backfill)


def sample(
    ctx: typer.Context,
    cases: int = typer.Option(DEMO_CASES, "--cases", min=1, help="How many cases (办件) to generate."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed and dates give the same files."),
    out: Path = typer.Option(Path("var/inbox"), "--out", help="Folder for cases.csv, steps.csv, … (canonical)."),
    first_date: str | None = typer.Option(
        None, "--from", help="Earliest acceptance date (default: the sample generator's first date)."
    ),
    last_date: str | None = typer.Option(None, "--to", help="Latest date in the data (default: the as-of date)."),
    dirty_fraction: float = typer.Option(
        0.01, "--dirty-fraction", min=0.0, max=0.5, help="Share of case rows spoiled the way real exports are."
    ),
) -> None:
    """Write deterministic sample data (Ganzhou's units and matters) in the canonical columns."""
    from tasks.ingest.sample import DEFAULT_FIRST_DATE, SampleSpec

    cli = state(ctx)
    first = date_option(first_date, "--from") or DEFAULT_FIRST_DATE
    last = date_option(last_date, "--to") or cli.settings().effective_as_of
    if first > last:
        fail(f"--from {first}: expected a date no later than --to ({last})")
    spec = SampleSpec(cases=cases, seed=seed, first_date=first, last_date=last, dirty_fraction=dirty_fraction)
    _write_sample(cli, spec, out)


def _write_sample(cli: CliState, spec: SampleSpec, out: Path) -> dict[str, int]:
    from tasks.clocks.calendar import load_work_calendar
    from tasks.ingest.sample import generate_sample, write_sample

    config = cli.config()
    tables = generate_sample(spec, config.rules, config.units, load_work_calendar(config.calendar_files))
    for name, path in write_sample(tables, out).items():
        console.print(f"{tables[name].height:>9,} rows  {path}", highlight=False)
    return {name: frame.height for name, frame in tables.items()}


def run(
    ctx: typer.Context,
    as_of: str | None = typer.Option(None, "--as-of", help="Evaluate as of the end of this day (default: yesterday)."),
    source: list[str] | None = typer.Option(None, "--source", help="Only these sources (repeatable)."),
    full: bool = typer.Option(
        False,
        "--full",
        help="Check every exported row (not taking any from the memo of rows checked before) and read back and "
        "evaluate every clock, not only the open ones and those that changed.",
    ),
) -> None:
    """Run the nightly flow once: ingest, validate, store, evaluate, cards. Sends nothing."""
    cli = state(ctx)
    day = date_option(as_of, "--as-of", up_to_yesterday=True)
    sources = cli.source_names(source)  # also loads and checks the whole config: a typo never starts a run
    _export_settings(cli)
    from flows.nightly import nightly

    final = nightly(as_of=day, sources=sources, full=full, return_state=True)
    summary = _state_summary(final)
    if summary and "sources" in summary:
        _print_run_summary(summary, cli)
    console.print(f"nightly: {final.name}: {final.message or ''}", highlight=False)
    if final.is_failed():
        raise typer.Exit(1)


def demo(
    ctx: typer.Context,
    cases: int = typer.Option(DEMO_CASES, "--cases", min=1, help="Sample size."),
    seed: int = typer.Option(7, "--seed"),
) -> None:
    """Sample data, then the nightly run and a delivery on the embedded default (SQLite, ephemeral Prefect, outbox)."""
    from tasks.ingest.sample import SampleSpec

    started = time.perf_counter()
    cli = state(ctx)
    settings = cli.settings()
    cli.config()
    _reset_demo_state(cli)
    as_of = settings.effective_as_of
    console.rule(f"permitwatch demo: sample data up to {as_of}")
    _write_sample(cli, SampleSpec(cases=cases, seed=seed, last_date=as_of), settings.effective_inbox_dir)

    _export_settings(cli)
    from flows.deliver import deliver_flow
    from flows.nightly import nightly

    console.rule("nightly run (Prefect flow `nightly`)")
    final = nightly(as_of=as_of, return_state=True)
    summary = _state_summary(final)
    console.print(f"nightly: {final.name}: {final.message or ''}", highlight=False)

    console.rule("delivery (Prefect flow `deliver`, window forced for the demo)")
    delivered = deliver_flow(now=datetime.now(TIMEZONE), force=True, return_state=True)
    console.print(f"deliver: {delivered.name}: {delivered.message or ''}", highlight=False)

    if summary:
        _print_run_summary(summary, cli)
    _print_outputs(cli)
    console.print(f"\nDemo finished in {time.perf_counter() - started:.1f} s.", highlight=False)
    if final.is_failed():
        raise typer.Exit(1)


def backfill(
    ctx: typer.Context,
    start: str = typer.Option(..., "--from", help="First day to evaluate (YYYY-MM-DD)."),
    end: str = typer.Option(..., "--to", help="Last day to evaluate (at most yesterday)."),
) -> None:
    """Evaluation history for past days from what is stored (the `backfill` flow). No cards, nothing sent."""
    from flows.backfill import MAX_BACKFILL_DAYS
    from flows.backfill import backfill as backfill_flow

    cli = state(ctx)
    first = date_option(start, "--from", up_to_yesterday=True)
    last = date_option(end, "--to", up_to_yesterday=True)
    assert first is not None and last is not None  # both options are required
    if first > last:
        fail(f"--from {first}: expected a date no later than --to ({last})")
    if (last - first).days >= MAX_BACKFILL_DAYS:
        fail(f"--from {first} --to {last}: expected at most {MAX_BACKFILL_DAYS} days; split the range")
    cli.config()
    _export_settings(cli)
    final = backfill_flow(first, last, return_state=True)
    stored = final.result(raise_on_failure=False)
    if final.is_failed() or not isinstance(stored, dict):
        fail(f"backfill {first}..{last} failed: {final.message or stored}", code=1)
    console.print(f"backfill {first}..{last}: {len(stored)} days, {sum(stored.values()):,} evaluations stored; "
                  "no cards, nothing sent.", highlight=False)


def serve(ctx: typer.Context) -> None:
    """Register the scheduled deployments (nightly 01:30, review 07:30, deliver 08:30, weekly-report Mon 09:00,
    Asia/Shanghai) and the unscheduled backfill, and serve them until interrupted."""
    cli = state(ctx)
    cli.config()
    _export_settings(cli)
    from prefect import serve as prefect_serve

    from flows.deployments import deployments

    prefect_serve(*deployments())


def _export_settings(cli: CliState) -> None:
    """Flows read settings from the environment, so a --config given to the CLI must reach them there."""
    if cli.config_dir is not None:
        os.environ["PERMITWATCH_CONFIG_DIR"] = str(cli.config_dir.resolve())


def _reset_demo_state(cli: CliState) -> None:
    """The demo starts clean: its inbox, outbox and (embedded SQLite only) database are recreated."""
    from sqlalchemy.engine import make_url

    settings = cli.settings()
    for folder in (settings.effective_inbox_dir, settings.effective_outbox_dir):
        shutil.rmtree(folder, ignore_errors=True)
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
    else:
        console.print(f"The demo keeps the data already in {url.render_as_string(hide_password=True)}.")


def _print_run_summary(summary: dict[str, Any], cli: CliState) -> None:
    from tasks.artifacts import CLOCK_TYPES

    for row in summary["sources"]:
        if not row["stored"]:
            console.print(f"[bold red]NOT STORED[/] {escape(row['source'])}: {escape(row.get('note') or '')}",
                          highlight=False)
    for warning in summary.get("warnings", []):
        console.print(f"[bold yellow]WARNING[/] {escape(warning)}", highlight=False)
    sources = Table(title=f"Sources as of {summary['as_of']}", title_justify="left")
    for column in ("source", "table", "read", "accepted", "rejected", "stored"):
        sources.add_column(column, justify="right" if column in ("read", "accepted", "rejected") else "left")
    for row in summary["sources"]:
        sources.add_row(row["source"], row["table"], f"{row['rows_read']:,}", f"{row['accepted']:,}",
                        f"{row['rejected']:,}", "yes" if row["stored"] else f"no: {row.get('note') or ''}")
    console.print(sources)
    console.print(f"Rows rejected: {summary['rows_rejected']:,} of {summary['rows_read']:,} read "
                  "(stored in the `rejects` table with line numbers and reasons).", highlight=False)
    reconciled = ", ".join(f"{row['table']} {row['stored']:,} = {row['used']:,} + {row['refused']:,}"
                           for row in summary.get("clock_reconciliation", []))
    console.print(f"Rows the clock builder refused: {summary.get('clock_rejects', 0):,} (in `rejects` with their "
                  f"reasons); stored = used + refused: {reconciled}.", highlight=False)
    if evaluation := summary.get("evaluation"):
        console.print(f"Evaluation: {evaluation['mode']}, {evaluation['evaluated_clocks']:,} clocks evaluated of "
                      f"{summary['clocks']:,} ({evaluation['reason']}).", highlight=False)

    levels = Table(title="Clocks per level", title_justify="left")
    for column in ("level", *CLOCK_TYPES, "total"):
        levels.add_column(column, justify="left" if column == "level" else "right", no_wrap=column == "level")
    for row in summary["level_table"]:
        levels.add_row(row["level"], *(f"{row[column]:,}" for column in (*CLOCK_TYPES, "total")))
    console.print(levels)

    units = cli.config().units
    top = Table(title=f"The {len(summary['top_overdue_units'])} units with the most overdue clocks",
                title_justify="left")
    for column in ("unit", "name", "overdue", "escalated (督办)"):
        top.add_column(column, justify="right" if column.startswith(("overdue", "escalated")) else "left")
    for row in summary["top_overdue_units"]:
        name = units[row["unit_code"]].name if row["unit_code"] in units else "?"
        top.add_row(row["unit_code"], name, f"{row['overdue']:,}", f"{row['escalated']:,}")
    console.print(top)
    cards = summary.get("cards", {})
    missing_years = ", ".join(map(str, summary.get("provisional_years", []))) or "none"
    console.print(f"Cards: {cards.get('new', 0):,} new ({cards.get('suppressed', 0):,} held back by silences), "
                  f"{cards.get('deliveries', 0):,} deliveries queued; "
                  f"{summary.get('provisional_clocks', 0):,} clocks on a provisional calendar "
                  f"(years without an official notice: {missing_years}).", highlight=False)
    if "platform_due_date_disagreements" in summary:
        by_cause = summary.get("platform_due_date_causes", {})
        causes = "; ".join(f"{cause}: {count:,}" for cause, count in by_cause.items())
        console.print(f"Platform due dates that differ from ours (open cases): "
                      f"{summary['platform_due_date_disagreements']:,} (artifact platform-disagreements)"
                      f"{f'. Likely causes: {causes}' if causes else ''}.", highlight=False)


def _print_outputs(cli: CliState) -> None:
    from sqlalchemy.engine import make_url

    settings = cli.settings()
    outbox = settings.effective_outbox_dir
    files = sorted(outbox.rglob("*")) if outbox.exists() else []
    messages = [path for path in files if path.is_file()]
    console.rule("where everything went")
    console.print(f"Database:  {make_url(settings.database_url).render_as_string(hide_password=True)}", highlight=False)
    console.print(f"Inbox:     {settings.effective_inbox_dir}/ (the sample exports that were loaded)", highlight=False)
    console.print(f"Outbox:    {outbox}/ ({len(messages)} files, one per unit and channel)", highlight=False)
    for path in messages[:6]:
        console.print(f"           {path}", highlight=False)
    if len(messages) > 6:
        console.print(f"           … and {len(messages) - 6} more", highlight=False)
    prefect_home = os.environ.get("PREFECT_HOME", str(Path.home() / ".prefect"))
    console.print(
        "Prefect UI: the runs, their task graph and artifacts were recorded by the ephemeral server in "
        f"{prefect_home}. To browse them:\n"
        f"    PREFECT_HOME={prefect_home} PREFECT_SERVER_ANALYTICS_ENABLED=false .venv/bin/prefect server start\n"
        "    then open http://127.0.0.1:4200 (Runs → nightly-…, Artifacts → nightly-summary).",
        highlight=False,
    )


def _state_summary(final: Any) -> dict[str, Any]:
    """The run summary a nightly flow put in its final state (empty when it crashed before making one)."""
    from tasks.store.runs import state_summary

    return state_summary(final.result(raise_on_failure=False))
