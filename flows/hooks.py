"""Flow state hooks: when `nightly` or `deliver` fails or crashes, the ops unit is told through apprise."""

from __future__ import annotations

import logging
from datetime import datetime

from prefect.client.schemas.objects import Flow, FlowRun
from prefect.states import State

from config.bundle import load_config
from config.loader import ConfigError
from config.settings import TIMEZONE, load_settings
from tasks.delivery import notify_ops

logger = logging.getLogger("permitwatch.ops")


def failure_message(flow_name: str, run_name: str, state: State) -> tuple[str, str]:
    title = f"permitwatch：{flow_name} 运行失败"
    body = (
        f"审批时限预警系统：{flow_name} 运行 {run_name} 状态为 {state.name}。\n"
        f"原因：{state.message or '未知'}\n"
        "请在 Prefect 界面查看运行日志与工件（artifacts）。"
    )
    return title, body


def alert_ops_on_failure(flow: Flow, flow_run: FlowRun, state: State) -> None:
    title, body = failure_message(flow.name, flow_run.name, state)
    try:
        settings = load_settings()
        units = load_config(settings.config_dir).units
    except (ConfigError, ValueError) as exc:
        logger.error("cannot alert ops about %s: configuration does not load: %s", flow_run.name, exc)
        return
    if not notify_ops(units, title, body, settings.effective_outbox_dir, datetime.now(TIMEZONE)):
        logger.error("ops could not be alerted about %s", flow_run.name)
