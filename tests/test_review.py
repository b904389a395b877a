"""督办 review: escalations bound for supervisors wait, ops approve or hold them (CLI and the `review` flow's form
under Prefect's test harness), the timeout policy, and a hold that stands for later reminders."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import polars as pl
import pytest
from orchestration_fixtures import AS_OF, Pipeline, artifacts_of, make_pipeline, sample_tables, table_data
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from prefect.input import keyset_from_paused_state, read_flow_run_input
from prefect.states import State
from typer.testing import CliRunner

from cli.main import app
from config.settings import TIMEZONE
from flows.deliver import deliver_flow
from flows.nightly import nightly
from flows.review import review
from tasks.alerts.review import APPROVED, HELD, apply_timeout, waiting_escalations
from tasks.artifacts import REVIEW_KEY

DELIVERY_TIME = datetime(2026, 11, 23, 9, 0, tzinfo=TIMEZONE)  # Monday after AS_OF, inside the window
TOP = "360700WXB"  # the city's 五型政府 office: supervisor of the city bureaus


def review_on(on_timeout: str = "hold") -> dict[str, str]:
    """The bundled units.yaml with an `alerting:` section that turns review on (the bundled file leaves it off)."""
    anchor = "\nunits:\n"
    return {anchor: f"\nalerting:\n  review: {{on_timeout: {on_timeout}}}\n{anchor}"}


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return sample_tables()


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, pl.DataFrame]) -> Pipeline:
    pipeline = make_pipeline(tmp_path, monkeypatch, tables)
    pipeline.use_config(units_replace=review_on())
    return pipeline


@pytest.fixture
def any_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, pl.DataFrame], database_url: str
) -> Pipeline:
    """The same on SQLite and, when available, PostgreSQL."""
    pipeline = make_pipeline(tmp_path, monkeypatch, tables, database_url)
    pipeline.use_config(units_replace=review_on())
    return pipeline


def run_nightly(as_of: date = AS_OF) -> None:
    assert nightly(as_of=as_of, deliverable=True, return_state=True).is_completed()


def statuses(pipeline: Pipeline) -> dict[str, int]:
    return dict(pipeline.rows("SELECT status, count(*) FROM deliveries GROUP BY status"))


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def waiting_subjects(pipeline: Pipeline) -> list[str]:
    return [row[0] for row in pipeline.rows(
        "SELECT DISTINCT c.subject_id FROM deliveries d JOIN cards c ON c.card_id = d.card_id "
        "WHERE d.status = 'awaiting_review' ORDER BY 1")]


@pytest.mark.usefixtures("prefect_harness")
def test_escalations_wait_for_review_then_approve_delivers_them(any_database: Pipeline) -> None:
    pipeline = any_database
    run_nightly()
    waiting = pipeline.rows(
        "SELECT c.level, c.unit_code, d.recipient_unit FROM deliveries d JOIN cards c ON c.card_id = d.card_id "
        "WHERE d.status = 'awaiting_review'")
    assert waiting, "the sample has escalations"
    assert {level for level, _, _ in waiting} == {"escalated"}
    assert all(owner != recipient for _, owner, recipient in waiting)  # the owner's own copy never waits
    assert pipeline.scalar("SELECT count(*) FROM deliveries d JOIN cards c ON c.card_id = d.card_id "
                           "WHERE c.level = 'escalated' AND d.recipient_unit = c.unit_code "
                           "AND d.status = 'pending'") > 0

    assert deliver_flow(now=DELIVERY_TIME, return_state=True).is_completed()
    assert statuses(pipeline)["awaiting_review"] == len(waiting)  # delivery leaves them alone
    assert not any(path.name.startswith(TOP + ".") for path in pipeline.outbox_files())

    # A second night before anyone reviewed: each escalation has a newer reminder; only that one is proposed.
    run_nightly(AS_OF + timedelta(days=7))
    listed = cli("review", "list")
    assert listed.exit_code == 0, listed.output
    assert all(subject in listed.output for subject in waiting_subjects(pipeline))
    approved = cli("review", "approve", "--all")
    assert approved.exit_code == 0, approved.output
    assert "deliveries of earlier reminders dropped" in " ".join(approved.output.split())
    assert "awaiting_review" not in statuses(pipeline)

    assert deliver_flow(now=DELIVERY_TIME + timedelta(days=7), return_state=True).is_completed()
    assert set(statuses(pipeline)) <= {"sent", "superseded"}
    assert pipeline.scalar(
        "SELECT count(*) FROM (SELECT c.clock_id, d.recipient_unit FROM deliveries d JOIN cards c "
        "ON c.card_id = d.card_id WHERE d.status = 'sent' AND d.recipient_unit <> c.unit_code "
        "AND c.level = 'escalated' GROUP BY c.clock_id, c.level, c.due_date, d.recipient_unit, d.channel "
        "HAVING count(*) > 1) AS twice") == 0  # no supervisor gets the same escalation twice
    assert any(path.name.startswith(TOP + ".") for path in pipeline.outbox_files())
    assert pipeline.rows("SELECT DISTINCT decision, decided_by FROM review_decisions")[0][0] == APPROVED


@pytest.mark.usefixtures("prefect_harness")
def test_a_hold_suppresses_with_its_reason_and_stands_for_later_reminders(any_database: Pipeline) -> None:
    pipeline = any_database
    run_nightly()
    subjects = waiting_subjects(pipeline)
    held, others = subjects[0], subjects[1:]

    refused = cli("review", "hold", "NOT-A-SUBJECT", "--reason", "x")
    assert refused.exit_code == 2 and "not waiting for review: NOT-A-SUBJECT" in refused.output
    no_reason = cli("review", "hold", held, "--reason", " ")
    assert no_reason.exit_code == 2
    result = cli("review", "hold", held, "--reason", "导出数据有误，待核实")
    assert result.exit_code == 0, result.output

    rows = pipeline.rows(
        "SELECT d.status, c.subject_id FROM deliveries d JOIN cards c ON c.card_id = d.card_id "
        "WHERE c.level = 'escalated' AND d.recipient_unit <> c.unit_code AND c.subject_id = :subject", subject=held)
    assert rows and {status for status, _ in rows} == {"suppressed"}
    assert pipeline.rows("SELECT decision, reason, until FROM review_decisions") == [
        (HELD, "导出数据有误，待核实", None)
    ]
    assert waiting_subjects(pipeline) == others

    # Five working days later every escalation has a new reminder: the held one goes to its owner only.
    run_nightly(AS_OF + timedelta(days=7))
    assert held not in waiting_subjects(pipeline)
    later = pipeline.rows(
        "SELECT d.status FROM deliveries d JOIN cards c ON c.card_id = d.card_id WHERE c.subject_id = :subject "
        "AND c.level = 'escalated' AND d.recipient_unit <> c.unit_code AND c.as_of = :as_of",
        subject=held, as_of=AS_OF + timedelta(days=7))
    assert later and {status for (status,) in later} == {"suppressed"}


@pytest.mark.usefixtures("prefect_harness")
def test_the_review_flow_pauses_for_the_form_and_applies_the_answer(pipeline: Pipeline) -> None:
    run_nightly()
    subjects = waiting_subjects(pipeline)
    states: list[State[Any]] = []
    runner = threading.Thread(
        target=lambda: states.append(review(timeout_seconds=300, poll_seconds=1, force=True, return_state=True)),
        daemon=True,
    )
    runner.start()

    run_id = paused_review_run()
    table = table_data(artifacts_of(run_id)[REVIEW_KEY])
    assert {row["编号"] for row in table} == set(subjects)
    assert all(row["督办原因"].startswith("已超期") and row["报送上级"] for row in table)
    assert "on_timeout=hold" in (artifacts_of(run_id)[REVIEW_KEY].description or "")

    assert f"{len(table)} escalation(s) wait for the 督办 review" in form_text(run_id)
    resume_flow_run(run_id, run_input={"approve_all": True, "hold": ["NOT-WAITING"], "reason": "x"})
    run_id = paused_review_run()  # refused: the form is offered again, nothing decided
    assert pipeline.count("review_decisions") == 0
    assert "refused, nothing was decided:** not waiting for review: NOT-WAITING" in form_text(run_id)
    resume_flow_run(run_id, run_input={"approve_all": True, "hold": [subjects[0]], "reason": "口径待确认"})
    runner.join(timeout=120)

    assert states and states[0].is_completed(), states
    decisions = dict(pipeline.rows("SELECT subject_id, decision FROM review_decisions"))
    assert decisions[subjects[0]] == HELD and {decisions[s] for s in subjects[1:]} == {APPROVED}
    assert "awaiting_review" not in statuses(pipeline)
    assert pipeline.scalar("SELECT reason FROM review_decisions WHERE decision = 'held'") == "口径待确认"


def form_text(run_id: UUID) -> str:
    """The text shown above the Resume form of the paused run."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state is not None
    return str(read_flow_run_input(keyset_from_paused_state(state)["description"], flow_run_id=run_id))


def paused_review_run(timeout: float = 120.0) -> UUID:
    """The id of the review run once it is paused for input."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(like_="review-"),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
                )
            )
            if runs:
                return runs[0].id
            time.sleep(0.2)
    raise AssertionError("the review run never paused")


@pytest.mark.usefixtures("prefect_harness")
def test_without_an_answer_on_timeout_send_approves_everything_and_the_run_is_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, pl.DataFrame]
) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, tables)
    pipeline.use_config(units_replace=review_on("send"))
    run_nightly()
    waiting = len(waiting_subjects(pipeline))

    state = review(timeout_seconds=2, poll_seconds=1, force=True, return_state=True)

    assert state.is_failed()  # nobody reviewed: red in the UI, and ops are alerted
    assert "awaiting_review" not in statuses(pipeline)
    decisions = pipeline.rows("SELECT DISTINCT decision, decided_by FROM review_decisions")
    assert len({row for row in decisions}) == 1 and decisions[0][0] == APPROVED and "timeout" in decisions[0][1]
    assert pipeline.scalar("SELECT count(DISTINCT subject_id) FROM review_decisions") == waiting


@pytest.mark.usefixtures("prefect_harness")
def test_on_timeout_hold_holds_for_today_and_proposes_them_again_with_the_next_reminder(pipeline: Pipeline) -> None:
    from config.bundle import load_config
    from tasks.alerts.digests import DigestTemplates

    run_nightly()
    subjects = waiting_subjects(pipeline)
    config = load_config(pipeline.root / "config")
    policy = config.units.alerting.review
    assert policy is not None and policy.on_timeout == "hold"
    engine = pipeline.engine()
    waiting = waiting_escalations(engine, config.units, DigestTemplates(config.templates_dir))

    result = apply_timeout(engine, waiting, policy, decided_by="test (timeout)", now=DELIVERY_TIME)

    assert result.held == waiting.height and result.approved == 0
    assert "awaiting_review" not in statuses(pipeline)
    today = DELIVERY_TIME.date().isoformat()
    assert set(pipeline.rows("SELECT decision, until FROM review_decisions")) == {(HELD, today)}
    run_nightly(AS_OF + timedelta(days=7))
    assert set(waiting_subjects(pipeline)) >= set(subjects)  # the held ones, and escalations new since
