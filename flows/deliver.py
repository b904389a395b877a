"""`deliver`: send the pending cards as digests. Runs at 08:30 Asia/Shanghai and skips non-working days (调休-aware)."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger

from config.settings import TIMEZONE, load_settings
from flows.hooks import alert_ops_on_failure
from tasks.delivery import DeliveryReport
from tasks.pipeline import RunContext, deliver, publish_delivery_artifact
from tasks.runs import close_run, open_run


@flow(name="deliver", on_failure=[alert_ops_on_failure], on_crashed=[alert_ops_on_failure])
def deliver_flow(now: datetime | None = None, force: bool = False) -> DeliveryReport:
    """Send what is pending. Outside the delivery window (official working days, 08:30–18:00) nothing is sent and
    the log says why, unless `force`."""
    moment = (now or datetime.now(TIMEZONE)).astimezone(TIMEZONE)
    context = RunContext.prepare(load_settings(), moment.date())
    run_id = open_run(context.engine, "deliver", moment.date())
    report = deliver(context, moment, force)
    if report.skipped:
        get_run_logger().info("nothing sent: %s", report.skipped)
    publish_delivery_artifact(context, report)
    failed = report.messages_failed and not report.messages_sent
    close_run(context.engine, run_id, "failed" if failed else "completed", {"report": report.summary()})
    return report
