"""`permitwatch deliver` and `permitwatch silence add|list|remove`: send the stored alert cards, hold some back."""

from __future__ import annotations

from datetime import date, datetime

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import CliState, console, error_console, fail, state
from cli.pipeline_commands import _export_settings
from config.settings import TIMEZONE

silence_app = typer.Typer(
    help="Silences (静默): hold back the alerts of a case, unit or matter until a date. Held-back cards are recorded.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.command("deliver")(deliver)
    app.add_typer(silence_app, name="silence")


def _parse_now(value: str) -> datetime:
    if value.strip().lower() == "now":
        return datetime.now(TIMEZONE)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"--now: expected an ISO date-time such as 2026-03-05T09:00 (Asia/Shanghai) or 'now', not {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=TIMEZONE)


def deliver(
    ctx: typer.Context,
    now: str | None = typer.Option(
        None,
        "--now",
        metavar="DATETIME",
        help="Send now regardless of the delivery window, as at DATETIME (ISO, Asia/Shanghai unless an offset is "
        "given) or 'now'. Without it, nothing is sent outside the window (official working days 08:30-18:00).",
    ),
) -> None:
    """Send the pending alert cards: one digest per unit and channel (SMS, email, IM). Runs the `deliver` flow."""
    cli = state(ctx)
    settings = cli.settings()
    config = cli.config()
    moment = _parse_now(now) if now is not None else datetime.now(TIMEZONE)
    _export_settings(cli)
    from flows.deliver import deliver_flow
    from tasks.store.runs import state_summary

    final = deliver_flow(now=moment, force=now is not None, return_state=True)
    report = state_summary(final.result(raise_on_failure=False))
    if not report:  # the flow stopped before it had a report (its message says why)
        fail(f"deliver: {final.name}: {final.message}", code=1)
    if report["skipped"]:
        console.print(f"Nothing sent: {escape(report['skipped'])}. Use --now to send anyway.", highlight=False)
        return
    console.print(escape(report["summary"]), highlight=False)
    for error in report["errors"]:
        console.print(f"  [yellow]failed:[/] {escape(error)}", highlight=False)
    if report["messages_sent"] and any(
        contact.target.startswith("outbox://") for unit in config.units.units.values() for contact in unit.contacts
    ):
        console.print(f"Outbox messages are in {settings.effective_outbox_dir}", highlight=False)
    if final.is_failed() or report["ops_notified"] is False:
        console.print(f"deliver: {final.name}: {escape(final.message or '')}", highlight=False)
        raise typer.Exit(1)


@silence_app.command("add")
def silence_add(
    ctx: typer.Context,
    until: str = typer.Option(..., "--until", metavar="DATE", help="Last day the silence holds (YYYY-MM-DD)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept with every card it holds back)."),
    case: str | None = typer.Option(None, "--case", help="A case id (办件编号)."),
    unit: str | None = typer.Option(None, "--unit", help="A unit code from units.yaml."),
    matter: str | None = typer.Option(None, "--matter", help="A matter code (事项编码)."),
) -> None:
    """Hold back the alerts of one case, unit or matter until a date (inclusive)."""
    from tasks.alerts.silences import add_silence

    chosen = [(scope, value) for scope, value in (("case", case), ("unit", unit), ("matter", matter)) if value]
    if len(chosen) != 1:
        fail("give exactly one of --case, --unit, --matter")
    scope, value = chosen[0]
    try:
        last_day = date.fromisoformat(until.strip())
    except ValueError:
        fail(f"--until: expected a date YYYY-MM-DD, not {until!r}")
    cli = state(ctx)
    if scope == "unit" and value not in cli.config().units:
        fail(f"--unit {value}: not a unit in {cli.config().units.path}")
    try:
        silence_id = add_silence(cli.engine(), scope, value, last_day, reason)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"Silence {silence_id}: {scope} {escape(value)} until {last_day} ({escape(reason)})", highlight=False)
    unknown = _unknown_target(cli, scope, value.strip())
    if unknown:
        error_console.print(f"[bold yellow]warning:[/] --{scope} {escape(value)}: {unknown}; the silence holds nothing "
                            "until such cards exist (check the spelling, or `permitwatch silence remove "
                            f"{silence_id}`)", highlight=False, soft_wrap=True)


def _unknown_target(cli: CliState, scope: str, value: str) -> str | None:
    """Why a silence's case id or matter code matches nothing known (None when it does): a typo silences nothing."""
    from sqlalchemy import select

    from schemas.tables import Case

    if scope == "case":
        with cli.engine().connect() as connection:
            if connection.execute(select(Case.case_id).where(Case.case_id == value).limit(1)).first() is None:
                return "no stored case has this id"
    if scope == "matter":
        with cli.engine().connect() as connection:
            stored = connection.execute(select(Case.matter_code).where(Case.matter_code == value).limit(1)).first()
        if stored is None and value not in {matter.code for matter in cli.config().rules.matters}:
            return "no matter in rules.yaml or in the stored cases has this code"
    return None


@silence_app.command("list")
def silence_list(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include removed silences."),
) -> None:
    """The silences, newest last, and whether each still holds today."""
    from tasks.alerts.silences import list_silences

    silences = list_silences(state(ctx).engine(), include_removed=all_)
    if silences.height == 0:
        console.print("No silences.")
        return
    today = datetime.now(TIMEZONE).date()
    table = Table("id", "scope", "value", "until", "state", "reason", "created")
    for row in silences.iter_rows(named=True):
        if row["removed"]:
            status = "removed"
        elif row["until"] < today:
            status = "expired"
        else:
            status = "active"
        created = row["created_at"].astimezone(TIMEZONE).strftime("%Y-%m-%d %H:%M") if row["created_at"] else ""
        table.add_row(
            str(row["id"]),
            row["scope"],
            escape(row["value"]),
            str(row["until"]),
            status,
            escape(row["reason"]),
            created,
        )
    console.print(table)


@silence_app.command("remove")
def silence_remove(ctx: typer.Context, silence_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Lift a silence now (it stays on record as removed)."""
    from tasks.alerts.silences import remove_silence

    if not remove_silence(state(ctx).engine(), silence_id):
        fail(f"no active silence with id {silence_id} (see `permitwatch silence list`)")
    console.print(f"Silence {silence_id} removed.")
