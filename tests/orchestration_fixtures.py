"""Helpers for the orchestration tests: a small sample inbox in a temporary folder, settings pointed at it, a copy of
the bundled config to alter, and read-back of what a flow run left in Prefect (artifacts, task runs)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import polars as pl
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact, TaskRun
from prefect.states import State
from sqlalchemy import Engine, text

from config.bundle import load_config
from config.settings import BUNDLED_CONFIG_DIR
from schemas.database import ensure_schema
from tasks.clocks.calendar import load_work_calendar
from tasks.ingest.sample import SampleSpec, generate_sample, write_sample

# A Friday, an official working day, late enough in 2026 that some due dates fall in 2027 (provisional calendar).
AS_OF = date(2026, 11, 20)
SAMPLE_CASES = 300


def sample_tables() -> dict[str, pl.DataFrame]:
    """A few hundred cases with their steps, suspensions, projects, deferrals and pushes; 3% of case rows spoiled."""
    config = load_config(BUNDLED_CONFIG_DIR)
    spec = SampleSpec(cases=SAMPLE_CASES, seed=11, last_date=AS_OF, dirty_fraction=0.03)
    return generate_sample(spec, config.rules, config.units, load_work_calendar(config.calendar_files))


@dataclass
class Pipeline:
    """Settings of one test's pipeline (all under tmp_path) and access to its database."""

    root: Path
    inbox: Path
    outbox: Path
    database_url: str
    monkeypatch: pytest.MonkeyPatch

    def engine(self) -> Engine:
        return ensure_schema(self.database_url)

    def scalar(self, sql: str, **params: Any) -> Any:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                return connection.execute(text(sql), params).scalar_one()
        finally:
            engine.dispose()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(sql), params).all())
        finally:
            engine.dispose()

    def count(self, table: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    def use_config(self, sources_yaml: str | None = None, units_replace: dict[str, str] | None = None) -> Path:
        """A copy of the bundled config, with another sources.yaml and/or text replaced in units.yaml, put in use."""
        directory = self.root / "config"
        if not directory.exists():
            shutil.copytree(BUNDLED_CONFIG_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        if sources_yaml is not None:
            (directory / "sources.yaml").write_text(sources_yaml, encoding="utf-8")
        if units_replace:
            units = directory / "units.yaml"
            content = units.read_text(encoding="utf-8")
            for old, new in units_replace.items():
                assert old in content, f"{old!r} not in units.yaml"
                content = content.replace(old, new)
            units.write_text(content, encoding="utf-8")
        self.monkeypatch.setenv("PERMITWATCH_CONFIG_DIR", str(directory))
        return directory

    def outbox_files(self) -> list[Path]:
        return sorted(path for path in self.outbox.rglob("*") if path.is_file()) if self.outbox.exists() else []


def make_pipeline(
    root: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, pl.DataFrame] | None, database_url: str | None = None
) -> Pipeline:
    pipeline = Pipeline(
        root=root,
        inbox=root / "inbox",
        outbox=root / "outbox",
        database_url=database_url or f"sqlite:///{root / 'permitwatch.db'}",
        monkeypatch=monkeypatch,
    )
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", pipeline.database_url)
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(root / "var"))
    monkeypatch.setenv("PERMITWATCH_INBOX_DIR", str(pipeline.inbox))
    monkeypatch.setenv("PERMITWATCH_OUTBOX_DIR", str(pipeline.outbox))
    monkeypatch.setenv("PERMITWATCH_RETRY_DELAYS", "[0, 0, 0]")
    monkeypatch.delenv("PERMITWATCH_CONFIG_DIR", raising=False)
    monkeypatch.delenv("PERMITWATCH_AS_OF", raising=False)
    if tables is not None:
        write_sample(tables, pipeline.inbox)
    return pipeline


def flow_run_id(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def artifacts_of(run_id: UUID) -> dict[str, Artifact]:
    """The keyed artifacts a flow run (and its tasks) published, by key."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {artifact.key: artifact for artifact in found if artifact.key}


def table_data(artifact: Artifact) -> list[dict[str, Any]]:
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert isinstance(data, list)
    return data


def task_runs(run_id: UUID, settled: Callable[[list[TaskRun]], bool], timeout: float = 60.0) -> list[TaskRun]:
    """The flow run's task runs once `settled` holds: the server records task states from events, a moment after the
    flow run has returned."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            if settled(runs) or time.monotonic() > deadline:
                return runs
            time.sleep(0.2)


class LogWatch(logging.Handler):
    """Records the messages of one Prefect logger and calls `on_message` with each (to act at a point of a run)."""

    def __init__(self, on_message: Callable[[str], None] | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.on_message = on_message

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)


@contextmanager
def watch_log(name: str, on_message: Callable[[str], None] | None = None) -> Iterator[LogWatch]:
    logger = logging.getLogger(name)
    handler = LogWatch(on_message)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
