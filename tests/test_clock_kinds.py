"""All six kinds of clock, built from canonical rows and evaluated as known at T, against the day-by-day reference
(tests/clock_reference.py): starts after T, suspensions that begin before a step starts, restarts across steps,
projects whose members arrive after T, fixed due dates on rest days, and extensions (延期)."""

from __future__ import annotations

import collections
import functools
import random
from datetime import date, timedelta
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from config.rules import RuleBook, SuspensionKind, load_rules
from tasks.clocks.builders import build_clocks
from tasks.clocks.calendar import WorkCalendar, default_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tests.clock_reference import (
    RefCase,
    RefDeferral,
    RefProject,
    RefPush,
    RefRecords,
    RefResult,
    RefStep,
    RefSuspension,
    evaluate_records,
)
from tests.test_clocks import reference_day_status

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
CALENDAR_EXTENSION = "延期（自然日）"
# name: (effect, own limit, its kind), as in config/rules.yaml plus a calendar-day extension kind
KINDS = {
    "补正": ("restart", None, "workday"),
    "专家评审": ("pause", 20, "workday"),
    "公示": ("pause", 10, "workday"),
    "招标拍卖": ("pause", 60, "calendar"),
    "延期": ("extend", None, "workday"),
    CALENDAR_EXTENSION: ("extend", None, "calendar"),
}
# 春节 2024 (make-up Sun 02-04, Sun 02-18), 春节 2025, 国庆节 2025 (Sun 09-28, Sat 10-11), 春节 2026 (Sat 02-14, 02-28).
ANCHORS = [date(2024, 2, 1), date(2025, 1, 16), date(2025, 9, 18), date(2026, 2, 5)]
CATEGORIES = {"P1": ("simple_low_risk", 18), "P2": ("enterprise_investment", 45)}
# matter: the kind of its steps 1 and 2 (from config/rules.yaml)
MATTERS = {"SJ-D001": "workday", "SXTQ-C004": "calendar"}


@functools.cache
def rules_and_calendar() -> tuple[RuleBook, WorkCalendar]:
    """The bundled rules plus a calendar-day extension kind, and the default calendar (not fixtures, so that a
    failing example prints only its own data)."""
    bundled = load_rules(CONFIG_DIR)
    extra = SuspensionKind(kind=CALENDAR_EXTENSION, effect="extend", limit_kind="calendar")
    rules = RuleBook.model_validate({**bundled.model_dump(), "suspension_kinds": (*bundled.suspension_kinds, extra)})
    return rules, default_work_calendar()


def days(rng: random.Random, low: int, high: int) -> timedelta:
    return timedelta(days=rng.randint(low, high))


def maybe(rng: random.Random, chance: float) -> bool:
    return rng.random() < chance


def random_records(rng: random.Random) -> tuple[RefRecords, date, dict[str, str]]:
    """Valid rows (the builder rejects none) around a holiday, the as-of date, and each case's matter."""
    anchor = rng.choice(ANCHORS)
    as_of = anchor + days(rng, 0, 70)
    cases, steps, suspensions, deferrals, pushes, matters = [], [], [], [], [], {}
    for number in range(rng.randint(1, 5)):
        case_id = f"C{number}"
        accepted = anchor + days(rng, 0, 60)
        completed = accepted + days(rng, 0, 50) if maybe(rng, 0.4) else None
        project = rng.choice([None, "P1", "P1", "P2"])
        kind = rng.choice(["workday", "calendar"])
        cases.append(RefCase(case_id, accepted, rng.choice([0, *range(1, 26)]), kind, completed, project))
        matters[case_id] = rng.choice(list(MATTERS))
        for step_no in (1, 2)[: rng.randint(0, 2)]:
            start = accepted + days(rng, 0, 30)
            end = start + days(rng, 0, 20) if maybe(rng, 0.6) else None
            limit = rng.choice([0, *range(1, 11)])
            steps.append(RefStep(case_id, step_no, start, end, limit, MATTERS[matters[case_id]]))
        seen = set()
        for _ in range(rng.choice([0, 1, 1, 2, 3, 4])):
            name = rng.choice(["补正", *KINDS])  # corrections twice as often: several restarts on one clock
            effect, limit, limit_kind = KINDS[name]
            start = accepted + days(rng, 0, 40)
            end = start + days(rng, 0, 20) if maybe(rng, 0.75) else None
            if effect == "extend":
                start, end, limit = min(start, completed or start), None, rng.randint(0, 15)
            elif completed is not None:  # a pause lies within its case's life
                if start > completed:
                    continue
                end = completed if end is None or end > completed else end
            if (name, start) in seen:  # the same procedure twice on one day is one row
                continue
            seen.add((name, start))
            suspensions.append(RefSuspension(case_id, name, start, end, effect, limit, limit_kind))
        if maybe(rng, 0.5):
            due_date = accepted + days(rng, 0, 20) if maybe(rng, 0.5) else None
            due_days = rng.randint(0, 12) if maybe(rng, 0.5) else None
            supplied = accepted + days(rng, 0, 25) if maybe(rng, 0.4) else None
            deferrals.append(RefDeferral(case_id, due_days, due_date, supplied))
        if maybe(rng, 0.5):
            pushed = accepted + days(rng, 0, 30)
            claimed = pushed + days(rng, 0, 10) if maybe(rng, 0.5) else None
            pushes.append(RefPush(f"U{number}", case_id, pushed, claimed))
    projects = [RefProject(code, CATEGORIES[code][1]) for code in sorted({c.project for c in cases if c.project})]
    return RefRecords(cases, steps, suspensions, projects, deferrals, pushes), as_of, matters


def tables_of(records: RefRecords, matters: dict[str, str]) -> dict[str, pl.DataFrame]:
    date_type = pl.Date
    return {
        "cases": pl.DataFrame(
            [
                {
                    "case_id": c.case_id,
                    "matter_code": matters[c.case_id],
                    "unit_code": "360702SPJ",
                    "project_code": c.project,
                    "accepted_at": c.accepted,
                    "completed_at": c.completed,
                    "limit_days": c.limit,
                    "limit_kind": {"workday": "工作日", "calendar": "自然日"}[c.kind],
                }
                for c in records.cases
            ],
            schema_overrides={"accepted_at": date_type, "completed_at": date_type, "project_code": pl.String},
        ),
        "steps": pl.DataFrame(
            [
                {"case_id": s.case_id, "step_no": s.step_no, "started_at": s.start, "ended_at": s.end,
                 "limit_days": s.limit}
                for s in records.steps
            ],
            schema={"case_id": pl.String, "step_no": pl.Int32, "started_at": date_type, "ended_at": date_type,
                    "limit_days": pl.Int32},
        ),
        "suspensions": pl.DataFrame(
            [
                {"case_id": s.case_id, "kind": s.kind, "started_at": s.start, "ended_at": s.end,
                 "limit_days": s.limit if s.effect == "extend" else None}
                for s in records.suspensions
            ],
            schema={"case_id": pl.String, "kind": pl.String, "started_at": date_type, "ended_at": date_type,
                    "limit_days": pl.Int32},
        ),
        "projects": pl.DataFrame(
            [{"project_code": p.code, "category": CATEGORIES[p.code][0], "lead_unit_code": "360700FGW"}
             for p in records.projects],
            schema={"project_code": pl.String, "category": pl.String, "lead_unit_code": pl.String},
        ),
        "deferrals": pl.DataFrame(
            [{"case_id": d.case_id, "due_days": d.due_days, "due_date": d.due_date, "supplied_at": d.supplied}
             for d in records.deferrals],
            schema={"case_id": pl.String, "due_days": pl.Int32, "due_date": date_type, "supplied_at": date_type},
        ),
        "pushes": pl.DataFrame(
            [{"push_id": p.push_id, "case_id": p.case_id, "supervisor_unit_code": "360700SCJ", "pushed_at": p.pushed,
              "claimed_at": p.claimed} for p in records.pushes],
            schema={"push_id": pl.String, "case_id": pl.String, "supervisor_unit_code": pl.String,
                    "pushed_at": date_type, "claimed_at": date_type},
        ),
    }


def engine_results(
    records: RefRecords, matters: dict[str, str], rules: RuleBook, calendar: WorkCalendar, as_of: date
) -> dict[str, RefResult]:
    clock_set = build_clocks(tables_of(records, matters), rules)
    assert clock_set.rejects.is_empty(), clock_set.rejects.to_dicts()
    known = clock_set.known_at(as_of, calendar)
    evaluated = evaluate_clocks(known.clocks, known.pauses, calendar, as_of)
    return {
        row["clock_id"]: RefResult(
            row["due_date"], row["elapsed"], row["remaining"], row["overdue_workdays"], row["level"], row["calendar"]
        )
        for row in evaluated.iter_rows(named=True)
    }


def check(records: RefRecords, as_of: date, matters: dict[str, str]) -> None:
    rules, calendar = rules_and_calendar()
    is_workday, is_provisional = reference_day_status(calendar)
    expected = evaluate_records(records, as_of, is_workday, is_provisional)
    actual = engine_results(records, matters, rules, calendar, as_of)
    assert sorted(actual) == sorted(expected), (records, as_of)
    for clock_id, result in expected.items():
        assert actual[clock_id] == result, (clock_id, as_of, records)


@settings(max_examples=300, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_every_kind_of_clock_equals_the_day_by_day_reference(rng: random.Random) -> None:
    records, as_of, matters = random_records(rng)
    check(records, as_of, matters)


def test_many_random_records_cover_every_rule() -> None:
    """A fixed batch large enough that every situation the properties are about occurs, checked here."""
    rng = random.Random(20251001)
    seen = {name: 0 for name in ("start after T", "suspension before step", "restart across steps",
                                 "member after T", "fixed due date on a rest day", "extension", "two restarts")}
    is_workday, _ = reference_day_status(rules_and_calendar()[1])
    for _ in range(150):
        records, as_of, matters = random_records(rng)
        check(records, as_of, matters)
        starts = [c.accepted for c in records.cases] + [s.start for s in records.steps]
        seen["start after T"] += any(start > as_of for start in starts)
        for step in records.steps:
            for s in records.suspensions:
                if s.case_id == step.case_id and s.effect != "extend" and s.start < step.start <= as_of:
                    seen["suspension before step"] += s.end is None or s.end > step.start
                if s.case_id == step.case_id and s.effect == "restart" and step.end and s.end:
                    seen["restart across steps"] += s.start < step.end < s.end
        accepted = {c.case_id: c.accepted for c in records.cases}
        seen["member after T"] += any(c.project and c.accepted > as_of for c in records.cases)
        seen["fixed due date on a rest day"] += any(
            d.due_date is not None and not is_workday(d.due_date) and accepted[d.case_id] <= as_of
            for d in records.deferrals
        )
        seen["extension"] += any(s.effect == "extend" and s.start <= as_of for s in records.suspensions)
        ended_restarts = collections.Counter(
            s.case_id for s in records.suspensions if s.effect == "restart" and s.end is not None and s.end <= as_of
        )
        seen["two restarts"] += any(count > 1 for count in ended_restarts.values())
    assert all(count >= 5 for count in seen.values()), seen
