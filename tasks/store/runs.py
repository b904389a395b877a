"""The run ledger (`runs`) and the lock that lets only one nightly run work at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from config.settings import TIMEZONE
from schemas.tables import Run, RunLock

# A lock older than this belongs to a run that died without releasing it (killed worker, lost machine).
STALE_LOCK_AFTER = timedelta(hours=6)


class RunLocked(RuntimeError):
    """Another run holds the lock."""


class RunIncomplete(RuntimeError):
    """The data of a flow run that ends Failed with a summary. Prefect resolves a Failed state's data into an
    exception; a plain dict there makes it raise a TypeError that reads like a crash, so the summary travels inside
    this exception, whose text is the run's one-line reason."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message, summary)
        self.summary = summary

    def __str__(self) -> str:
        return str(self.args[0])


def state_summary(data: Any) -> dict[str, Any]:
    """The summary a flow run left as its result, whether it completed (a dict) or failed (a RunIncomplete); empty
    when it crashed before making one."""
    if isinstance(data, RunIncomplete):
        return data.summary
    return data if isinstance(data, dict) else {}


def now_local() -> datetime:
    return datetime.now(TIMEZONE)


def open_run(engine: Engine, flow: str, as_of: date) -> int:
    with engine.begin() as connection:
        result = connection.execute(
            insert(Run).values(flow=flow, as_of=as_of, started_at=now_local(), status="running")
        )
        return int(result.inserted_primary_key[0])


def close_run(engine: Engine, run_id: int, status: str, summary: dict[str, Any]) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(Run)
            .where(Run.run_id == run_id)
            .values(status=status, finished_at=now_local(), summary=summary)
        )


@dataclass
class LedgerEntry:
    """One flow run's row in the ledger, as the run decides how it ends (`close`)."""

    run_id: int
    status: str = "completed"
    summary: dict[str, Any] = field(default_factory=dict)

    def close(self, status: str, summary: dict[str, Any]) -> None:
        self.status, self.summary = status, summary


@contextmanager
def recorded_run(engine: Engine, flow: str, as_of: date) -> Iterator[LedgerEntry]:
    """Record the block as one run of `flow` in the ledger. It is `running` while the block runs, then closed with
    what the block set through `LedgerEntry.close`; if the block raises (a bug, a crash, an interrupt), it is closed
    `failed` with the error, so the ledger never shows a dead run as still running."""
    entry = LedgerEntry(open_run(engine, flow, as_of))
    try:
        yield entry
    except BaseException as exc:
        close_run(engine, entry.run_id, "failed", {**entry.summary, "error": f"{type(exc).__name__}: {exc}"})
        raise
    close_run(engine, entry.run_id, entry.status, entry.summary)


@contextmanager
def run_lock(engine: Engine, name: str, holder: str) -> Iterator[None]:
    """Hold the named lock for the block. Raises RunLocked when a live holder has it.

    The lock is a row keyed by name, so the database's primary key decides between two runs that start together,
    on SQLite and PostgreSQL alike.
    """
    now = now_local()
    with engine.begin() as connection:
        connection.execute(delete(RunLock).where(RunLock.name == name, RunLock.acquired_at < now - STALE_LOCK_AFTER))
    try:
        with engine.begin() as connection:
            connection.execute(insert(RunLock).values(name=name, holder=holder, acquired_at=now))
    except IntegrityError:
        with engine.connect() as connection:
            current = connection.execute(
                select(RunLock.holder, RunLock.acquired_at).where(RunLock.name == name)
            ).first()
        since = f" since {current.acquired_at:%Y-%m-%d %H:%M}" if current else ""
        who = current.holder if current else "another run"
        raise RunLocked(f"{name} is already running ({who}{since})") from None
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(delete(RunLock).where(RunLock.name == name, RunLock.holder == holder))


LEDGER_DEPTH = 60  # nightly runs looked back through for a source's last stored load (a source rerun alone, …)


def nightly_ledger(engine: Engine, before_run: int) -> list[tuple[int, Any, dict[str, Any] | None]]:
    """(run_id, as_of, summary) of the nightly runs before `before_run` that got as far as storing, newest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Run.run_id, Run.as_of, Run.summary)
            .where(Run.flow == "nightly", Run.run_id < before_run, Run.status.in_(("completed", "failed")))
            .order_by(Run.run_id.desc())
            .limit(LEDGER_DEPTH)
        ).all()
    return [(row.run_id, row.as_of, row.summary) for row in rows]

def nightly_problem(engine: Engine, as_of: date) -> str | None:
    """Why the nightly run for `as_of` cannot be taken as done (none recorded, failed, or still `running`: crashed or
    not finished), or None when one completed."""
    with engine.connect() as connection:
        runs = connection.execute(
            select(Run.status, Run.started_at).where(Run.flow == "nightly", Run.as_of == as_of).order_by(Run.run_id)
        ).all()
    if any(run.status == "completed" for run in runs):
        return None
    if not runs:
        return f"no nightly run as of {as_of} was recorded"
    last = runs[-1]
    started = f"{last.started_at.astimezone(TIMEZONE) if last.started_at.tzinfo else last.started_at:%Y-%m-%d %H:%M}"
    if last.status == "running":
        return f"the nightly run as of {as_of} started {started} never finished (it crashed or is still running)"
    return f"the nightly run as of {as_of} started {started} ended {last.status}, and none completed"
