"""Storing canonical frames on SQLite and PostgreSQL: idempotent, change-detecting, history-keeping, never deleting."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, insert, inspect, select, text

from config.canonical import TABLES
from config.sources import Source
from schemas.contracts import canonical_schema
from schemas.tables import Reject, Run
from tasks.ingest.load import load_sources
from tasks.store.upsert import read_case_reference, read_tables, store_rejects, store_table, tables_written_by

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"


def cases(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {"matter_code": "SXTQ-A001", "unit_code": "360702SPJ", "accepted_at": date(2023, 1, 20), "limit_days": 10}
    schema = canonical_schema("cases")
    return pl.DataFrame(
        [{name: {**base, **row}.get(name) for name in schema} for row in rows], schema=schema, orient="row"
    )


def new_run(engine: Engine) -> int:
    with engine.begin() as connection:
        result = connection.execute(
            insert(Run).values(flow="test", as_of=date(2023, 2, 1), started_at=datetime(2023, 2, 2, 1, 30))
        )
        return int(result.inserted_primary_key[0])


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every data table and of the history (bookkeeping columns included), in key order."""
    found = {}
    with engine.connect() as connection:
        for table in (*TABLES, "change_history"):
            order = "id" if table == "change_history" else "1, 2"
            found[table] = [tuple(row) for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]
    return found


def history(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text("SELECT run_id, table_name, row_key, field, old_value, new_value FROM change_history ORDER BY id")
            )
        ]


def test_round_trip_keeps_canonical_values_and_types(engine: Engine) -> None:
    frame = cases(
        {
            "case_id": "A",
            "completed_at": date(2023, 2, 1),
            "updated_at": datetime(2023, 2, 1, 10, 0, 0, 123456),
            "applicant_name": "张三",
            "limit_kind": "workday",
        },
        {"case_id": "B", "limit_days": None, "project_code": "2301-360702-04-01-123456", "matter_name": "食品经营许可"},
    )
    stats = store_table(engine, "cases", frame, None)
    assert (stats.inserted, stats.updated, stats.unchanged) == (2, 0, 0)
    stored = read_tables(engine)
    assert set(stored) == set(TABLES)
    assert stored["cases"].schema == frame.schema
    assert stored["cases"].sort("case_id").equals(frame.sort("case_id"))
    assert stored["steps"].height == 0 and stored["steps"].schema == canonical_schema("steps")


def test_storing_the_same_frame_again_writes_nothing(engine: Engine) -> None:
    frame = cases({"case_id": "A"}, {"case_id": "B", "completed_at": date(2023, 1, 30)})
    first_run, second_run = new_run(engine), new_run(engine)
    store_table(engine, "cases", frame, first_run)
    before = snapshot(engine)
    stats = store_table(engine, "cases", frame, second_run)
    assert (stats.inserted, stats.updated, stats.unchanged, stats.history) == (0, 0, 2, 0)
    assert snapshot(engine) == before  # not even last_seen_run moved


def test_changes_are_upserted_with_history_and_missing_rows_kept(engine: Engine) -> None:
    first_run, second_run = new_run(engine), new_run(engine)
    store_table(
        engine, "cases", cases({"case_id": "A"}, {"case_id": "B"}, {"case_id": "C", "status": "在办"}), first_run
    )
    later = cases(
        {"case_id": "A", "completed_at": date(2023, 2, 1), "status": "办结"},  # completion set
        {"case_id": "B", "limit_days": 15},  # limit changed
        {"case_id": "D"},  # new; C is missing from this export
    )
    stats = store_table(engine, "cases", later, second_run)
    assert (stats.inserted, stats.updated, stats.unchanged) == (1, 2, 0)
    assert history(engine) == [
        (second_run, "cases", "A", "status", None, "办结"),
        (second_run, "cases", "A", "completed_at", None, "2023-02-01"),
        (second_run, "cases", "B", "limit_days", "10", "15"),
    ]
    stored = read_tables(engine, ["cases"])["cases"].sort("case_id")
    assert stored["case_id"].to_list() == ["A", "B", "C", "D"]
    assert stored.filter(pl.col("case_id") == "C")["status"].item() == "在办"
    with engine.connect() as connection:
        seen = dict(connection.execute(text("SELECT case_id, first_seen_run || ':' || last_seen_run FROM cases")).all())
    assert seen == {
        "A": f"{first_run}:{second_run}",
        "B": f"{first_run}:{second_run}",
        "C": f"{first_run}:{first_run}",
        "D": f"{second_run}:{second_run}",
    }


def test_a_changed_name_is_stored_without_history(engine: Engine) -> None:
    store_table(engine, "cases", cases({"case_id": "A", "matter_name": "旧名"}), None)
    stats = store_table(engine, "cases", cases({"case_id": "A", "matter_name": "新名"}), None)
    assert stats.updated == 1 and stats.history == 0
    assert read_tables(engine, ["cases"])["cases"]["matter_name"].item() == "新名"


def test_a_new_pause_is_history(engine: Engine) -> None:
    schema = canonical_schema("suspensions")
    row = {"case_id": "A", "kind": "专家评审", "started_at": date(2023, 1, 25), "ended_at": None, "limit_days": 20}
    store_table(engine, "suspensions", pl.DataFrame([row], schema=schema, orient="row"), None)
    ended = {**row, "ended_at": date(2023, 1, 28)}
    store_table(engine, "suspensions", pl.DataFrame([ended], schema=schema, orient="row"), None)
    assert history(engine) == [
        (None, "suspensions", "A|专家评审|2023-01-25", "pause added", None, "A|专家评审|2023-01-25"),
        (None, "suspensions", "A|专家评审|2023-01-25", "ended_at", None, "2023-01-28"),
    ]


def test_composite_keys_and_empty_frames(engine: Engine) -> None:
    schema = canonical_schema("steps")
    rows = [
        {"case_id": "A", "step_no": 1, "unit_code": "U1", "started_at": date(2023, 1, 20)},
        {"case_id": "A", "step_no": 2, "unit_code": "U2", "started_at": date(2023, 1, 27)},
    ]
    steps = pl.DataFrame([{n: r.get(n) for n in schema} for r in rows], schema=schema, orient="row")
    assert store_table(engine, "steps", steps, None).inserted == 2
    moved = steps.with_columns(
        pl.when(pl.col("step_no") == 2).then(pl.lit("U3")).otherwise("unit_code").alias("unit_code")
    )
    assert store_table(engine, "steps", moved, None).updated == 1
    assert history(engine) == [(None, "steps", "A|2", "unit_code", "U2", "U3")]
    assert store_table(engine, "steps", steps.clear(), None).written == 0


def test_duplicate_keys_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="duplicate keys"):
        store_table(engine, "cases", cases({"case_id": "A"}, {"case_id": "A"}), None)


def test_large_frames_go_in_batches_and_keep_their_indexes(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasks.store.upsert.BATCH_ROWS", 7)
    monkeypatch.setattr("tasks.store.upsert.BULK_ROWS", 10)  # a first load this size rebuilds the secondary indexes
    indexes = sorted(index["name"] for index in inspect(engine).get_indexes("cases"))
    assert indexes
    frame = cases(*({"case_id": f"C{n:03d}"} for n in range(50)))
    calls: list[tuple[int, int]] = []
    stats = store_table(engine, "cases", frame, None, progress=lambda _what, done, total: calls.append((done, total)))
    assert stats.inserted == 50
    assert calls[-1] == (50, 50) and len(calls) == 8
    assert read_tables(engine, ["cases"])["cases"].height == 50
    assert sorted(index["name"] for index in inspect(engine).get_indexes("cases")) == indexes


def test_rejects_are_quarantined_with_source_line_raw_and_reasons(engine: Engine) -> None:
    run_id = new_run(engine)
    rejected = pl.DataFrame(
        {
            "source": ["cases.csv"],
            "table": ["cases"],
            "line": [8],
            "raw": ['{"办件编号":"GZ7","受理时间":"2023-02-30","备注":null}'],
            "reasons": ["accepted_at: not a date '2023-02-30'"],
        }
    )
    assert store_rejects(engine, rejected, run_id) == 1
    with engine.connect() as connection:
        stored = connection.execute(select(Reject)).one()
    assert (stored.run_id, stored.source, stored.target_table, stored.line) == (run_id, "cases.csv", "cases", 8)
    assert stored.raw == {"办件编号": "GZ7", "受理时间": "2023-02-30", "备注": None}
    assert stored.reasons == "accepted_at: not a date '2023-02-30'"


def inbox_with_fixtures(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(FIXTURES / "cases_messy.csv", inbox / "cases.csv")
    for table in ("steps", "suspensions", "projects", "deferrals", "pushes"):
        shutil.copy(FIXTURES / f"{table}.csv", inbox / f"{table}.csv")
    return inbox


def load_and_store(engine: Engine, inbox: Path) -> int:
    """One nightly load of every table; returns the number of rows quarantined."""
    sources = [Source(name=t, kind="csv", table=t, path=f"{t}.csv", max_reject_fraction=1) for t in TABLES]
    run_id = new_run(engine)
    quarantined = 0
    for result in load_sources(sources, inbox_dir=inbox, stored_cases=read_case_reference(engine)):
        assert result.error is None
        quarantined += store_rejects(engine, result.rejected, run_id)
        store_table(engine, result.table, result.accepted, run_id)
    return quarantined


def test_loading_the_same_exports_twice_leaves_the_same_database(engine: Engine, tmp_path: Path) -> None:
    inbox = inbox_with_fixtures(tmp_path)
    quarantined = load_and_store(engine, inbox)
    first = snapshot(engine)
    assert len(first["cases"]) == 5 and len(first["suspensions"]) == 3
    assert load_and_store(engine, inbox) == quarantined
    assert snapshot(engine) == first
    with engine.connect() as connection:
        runs = connection.execute(text("SELECT run_id, COUNT(*) FROM rejects GROUP BY run_id ORDER BY run_id")).all()
    assert [count for _, count in runs] == [quarantined, quarantined]  # each run records what it quarantined


def test_suspensions_are_checked_against_stored_cases(engine: Engine, tmp_path: Path) -> None:
    inbox = inbox_with_fixtures(tmp_path)
    load_and_store(engine, inbox)
    (inbox / "cases.csv").unlink()  # tonight's export has no cases: the stored ones are the reference
    sources = [Source(name="s", kind="csv", table="suspensions", path="suspensions.csv", max_reject_fraction=1)]
    (result,) = load_sources(sources, inbox_dir=inbox, stored_cases=read_case_reference(engine))
    assert result.rejected["line"].to_list() == [4, 5]


def test_tables_a_run_wrote_whole_are_taken_from_its_frames_exactly_as_read_back(
    engine: Engine, tmp_path: Path
) -> None:
    inbox = inbox_with_fixtures(tmp_path)
    sources = [Source(name=t, kind="csv", table=t, path=f"{t}.csv", max_reject_fraction=1) for t in TABLES]
    run_id = new_run(engine)
    written: dict[str, list[pl.DataFrame]] = {}
    for result in load_sources(sources, inbox_dir=inbox):
        store_table(engine, result.table, result.accepted, run_id)
        written[result.table] = [result.accepted.sample(fraction=1, shuffle=True, seed=3)]  # any order
    # An optional column the export lacked is null, as stored.
    written["cases"] = [written["cases"][0].drop("platform_due_date")]
    taken = tables_written_by(engine, run_id, written)
    stored = read_tables(engine)
    assert set(taken) == set(TABLES)
    for table in TABLES:
        assert taken[table].schema == stored[table].schema
        assert taken[table].equals(stored[table]), table

    # The next run stores the same cases plus one: the unchanged rows were written by the first run.
    second = new_run(engine)
    more = pl.concat([written["cases"][0], cases({"case_id": "NEW-1"}).drop("platform_due_date")], how="diagonal")
    store_table(engine, "cases", more, second)
    assert tables_written_by(engine, second, {"cases": [more]}) == {}


def test_frames_sharing_a_key_or_off_their_dtypes_are_read_back_instead(engine: Engine) -> None:
    run_id = new_run(engine)
    first, second = cases({"case_id": "A"}, {"case_id": "B"}), cases({"case_id": "B", "limit_days": 20})
    store_table(engine, "cases", first, run_id)
    store_table(engine, "cases", second, run_id)  # B again: the table holds 2 rows, the frames 3
    assert tables_written_by(engine, run_id, {"cases": [first, second]}) == {}
    assert set(tables_written_by(engine, run_id, {"cases": [first.filter(pl.col("case_id") == "A"), second]})) == {
        "cases"
    }
    as_text = first.with_columns(pl.col("accepted_at").cast(pl.String))
    assert tables_written_by(engine, run_id, {"cases": [as_text]}) == {}
