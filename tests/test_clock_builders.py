"""Clocks built from canonical tables: limits from rules or rows, 市县同权 steps, project unions, deferrals, claims,
special procedures, and the rows that are rejected with their reason."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.rules import RuleBook, load_rules
from tasks.clocks.builders import ClockSet, build_clocks, input_columns
from tasks.clocks.calendar import WorkCalendar, default_work_calendar
from tasks.clocks.engine import CLOCK_COLUMNS, PAUSE_COLUMNS, evaluate_clocks

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
# The frames the builder reads, as declared (config/canonical.py, clock=True).
CASE_SCHEMA = input_columns("cases")
SUSPENSION_SCHEMA = input_columns("suspensions")


@pytest.fixture(scope="module")
def rules() -> RuleBook:
    return load_rules(CONFIG_DIR)


@pytest.fixture(scope="module")
def calendar() -> WorkCalendar:
    return default_work_calendar()


def case(case_id: str, matter: str, accepted: date, **fields: object) -> dict:
    return {
        "case_id": case_id,
        "matter_code": matter,
        "unit_code": "360702SPJ",
        "region_code": "360702",
        "accepted_at": accepted,
        **fields,
    }


def cases_frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame([{**dict.fromkeys(CASE_SCHEMA), **row} for row in rows], schema=CASE_SCHEMA)


def suspensions_frame(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(
        [dict(zip(SUSPENSION_SCHEMA, (*row, None)[:5], strict=True)) for row in rows], schema=SUSPENSION_SCHEMA
    )


def clock(clock_set: ClockSet, clock_id: str) -> dict:
    rows = clock_set.clocks.filter(pl.col("clock_id") == clock_id)
    assert rows.height == 1, clock_set.rejects
    return rows.row(0, named=True)


def reasons(clock_set: ClockSet) -> dict[str, str]:
    return dict(zip(clock_set.rejects["row_key"], clock_set.rejects["reason"], strict=True))


def test_frames_have_the_engine_columns(rules: RuleBook) -> None:
    clock_set = build_clocks({}, rules)
    assert clock_set.clocks.schema == pl.Schema(CLOCK_COLUMNS)
    assert clock_set.pauses.schema == pl.Schema(PAUSE_COLUMNS)
    assert clock_set.rejects.is_empty()


def test_case_limits_come_from_the_case_or_the_rule_in_force(rules: RuleBook) -> None:
    clock_set = build_clocks(
        {
            "cases": cases_frame(
                case("A", "SXTQ-A004", date(2025, 6, 30)),
                case("B", "SXTQ-A004", date(2025, 7, 1)),
                case("C", "SXTQ-A004", date(2025, 7, 1), limit_days=12, limit_kind="自然日"),
                case("D", "NEW-MATTER", date(2025, 7, 1), limit_days=4, limit_kind="工作日"),
                case("E", "SXTQ-C004", date(2025, 7, 1)),  # a calendar-day matter
                case("F", "NEW-MATTER", date(2025, 7, 1), limit_days=35),
            )
        },
        rules,
    )
    limits = {c["case_id"]: (c["limit_days"], c["limit_kind"]) for c in clock_set.clocks.iter_rows(named=True)}
    assert limits == {
        "A": (10, "workday"),
        "B": (7, "workday"),
        "C": (12, "calendar"),
        "D": (4, "workday"),
        "E": (30, "calendar"),
        "F": (35, "workday"),
    }
    f = clock(clock_set, "case:F")
    assert (f["warning_days"], f["escalate_after"], f["repeat_every"]) == (7, 5, 3)
    assert clock(clock_set, "case:A")["warning_days"] == 2


def test_bad_cases_are_rejected_with_their_reason(rules: RuleBook) -> None:
    clock_set = build_clocks(
        {
            "cases": cases_frame(
                case("late", "SJ-D001", date(2025, 3, 3), completed_at=date(2025, 3, 1)),
                case("kind", "SJ-D001", date(2025, 3, 3), limit_days=5, limit_kind="weeks"),
                case("matter", "NOPE", date(2025, 3, 3)),
                case("early", "SXTQ-A001", date(2021, 6, 1)),  # before the matter's first version
                case("old", "SJ-D001", date(2003, 12, 31)),
                case("ok", "SJ-D001", date(2025, 3, 3)),
                case("ok", "SJ-D001", date(2025, 3, 4)),
            )
        },
        rules,
    )
    assert reasons(clock_set) == {
        "late": "completed_at 2025-03-01 is before accepted_at 2025-03-03",
        "kind": "unknown limit_kind 'weeks' (工作日|workday|working day|自然日|日历日|calendar|calendar day)",
        "matter": "unknown matter 'NOPE' and no limit_days",
        "early": "no rule for matter 'SXTQ-A001' in force on 2021-06-01 and no limit_days",
        "old": "accepted_at 2003-12-31 outside 2004-01-01..2040-12-31",
        "ok": "duplicate case_id (the first row is kept)",
    }
    assert clock_set.clocks["clock_id"].to_list() == ["case:ok"]
    assert clock(clock_set, "case:ok")["start_date"] == date(2025, 3, 3)


def test_suspensions_pause_or_restart_and_special_procedures_get_clocks(rules: RuleBook) -> None:
    clock_set = build_clocks(
        {
            "cases": cases_frame(
                case("C1", "SJ-D001", date(2025, 3, 3), completed_at=date(2025, 4, 30)),
                case("C2", "SJ-D001", date(2025, 3, 3)),
            ),
            "suspensions": suspensions_frame(
                ("C1", "补正", date(2025, 3, 5), date(2025, 3, 10)),
                ("C1", "专家评审", date(2025, 3, 12), date(2025, 3, 20)),
                ("C1", "公示", date(2025, 3, 21), date(2025, 3, 25), 3),  # its own limit
                ("C1", "某新程序", date(2025, 3, 26), date(2025, 3, 27)),
                ("C1", "听证", date(2025, 3, 1), date(2025, 3, 4)),  # before acceptance
                ("C1", "听证", date(2025, 4, 20), date(2025, 5, 4)),  # ends after completion
                ("C1", "听证", date(2025, 4, 21), None),  # open, though the case is complete
                ("C2", "检验检测", date(2025, 3, 10), date(2025, 3, 5)),  # ends before it starts
                ("C3", "公示", date(2025, 3, 10), None),  # no such case
            ),
        },
        rules,
    )
    pauses = clock_set.pauses.filter(pl.col("clock_id") == "case:C1").sort("start_date")
    assert pauses.select("start_date", "restart").rows() == [
        (date(2025, 3, 5), True),
        (date(2025, 3, 12), False),
        (date(2025, 3, 21), False),
        (date(2025, 3, 26), False),
    ]
    specials = clock_set.clocks.filter(pl.col("clock_type") == "special").sort("clock_id")
    assert specials.select("clock_id", "limit_days", "completed_date").rows() == [
        ("special:C1:专家评审:2025-03-12", 20, date(2025, 3, 20)),
        ("special:C1:公示:2025-03-21", 3, date(2025, 3, 25)),
    ]
    assert reasons(clock_set) == {
        "C1 听证 2025-03-01": "pause starts 2025-03-01 before the case was accepted on 2025-03-03",
        "C1 听证 2025-04-20": "pause ends 2025-05-04 after the case was completed on 2025-04-30",
        "C1 听证 2025-04-21": "pause has no end but the case was completed on 2025-04-30",
        "C2 检验检测 2025-03-10": "ended_at 2025-03-05 is before started_at 2025-03-10",
        "C3 公示 2025-03-10": "no case 'C3' among the cases",
    }


def test_step_clocks_follow_the_devolution_modes(rules: RuleBook, calendar: WorkCalendar) -> None:
    steps = pl.DataFrame(
        {
            "case_id": ["R", "R", "F", "F", "E"],
            "step_no": [1, 2, 1, 2, 1],
            "unit_code": ["360703SPJ", None, "360703SPJ", None, None],
            "started_at": [
                date(2025, 9, 22),
                date(2025, 9, 26),
                date(2025, 9, 22),
                date(2025, 9, 24),
                date(2025, 9, 22),
            ],
            "ended_at": [date(2025, 9, 26), None, date(2025, 9, 24), None, None],
            "limit_days": [None, None, None, None, None],
        }
    )
    cases = cases_frame(
        case(
            "R", "SXTQ-B001", date(2025, 9, 22), unit_code="360703SPJ"
        ),  # 下放实质性审核权: county reviews, city approves
        case("F", "SXTQ-C001", date(2025, 9, 22), unit_code="360703SPJ"),  # 服务窗口前移: county forwards, city handles
        case("E", "SXTQ-A001", date(2025, 9, 22), unit_code="360703SPJ"),  # 直接下放: the county end to end
    )
    clock_set = build_clocks(
        {
            "cases": cases,
            "steps": steps,
            "suspensions": suspensions_frame(("R", "现场勘查", date(2025, 9, 29), date(2025, 10, 10))),
        },
        rules,
    )
    city_approval = clock(clock_set, "step:R:2")
    assert (city_approval["unit_code"], city_approval["limit_days"]) == ("360700SCJ", 3)
    assert (clock(clock_set, "step:F:1")["limit_days"], clock(clock_set, "step:F:2")["unit_code"]) == (2, "360700SPJ")
    assert clock(clock_set, "step:E:1")["unit_code"] == "360703SPJ"
    # The inspection started during the city step, so it pauses that step (and the case), not the finished county step.
    assert sorted(clock_set.pauses.filter(pl.col("start_date") == date(2025, 9, 29))["clock_id"]) == [
        "case:R",
        "step:R:2",
    ]
    evaluated = evaluate_clocks(clock_set.clocks, clock_set.pauses, calendar, date(2025, 10, 15))
    city = evaluated.filter(pl.col("clock_id") == "step:R:2").row(0, named=True)
    # Submitted Fri 09-26: Sun 09-28 (调休), Mon 09-29, then paused to 10-10, Sat 10-11 (调休) is the third day.
    assert city["due_date"] == date(2025, 10, 11)
    assert city["level"] == "overdue"


def test_project_clock_counts_the_union_of_its_cases(rules: RuleBook, calendar: WorkCalendar) -> None:
    cases = cases_frame(
        case("P-A", "SJ-D001", date(2025, 3, 3), project_code="P1", completed_at=date(2025, 3, 14)),
        case("P-B", "SJ-D002", date(2025, 3, 5), project_code="P1", completed_at=date(2025, 3, 12)),  # in parallel
        case("P-C", "SJ-D003", date(2025, 3, 21), project_code="P1", completed_at=date(2025, 3, 28)),
    )
    projects = pl.DataFrame(
        {
            "project_code": ["P1", "P2"],
            "category": ["simple_low_risk", "enterprise_investment"],
            "region_code": ["360792", "360702"],
            "lead_unit_code": ["360792SPJ", "360702SPJ"],
        }
    )
    clock_set = build_clocks(
        {
            "cases": cases,
            "projects": projects,
            "suspensions": suspensions_frame(("P-A", "专家评审", date(2025, 3, 6), date(2025, 3, 13))),
        },
        rules,
    )
    project = clock(clock_set, "project:P1")
    assert (project["start_date"], project["completed_date"], project["limit_days"]) == (
        date(2025, 3, 3),
        date(2025, 3, 28),
        18,
    )
    assert "project:P2" not in clock_set.clocks["clock_id"].to_list()  # no cases: nothing to count
    gaps = clock_set.pauses.filter(pl.col("clock_id") == "project:P1").sort("start_date")
    # P-B is open while P-A is suspended, up to 03-12; P-A resumes after 03-13; no case is open after 03-14 until
    # P-C, accepted on 03-21.
    assert gaps.select("start_date", "end_date").rows() == [
        (date(2025, 3, 12), date(2025, 3, 13)),
        (date(2025, 3, 14), date(2025, 3, 21)),
    ]
    result = evaluate_clocks(clock_set.clocks, clock_set.pauses, calendar, date(2025, 4, 30))
    elapsed = result.filter(pl.col("clock_id") == "project:P1")["elapsed"][0]
    assert elapsed == 7 + 1 + 5  # working days 03-04..03-12, 03-14, then 03-24..03-28


def test_unknown_project_category_is_rejected(rules: RuleBook) -> None:
    clock_set = build_clocks(
        {
            "cases": cases_frame(case("X", "SJ-D001", date(2025, 3, 3), project_code="P9")),
            "projects": pl.DataFrame(
                {"project_code": ["P9"], "category": ["mystery"], "lead_unit_code": ["360702SPJ"]}
            ),
        },
        rules,
    )
    assert reasons(clock_set) == {"P9": "unknown project category 'mystery'"}


def test_deferral_and_claim_clocks(rules: RuleBook, calendar: WorkCalendar) -> None:
    cases = cases_frame(
        case("D1", "SJ-D001", date(2025, 9, 26)),
        case("D2", "SJ-D001", date(2025, 9, 26)),
        case("D3", "SJ-D001", date(2025, 9, 26)),
    )
    deferrals = pl.DataFrame(
        {
            "case_id": ["D1", "D2", "D3", "D4"],
            "due_days": [None, 3, None, None],
            "due_date": [date(2025, 10, 4), None, None, None],
            "supplied_at": [None, None, date(2025, 9, 25), None],
        },
        schema=input_columns("deferrals"),
    )
    pushes = pl.DataFrame(
        {
            "push_id": ["U1", "U2"],
            "case_id": ["D1", "gone"],
            "supervisor_unit_code": ["360700SCJ", "360700SCJ"],
            "pushed_at": [date(2025, 9, 30), date(2025, 9, 30)],
            "claimed_at": [None, date(2025, 9, 29)],
        }
    )
    clock_set = build_clocks({"cases": cases, "deferrals": deferrals, "pushes": pushes}, rules)
    fixed = clock(clock_set, "deferral:D1")
    assert (fixed["limit_days"], fixed["limit_kind"]) == (8, "calendar")
    assert (clock(clock_set, "deferral:D2")["limit_days"], clock(clock_set, "deferral:D2")["limit_kind"]) == (
        3,
        "workday",
    )
    claim = clock(clock_set, "claim:U1")
    assert (claim["unit_code"], claim["limit_days"], claim["subject_id"], claim["matter_code"]) == (
        "360700SCJ",
        3,
        "U1",
        "SJ-D001",
    )
    assert reasons(clock_set) == {
        "D3": "supplied_at 2025-09-25 is before the case was accepted on 2025-09-26",
        "D4": "no case 'D4' among the cases",
        "U2": "claimed_at 2025-09-29 is before pushed_at 2025-09-30",
    }
    result = evaluate_clocks(clock_set.clocks, clock_set.pauses, calendar, date(2025, 10, 1))
    due = dict(zip(result["clock_id"], result["due_date"], strict=True))
    assert due["deferral:D1"] == date(2025, 10, 9)  # 10-04 falls in the National Day holiday
    assert due["deferral:D2"] == date(2025, 9, 30)  # 09-28 (调休), 09-29, 09-30
    assert due["claim:U1"] == date(2025, 10, 11)  # 10-01..10-08 off; 10-09, 10-10, Sat 10-11 (调休)


# -- project clocks against day-by-day union -----------------------------------------------------------------------

member = st.tuples(
    st.integers(0, 40),  # accepted, days after 2025-03-01
    st.one_of(st.none(), st.integers(0, 30)),  # completed, days after acceptance
    st.lists(st.tuples(st.integers(0, 30), st.one_of(st.none(), st.integers(0, 15))), max_size=2),  # suspensions
)


@settings(max_examples=150, deadline=None)
@given(members=st.lists(member, min_size=1, max_size=4))
def test_project_elapsed_is_the_days_some_case_is_open_and_unsuspended(members: list) -> None:
    rules, calendar = load_rules(CONFIG_DIR), default_work_calendar()
    origin, as_of = date(2025, 3, 1), date(2026, 6, 30)
    case_rows, suspension_rows, spans = [], [], []
    for number, (accepted, completed, pauses) in enumerate(members):
        accepted_at = origin + timedelta(days=accepted)
        completed_at = None if completed is None else accepted_at + timedelta(days=completed)
        case_rows.append(case(f"M{number}", "SJ-D001", accepted_at, project_code="P1", completed_at=completed_at))
        kept = []
        for start, length in pauses:
            started = accepted_at + timedelta(days=start)
            ended = None if length is None else started + timedelta(days=length)
            if completed_at is not None and (started > completed_at or ended is None or ended > completed_at):
                continue  # such rows are rejected (tested above)
            suspension_rows.append((f"M{number}", "专家评审", started, ended))
            kept.append((started, ended))
        spans.append((accepted_at, completed_at, kept))
    clock_set = build_clocks(
        {
            "cases": cases_frame(*case_rows),
            "suspensions": suspensions_frame(*suspension_rows),
            "projects": pl.DataFrame(
                {"project_code": ["P1"], "category": ["enterprise_investment"], "lead_unit_code": ["360702SPJ"]}
            ),
        },
        rules,
    )
    assert clock_set.rejects.is_empty()

    def active(day: date) -> bool:
        for accepted_at, completed_at, kept in spans:
            open_then = accepted_at < day and (completed_at is None or day <= completed_at)
            if open_then and not any(s < day and (e is None or day <= e) for s, e in kept):
                return True
        return False

    start = min(accepted for accepted, _, _ in spans)
    done = None if any(c is None for _, c, _ in spans) else max(c for _, c, _ in spans)
    end = done or as_of
    expected = sum(
        active(day) and calendar.is_workday(day)
        for day in (start + timedelta(days=i) for i in range(1, (end - start).days + 1))
    )
    result = evaluate_clocks(clock_set.clocks, clock_set.pauses, calendar, as_of)
    project = result.filter(pl.col("clock_id") == "project:P1").row(0, named=True)
    assert project["elapsed"] == expected


def test_a_repeated_deferral_is_rejected_and_the_first_kept(rules: RuleBook) -> None:
    deferrals = pl.DataFrame(
        {
            "case_id": ["D1", "D1"],
            "due_days": [3, 5],
            "due_date": [None, None],
            "supplied_at": [None, None],
        },
        schema=input_columns("deferrals"),
    )
    cases = cases_frame(case("D1", "SJ-D001", date(2025, 9, 26)))
    clock_set = build_clocks({"cases": cases, "deferrals": deferrals}, rules, clock_types={"deferral"})
    assert clock_set.rejects["reason"].to_list() == ["duplicate deferral (the first row is kept)"]
    assert clock(clock_set, "deferral:D1")["limit_days"] == 3
