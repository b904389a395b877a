"""The `weekly-report` flow: build the statistics report, mail it to the supervisors, publish the key table.

- The report (tasks/reports/report.py) is built from the database with the same deadline engine as the nightly run.
- Every unit tagged `supervisor` in units.yaml gets one email per email contact, the XLSX and HTML attached, as a
  `Notice` through the alerts' apprise sender (tasks/alerts/sending.py, so `outbox://email` contacts land in the
  outbox folder, like alert digests).
- A Prefect markdown artifact with the key figures is published under a stable key (`weekly-report`, or
  `monthly-report` for a month), so the UI shows the latest next to its history. It holds aggregates only.
A send that fails does not stop the others; the run then fails naming the units, so ops see it and can rerun (a
rerun mails every supervisor again: a duplicate report is preferred to a missing one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from config.bundle import PermitwatchConfig, load_config
from config.settings import Settings, load_settings
from flows.hooks import alert_ops_on_failure
from schemas.database import ensure_schema
from tasks.alerts.apprise_setup import setup_apprise
from tasks.alerts.sending import Notice, send_message
from tasks.reports.metrics import PeriodKind, ReportViews
from tasks.reports.report import ReportFiles, build_report, markdown_table, period_title, render_html, write_report
from tasks.store.upsert import read_tables

ARTIFACT_KEYS = {"week": "weekly-report", "month": "monthly-report"}
SUPERVISOR_TAG = "supervisor"


@dataclass(frozen=True)
class SendResult:
    unit_code: str
    target: str
    ok: bool
    error: str | None


@task(name="build-report", cache_policy=NO_CACHE)
def build_report_task(
    settings: Settings, config: PermitwatchConfig, kind: PeriodKind, as_of: date, directory: Path, trend_periods: int
) -> tuple[ReportViews, ReportFiles]:
    tables = read_tables(ensure_schema(settings.database_url))
    views = build_report(tables, config, kind, as_of, trend_periods=trend_periods)
    return views, write_report(views, directory, config.templates_dir)


@task(name="email-supervisors", cache_policy=NO_CACHE)
def email_supervisors(
    views: ReportViews, files: ReportFiles, config: PermitwatchConfig, settings: Settings
) -> list[SendResult]:
    title = period_title(views)
    body = render_html(views, {}, config.templates_dir, summary_only=True)
    attachments = {path.name: path.read_bytes() for path in files.attachments}
    stamp = f"report-{views.period.kind}-{views.period.label}"
    results = []
    for unit in config.units.units.values():
        if SUPERVISOR_TAG not in unit.tags:
            continue
        for contact in unit.contacts_for("email"):
            mail = Notice(recipient_unit=unit.code, title=title, body=body, attachments=attachments)
            ok, error = send_message(contact, mail, outbox_dir=settings.effective_outbox_dir, stamp=stamp)
            results.append(SendResult(unit.code, contact.safe_url, ok, error))
    return results


@flow(name="weekly-report", on_failure=[alert_ops_on_failure], on_crashed=[alert_ops_on_failure])
def weekly_report(
    as_of: date | None = None, period: PeriodKind = "week", output_dir: str | None = None, trend_periods: int = 8
) -> dict[str, object]:
    """Report for the week (or month) holding `as_of` (default: yesterday, Asia/Shanghai), mailed to supervisors."""
    logger = get_run_logger()
    settings = load_settings()
    setup_apprise()
    config = load_config(settings.config_dir)
    day = as_of or settings.effective_as_of
    directory = Path(output_dir) if output_dir else settings.var_dir / "reports"
    views, files = build_report_task(settings, config, period, day, directory, trend_periods)
    create_markdown_artifact(key=ARTIFACT_KEYS[period], markdown=markdown_table(views), description=period_title(views))
    results = email_supervisors(views, files, config, settings)
    failed = [result for result in results if not result.ok]
    logger.info(
        "report %s: %d supervisor messages sent, %d failed", views.period.label, len(results) - len(failed), len(failed)
    )
    if failed:
        details = "; ".join(f"{result.unit_code} {result.target}: {result.error}" for result in failed)
        raise RuntimeError(f"the report could not be sent to {len(failed)} supervisor contact(s): {details}")
    return {
        "period": views.period.label,
        "as_of": day.isoformat(),
        "xlsx": str(files.xlsx),
        "html": str(files.html),
        "sent": [result.unit_code for result in results],
    }
