"""The clock engine against hand-checked dates around Spring Festival and National Day, and against the day-by-day
reference (tests/clock_reference.py) on random clocks."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

import chinese_calendar
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tasks.clocks.kernels as kernels
from tasks.clocks.calendar import WorkCalendar, default_work_calendar
from tasks.clocks.engine import LEVELS, empty_clocks, empty_pauses, evaluate_clocks
from tests.clock_reference import RefClock, RefPause, RefResult, evaluate_one


@pytest.fixture(scope="module")
def calendar() -> WorkCalendar:
    return default_work_calendar()


def clock_frame(*clocks: dict) -> pl.DataFrame:
    rows = []
    for number, clock in enumerate(clocks):
        rows.append(
            {
                "clock_id": clock.get("clock_id", f"case:C{number}"),
                "clock_type": "case",
                "subject_id": f"C{number}",
                "case_id": f"C{number}",
                "unit_code": "360702SPJ",
                "matter_code": None,
                "region_code": None,
                "start_date": clock["start"],
                "limit_days": clock["limit"],
                "limit_kind": clock.get("kind", "workday"),
                "completed_date": clock.get("completed"),
                "warning_days": clock.get("warning_days", 1),
                "escalate_after": clock.get("escalate_after", 5),
                "repeat_every": 3,
            }
        )
    return pl.DataFrame(rows, schema=empty_clocks().schema)


def pause_frame(*pauses: tuple[str, date, date | None, bool]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"clock_id": c, "start_date": s, "end_date": e, "restart": r} for c, s, e, r in pauses],
        schema=empty_pauses().schema,
    )


def one(calendar: WorkCalendar, as_of: date, clock: dict, *pauses: tuple[date, date | None, bool]) -> dict:
    frame = evaluate_clocks(clock_frame(clock), pause_frame(*(("case:C0", *p) for p in pauses)), calendar, as_of)
    return frame.row(0, named=True)


# -- hand-checked ------------------------------------------------------------------------------------------------


def test_spring_festival_2025_counts_the_makeup_sunday_and_saturday(calendar: WorkCalendar) -> None:
    # Accepted Fri 2025-01-24: Sun 01-26 (调休) is day 1, Mon 01-27 day 2, 01-28..02-04 春节, then 02-05, 02-06, 02-07.
    assert one(calendar, date(2025, 1, 24), {"start": date(2025, 1, 24), "limit": 5})["due_date"] == date(2025, 2, 7)
    # The sixth working day is Saturday 2025-02-08, a make-up working day.
    assert one(calendar, date(2025, 1, 24), {"start": date(2025, 1, 24), "limit": 6})["due_date"] == date(2025, 2, 8)


def test_national_day_2025(calendar: WorkCalendar) -> None:
    # Accepted Fri 2025-09-26: Sun 09-28 (调休) day 1, 09-29, 09-30; 10-01..10-08 off; 10-09, 10-10, Sat 10-11.
    start = date(2025, 9, 26)
    assert one(calendar, start, {"start": start, "limit": 3})["due_date"] == date(2025, 9, 30)
    assert one(calendar, start, {"start": start, "limit": 4})["due_date"] == date(2025, 10, 9)
    assert one(calendar, start, {"start": start, "limit": 6})["due_date"] == date(2025, 10, 11)
    # 10 calendar days end on 10-06, a holiday: the deadline moves to the next working day (民法典 第二百零三条).
    assert one(calendar, start, {"start": start, "limit": 10, "kind": "calendar"})["due_date"] == date(2025, 10, 9)


def test_spring_festival_2026(calendar: WorkCalendar) -> None:
    # Accepted Thu 2026-02-12: Fri 02-13, Sat 02-14 (调休), 02-15..02-23 春节, Tue 02-24 is the third working day.
    start = date(2026, 2, 12)
    assert one(calendar, start, {"start": start, "limit": 2})["due_date"] == date(2026, 2, 14)
    assert one(calendar, start, {"start": start, "limit": 3})["due_date"] == date(2026, 2, 24)
    assert one(calendar, start, {"start": start, "limit": 7})["due_date"] == date(2026, 2, 28)


def test_pause_over_national_day_and_overdue_count(calendar: WorkCalendar) -> None:
    # 专家评审 (09-29, 10-10] pauses: counted 09-28, 09-29, then 10-11 (Sat, 调休), 10-13, 10-14.
    clock = {"start": date(2025, 9, 26), "limit": 5}
    pause = (date(2025, 9, 29), date(2025, 10, 10), False)
    result = one(calendar, date(2025, 10, 20), clock, pause)
    assert result["due_date"] == date(2025, 10, 14)
    assert result["elapsed"] == 9  # 5 counted up to 10-14, then 10-15, 10-16, 10-17, 10-20
    assert result["remaining"] == -4
    assert result["overdue_workdays"] == 4
    assert result["level"] == "overdue"
    assert one(calendar, date(2025, 10, 21), clock, pause)["level"] == "escalated"  # 5 working days overdue


def test_restart_counts_the_full_limit_again_from_the_end_of_the_correction(calendar: WorkCalendar) -> None:
    # 补正 restarts: (2025-01-03, 2025-01-24]; then 01-26 (调休), 01-27, 02-05.
    result = one(
        calendar, date(2025, 2, 5), {"start": date(2025, 1, 2), "limit": 3}, (date(2025, 1, 3), date(2025, 1, 24), True)
    )
    assert result["due_date"] == date(2025, 2, 5)
    assert (result["elapsed"], result["remaining"], result["level"]) == (3, 0, "warning")


def test_open_pause_freezes_the_clock(calendar: WorkCalendar) -> None:
    clock = {"start": date(2025, 3, 3), "limit": 5}
    result = one(calendar, date(2025, 3, 20), clock, (date(2025, 3, 5), None, False))
    assert result["level"] == "paused"
    assert result["due_date"] is None
    assert (result["elapsed"], result["remaining"], result["overdue_workdays"]) == (2, 3, 0)
    # A pause whose recorded end is after T is still open at T; one that starts after T is not known yet.
    assert one(calendar, date(2025, 3, 20), clock, (date(2025, 3, 5), date(2025, 3, 21), False))["level"] == "paused"
    assert one(calendar, date(2025, 3, 4), clock, (date(2025, 3, 5), None, False))["due_date"] == date(2025, 3, 10)


def test_instant_case_is_due_on_acceptance(calendar: WorkCalendar) -> None:
    start = date(2025, 5, 30)
    assert one(calendar, start, {"start": start, "limit": 0})["due_date"] == start
    assert one(calendar, start, {"start": start, "limit": 0})["level"] == "warning"
    late = one(calendar, date(2025, 6, 3), {"start": start, "limit": 0})  # 05-31..06-02 端午节; 06-03 is worked
    assert (late["level"], late["overdue_workdays"]) == ("overdue", 1)


def test_completion_is_only_known_from_its_date(calendar: WorkCalendar) -> None:
    clock = {"start": date(2025, 9, 26), "limit": 3, "completed": date(2025, 10, 9)}
    assert one(calendar, date(2025, 9, 30), clock)["level"] == "warning"
    on_the_day = one(calendar, date(2025, 10, 9), clock)
    assert (on_the_day["level"], on_the_day["overdue_workdays"], on_the_day["elapsed"]) == ("completed_late", 1, 4)
    assert one(calendar, date(2025, 9, 30), {**clock, "completed": date(2025, 9, 30)})["level"] == "completed_on_time"


def test_levels_follow_the_thresholds(calendar: WorkCalendar) -> None:
    clock = {"start": date(2025, 3, 3), "limit": 10, "warning_days": 2, "escalate_after": 2}  # due Mon 03-17
    levels = {
        as_of: one(calendar, as_of, clock)["level"]
        for as_of in (date(2025, 3, 12), date(2025, 3, 13), date(2025, 3, 17), date(2025, 3, 18), date(2025, 3, 19))
    }
    assert list(levels.values()) == ["normal", "warning", "warning", "overdue", "escalated"]


def test_december_2026_cases_are_provisional(calendar: WorkCalendar) -> None:
    result = one(calendar, date(2026, 12, 24), {"start": date(2026, 12, 24), "limit": 6})
    assert result["due_date"] == date(2027, 1, 4)  # 12-25, 12-28..12-31, 2027's estimated New Year, then Mon 01-04
    assert result["calendar"] == "provisional"
    assert one(calendar, date(2026, 12, 24), {"start": date(2026, 12, 24), "limit": 5})["calendar"] == "official"


def test_output_keeps_order_and_passes_columns_through(calendar: WorkCalendar) -> None:
    clocks = clock_frame(
        {"clock_id": "step:C9:2", "start": date(2025, 4, 1), "limit": 3},
        {"clock_id": "case:C1", "start": date(2025, 4, 1), "limit": 1},
    )
    pauses = pause_frame(
        ("case:C1", date(2025, 4, 1), date(2025, 4, 7), False), ("case:GONE", date(2025, 4, 1), None, False)
    )
    result = evaluate_clocks(clocks, pauses, calendar, date(2025, 4, 7))
    assert result.columns == [
        *clocks.columns,
        "due_date",
        "elapsed",
        "remaining",
        "overdue_workdays",
        "level",
        "calendar",
    ]
    assert result["clock_id"].to_list() == ["step:C9:2", "case:C1"]
    # 04-04..04-06 清明节: the pause (04-01, 04-07] covers 04-02, 04-03 and 04-07; the one working day is 04-08.
    assert result["due_date"].to_list() == [date(2025, 4, 7), date(2025, 4, 8)]
    assert evaluate_clocks(empty_clocks(), empty_pauses(), calendar, date(2025, 4, 2)).height == 0


def test_bad_clock_rows_raise(calendar: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="limit_kind"):
        evaluate_clocks(
            clock_frame({"start": date(2025, 1, 1), "limit": 1, "kind": "weekly"}),
            empty_pauses(),
            calendar,
            date(2025, 1, 2),
        )
    with pytest.raises(ValueError, match="outside the calendar"):
        evaluate_clocks(
            clock_frame({"start": date(1999, 1, 1), "limit": 1}), empty_pauses(), calendar, date(2025, 1, 2)
        )


# -- against the reference ---------------------------------------------------------------------------------------

# Around 春节 2025 and 2026 (make-up Sun 2025-01-26, Sat 2025-02-08, Sat 2026-02-14, Sat 2026-02-28), 国庆节 2025
# (Sun 2025-09-28, Sat 2025-10-11), 劳动节 2024, and December 2026 running into the provisional 2027.
ANCHORS = [date(2025, 1, 20), date(2026, 2, 8), date(2025, 9, 22), date(2024, 4, 24), date(2026, 12, 15)]


@dataclass(frozen=True)
class Case:
    clock: RefClock
    pauses: tuple[RefPause, ...]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    start = draw(st.sampled_from(ANCHORS)) + timedelta(days=draw(st.integers(-12, 12)))
    limit = draw(st.one_of(st.just(0), st.integers(1, 25)))
    completed = draw(st.none() | st.integers(-2, 60).map(lambda days: start + timedelta(days=days)))
    clock = RefClock(
        start=start,
        limit=limit,
        kind=draw(st.sampled_from(["workday", "calendar"])),
        completed=completed,
        warning_days=draw(st.integers(0, 5)),
        escalate_after=draw(st.integers(0, 6)),
    )
    pauses = []
    for _ in range(draw(st.integers(0, 3))):
        pause_start = start + timedelta(days=draw(st.integers(-3, 40)))
        end = draw(st.none() | st.integers(-1, 25).map(lambda days, s=pause_start: s + timedelta(days=days)))
        pauses.append(RefPause(pause_start, end, restart=draw(st.booleans())))
    return Case(clock, tuple(pauses))


def reference_day_status(calendar: WorkCalendar) -> tuple:
    def is_workday(day: date) -> bool:
        # The official years straight from the package; later years from the provisional table under test elsewhere.
        if day.year <= 2026:
            return chinese_calendar.is_workday(day)
        return calendar.is_workday(day)

    return is_workday, lambda day: day.year > 2026


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(cases(), min_size=1, max_size=12), as_of_shift=st.integers(-3, 80))
def test_engine_equals_day_by_day_reference(calendar: WorkCalendar, batch: list[Case], as_of_shift: int) -> None:
    as_of = batch[0].clock.start + timedelta(days=as_of_shift)
    clocks = clock_frame(
        *(
            {
                "start": case.clock.start,
                "limit": case.clock.limit,
                "kind": case.clock.kind,
                "completed": case.clock.completed,
                "warning_days": case.clock.warning_days,
                "escalate_after": case.clock.escalate_after,
            }
            for case in batch
        )
    )
    pauses = pause_frame(
        *((f"case:C{number}", p.start, p.end, p.restart) for number, case in enumerate(batch) for p in case.pauses)
    )
    engine = evaluate_clocks(clocks, pauses, calendar, as_of)
    is_workday, is_provisional = reference_day_status(calendar)
    for number, case in enumerate(batch):
        expected = evaluate_one(case.clock, case.pauses, as_of, is_workday, is_provisional)
        row = engine.row(number, named=True)
        actual = RefResult(
            row["due_date"], row["elapsed"], row["remaining"], row["overdue_workdays"], row["level"], row["calendar"]
        )
        assert actual == expected, (case, as_of)
        assert row["level"] in LEVELS


def test_blocks_and_hash_join_agree_with_the_reference(calendar: WorkCalendar, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many clocks split into small blocks, pauses listed in shuffled order, some for unknown clocks."""
    monkeypatch.setattr(kernels, "BLOCK_ROWS", 7)
    generator = random.Random(20250126)
    batch = []
    for _ in range(300):
        start = generator.choice(ANCHORS) + timedelta(days=generator.randint(-12, 12))
        completed = start + timedelta(days=generator.randint(-2, 60)) if generator.random() < 0.4 else None
        clock = RefClock(start, generator.randint(0, 25), generator.choice(["workday", "calendar"]), completed, 2, 3)
        pauses = []
        for _ in range(generator.choice([0, 0, 1, 2, 3])):
            pause_start = start + timedelta(days=generator.randint(-3, 40))
            end = pause_start + timedelta(days=generator.randint(0, 25)) if generator.random() < 0.8 else None
            pauses.append(RefPause(pause_start, end, generator.random() < 0.3))
        batch.append(Case(clock, tuple(pauses)))
    rows = [(f"case:C{n}", p.start, p.end, p.restart) for n, case in enumerate(batch) for p in case.pauses]
    rows += [("case:unknown", date(2025, 1, 1), None, False)]
    generator.shuffle(rows)
    clocks = clock_frame(
        *(
            {
                "start": c.clock.start,
                "limit": c.clock.limit,
                "kind": c.clock.kind,
                "completed": c.clock.completed,
                "warning_days": 2,
                "escalate_after": 3,
            }
            for c in batch
        )
    )
    is_workday, is_provisional = reference_day_status(calendar)
    for as_of in (date(2025, 2, 10), date(2025, 10, 9), date(2027, 1, 20)):
        engine = evaluate_clocks(clocks, pause_frame(*rows), calendar, as_of)
        for number, case in enumerate(batch):
            expected = evaluate_one(case.clock, case.pauses, as_of, is_workday, is_provisional)
            row = engine.row(number, named=True)
            actual = RefResult(
                row["due_date"],
                row["elapsed"],
                row["remaining"],
                row["overdue_workdays"],
                row["level"],
                row["calendar"],
            )
            assert actual == expected, (case, as_of)


def test_row_lookup_matches_a_dictionary() -> None:
    ids = [f"step:C{n}:{n % 3}" for n in range(20_000)]
    wanted = [f"step:C{n}:{n % 3}" for n in range(0, 40_000, 3)] + ["", "step:C1:2"]
    rows = kernels.rows_of(pl.Series(ids), pl.Series(wanted))
    position = {clock_id: row for row, clock_id in enumerate(ids)}
    assert rows.tolist() == [position.get(clock_id, -1) for clock_id in wanted]
