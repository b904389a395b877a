"""`permitwatch`: the command line. Each module below registers one group of commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from cli import (
    alert_commands,
    calendar_commands,
    clock_commands,
    ingest_commands,
    pipeline_commands,
    report_commands,
    review_commands,
    simulate_commands,
)
from cli.common import DEBUG, CliState, error_console

# Prefect's analytics make its ephemeral server log "Failed to send telemetry" and risk "database is locked" on a
# closed network; every process permitwatch starts (and the server it spawns) inherits this default.
ANALYTICS_SETTING = "PREFECT_SERVER_ANALYTICS_ENABLED"
# A command without PREFECT_API_URL starts a temporary Prefect server. Prefect gives it 20 s, which a busy 2-core
# host (a nightly run beside a backup, say) can exceed: the run would then fail before reading anything.
EPHEMERAL_STARTUP_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
EPHEMERAL_STARTUP_SECONDS = "180"


class PermitwatchTyper(typer.Typer):
    """The command line, where an error nobody planned for is one line and a hint; the traceback is for --debug."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if DEBUG.enabled:
                raise
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            error_console.print(
                f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(first_line)} "
                "(run again with --debug for the traceback)",
                highlight=False, soft_wrap=True,
            )
            sys.exit(1)


app = PermitwatchTyper(
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
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error."),
) -> None:
    os.environ.setdefault(ANALYTICS_SETTING, "false")  # before any command imports Prefect
    os.environ.setdefault(EPHEMERAL_STARTUP_SETTING, EPHEMERAL_STARTUP_SECONDS)
    if prefect_home := os.environ.get("PREFECT_HOME"):
        # Prefect makes its home but not the folders above it; its ephemeral server then cannot open its database
        # and times out. A home under a fresh checkout's var/ is the usual case.
        Path(prefect_home).expanduser().mkdir(parents=True, exist_ok=True)
    DEBUG.enabled = debug
    ctx.obj = CliState(config_dir=config)


for module in (
    pipeline_commands,
    clock_commands,
    calendar_commands,
    ingest_commands,
    alert_commands,
    report_commands,
    review_commands,
    simulate_commands,
):
    module.register(app)
