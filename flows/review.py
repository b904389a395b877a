"""`review`: the 督办 review, a human check before escalations reach supervisors (alerting.review in units.yaml).

Runs at 07:30 Asia/Shanghai, before the 08:30 `deliver`. It publishes the escalations waiting for review as the
table artifact `review-waiting`, then pauses for ops' answer in the Prefect UI (the run's Resume form): approve every
waiting escalation, and/or hold named subjects with a reason. Approved escalations go out with the next delivery;
held ones are stored as suppressed with the reason. An answer naming an id that is not waiting, or a hold without a
reason, is refused in the run's log and the form is offered again. When nobody answers within the timeout,
`alerting.review.on_timeout` applies (send: approve all; hold: hold for today); Prefect then ends the run Failed
("paused and never resumed"), so the missed review is red in the UI and ops are alerted. On a day that is not an
official working day the run does nothing: nothing is delivered that day either.
"""

from __future__ import annotations

import time
from datetime import date, datetime

import polars as pl
from prefect import flow, get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Completed, State
from pydantic import Field, field_validator

from config.settings import TIMEZONE, load_settings
from config.units import ReviewPolicy
from flows.hooks import alert_ops_on_failure
from tasks import artifacts
from tasks.alerts.apprise_setup import setup_apprise
from tasks.alerts.digests import DigestTemplates
from tasks.alerts.review import (
    APPROVED,
    HELD,
    ReviewResult,
    apply_timeout,
    decide,
    select_subjects,
    unknown_subjects,
    waiting_escalations,
)
from tasks.pipeline import RunContext, publish_review_artifact, review_waiting


class ReviewForm(RunInput):
    """The Resume form of a paused `review` run."""

    approve_all: bool = Field(
        default=True, description="Approve every waiting escalation not listed under `hold`: they go out at 08:30."
    )
    hold: list[str] = Field(
        default_factory=list,
        description="Case, push or project ids (编号 in the table) whose escalation must NOT reach the supervisors.",
    )
    reason: str = Field(default="", description="Why they are held (required with `hold`); stored with the hold.")
    hold_until: date | None = Field(
        default=None,
        description="Last day of the hold (optional). Without it the hold lasts until the level or due date changes.",
    )

    @field_validator("hold")
    @classmethod
    def _ids_as_typed(cls, ids: list[str]) -> list[str]:
        """Ids pasted with spaces or blank lines still count."""
        return [text for text in (entry.strip() for entry in ids) if text]


def review_run_name() -> str:
    return f"review-{datetime.now(TIMEZONE):%Y-%m-%dT%H%M}"


def timeout_text(policy: ReviewPolicy, seconds: int) -> str:
    what = {
        "send": "every waiting escalation is approved and sent at the next delivery",
        "hold": "every waiting escalation is held for today and proposed again with its next reminder",
    }[policy.on_timeout]
    return f"Without an answer within {seconds // 60} min {seconds % 60} s, on_timeout={policy.on_timeout}: {what}."


@flow(name="review", flow_run_name=review_run_name, on_failure=[alert_ops_on_failure],
      on_crashed=[alert_ops_on_failure])
def review(timeout_seconds: int | None = None, poll_seconds: int = 10, force: bool = False) -> State:
    """Publish the escalations waiting for review, pause for ops' decision, apply it (or the timeout policy).

    Like `deliver`, it does nothing on a day that is not an official working day (nothing would be sent, and nobody
    is there to answer): the escalations keep waiting for the next working day's review. `force` reviews anyway."""
    setup_apprise()
    context = RunContext.prepare(load_settings())
    log = get_run_logger()
    policy = context.config.units.alerting.review
    if policy is None:
        return Completed(message="督办 review is off (no alerting.review in units.yaml): nothing waits")
    today = datetime.now(TIMEZONE).date()
    official = context.config.units.alerting.window.workdays == "official"
    if official and not force and not context.calendar.is_workday(today):
        return Completed(message=f"{today} is not an official working day: escalations keep waiting for review")
    seconds = timeout_seconds or policy.timeout_minutes * 60
    waiting = review_waiting(context)
    publish_review_artifact(context, waiting, timeout_text(policy, seconds))
    if waiting.is_empty():
        return Completed(message="no escalation waits for review")
    log.info("%d escalation(s) wait for review; open this run and press Resume to answer", waiting.height)
    deadline = time.monotonic() + seconds
    decided_by = f"prefect run {flow_run.get_name()}"
    refused: str | None = None
    while True:
        left = max(1, round(deadline - time.monotonic()))
        form_type = ReviewForm.with_initial_data(description=_form_text(waiting, policy, left, refused))
        try:
            form = pause_flow_run(wait_for_input=form_type, timeout=left, poll_interval=min(poll_seconds, left))
        except FlowPauseTimeout:
            # The run can no longer leave its paused state: no more tasks, plain calls only. What still waits is read
            # again, as someone may have decided from the command line meanwhile.
            templates = DigestTemplates(context.config.templates_dir)
            still = waiting_escalations(context.engine, context.config.units, templates)
            result = apply_timeout(context.engine, still, policy, decided_by=f"{decided_by} (timeout)")
            _report(f"No answer within {seconds} s: on_timeout={policy.on_timeout}. {result.summary()}.", result)
            raise
        # Someone may have decided from the command line meanwhile: judge the answer against what still waits.
        waiting = review_waiting(context)
        if waiting.is_empty():
            return Completed(message="everything was decided from the command line meanwhile: nothing waits")
        refused = _problem(form, waiting)
        if refused is None:
            break
        log.error("answer refused, nothing decided: %s. Answer the form again.", refused)
    result = _apply(context, waiting, form, decided_by)
    message = f"Reviewed: {result.summary()}."
    _report(message, result, form)
    return Completed(message=message)


def _form_text(waiting: pl.DataFrame, policy: ReviewPolicy, seconds: int, refused: str | None) -> str:
    """The text above the Resume form in the Prefect UI."""
    lines = [
        f"**{waiting.height} escalation(s) wait for the 督办 review**: the table is this run's `review-waiting` "
        "artifact (Artifacts tab).",
        "",
        "Keep *approve_all* ticked to send every escalation not listed under *hold* at the next delivery. List ids "
        "(编号) under *hold*, with a *reason*, to keep them from the supervisors; the owner unit is alerted anyway.",
        "",
        timeout_text(policy, seconds),
    ]
    if refused:
        lines[:0] = [f"**Your last answer was refused, nothing was decided:** {refused}.", ""]
    return "\n".join(lines)


def _problem(form: ReviewForm, waiting: pl.DataFrame) -> str | None:
    unknown = unknown_subjects(waiting, form.hold)
    if unknown:
        return f"not waiting for review: {', '.join(unknown)}"
    if form.hold and not form.reason.strip():
        return "a hold needs a reason"
    if form.hold_until is not None and form.hold_until < datetime.now(TIMEZONE).date():
        return f"hold_until {form.hold_until} is in the past"
    return None


def _apply(context: RunContext, waiting: pl.DataFrame, form: ReviewForm, decided_by: str) -> ReviewResult:
    held = select_subjects(waiting, form.hold) if form.hold else waiting.clear()
    result = decide(context.engine, held, HELD, decided_by=decided_by, reason=form.reason, until=form.hold_until)
    if form.approve_all:
        rest = waiting.join(held.select("clock_id", "level", "due_date"), on=["clock_id", "level", "due_date"],
                            how="anti", nulls_equal=True)
        approved = decide(context.engine, rest, APPROVED, decided_by=decided_by)
        result.approved, result.deliveries_released = approved.approved, approved.deliveries_released
        result.superseded += approved.superseded
    return result


def _report(message: str, result: ReviewResult, form: ReviewForm | None = None) -> None:
    lines = [f"## 督办 review\n\n{message}\n"]
    if form is not None and form.hold:
        until = f" until {form.hold_until}" if form.hold_until else " until the level or due date changes"
        lines.append(f"Held{until}: {', '.join(form.hold)} — reason: {form.reason.strip()}\n")
    if form is not None and not form.approve_all:
        lines.append("Not approved: the other escalations keep waiting (next review or `permitwatch review`).\n")
    get_run_logger().info(message)
    artifacts.publish_review_decision("\n".join(lines))
