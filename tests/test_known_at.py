"""What is known at T, on concrete dates: clocks that start after T, projects whose members arrive later, suspensions
over steps, restarts across steps, fixed due dates on rest days, extensions (延期), what `explain` shows of them, and
a nightly run and a backfill of the same day agreeing."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from config.rules import RuleBook, load_rules
from tasks.clocks.builders import ClockSet, build_clocks
from tasks.clocks.calendar import WorkCalendar, default_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tasks.clocks.explain import NotStartedError, explain_clock

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
CASE_SCHEMA = {
    "case_id": pl.String,
    "matter_code": pl.String,
    "unit_code": pl.String,
    "project_code": pl.String,
    "accepted_at": pl.Date,
    "completed_at": pl.Date,
    "limit_days": pl.Int32,
}
STEP_SCHEMA = {"case_id": pl.String, "step_no": pl.Int32, "started_at": pl.Date, "ended_at": pl.Date}
SUSPENSION_SCHEMA = {
    "case_id": pl.String,
    "kind": pl.String,
    "started_at": pl.Date,
    "ended_at": pl.Date,
    "limit_days": pl.Int32,
}


@pytest.fixture(scope="module")
def rules() -> RuleBook:
    return load_rules(CONFIG_DIR)


@pytest.fixture(scope="module")
def calendar() -> WorkCalendar:
    return default_work_calendar()


def frame(schema: dict[str, pl.DataType], *rows: tuple) -> pl.DataFrame:
    return pl.DataFrame([dict(zip(schema, (*row, *[None] * len(schema)), strict=False)) for row in rows], schema=schema)


def evaluated(clock_set: ClockSet, calendar: WorkCalendar, as_of: date) -> dict[str, dict]:
    known = clock_set.known_at(as_of, calendar)
    result = evaluate_clocks(known.clocks, known.pauses, calendar, as_of)
    return {row["clock_id"]: row for row in result.iter_rows(named=True)}


def text(
    clock_set: ClockSet, clock_id: str, calendar: WorkCalendar, as_of: date, labels: pl.DataFrame | None = None
) -> str:
    return "\n".join(explain_clock(clock_id, clock_set, calendar, as_of, labels).lines())


# -- a clock that has not started by T does not exist at T ------------------------------------------------------


def test_push_step_and_deferral_that_start_after_t_are_not_evaluated(rules: RuleBook, calendar: WorkCalendar) -> None:
    cases = frame(
        CASE_SCHEMA,
        ("C1", "SJ-D004", "360700SPJ", None, date(2024, 2, 20)),  # 即办件 with an N = 0 step
        ("C2", "SJ-D001", "360700SPJ", None, date(2024, 2, 27)),  # accepted after T: its deferral too
    )
    clock_set = build_clocks(
        {
            "cases": cases,
            "steps": frame(STEP_SCHEMA, ("C1", 1, date(2024, 2, 29))),
            "deferrals": pl.DataFrame({"case_id": ["C2"], "due_date": [date(2024, 3, 1)]}),
            "pushes": pl.DataFrame(
                {
                    "push_id": ["U1"],
                    "case_id": ["C1"],
                    "supervisor_unit_code": ["360700SCJ"],
                    "pushed_at": [date(2024, 2, 27)],
                }
            ),
        },
        rules,
    )
    assert clock_set.rejects.is_empty()
    assert set(evaluated(clock_set, calendar, date(2024, 2, 26))) == {"case:C1"}
    later = evaluated(clock_set, calendar, date(2024, 2, 29))
    assert set(later) == {"case:C1", "case:C2", "step:C1:1", "deferral:C2", "claim:U1"}
    assert later["step:C1:1"]["level"] == "warning"  # N = 0: due on its own start, known from that day on
    with pytest.raises(NotStartedError, match="starts on 2024-02-27, after 2024-02-26"):
        explain_clock("claim:U1", clock_set, calendar, date(2024, 2, 26))


# -- projects count the member cases known at T -------------------------------------------------------------------


def late_project(rules: RuleBook) -> ClockSet:
    """Two cases 2025-08-07 → 09-15 (18 working days due 09-02), a third accepted 2025-10-01."""
    cases = frame(
        CASE_SCHEMA,
        ("X", "SJ-D001", "360702SPJ", "P1", date(2025, 8, 7), date(2025, 8, 20)),
        ("Y", "SJ-D002", "360702SPJ", "P1", date(2025, 8, 15), date(2025, 9, 15)),
        ("Z", "SJ-D003", "360702SPJ", "P1", date(2025, 10, 1)),
    )
    projects = pl.DataFrame(
        {"project_code": ["P1"], "category": ["simple_low_risk"], "lead_unit_code": ["360702SPJ"]}
    )
    return build_clocks({"cases": cases, "projects": projects}, rules)


def test_a_member_accepted_after_t_does_not_hide_a_late_project(rules: RuleBook, calendar: WorkCalendar) -> None:
    clock_set = late_project(rules)
    project = evaluated(clock_set, calendar, date(2025, 9, 28))["project:P1"]
    assert (project["level"], project["due_date"], project["overdue_workdays"]) == (
        "completed_late",
        date(2025, 9, 2),
        9,
    )
    # Once the third case exists, the project is open again, still due 09-02; 09-16..10-01 no case was open.
    later = evaluated(clock_set, calendar, date(2025, 10, 10))["project:P1"]
    assert (later["level"], later["due_date"], later["completed_date"]) == ("escalated", date(2025, 9, 2), None)
    account = text(clock_set, "project:P1", calendar, date(2025, 9, 28))
    assert "Member cases (2 of 3 accepted by 2025-09-28 are counted)" in account
    assert "Z: accepted 2025-10-01, after 2025-09-28: not counted" in account
    assert "Y: accepted 2025-08-15, completed 2025-09-15" in account
    account = text(clock_set, "project:P1", calendar, date(2025, 10, 10))
    assert "Member cases (3 of 3 accepted by 2025-10-10 are counted)" in account
    assert "no member case open and unsuspended: (2025-09-15, 2025-10-01]" in account


def test_the_report_evaluates_what_was_known_at_its_date(rules: RuleBook, calendar: WorkCalendar) -> None:
    from tasks.reports.metrics import report_periods
    from tasks.reports.report import evaluate_for_report

    as_of = date(2025, 9, 28)
    cases = frame(
        CASE_SCHEMA,
        ("X", "SJ-D001", "360702SPJ", "P1", date(2025, 8, 7), date(2025, 8, 20)),
        ("Y", "SJ-D002", "360702SPJ", "P1", date(2025, 8, 15), date(2025, 9, 15)),
        ("Z", "SJ-D003", "360702SPJ", "P1", date(2025, 10, 1)),
    )
    projects = pl.DataFrame({"project_code": ["P1"], "category": ["simple_low_risk"], "lead_unit_code": ["360702SPJ"]})
    evaluations, snapshots = evaluate_for_report(
        {"cases": cases, "projects": projects}, rules, calendar, report_periods("month", as_of, 2), as_of
    )
    assert set(evaluations["clock_id"]) == {"case:X", "case:Y", "project:P1"}
    project = evaluations.filter(pl.col("clock_id") == "project:P1").row(0, named=True)
    assert (project["level"], project["overdue_workdays"]) == ("completed_late", 9)
    # At the end of August only X had been completed; Y was open, Z did not exist.
    august = snapshots.filter(pl.col("as_of") == date(2025, 8, 31))
    assert august["clock_id"].to_list() == ["case:Y"]


# -- suspensions over steps -----------------------------------------------------------------------------------


def test_a_city_step_that_starts_during_an_expert_review_is_paused_with_its_case(
    rules: RuleBook, calendar: WorkCalendar
) -> None:
    clock_set = build_clocks(
        {
            "cases": frame(CASE_SCHEMA, ("R", "SXTQ-B001", "360703SPJ", None, date(2025, 9, 1))),
            "steps": frame(STEP_SCHEMA, ("R", 1, date(2025, 9, 1), date(2025, 9, 5)), ("R", 2, date(2025, 9, 5))),
            "suspensions": frame(SUSPENSION_SCHEMA, ("R", "专家评审", date(2025, 9, 3))),
        },
        rules,
    )
    result = evaluated(clock_set, calendar, date(2025, 9, 30))
    assert result["case:R"]["level"] == result["step:R:2"]["level"] == "paused"
    assert result["step:R:2"]["due_date"] is None
    # The county step ended inside the review: it keeps the whole review, so its due date is not known yet.
    county = result["step:R:1"]
    assert (county["level"], county["due_date"], county["elapsed"]) == ("completed_on_time", None, 2)
    labels = pl.DataFrame({"clock_id": ["step:R:2"], "start_date": [date(2025, 9, 3)], "label": ["专家评审"]})
    account = text(clock_set, "step:R:2", calendar, date(2025, 9, 30), labels)
    assert "专家评审: (2025-09-03, open] — stops the clock; began before this clock started, so it pauses" in account
    assert "paused (专家评审)" in account


def test_a_correction_that_ends_after_a_step_ended_only_pauses_that_step(
    rules: RuleBook, calendar: WorkCalendar
) -> None:
    """County step (2 working days) 2025-01-16 → 01-22 under a 补正 01-19 → 01-30: 01-17 is day 1, then 春节 to 02-04,
    so 02-05 is day 2. Restarting it would give 02-06. The city step, running on 01-30, starts over then."""
    clock_set = build_clocks(
        {
            "cases": frame(CASE_SCHEMA, ("K", "SXTQ-C001", "360703SPJ", None, date(2025, 1, 16))),
            "steps": frame(STEP_SCHEMA, ("K", 1, date(2025, 1, 16), date(2025, 1, 22)), ("K", 2, date(2025, 1, 22))),
            "suspensions": frame(SUSPENSION_SCHEMA, ("K", "补正", date(2025, 1, 19), date(2025, 1, 30))),
        },
        rules,
    )
    result = evaluated(clock_set, calendar, date(2025, 2, 10))
    assert (result["step:K:1"]["due_date"], result["step:K:1"]["level"]) == (date(2025, 2, 5), "completed_on_time")
    # City step: 18 working days from 01-30: 02-05 is day 1.
    assert result["step:K:2"]["due_date"] == calendar.add_workdays(date(2025, 1, 30), 18)
    assert result["step:K:2"]["elapsed"] == 5  # 02-05..02-08 (Sat 02-08 is a make-up working day), 02-10
    assert result["case:K"]["due_date"] == calendar.add_workdays(date(2025, 1, 30), 20)


def test_a_special_procedure_clock_is_not_paused_by_other_suspensions(rules: RuleBook, calendar: WorkCalendar) -> None:
    clock_set = build_clocks(
        {
            "cases": frame(CASE_SCHEMA, ("S", "SJ-D001", "360700SPJ", None, date(2025, 9, 1))),
            "suspensions": frame(
                SUSPENSION_SCHEMA,
                ("S", "专家评审", date(2025, 9, 1)),  # 20 working days of its own
                ("S", "补正", date(2025, 9, 3), date(2025, 9, 10)),
                ("S", "公示", date(2025, 9, 4)),  # 10 working days of its own, still open
            ),
        },
        rules,
    )
    result = evaluated(clock_set, calendar, date(2025, 9, 30))
    review = result["special:S:专家评审:2025-09-01"]
    assert (review["due_date"], review["level"]) == (calendar.add_workdays(date(2025, 9, 1), 20), "overdue")
    assert result["special:S:公示:2025-09-04"]["due_date"] == calendar.add_workdays(date(2025, 9, 4), 10)
    assert result["case:S"]["level"] == "paused"


# -- fixed due dates --------------------------------------------------------------------------------------------


def test_a_fixed_due_date_on_a_rest_day_moves_to_the_next_working_day(
    rules: RuleBook, calendar: WorkCalendar
) -> None:
    """Accepted 2024-02-15 (春节) with due_date that same day: due on the make-up Sunday 2024-02-18. As of 02-22 that
    is 4 working days overdue (overdue); counted from 02-15 it would be 5 (escalated)."""
    clock_set = build_clocks(
        {
            "cases": frame(CASE_SCHEMA, ("D", "SJ-D001", "360700SPJ", None, date(2024, 2, 15))),
            "deferrals": pl.DataFrame(
                {"case_id": ["D"], "due_days": [3], "due_date": [date(2024, 2, 15)]},
                schema={"case_id": pl.String, "due_days": pl.Int32, "due_date": pl.Date},
            ),
        },
        rules,
    )
    deferral = evaluated(clock_set, calendar, date(2024, 2, 22))["deferral:D"]
    assert (deferral["due_date"], deferral["overdue_workdays"], deferral["level"]) == (
        date(2024, 2, 18),
        4,
        "overdue",
    )


# -- extensions (延期) --------------------------------------------------------------------------------------------


def test_extensions_add_their_days_from_the_day_granted(rules: RuleBook, calendar: WorkCalendar) -> None:
    suspensions = frame(
        SUSPENSION_SCHEMA,
        ("E", "延期", date(2025, 9, 10), None, 5),
        ("E", "延期", date(2025, 9, 22), None, 3),
        ("E", "专家评审", date(2025, 9, 11), date(2025, 9, 12)),
    )
    clock_set = build_clocks(
        {
            "cases": frame(CASE_SCHEMA, ("E", "SJ-D001", "360700SPJ", None, date(2025, 9, 1))),
            "suspensions": suspensions,
        },
        rules,
    )
    assert clock_set.rejects.is_empty()
    assert set(clock_set.clocks["clock_id"]) == {"case:E", "special:E:专家评审:2025-09-11"}  # no special clock
    start = date(2025, 9, 1)
    # The review, known from 09-11, pauses 09-12; the extensions pause nothing.
    before = evaluated(clock_set, calendar, date(2025, 9, 9))["case:E"]
    assert before["due_date"] == calendar.add_workdays(start, 15)
    first = evaluated(clock_set, calendar, date(2025, 9, 19))["case:E"]
    assert (first["due_date"], first["remaining"]) == (calendar.add_workdays(start, 20 + 1), 20 - 13)
    both = evaluated(clock_set, calendar, date(2025, 9, 22))["case:E"]
    assert both["due_date"] == calendar.add_workdays(start, 23 + 1)
    with pytest.raises(ValueError, match="already as known at 2025-09-22"):  # extensions would count twice
        clock_set.known_at(date(2025, 9, 22), calendar).known_at(date(2025, 9, 22), calendar)
    account = text(clock_set, "case:E", calendar, date(2025, 9, 19))
    assert "Limit: 20 working days (工作日) (15 + 5 by extension)" in account
    assert "延期: granted 2025-09-10, +5 working days (工作日); counted" in account
    assert "延期: granted 2025-09-22, +3 working days (工作日); granted after 2025-09-19: not yet known" in account


def test_an_extension_in_calendar_days_adds_the_working_days_it_spans(calendar: WorkCalendar) -> None:
    bundled = load_rules(CONFIG_DIR)
    rules = RuleBook.model_validate(
        {
            **bundled.model_dump(),
            "suspension_kinds": [
                *bundled.model_dump()["suspension_kinds"],
                {"kind": "延长期限", "effect": "extend", "limit_kind": "calendar"},
            ],
        }
    )
    clock_set = build_clocks(
        {
            "cases": frame(CASE_SCHEMA, ("N", "SJ-D001", "360700SPJ", None, date(2025, 9, 22))),
            "suspensions": frame(SUSPENSION_SCHEMA, ("N", "延长期限", date(2025, 9, 26), None, 10)),
        },
        rules,
    )
    # (09-26, 10-06]: Sun 09-28 (调休), 09-29, 09-30, then the National Day holiday: 3 working days.
    case = evaluated(clock_set, calendar, date(2025, 10, 9))["case:N"]
    assert case["limit_days"] == 15 + 3
    assert "= 3 working days (工作日) from the day granted" in text(clock_set, "case:N", calendar, date(2025, 10, 9))


def test_extension_rows_without_days_are_rejected(rules: RuleBook) -> None:
    clock_set = build_clocks(
        {
            "cases": frame(CASE_SCHEMA, ("E", "SJ-D001", "360700SPJ", None, date(2025, 9, 1), date(2025, 9, 5))),
            "suspensions": frame(
                SUSPENSION_SCHEMA,
                ("E", "延期", date(2025, 9, 2)),
                ("E", "延期", date(2025, 9, 8), None, 5),
            ),
        },
        rules,
    )
    assert dict(zip(clock_set.rejects["row_key"], clock_set.rejects["reason"], strict=True)) == {
        "E 延期 2025-09-02": "extension without its days (limit_days)",
        "E 延期 2025-09-08": "extension granted 2025-09-08 after the case was completed on 2025-09-05",
    }


# -- a replay of a past date: the nightly run and a backfill agree ----------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_run_as_of_a_past_day_and_a_backfill_of_it_store_the_same_evaluations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration_fixtures import AS_OF, make_pipeline, sample_tables

    from flows.backfill import backfill
    from flows.nightly import nightly
    from tasks.store.evaluations import read_evaluations
    from tasks.store.upsert import read_tables

    day = AS_OF - timedelta(days=10)  # the sample runs to AS_OF: cases, steps, pushes … start after this day
    pipeline = make_pipeline(tmp_path, monkeypatch, sample_tables())
    assert nightly(as_of=day, deliverable=False, return_state=True).is_completed()
    engine = pipeline.engine()
    stored = read_tables(engine)
    assert stored["cases"].filter(pl.col("accepted_at").cast(pl.Date) > day).height > 0, "nothing after the day"
    from_run = read_evaluations(engine, day).drop("run_id").sort("clock_id")
    assert from_run.height > 0
    assert from_run.filter(pl.col("start_date") > day).is_empty()
    assert pipeline.scalar("SELECT count(*) FROM cards c JOIN evaluations e ON e.clock_id = c.clock_id "
                           "WHERE e.as_of = :day AND e.start_date > :day", day=day) == 0

    assert backfill(start=day, end=day) == {day.isoformat(): from_run.height}
    assert read_evaluations(engine, day).drop("run_id").sort("clock_id").equals(from_run)
    engine.dispose()


def test_limits_in_hours_or_months_are_rejected_not_guessed(rules: RuleBook) -> None:
    cases = pl.DataFrame(
        {
            "case_id": ["H", "M", "W"],
            "matter_code": ["SJ-D001"] * 3,
            "unit_code": ["360700SPJ"] * 3,
            "accepted_at": [date(2025, 9, 1)] * 3,
            "limit_days": [4, 1, 4],
            "limit_kind": ["小时", "个月", "工作日"],
        }
    )
    clock_set = build_clocks({"cases": cases}, rules)
    assert dict(zip(clock_set.rejects["row_key"], clock_set.rejects["reason"], strict=True)) == {
        "H": "unknown limit_kind '小时' (工作日|workday|working day|自然日|日历日|calendar|calendar day)",
        "M": "unknown limit_kind '个月' (工作日|workday|working day|自然日|日历日|calendar|calendar day)",
    }
    assert clock_set.clocks["clock_id"].to_list() == ["case:W"]


def test_explain_command_shows_extensions_and_refuses_a_clock_not_started(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    cases = tmp_path / "cases.csv"
    cases.write_text(
        "办件编号,事项编码,承办单位编码,受理时间\nE1,SJ-D001,360700SPJ,2025-09-01\nL1,SJ-D001,360700SPJ,2025-10-09\n",
        encoding="utf-8",
    )
    suspensions = tmp_path / "suspensions.csv"
    suspensions.write_text(
        "办件编号,特别程序种类,开始时间,结束时间,limit_days\nE1,延期,2025-09-10,,5\n", encoding="utf-8"
    )

    def explain(case_id: str) -> tuple[int, str]:
        arguments = ["explain", "--cases", str(cases), "--suspensions", str(suspensions), "--case-id", case_id]
        result = CliRunner().invoke(app, [*arguments, "--as-of", "2025-09-30"], env={"COLUMNS": "200"})
        return result.exit_code, result.output

    code, output = explain("E1")
    assert code == 0, output
    assert "Limit: 20 working days (工作日) (15 + 5 by extension)" in output
    assert "延期: granted 2025-09-10, +5 working days (工作日); counted" in output
    code, output = explain("L1")
    assert code == 2
    assert "case:L1 starts on 2025-10-09, after 2025-09-30: it does not exist on that day yet" in output
    assert "Traceback" not in output
