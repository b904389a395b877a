"""The Prefect side: nightly/deliver/backfill flows on Prefect's test harness, artifacts read back through the
client, deployments and their schedules, retries, concurrency, failure handling and the ops alert, and the demo."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from alert_servers import free_port
from orchestration_fixtures import (
    AS_OF,
    Pipeline,
    artifacts_of,
    flow_run_id,
    make_pipeline,
    sample_tables,
    table_data,
    task_runs,
    watch_log,
)
from prefect.client.orchestration import get_client
from prefect.states import State
from typer.testing import CliRunner

from config.settings import BUNDLED_CONFIG_DIR, TIMEZONE
from config.sources import Source
from flows.backfill import backfill, months
from flows.deliver import deliver_flow
from flows.deployments import SCHEDULES, deployments
from flows.nightly import nightly
from tasks.artifacts import (
    DELIVERY_KEY,
    OVERDUE_KEY,
    PROGRESS_KEY,
    REJECTS_KEY,
    SUMMARY_KEY,
    summary_markdown,
)
from tasks.pii import masked_raw, pii_headers
from tasks.store.evaluations import read_evaluations
from tasks.store.runs import run_lock, state_summary

REPO_ROOT = Path(__file__).resolve().parents[1]
NIGHTLY_KEYS = {SUMMARY_KEY, OVERDUE_KEY, REJECTS_KEY, PROGRESS_KEY}


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return sample_tables()


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, pl.DataFrame]) -> Pipeline:
    return make_pipeline(tmp_path, monkeypatch, tables)


def run_nightly(**parameters: Any) -> State[Any]:
    return nightly(**{"as_of": AS_OF, "deliverable": True, **parameters}, return_state=True)


def summary_of(state: State[Any]) -> dict[str, Any]:
    summary = state_summary(state.result(raise_on_failure=False))
    assert summary, state
    return summary


# ------------------------------------------------------------------------------------------------ pure builders


def test_months_cut_a_range_at_month_ends() -> None:
    assert months(date(2026, 1, 30), date(2026, 3, 2)) == [
        (date(2026, 1, 30), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 2)),
    ]
    assert months(date(2026, 5, 5), date(2026, 5, 5)) == [(date(2026, 5, 5), date(2026, 5, 5))]


def test_rejected_rows_show_no_applicant_data() -> None:
    pii = pii_headers(Source(name="x", kind="csv", table="cases", path="x.csv", mapping={"姓名": "applicant_name"}))
    clean = json.dumps({"办件编号": "C1", "姓名": "张小三", "联系电话": "13812340000", "受理时间": "bad"},
                       ensure_ascii=False)
    shown = json.loads(masked_raw(clean, pii))
    assert shown == {"办件编号": "C1", "姓名": "张*三", "联系电话": "138****0000", "受理时间": "bad"}
    # A separator inside the name shifts the phone under the next header and past the last one: all masked from
    # the first PII column on.
    shifted = json.dumps({"case_id": "C2", "applicant_name": "张", "applicant_phone": "小三", "accepted_at":
                          "13812340000", "_extra": '["2026-01-05"]'}, ensure_ascii=False)
    shown = json.loads(masked_raw(shifted, pii_headers(None)))
    assert shown["case_id"] == "C2"
    assert {shown[key] for key in ("applicant_name", "applicant_phone", "accepted_at", "_extra")} == {"***"}
    assert masked_raw("13812340000 张小三", pii) == "(not shown: unparsed record)"


def test_summary_warns_about_the_calendar_only_when_a_clock_is_provisional() -> None:
    summary: dict[str, Any] = {
        "as_of": "2026-11-20", "sources": [], "level_table": [], "cards": {}, "provisional_clocks": 0,
        "provisional_years": [2027],
    }
    assert "Calendar warning" not in summary_markdown(summary)
    warned = summary_markdown({**summary, "provisional_clocks": 12})
    assert "**Calendar warning:** 12 clocks use a provisional calendar (years 2027" in warned


# ------------------------------------------------------------------------------------------------ nightly


@pytest.mark.usefixtures("prefect_harness")
def test_nightly_publishes_summary_overdue_rejects_and_progress_artifacts(
    pipeline: Pipeline, tables: dict[str, pl.DataFrame]
) -> None:
    state = run_nightly()
    assert state.is_completed(), state.message
    summary = summary_of(state)
    found = artifacts_of(flow_run_id(state))
    assert set(found) >= NIGHTLY_KEYS

    markdown = str(found[SUMMARY_KEY].data)
    cases = next(row for row in summary["sources"] if row["source"] == "cases")
    stored_cases = pipeline.count("cases")
    rejects = pipeline.scalar("SELECT count(*) FROM rejects WHERE reasons NOT LIKE 'clock builder:%'")
    assert cases["rejected"] > 0 and cases["accepted"] == stored_cases
    assert cases["rows_read"] == tables["cases"].height == stored_cases + rejects
    assert f"| cases | cases | {cases['rows_read']:,} | {stored_cases:,} | {rejects:,} | yes |" in markdown
    for level, stored in pipeline.rows("SELECT level, count(*) FROM evaluations WHERE level IN "
                                       "('escalated', 'overdue', 'warning', 'paused', 'normal') GROUP BY level"):
        assert re.search(rf"^\| {level} \|.* \| {stored:,} \|$", markdown, re.MULTILINE), level
    cards = pipeline.count("cards")
    assert cards > 0 and f"New cards: {cards:,} " in markdown
    provisional = pipeline.scalar("SELECT count(*) FROM evaluations WHERE calendar = 'provisional'")
    assert provisional > 0
    assert f"**Calendar warning:** {summary['provisional_clocks']:,} clocks use a provisional calendar" in markdown

    overdue = table_data(found[OVERDUE_KEY])
    expected = pipeline.rows("SELECT clock_id FROM evaluations WHERE level IN ('overdue', 'escalated') "
                             "ORDER BY overdue_workdays DESC, clock_id LIMIT 50")
    assert [row["clock_id"] for row in overdue] == [row.clock_id for row in expected]
    assert all(row["unit_name"] for row in overdue)  # names beside the codes
    assert any(row["matter_name"] for row in overdue)

    # The clock builder's refusals: in `rejects` with the file, line and reason of the row, and in the artifact.
    refused = pipeline.rows("SELECT source, target_table, line, reasons FROM rejects "
                            "WHERE reasons LIKE 'clock builder:%' ORDER BY id")
    assert refused and all(row.source == "cases.csv" and row.line > 1 for row in refused
                           if row.target_table == "cases")
    assert any("unknown matter 'XX-9999'" in row.reasons for row in refused), refused
    assert summary["clock_rejects"] == len(refused)
    for row in summary["clock_reconciliation"]:
        assert row["stored"] == pipeline.count(row["table"]) == row["used"] + row["refused"], row
    assert sum(row["refused"] for row in summary["clock_reconciliation"]) == len(refused)
    assert "| table | stored | used | refused |" in markdown

    rejected = table_data(found[REJECTS_KEY])
    assert len(rejected) == min(100, rejects + len(refused)) and all(row["reasons"] for row in rejected)
    assert {(row["source"], row["line"], row["reasons"]) for row in rejected} == {
        (source, line, reasons) for (source, line, reasons) in pipeline.rows(
            "SELECT source, line, reasons FROM rejects ORDER BY id LIMIT 100")
    }
    published = " ".join(str(artifact.data) for artifact in found.values())
    raw_cases = tables["cases"]
    names = [name for name in raw_cases["applicant_name"].drop_nulls().to_list() if len(name) > 1]
    phones = raw_cases["applicant_phone"].drop_nulls().to_list()
    assert names and phones
    assert not [value for value in (*names, *phones) if value in published]
    assert re.search(r"\d{3}\*{4}\d{4}", published), "the rejected rows show masked phones"

    assert found[PROGRESS_KEY].data == 100.0


@pytest.mark.usefixtures("prefect_harness")
def test_a_flaky_source_succeeds_on_retry(pipeline: Pipeline) -> None:
    """The cases export is not there when the run starts (a required source) and arrives while the first attempt
    fails; the retry reads it."""
    staged = pipeline.root / "staged-cases.csv"
    (pipeline.inbox / "cases.csv").rename(staged)
    sources = (BUNDLED_CONFIG_DIR / "sources.yaml").read_text(encoding="utf-8")
    pipeline.use_config(sources_yaml=sources.replace('path: "cases*.csv"', 'path: "cases*.csv"\n    required: true'))

    def deliver_the_export(message: str) -> None:
        if message.startswith("cases failed:") and staged.exists():
            staged.rename(pipeline.inbox / "cases.csv")

    with watch_log("prefect.task_runs", deliver_the_export) as log:
        state = run_nightly(sources=["cases"])

    assert state.is_completed(), state.message
    assert [message for message in log.messages if message.startswith("cases failed:")] == [
        f"cases failed: source 'cases': no file matches cases*.csv in {pipeline.inbox}"
    ]
    assert pipeline.count("cases") == summary_of(state)["sources"][0]["accepted"] > 0
    runs = task_runs(flow_run_id(state), lambda runs: any(
        run.name == "ingest-cases" and run.state is not None and run.state.is_completed() for run in runs))
    ingest = next(run for run in runs if run.name == "ingest-cases")
    assert ingest.run_count == 2


@pytest.mark.usefixtures("prefect_harness")
def test_a_failing_source_fails_the_run_but_the_others_are_stored_and_ops_alerted(
    pipeline: Pipeline, tables: dict[str, pl.DataFrame]
) -> None:
    """pushes has no push_id column (a schema-level failure); deferrals has most rows bad (over its reject limit)."""
    tables["pushes"].drop("push_id").write_csv(pipeline.inbox / "pushes.csv")
    every_other = pl.int_range(pl.len()) % 2 == 0
    deferrals = tables["deferrals"].with_columns(
        pl.when(every_other).then(pl.lit("not a date")).otherwise("supplied_at").alias("supplied_at")
    )
    deferrals.write_csv(pipeline.inbox / "deferrals.csv")

    with watch_log("prefect.flow_runs") as log:
        state = run_nightly()

    assert state.is_failed()
    assert state.message is not None and state.message.startswith(
        "sources not stored: deferrals, pushes (deferrals: 51.9% rejected exceeds the 20% limit; "
        "pushes: pushes.csv: missing required column(s) push_id (推送编号)"
    )
    summary = summary_of(state)
    assert summary["failed_sources"] == ["deferrals", "pushes"]
    assert pipeline.count("pushes") == 0 and pipeline.count("deferrals") == 0
    for name in ("cases", "steps", "suspensions", "projects"):
        loaded = next(row for row in summary["sources"] if row["source"] == name)
        assert loaded["stored"] and pipeline.count(name) == loaded["accepted"] > 0, name
    assert pipeline.scalar("SELECT count(*) FROM rejects WHERE target_table = 'deferrals'") == (
        deferrals.height + 1
    ) // 2
    assert pipeline.count("cards") > 0, "the sources that loaded are still evaluated and carded"
    assert pipeline.rows("SELECT status FROM runs") == [("failed",)]

    # Neither can clear up: no retry, and both are red in the task graph.
    watched = {"ingest-pushes", "validate-deferrals", "validate-pushes", "validate-cases"}
    runs = {run.name: run for run in task_runs(flow_run_id(state), lambda runs: watched <= {
        run.name for run in runs if run.state is not None and run.state.is_final()})}
    assert runs["ingest-pushes"].run_count == 1 and runs["ingest-pushes"].state.is_failed()
    for name in ("validate-deferrals", "validate-pushes"):
        assert runs[name].run_count == 1 and runs[name].state.is_failed(), name
    assert runs["validate-cases"].state.is_completed()

    markdown = str(artifacts_of(flow_run_id(state))[SUMMARY_KEY].data)
    assert "**Failed sources:** deferrals, pushes" in markdown
    assert "missing required column(s) push_id" in markdown

    alerts = [path for path in pipeline.outbox_files() if path.name.startswith("360700XNB.")]
    assert [path.name for path in alerts] == ["360700XNB.email.html"]
    alert = alerts[0].read_text(encoding="utf-8")
    assert "nightly 运行 nightly-2026-11-20 状态为 Failed" in alert and "deferrals, pushes" in alert
    assert any(message.startswith("ops alerted about the Failed run nightly-2026-11-20") for message in log.messages)


@pytest.mark.usefixtures("prefect_harness")
def test_two_concurrent_nightly_runs_do_not_duplicate_cards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, pl.DataFrame], database_url: str
) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, tables, database_url)
    pipeline.engine().dispose()  # the schema exists before the runs start, as after `permitwatch db upgrade`
    states: list[State[Any]] = []
    threads = [threading.Thread(target=lambda: states.append(run_nightly())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(states) == 2 and all(state.is_completed() for state in states), [s.message for s in states]
    runs = pipeline.rows("SELECT run_id, status FROM runs ORDER BY run_id")
    assert {status for _, status in runs} <= {"completed", "skipped"} and "completed" in {s for _, s in runs}
    identities = pipeline.rows("SELECT clock_id, level, due_date, reminder_no, count(*) FROM cards "
                               "GROUP BY clock_id, level, due_date, reminder_no HAVING count(*) > 1")
    assert identities == []
    card_runs = pipeline.rows("SELECT DISTINCT run_id FROM cards")
    assert len(card_runs) == 1, "one run issued every card"
    cards = pipeline.count("cards")

    again = run_nightly()
    assert again.is_completed() and summary_of(again)["cards"]["new"] == 0
    assert pipeline.count("cards") == cards


@pytest.mark.usefixtures("prefect_harness")
def test_a_nightly_run_stands_down_while_another_holds_the_lock(pipeline: Pipeline) -> None:
    engine = pipeline.engine()
    with run_lock(engine, "nightly", "nightly-2026-11-20 (run 1)"):
        state = run_nightly()
    engine.dispose()
    assert state.is_completed()
    assert state.message == "skipped: nightly is already running (nightly-2026-11-20 (run 1) since " + (
        state.message.split(" since ")[1]
    )
    assert pipeline.count("cases") == pipeline.count("cards") == 0
    assert pipeline.rows("SELECT status FROM runs") == [("skipped",)]


# ------------------------------------------------------------------------------------------------ deliver


@pytest.mark.usefixtures("prefect_harness")
def test_deliver_skips_holidays_but_not_make_up_workdays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, None)
    with watch_log("prefect.flow_runs") as log:
        holiday = deliver_flow(now=datetime(2026, 10, 1, 9, 0, tzinfo=TIMEZONE), return_state=True)  # 国庆节
        make_up = deliver_flow(now=datetime(2026, 2, 14, 9, 0, tzinfo=TIMEZONE), return_state=True)  # 调休 Saturday

    assert holiday.is_completed() and make_up.is_completed()
    assert "delivery skipped, nothing sent: 2026-10-01 (Thursday) is not an official working day" in log.messages
    assert not [message for message in log.messages if "2026-02-14" in message and "skipped" in message]
    assert table_data(artifacts_of(flow_run_id(holiday))[DELIVERY_KEY])[0]["status"] == "skipped"
    assert table_data(artifacts_of(flow_run_id(make_up))[DELIVERY_KEY])[0]["status"] == "nothing pending"
    assert pipeline.rows("SELECT flow, status FROM runs ORDER BY run_id") == [
        ("deliver", "skipped"), ("deliver", "completed")
    ]


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_delivery_fails_the_run_keeps_cards_pending_and_alerts_ops(pipeline: Pipeline) -> None:
    gateway = f"json://127.0.0.1:{free_port()}/sms"  # nothing listens there: every SMS is refused
    pipeline.use_config(units_replace={"outbox://sms": gateway})
    assert run_nightly().is_completed()

    state = deliver_flow(now=datetime(2026, 11, 23, 9, 0, tzinfo=TIMEZONE), return_state=True)

    assert state.is_failed()
    assert re.fullmatch(r"\d+ of \d+ messages not sent: .*", str(state.message))
    statuses = dict(pipeline.rows("SELECT channel, group_concat(DISTINCT status) FROM deliveries GROUP BY channel"))
    assert statuses == {"email": "sent", "sms": "pending"}
    table = table_data(artifacts_of(flow_run_id(state))[DELIVERY_KEY])
    assert {(row["channel"], row["status"]) for row in table} == {("email", "sent"), ("sms", "pending")}
    assert all(row["last_error"] for row in table if row["status"] == "pending")
    assert sum(row["cards"] for row in table) == pipeline.count("deliveries")
    alerts = [path.read_text("utf-8") for path in pipeline.outbox_files() if path.name.startswith("360700XNB.")]
    assert sum("deliver 运行 deliver-2026-11-23T0900 状态为 Failed" in text for text in alerts) == 1
    assert sum("no nightly run as of 2026-11-22 was recorded" in text for text in alerts) == 1  # told before sending


# ------------------------------------------------------------------------------------------------ backfill


@pytest.mark.usefixtures("prefect_harness")
def test_backfill_writes_evaluation_history_only(pipeline: Pipeline, tables: dict[str, pl.DataFrame]) -> None:
    assert run_nightly(deliverable=False).is_completed()
    engine = pipeline.engine()
    nightly_view = read_evaluations(engine, AS_OF).drop("run_id")
    first = AS_OF - timedelta(days=22)  # two calendar months: 2026-10-29 .. 2026-11-20

    stored = backfill(start=first, end=AS_OF)

    assert list(stored) == [(first + timedelta(days=n)).isoformat() for n in range(23)]
    assert read_evaluations(engine, AS_OF).drop("run_id").sort("clock_id").equals(nightly_view.sort("clock_id"))
    for day, count in stored.items():
        history = read_evaluations(engine, date.fromisoformat(day))
        assert history.height == count > 0
        assert history.filter(pl.col("start_date") > date.fromisoformat(day)).height == 0
    engine.dispose()
    assert pipeline.count("cards") == pipeline.count("deliveries") == 0
    assert pipeline.outbox_files() == []

    backfill_run = pipeline.rows("SELECT run_id FROM runs WHERE flow = 'backfill'")[0].run_id
    assert pipeline.scalar("SELECT count(DISTINCT as_of) FROM evaluations WHERE run_id = :run", run=backfill_run) == 23
    with get_client(sync_client=True) as client:
        run = next(
            run for run in client.read_flow_runs() if run.name == f"backfill-{first}-{AS_OF}"
        )
    names = sorted(re.sub(r"-[0-9a-f]{3}$", "", task.name) for task in task_runs(run.id, lambda runs: len(runs) >= 4))
    assert names == ["build-clocks", "evaluate-history-2026-10-29-2026-10-31", "evaluate-history-2026-11-01-2026-11-20",
                     "read-stored"], "the stored tables are read and the clocks built once, then a task per month"


@pytest.mark.usefixtures("prefect_harness")
def test_backfill_refuses_a_day_that_is_not_over(pipeline: Pipeline) -> None:
    today = datetime.now(TIMEZONE).date()
    with pytest.raises(ValueError, match="is after yesterday"):
        backfill(start=today - timedelta(days=3), end=today)


@pytest.mark.usefixtures("prefect_harness")
def test_backfill_command_reports_what_it_stored_and_refuses_a_reversed_range(pipeline: Pipeline) -> None:
    from cli.main import app

    assert run_nightly(deliverable=False).is_completed()
    first = AS_OF - timedelta(days=2)
    result = CliRunner().invoke(app, ["backfill", "--from", first.isoformat(), "--to", AS_OF.isoformat()])
    assert result.exit_code == 0, result.output
    stored = pipeline.scalar("SELECT count(*) FROM evaluations WHERE as_of BETWEEN :a AND :b AND run_id IN "
                             "(SELECT run_id FROM runs WHERE flow = 'backfill')", a=first, b=AS_OF)
    assert f"3 days, {stored:,} evaluations stored" in " ".join(result.output.split())

    reversed_range = CliRunner().invoke(app, ["backfill", "--from", AS_OF.isoformat(), "--to", first.isoformat()])
    assert reversed_range.exit_code == 2, "a wrong option, refused before any flow starts"
    assert f"--from {AS_OF}: expected a date no later than --to ({first})" in " ".join(reversed_range.output.split())
    assert pipeline.scalar("SELECT count(*) FROM runs WHERE flow = 'backfill'") == 1


# ------------------------------------------------------------------------------------------------ deployments


@pytest.mark.usefixtures("prefect_harness")
def test_deployments_are_registered_with_their_cron_and_timezone() -> None:
    built = deployments()  # outside the event loop: to_deployment is async inside one

    async def register_and_read() -> dict[str, Any]:
        registered = {}
        async with get_client() as client:
            for deployment in built:
                await deployment.apply()
                registered[deployment.name] = await client.read_deployment_by_name(
                    f"{deployment.flow_name}/{deployment.name}"
                )
        return registered

    registered = asyncio.run(register_and_read())

    assert set(registered) == {"nightly", "review", "deliver", "weekly-report", "backfill", "what-if"}
    for name, cron in SCHEDULES.items():
        schedules = [(entry.schedule.cron, entry.schedule.timezone, entry.active)
                     for entry in registered[name].schedules]
        assert schedules == [(cron, "Asia/Shanghai", True)], name
    assert SCHEDULES == {"nightly": "30 1 * * *", "review": "30 7 * * *", "deliver": "30 8 * * *",
                         "weekly-report": "0 9 * * 1"}
    assert registered["backfill"].schedules == [], "backfill runs only when ops start it"
    assert registered["what-if"].schedules == [], "what-if runs only when ops start it"
    for name in ("nightly", "review", "deliver", "backfill"):
        limit = registered[name].global_concurrency_limit
        assert limit is not None and limit.limit == 1, name


def test_prefect_yaml_has_the_same_schedules_as_serve() -> None:
    document = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    found = {
        entry["name"]: [(schedule["cron"], schedule["timezone"]) for schedule in entry.get("schedules", [])]
        for entry in document["deployments"]
    }
    assert found == {**{name: [(cron, "Asia/Shanghai")] for name, cron in SCHEDULES.items()}, "backfill": [],
                     "what-if": []}
    entrypoints = {entry["name"]: entry["entrypoint"] for entry in document["deployments"]}
    assert entrypoints == {"nightly": "flows/nightly.py:nightly", "review": "flows/review.py:review",
                           "deliver": "flows/deliver.py:deliver_flow",
                           "weekly-report": "flows/weekly_report.py:weekly_report",
                           "backfill": "flows/backfill.py:backfill", "what-if": "flows/what_if.py:what_if"}


# ------------------------------------------------------------------------------------------------ demo


@pytest.mark.usefixtures("prefect_harness")
def test_demo_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app

    pipeline = make_pipeline(tmp_path, monkeypatch, None)
    result = CliRunner().invoke(app, ["demo", "--cases", "300"])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output

    read = sum(
        len(path.read_text(encoding="utf-8").splitlines()) - 1 for path in pipeline.inbox.glob("*.csv")
    )
    rejects = pipeline.scalar("SELECT count(*) FROM rejects WHERE reasons NOT LIKE 'clock builder:%'")
    refused = pipeline.scalar("SELECT count(*) FROM rejects WHERE reasons LIKE 'clock builder:%'")
    assert rejects > 0 and refused > 0
    assert f"Rows rejected: {rejects:,} of {read:,} read" in output
    assert f"Rows the clock builder refused: {refused:,}" in output
    cards, deliveries = pipeline.count("cards"), pipeline.count("deliveries")
    assert cards > 0 and f"Cards: {cards:,} new (0 held back by silences), {deliveries:,} deliveries queued" in output
    assert pipeline.count("cases") + pipeline.scalar(
        "SELECT count(*) FROM rejects WHERE target_table = 'cases' AND reasons NOT LIKE 'clock builder:%'"
    ) == len((pipeline.inbox / "cases.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert pipeline.count("evaluations") > 0
    assert pipeline.rows("SELECT flow, status FROM runs ORDER BY run_id") == [
        ("nightly", "completed"), ("deliver", "completed")
    ]
    assert pipeline.rows("SELECT DISTINCT status FROM deliveries") == [("sent",)]

    recipients = {(unit, channel) for unit, channel in pipeline.rows(
        "SELECT DISTINCT recipient_unit, channel FROM deliveries")}
    messages = [path for path in pipeline.outbox_files() if re.fullmatch(r"[^.]+\.(email\.html|sms\.txt)", path.name)]
    assert sorted((path.name.split(".")[0], path.name.split(".")[1]) for path in messages) == sorted(recipients)
    assert f"{len(messages)} messages sent" in output
