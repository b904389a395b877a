"""Flow state hooks: when `nightly`, `deliver` or `weekly-report` fails or crashes, ops are told through apprise; a
crashed `deliver` gives back the digests it was sending at once."""

from __future__ import annotations

from datetime import datetime

from prefect import Flow
from prefect.client.schemas.objects import FlowRun
from prefect.logging.loggers import flow_run_logger
from prefect.states import State

from config.bundle import load_config
from config.loader import ConfigError
from config.settings import TIMEZONE, load_settings
from schemas.database import ensure_schema
from tasks.alerts.apprise_setup import setup_apprise
from tasks.alerts.claims import release_run
from tasks.alerts.ops_notices import notify_ops


def failure_message(flow_name: str, run_name: str, run_id: str, state: State) -> tuple[str, str]:
    title = f"permitwatch：{flow_name} 运行失败"
    body = (
        f"审批时限预警系统：{flow_name} 运行 {run_name} 状态为 {state.name}。\n"
        f"原因：{state.message or '未知'}\n"
        f"运行编号（flow run id）：{run_id}\n"
        "请在 Prefect 界面查看运行日志与工件（artifacts）。"
    )
    return title, body


def alert_ops_on_failure(flow: Flow[..., object], flow_run: FlowRun, state: State) -> None:
    """Send the failure notice to every contact of the units tagged `ops` (at once, whatever the hour). The outcome
    is logged on the failed run itself, so the UI shows whether ops were reached."""
    log = flow_run_logger(flow_run, flow)
    title, body = failure_message(flow.name, flow_run.name, str(flow_run.id), state)
    setup_apprise()  # a crash hook may run in a process the flow never started in
    try:
        settings = load_settings()
        units = load_config(settings.config_dir).units
    except (ConfigError, ValueError) as exc:
        log.error("cannot alert ops about %s: configuration does not load: %s", flow_run.name, exc)
        return
    if notify_ops(units, title, body, settings.effective_outbox_dir, datetime.now(TIMEZONE)):
        log.info("ops alerted about the %s run %s", state.name, flow_run.name)
    else:
        log.error("ops could NOT be alerted about %s (no ops unit or every ops contact failed)", flow_run.name)


def release_delivery_claims(flow: Flow[..., object], flow_run: FlowRun, state: State) -> None:
    """A crashed delivery sends nothing more: the digests it had claimed go back to pending for the next delivery
    (they may have reached their recipients just before the crash)."""
    log = flow_run_logger(flow_run, flow)
    try:
        released = release_run(ensure_schema(load_settings().database_url), str(flow_run.id))
    except Exception as exc:  # the next delivery gives them back anyway, from the dead process or the expired lease
        log.error("could not give back the deliveries this run was sending: %s", exc)
        return
    if released:
        log.warning("%d card deliveries this run was sending are pending again (they may have been delivered)",
                    released)
