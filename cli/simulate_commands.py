"""`permitwatch simulate`: the effect of a proposed rule change on the stored clocks (what if). Read-only."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import console, date_option, fail, state


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate(
        ctx: typer.Context,
        rules: Path = typer.Option(
            ..., "--rules", help="Proposed rules in the format of rules.yaml, holding only the entries that change."
        ),
        as_of: str | None = typer.Option(
            None, "--as-of", help="Date YYYY-MM-DD (end of day). Default: yesterday in Asia/Shanghai."
        ),
        window: str = typer.Option(
            "12m", "--window", help="Retrospective window ending at --as-of: 12m (months), 26w, 90d or 1y."
        ),
        output: Path | None = typer.Option(
            None, "-o", "--output", help="Directory for the XLSX, HTML and PNG (default: <var>/what-if)."
        ),
    ) -> None:
        """What if a proposed limit had applied (retrospective) and took effect (open clocks). Read-only."""
        # Imported here, not with the module: matplotlib, polars and SQLAlchemy would slow every other command.
        from config.loader import ConfigError
        from config.proposal import load_proposal
        from tasks.clocks.calendar import load_work_calendar
        from tasks.reports.report import dimensions_from_config
        from tasks.reports.simulate import simulate as run_simulation
        from tasks.reports.simulate import window_start
        from tasks.reports.simulate_report import summary_lines, write_what_if
        from tasks.store.upsert import read_tables

        cli = state(ctx)
        settings = cli.settings()
        day = date_option(as_of, "--as-of", up_to_yesterday=True) or settings.effective_as_of
        try:
            window_start(day, window, "--window")
        except ValueError as exc:
            fail(str(exc))
        config = cli.config()
        try:
            proposal = load_proposal(rules, config.rules)
        except ConfigError as exc:
            fail(str(exc))
        tables = read_tables(cli.engine())
        if tables["cases"].is_empty():
            fail("no cases in the database: load data first (`permitwatch run` or `permitwatch demo`)")
        result = run_simulation(
            tables,
            config.rules,
            proposal,
            load_work_calendar(config.calendar_files),
            dimensions_from_config(config.rules, config.units),
            day,
            window,
        )
        files = write_what_if(result, output or settings.var_dir / "what-if", config.templates_dir)
        for line in summary_lines(result):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        for path in (files.xlsx, files.html, files.chart):
            console.print(f"wrote {path}", highlight=False)

