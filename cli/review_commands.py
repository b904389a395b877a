"""`permitwatch review list|approve|hold`: the 督办 review from the command line (the same as the `review` flow's
form in the Prefect UI), for ops without the UI."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import console, date_option, fail, state

if TYPE_CHECKING:
    import polars as pl

review_app = typer.Typer(
    help="督办 review: escalations bound for supervisors wait here when alerting.review is set in units.yaml.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")


def _waiting(ctx: typer.Context) -> pl.DataFrame:
    from tasks.alerts.digests import DigestTemplates
    from tasks.alerts.review import waiting_escalations

    cli = state(ctx)
    config = cli.config()
    if config.units.alerting.review is None:
        console.print("[yellow]note:[/] the 督办 review is off (no alerting.review in units.yaml); "
                      "new escalations do not wait.", highlight=False)
    return waiting_escalations(cli.engine(), config.units, DigestTemplates(config.templates_dir))


def _decided_by() -> str:
    return f"cli {getpass.getuser()}"


@review_app.command("list")
def list_waiting(ctx: typer.Context) -> None:
    """The escalations waiting for review: unit, subject, clock, days overdue and why."""
    from tasks.alerts.review import WAITING_COLUMNS, waiting_table

    waiting = _waiting(ctx)
    if waiting.is_empty():
        console.print("Nothing waits for review.")
        return
    table = Table(title=f"{waiting.height} escalation(s) wait for review")
    for key, heading in WAITING_COLUMNS.items():
        # An id must stay whole to be copied into `approve` or `hold`; the words may wrap.
        table.add_column(heading, no_wrap=key in ("subject_id", "unit_code"))
    for row in waiting_table(waiting):
        table.add_row(*(escape(str(value)) for value in row.values()))
    console.print(table)


@review_app.command("approve")
def approve(
    ctx: typer.Context,
    subjects: list[str] | None = typer.Argument(None, help="Case, push or project ids (编号) to approve."),
    approve_all: bool = typer.Option(False, "--all", help="Approve every waiting escalation."),
) -> None:
    """Let escalations reach the supervisors: they go out with the next delivery."""
    from tasks.alerts.review import APPROVED, decide, select_subjects

    if approve_all == bool(subjects):
        fail("name the subjects to approve, or use --all (not both)")
    waiting = _waiting(ctx)
    _check_known(waiting, subjects or [])
    chosen = select_subjects(waiting, None if approve_all else subjects)
    result = decide(state(ctx).engine(), chosen, APPROVED, decided_by=_decided_by())
    console.print(escape(result.summary()), highlight=False)


@review_app.command("hold")
def hold(
    ctx: typer.Context,
    subjects: list[str] = typer.Argument(..., help="Case, push or project ids (编号) to hold."),
    reason: str = typer.Option(..., "--reason", help="Why (stored with the hold)."),
    until: str | None = typer.Option(
        None, "--until", help="Last day of the hold (YYYY-MM-DD). Default: until the level or due date changes."
    ),
) -> None:
    """Keep escalations from the supervisors: stored as suppressed with the reason; the owner unit is still alerted."""
    from tasks.alerts.review import HELD, decide, select_subjects

    last_day = date_option(until, "--until")
    if not reason.strip():
        fail("--reason must say why")
    waiting = _waiting(ctx)
    _check_known(waiting, subjects)
    try:
        result = decide(
            state(ctx).engine(),
            select_subjects(waiting, subjects),
            HELD,
            decided_by=_decided_by(),
            reason=reason,
            until=last_day,
        )
    except ValueError as exc:
        fail(str(exc))
    console.print(escape(result.summary()), highlight=False)


def _check_known(waiting: pl.DataFrame, subjects: list[str]) -> None:
    from tasks.alerts.review import unknown_subjects

    unknown = unknown_subjects(waiting, subjects)
    if unknown:
        fail(f"not waiting for review: {', '.join(unknown)} (see `permitwatch review list`); nothing was decided")
