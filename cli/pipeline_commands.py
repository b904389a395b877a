"""Commands that run the pipeline: `sample`, `run`, `demo`, `serve`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from cli.common import console, state
from tasks.calendar import load_work_calendar
from tasks.sample import DEFAULT_FIRST_DATE, SampleSpec, generate_sample, write_sample


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)


def sample(
    ctx: typer.Context,
    cases: int = typer.Option(4000, "--cases", min=1, help="How many cases (办件) to generate."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed and dates give the same files."),
    out: Path = typer.Option(Path("var/inbox"), "--out", help="Folder for cases.csv, steps.csv, … (canonical columns)."),
    first_date: str = typer.Option(DEFAULT_FIRST_DATE.isoformat(), "--from", help="Earliest acceptance date."),
    last_date: str | None = typer.Option(None, "--to", help="Latest date in the data (default: the as-of date)."),
    dirty_fraction: float = typer.Option(
        0.01, "--dirty-fraction", min=0.0, max=0.5, help="Share of case rows spoiled the way real exports are."
    ),
) -> None:
    """Write deterministic sample data (Ganzhou's units and matters) in the canonical columns."""
    cli = state(ctx)
    config = cli.config()
    spec = SampleSpec(
        cases=cases,
        seed=seed,
        first_date=date.fromisoformat(first_date),
        last_date=date.fromisoformat(last_date) if last_date else cli.settings().effective_as_of,
        dirty_fraction=dirty_fraction,
    )
    tables = generate_sample(spec, config.rules, config.units, load_work_calendar(config.calendar_files))
    for name, path in write_sample(tables, out).items():
        console.print(f"{tables[name].height:>9,} rows  {path}")
