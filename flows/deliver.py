"""`deliver`: send the pending cards as digests. Runs at 08:30 Asia/Shanghai every day and itself skips days that are
not official working days (cron cannot know 调休), saying why in its log.

The UI graph shows check-nightly (ops are told once a day when the nightly run before did not complete),
plan-delivery (rows of a delivery that died mid-send given back, digests built), send-digests (claim → send →
record, per digest: each digest claimed just before it is sent, its result recorded right after, so that a crash
repeats only the digests in flight; tasks/alerts/delivery.py), settle-delivery and publish-delivery-artifact.

The run is Failed when a message could not be sent, with a one-line message ("3 of 90 messages not sent: …") and one
WARNING line per message in its log; the cards stay pending and are retried at the next delivery, ops are alerted,
and targets that keep failing are also reported to ops by the delivery itself.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from config.settings import TIMEZONE, load_settings
from flows.hooks import alert_ops_on_failure, release_delivery_claims
from tasks.alerts.apprise_setup import setup_apprise
from tasks.alerts.delivery import DeliveryIncomplete, DeliveryReport, local_moment, outside_window
from tasks.pipeline import (
    RunContext,
    check_nightly,
    plan_digests,
    publish_delivery_artifact,
    send_planned,
    settle,
)
from tasks.store.runs import recorded_run


def deliver_run_name() -> str:
    now = flow_run.parameters.get("now") or datetime.now(TIMEZONE)
    moment = datetime.fromisoformat(now) if isinstance(now, str) else now
    return f"deliver-{moment.astimezone(TIMEZONE):%Y-%m-%dT%H%M}"


@flow(name="deliver", flow_run_name=deliver_run_name, on_failure=[alert_ops_on_failure],
      on_crashed=[release_delivery_claims, alert_ops_on_failure])
def deliver_flow(now: datetime | None = None, force: bool = False) -> State:
    """Send what is pending. Outside the delivery window (official working days, 08:30–18:00 by default) nothing is
    sent and the log says why, unless `force`. The final state's data is the delivery report as a dict (a Failed
    run's: a DeliveryIncomplete carrying it)."""
    moment = local_moment(now or datetime.now(TIMEZONE))
    setup_apprise()
    context = RunContext.prepare(load_settings(), moment.date())
    with recorded_run(context.engine, "deliver", moment.date()) as run:
        report = _deliver(context, moment, force)
        publish_delivery_artifact(context, report)
        status = "skipped" if report.skipped else "failed" if report.messages_failed else "completed"
        run.close(status, {"report": report.summary(), "errors": report.errors[:20]})
    if report.messages_failed:
        line = report.failure_line()
        return Failed(message=line, data=DeliveryIncomplete(line, report.as_dict()))
    return Completed(message=report.summary(), data=report.as_dict())


def _deliver(context: RunContext, moment: datetime, force: bool) -> DeliveryReport:
    skipped = None if force else outside_window(moment, context.config.units.alerting.window, context.calendar)
    if skipped:
        get_run_logger().info("delivery skipped, nothing sent: %s", skipped)
        return DeliveryReport(now=moment, skipped=skipped)
    problem = context.io(check_nightly)(context, moment)
    plan = context.io(plan_digests)(context, moment)
    report = send_planned(context, plan, str(flow_run.id) if flow_run.id else None)
    report.nightly_problem = problem
    return context.io(settle)(context, plan, report)
