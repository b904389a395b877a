"""Data contracts: each rule rejects what it should with a readable reason, and only that."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import polars as pl
import pytest
from ingest_fixtures import with_empty_chunk

from config.canonical import CANONICAL_COLUMNS, TABLE_MODELS, TABLES
from schemas.contracts import (
    canonical_schema,
    duplicate_violations,
    empty_frame,
    key_columns,
    pause_violations,
    violations,
)

GOOD_CASE: dict[str, Any] = {
    "case_id": "GZ1",
    "matter_code": "SXTQ-A001",
    "unit_code": "360702SPJ",
    "region_code": "360702",
    "project_code": "2301-360702-04-01-123456",
    "accepted_at": date(2023, 1, 20),
    "completed_at": date(2023, 2, 1),
    "limit_days": 10,
    "limit_kind": "workday",
}


def frame_of(table: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = canonical_schema(table)
    return pl.DataFrame([{name: row.get(name) for name in schema} for row in rows], schema=schema, orient="row")


def case_reasons(**changes: Any) -> list[str]:
    found = violations("cases", frame_of("cases", [{**GOOD_CASE, **changes}]))
    return found["reason"].to_list()


def test_every_table_has_a_contract_matching_its_canonical_columns() -> None:
    assert set(TABLE_MODELS) == set(TABLES)
    for table in TABLES:
        contract_columns = list(TABLE_MODELS[table].to_schema().columns)
        assert contract_columns == [column.name for column in CANONICAL_COLUMNS[table]]
        assert violations(table, empty_frame(table)).height == 0


def test_a_good_case_passes() -> None:
    assert case_reasons() == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"case_id": None}, "case_id: missing"),
        ({"accepted_at": None}, "accepted_at: missing"),
        ({"region_code": "36070"}, "region_code: not a 6-digit region code '36070'"),
        ({"region_code": "36070A"}, "region_code: not a 6-digit region code '36070A'"),
        (
            {"project_code": "2313-360702-04-01-123456"},
            "project_code: not a national project code (e.g. 2301-360702-04-01-123456) '2313-360702-04-01-123456'",
        ),
        (
            {"project_code": "360702-04-01-123456"},
            "project_code: not a national project code (e.g. 2301-360702-04-01-123456) '360702-04-01-123456'",
        ),
        ({"completed_at": date(2023, 1, 19)}, "completed_at is before accepted_at"),
        ({"limit_days": -1}, "limit_days: not within 0..3650 '-1'"),
        ({"limit_kind": "月"}, "limit_kind: not 工作日/workday or 自然日/calendar '月'"),
        ({"unit_code": "U" * 65}, "unit_code: longer than 64 characters"),
    ],
)
def test_each_case_rule(changes: dict[str, Any], reason: str) -> None:
    assert case_reasons(**changes) == [reason]


@pytest.mark.parametrize(
    "code",
    ["2019-360702-47-03-012345", "2301-360702-04-01-123456", "2512-360792-04-02-000001"],
)
def test_project_codes_before_and_after_gbt_40058(code: str) -> None:
    assert case_reasons(project_code=code) == []


def test_completion_on_the_acceptance_day_is_fine_and_every_reason_is_collected() -> None:
    assert case_reasons(completed_at=GOOD_CASE["accepted_at"]) == []
    reasons = case_reasons(case_id=None, region_code="1", limit_days=99999)
    assert sorted(reasons) == sorted(
        ["case_id: missing", "region_code: not a 6-digit region code '1'", "limit_days: not within 0..3650 '99999'"]
    )


def test_rows_are_reported_by_position() -> None:
    frame = frame_of("cases", [GOOD_CASE, {**GOOD_CASE, "case_id": "GZ2", "region_code": "1"}, GOOD_CASE])
    assert violations("cases", frame)["row"].to_list() == [1]


def test_other_tables_check_their_own_order_of_dates() -> None:
    step = {
        "case_id": "GZ1",
        "step_no": 1,
        "unit_code": "U",
        "started_at": date(2023, 1, 2),
        "ended_at": date(2023, 1, 1),
    }
    assert violations("steps", frame_of("steps", [step]))["reason"].to_list() == ["ended_at is before started_at"]
    assert violations("steps", frame_of("steps", [{**step, "step_no": 0, "ended_at": None}]))["reason"].to_list() == [
        "step_no: not within 1..99 '0'"
    ]
    push = {"push_id": "P1", "case_id": "GZ1", "supervisor_unit_code": "S", "pushed_at": date(2023, 1, 2)}
    late = {**push, "claimed_at": date(2023, 1, 1)}
    assert violations("pushes", frame_of("pushes", [push, late]))["reason"].to_list() == [
        "claimed_at is before pushed_at"
    ]
    project = {"project_code": "2301-360702-04-01-123456", "category": "enterprise_investment", "lead_unit_code": "U"}
    assert violations("projects", frame_of("projects", [project, {**project, "category": None}]))["row"].to_list() == [
        1
    ]


def test_duplicates_keep_the_newest_by_updated_at() -> None:
    rows = [
        {**GOOD_CASE, "updated_at": datetime(2023, 2, 1)},  # line 2: newest
        {**GOOD_CASE, "updated_at": datetime(2023, 1, 20)},  # line 3
        {**GOOD_CASE, "updated_at": None},  # line 4: no time counts as oldest
        {**GOOD_CASE, "case_id": "GZ2"},  # line 5: unique
    ]
    frame = frame_of("cases", rows)
    lines = [2, 3, 4, 5]
    found = duplicate_violations("cases", frame, pl.Series(lines))
    assert found.select("row", "reason").rows() == [(1, "duplicate of line 2"), (2, "duplicate of line 2")]


def test_duplicates_without_updated_at_keep_the_last_line() -> None:
    push = {"push_id": "P1", "case_id": "GZ1", "supervisor_unit_code": "S", "pushed_at": date(2023, 1, 2)}
    frame = frame_of("pushes", [push, {**push, "case_id": "GZ2"}, {**push, "push_id": None}, {**push, "push_id": None}])
    found = duplicate_violations("pushes", frame, pl.Series([10, 11, 12, 13]))
    assert found.select("row", "reason").rows() == [(0, "duplicate of line 11")]


def test_duplicates_across_files_name_the_file_kept() -> None:
    push = {"push_id": "P1", "case_id": "GZ1", "supervisor_unit_code": "S", "pushed_at": date(2023, 1, 2)}
    frame = frame_of("pushes", [push, push])
    files = pl.Series([1, 0], dtype=pl.UInt32)  # the first row comes from the later file
    found = duplicate_violations("pushes", frame, pl.Series([2, 9]), files, ["a.csv", "b.csv"])
    assert found.select("row", "reason").rows() == [(1, "duplicate of line 2 of b.csv")]


def test_keys_come_from_the_tables() -> None:
    assert key_columns("cases") == ["case_id"]
    assert key_columns("steps") == ["case_id", "step_no"]
    assert key_columns("suspensions") == ["case_id", "kind", "started_at"]


def test_pauses_must_lie_within_their_case() -> None:
    cases = pl.DataFrame(
        {"case_id": ["GZ1", "GZ2"], "accepted_at": [date(2023, 1, 20)] * 2, "completed_at": [date(2023, 2, 1), None]}
    )
    suspensions = pl.DataFrame(
        {
            "case_id": ["GZ1", "GZ1", "GZ1", "GZ1", "GZ2", "UNKNOWN"],
            "started_at": [
                date(2023, 1, 25),
                date(2023, 1, 19),
                date(2023, 2, 2),
                date(2023, 1, 30),
                date(2024, 1, 1),
                date(2000, 1, 1),
            ],
            "ended_at": [date(2023, 1, 28), None, None, date(2023, 2, 3), None, None],
        }
    )
    found = pause_violations(suspensions, cases)
    assert found.select("row", "reason").sort("row").rows() == [
        (1, "started_at 2023-01-19 is before the case was accepted (2023-01-20)"),
        (2, "started_at 2023-02-02 is after the case was completed (2023-02-01)"),
        (3, "ended_at 2023-02-03 is after the case was completed (2023-02-01)"),
    ]


def test_reasons_are_worded_on_a_frame_holding_an_empty_chunk() -> None:
    # One good line, then a last line without a newline that is dropped: its columns end in an empty chunk, and
    # pandera's failure cases hold one between their two pieces, on which polars 2.1's pl.format panicked.
    frame = frame_of("cases", [{**GOOD_CASE, "unit_code": None, "limit_kind": "月"}])
    expected = ["unit_code: missing", "limit_kind: not 工作日/workday or 自然日/calendar '月'"]
    assert violations("cases", frame)["reason"].to_list() == expected
    chunked = with_empty_chunk(frame, {"case_id": "LAST", "unit_code": "U9", "limit_kind": "workday"})
    assert violations("cases", chunked).equals(violations("cases", frame))


def test_duplicates_and_pauses_on_frames_holding_an_empty_chunk() -> None:
    push = {"push_id": "P1", "case_id": "GZ1", "supervisor_unit_code": "S", "pushed_at": date(2023, 1, 2)}
    pushes = with_empty_chunk(
        frame_of("pushes", [push, push]), {**push, "push_id": "P9", "claimed_at": date(2023, 1, 3)}
    )
    files = with_empty_chunk(pl.DataFrame({"file": [1, 0]}, schema={"file": pl.UInt32}), {"file": 0})["file"]
    lines = with_empty_chunk(pl.DataFrame({"line": [2, 9]}), {"line": 10})["line"]
    found = duplicate_violations("pushes", pushes, lines, files, ["a.csv", "b.csv"])
    assert found.select("row", "reason").rows() == [(1, "duplicate of line 2 of b.csv")]
    cases = pl.DataFrame({"case_id": ["GZ1"], "accepted_at": [date(2023, 1, 20)], "completed_at": [date(2023, 2, 1)]})
    suspensions = pl.DataFrame(
        {
            "case_id": ["GZ1", "GZ1"],
            "started_at": [date(2023, 1, 19), date(2023, 1, 25)],
            "ended_at": [date(2023, 2, 3), None],
        }
    )
    last_pause = {"case_id": "GZ9", "started_at": date(2023, 1, 1), "ended_at": date(2023, 1, 2)}
    last_case = {"case_id": "GZ9", "accepted_at": date(2023, 1, 1), "completed_at": date(2023, 1, 2)}
    found = pause_violations(with_empty_chunk(suspensions, last_pause), with_empty_chunk(cases, last_case))
    assert found.select("row", "reason").sort("row", "reason").rows() == [
        (0, "ended_at 2023-02-03 is after the case was completed (2023-02-01)"),
        (0, "started_at 2023-01-19 is before the case was accepted (2023-01-20)"),
    ]
