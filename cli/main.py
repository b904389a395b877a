"""`permitwatch`: the command line. Each module below registers one group of commands."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import (
    alert_commands,
    calendar_commands,
    clock_commands,
    ingest_commands,
    pipeline_commands,
    report_commands,
)
from cli.common import CliState

app = typer.Typer(
    name="permitwatch",
    help="Working-day deadline watch for approval cases (审批时限预警).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="Config directory (default: PERMITWATCH_CONFIG_DIR, else the bundled config/)."
    ),
) -> None:
    ctx.obj = CliState(config_dir=config)


for module in (
    pipeline_commands,
    clock_commands,
    calendar_commands,
    ingest_commands,
    alert_commands,
    report_commands,
):
    module.register(app)
