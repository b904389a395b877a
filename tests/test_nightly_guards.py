"""A green nightly run means fresh, complete data: an empty inbox, a truncated export and a stale one, on Prefect's
harness; and no applicant data in anything a run leaves behind when an export goes wrong."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from orchestration_fixtures import (
    AS_OF,
    artifacts_of,
    flow_run_id,
    make_pipeline,
    sample_tables,
    task_runs,
    watch_log,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogWorker
from prefect.settings import get_current_settings
from prefect.states import State

from flows.nightly import nightly
from tasks.artifacts import SUMMARY_KEY
from tasks.store.runs import state_summary

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return sample_tables()


def run_nightly() -> State[Any]:
    return nightly(as_of=AS_OF, deliverable=True, return_state=True)


def summary_of(state: State[Any]) -> dict[str, Any]:
    summary = state_summary(state.result(raise_on_failure=False))
    assert summary, state
    return summary


def final_task_runs(state: State[Any], names: set[str]) -> dict[str, Any]:
    runs = task_runs(flow_run_id(state), lambda runs: names <= {
        run.name for run in runs if run.state is not None and run.state.is_final()})
    return {run.name: run for run in runs}


def test_an_empty_inbox_fails_the_run_naming_the_missing_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, None)
    pipeline.inbox.mkdir(parents=True)
    state = run_nightly()
    assert state.is_failed()
    assert state.message is not None and state.message.startswith("sources not stored: cases, steps, suspensions (")
    assert f"cases: source 'cases': no file matches cases*.csv in {pipeline.inbox}" in state.message
    summary = summary_of(state)
    assert summary["warnings"] == [
        f"{name}: no file matches {name}*.csv; nothing loaded tonight (an optional source)"
        for name in ("projects", "deferrals", "pushes")
    ]
    markdown = str(artifacts_of(flow_run_id(state))[SUMMARY_KEY].data)
    assert markdown.index("**Warnings:**") < markdown.index("## Sources")
    runs = final_task_runs(state, {"ingest-cases", "validate-cases"})
    assert runs["ingest-cases"].run_count == 4, "a missing export may be on its way: retried"
    assert runs["validate-cases"].state.is_failed()
    assert pipeline.rows("SELECT status FROM runs") == [("failed",)]


def test_a_truncated_export_is_refused_and_an_unchanged_one_is_stored_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, pl.DataFrame], database_url: str
) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, tables, database_url)
    assert run_nightly().is_completed()
    stored_cases = pipeline.count("cases")

    again = run_nightly()
    assert again.is_completed(), again.message
    warnings = summary_of(again)["warnings"]
    assert len(warnings) == 6 and all("not refreshed: the export is identical to the last stored load" in warning
                                      for warning in warnings)
    assert warnings[0].startswith("cases: not refreshed")

    cases = pipeline.inbox / "cases.csv"
    lines = cases.read_text(encoding="utf-8").splitlines()
    cases.write_text("\n".join(lines[: len(lines) // 2]) + "\n", encoding="utf-8")
    truncated = run_nightly()
    assert truncated.is_failed()
    read = len(lines) // 2 - 1
    drop = 1 - read / (len(lines) - 1)
    assert truncated.message is not None
    assert f"cases: {read:,} rows read, {drop:.1%} fewer than the {len(lines) - 1:,} of the last stored load" in (
        truncated.message)
    assert pipeline.count("cases") == stored_cases
    runs = final_task_runs(truncated, {"validate-cases", "validate-steps"})
    assert runs["validate-cases"].state.is_failed() and runs["validate-cases"].run_count == 1
    assert runs["validate-steps"].state.is_completed()


def test_no_applicant_data_leaks_when_the_first_line_is_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, pl.DataFrame]
) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, tables)
    cases = pipeline.inbox / "cases.csv"
    cases.write_text(cases.read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")  # the header is lost
    names = [name for name in tables["cases"]["applicant_name"].drop_nulls().to_list() if len(name) > 1]
    phones = tables["cases"]["applicant_phone"].drop_nulls().to_list()
    assert names and phones

    with watch_log("prefect") as log:
        state = run_nightly()
    assert state.is_failed()
    assert "line 1 looks like data, not a header line" in str(state.message)

    logs = run_logs_once_sent(flow_run_id(state), "line 1 looks like data")
    summaries = [summary for (summary,) in pipeline.rows("SELECT summary FROM runs")]
    outputs = {
        "log": "\n".join(log.messages),
        "Prefect logs": "\n".join(entry.message for entry in logs),
        "artifacts": " ".join(str(artifact.data) for artifact in artifacts_of(flow_run_id(state)).values()),
        "runs.summary": json.dumps(summaries, ensure_ascii=False),
        "state": str(state.message),
        "Prefect database": prefect_database_text(),
    }
    assert "line 1 looks like data" in outputs["runs.summary"] and "line 1 looks like data" in outputs["Prefect logs"]
    for where, text in outputs.items():
        assert not [value for value in (*names, *phones) if value in text], where


def run_logs_once_sent(run_id: Any, expected: str) -> list[Any]:
    """The flow run's logs as the server has them. Logs reach the server from a background worker, which on a busy
    machine can be several seconds behind the run, so wait for the line the run is known to have logged."""
    deadline = time.monotonic() + 60
    while True:
        APILogWorker.drain_all(timeout=10)
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        if any(expected in entry.message for entry in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.5)


def prefect_database_text() -> str:
    """The harness's Prefect database (with its write-ahead log) as text."""
    url = get_current_settings().server.database.connection_url
    assert url is not None
    path = Path(url.get_secret_value().split("///", 1)[1])
    found = [candidate for candidate in (path, Path(f"{path}-wal")) if candidate.exists()]
    assert found, path
    return "".join(candidate.read_bytes().decode("utf-8", errors="replace") for candidate in found)


def test_large_exports_are_read_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading an export takes several times its size in memory for a moment: the large ones wait for each other,
    the small ones are read beside them."""
    import threading

    import tasks.pipeline as pipeline_tasks

    make_pipeline(tmp_path, monkeypatch, sample_tables())
    sizes = sorted(path.stat().st_size for path in (tmp_path / "inbox").glob("*.csv"))
    monkeypatch.setattr(pipeline_tasks, "LARGE_EXPORT_BYTES", sizes[-3])  # cases, steps and pushes are large
    reading = pipeline_tasks.load_source
    lock = threading.Lock()
    now = {"large": 0, "any": 0}
    most = dict(now)

    def spying(source: Any, **options: Any) -> Any:
        large = pipeline_tasks.export_bytes(source, options["inbox_dir"]) >= sizes[-3]
        with lock:
            now["any"] += 1
            now["large"] += large
            most.update({kind: max(most[kind], now[kind]) for kind in now})
        time.sleep(0.3)  # long enough for any other read to begin
        try:
            return reading(source, **options)
        finally:
            with lock:
                now["any"] -= 1
                now["large"] -= large

    monkeypatch.setattr(pipeline_tasks, "load_source", spying)
    state = nightly(as_of=AS_OF, deliverable=False, return_state=True)
    assert state.is_completed(), state.message
    assert most == {"large": 1, "any": most["any"]} and most["any"] >= 2
