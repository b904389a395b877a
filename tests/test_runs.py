from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, insert, select

from schemas.tables import Run, RunLock
from tasks.store.runs import STALE_LOCK_AFTER, RunLocked, close_run, now_local, open_run, recorded_run, run_lock


def test_second_holder_is_refused_until_the_first_releases(engine: Engine) -> None:
    with run_lock(engine, "nightly", "first"):
        with pytest.raises(RunLocked, match="first"), run_lock(engine, "nightly", "second"):
            pass
        with run_lock(engine, "deliver", "other lock name"):
            pass
    with run_lock(engine, "nightly", "second"):
        pass
    with engine.connect() as connection:
        assert connection.execute(select(RunLock)).all() == []


def test_lock_released_when_the_block_raises(engine: Engine) -> None:
    with pytest.raises(ZeroDivisionError), run_lock(engine, "nightly", "first"):
        1 / 0  # noqa: B018
    with run_lock(engine, "nightly", "again"):
        pass


def test_stale_lock_of_a_dead_run_is_taken_over(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(insert(RunLock).values(
            name="nightly", holder="killed worker", acquired_at=now_local() - STALE_LOCK_AFTER - timedelta(minutes=1)
        ))
    with run_lock(engine, "nightly", "new run"):
        pass


def test_run_ledger_records_status_and_summary(engine: Engine) -> None:
    run_id = open_run(engine, "nightly", date(2026, 11, 24))
    close_run(engine, run_id, "failed", {"failed_sources": ["cases"]})
    with engine.connect() as connection:
        run = connection.execute(
            select(Run.flow, Run.status, Run.summary, Run.finished_at).where(Run.run_id == run_id)
        ).one()
    assert (run.flow, run.status, run.summary) == ("nightly", "failed", {"failed_sources": ["cases"]})
    assert run.finished_at is not None


def ledger(engine: Engine) -> list[tuple[str, str, dict[str, object]]]:
    with engine.connect() as connection:
        rows = connection.execute(select(Run.flow, Run.status, Run.summary).order_by(Run.run_id))
        return [(row.flow, row.status, row.summary) for row in rows]


def test_a_recorded_run_ends_as_its_block_says_or_failed_with_the_error(engine: Engine) -> None:
    with recorded_run(engine, "deliver", date(2026, 11, 24)) as run:
        assert ledger(engine) == [("deliver", "running", None)]
        run.close("skipped", {"reason": "outside the delivery window"})
    with recorded_run(engine, "nightly", date(2026, 11, 24)):
        pass
    with pytest.raises(KeyboardInterrupt), recorded_run(engine, "backfill", date(2026, 11, 1)) as run:
        run.close("completed", {"stored": {"2026-11-01": 3}})
        raise KeyboardInterrupt("stopped by ops")
    assert ledger(engine) == [
        ("deliver", "skipped", {"reason": "outside the delivery window"}),
        ("nightly", "completed", {}),
        ("backfill", "failed", {"stored": {"2026-11-01": 3}, "error": "KeyboardInterrupt: stopped by ops"}),
    ]
