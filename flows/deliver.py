"""`deliver`: send the pending cards as digests. Runs at 08:30 Asia/Shanghai every day and itself skips days that are
not official working days (cron cannot know 调休), saying why in its log.

The run is Failed when a message could not be sent (its cards stay pending and are retried at the next delivery),
so ops see it in red and are alerted; targets that keep failing are also reported to ops by the delivery itself.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from config.settings import TIMEZONE, load_settings
from flows.hooks import alert_ops_on_failure
from tasks.pipeline import RunContext, deliver, publish_delivery_artifact
from tasks.runs import close_run, open_run


def deliver_run_name() -> str:
    now = flow_run.parameters.get("now") or datetime.now(TIMEZONE)
    moment = datetime.fromisoformat(now) if isinstance(now, str) else now
    return f"deliver-{moment.astimezone(TIMEZONE):%Y-%m-%dT%H%M}"


@flow(name="deliver", flow_run_name=deliver_run_name, on_failure=[alert_ops_on_failure],
      on_crashed=[alert_ops_on_failure])
def deliver_flow(now: datetime | None = None, force: bool = False) -> State:
    """Send what is pending. Outside the delivery window (official working days, 08:30–18:00 by default) nothing is
    sent and the log says why, unless `force`. The final state carries the DeliveryReport."""
    moment = (now or datetime.now(TIMEZONE)).astimezone(TIMEZONE)
    context = RunContext.prepare(load_settings(), moment.date())
    log = get_run_logger()
    run_id = open_run(context.engine, "deliver", moment.date())
    try:
        report = context.io(deliver)(context, moment, force)
        if report.skipped:
            log.info("delivery skipped, nothing sent: %s", report.skipped)
        publish_delivery_artifact(context, report)
    except BaseException as exc:
        close_run(context.engine, run_id, "failed", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    status = "skipped" if report.skipped else "failed" if report.messages_failed else "completed"
    close_run(context.engine, run_id, status, {"report": report.summary(), "errors": report.errors[:20]})
    if report.messages_failed:
        return Failed(message=f"{report.messages_failed} message(s) not sent, kept pending for the next delivery: "
                      f"{report.summary()}", data=report)
    return Completed(message=report.summary(), data=report)
