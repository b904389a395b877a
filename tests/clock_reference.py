"""A slow, obviously correct clock evaluator: one day at a time, straight from the deadline rules (README "The
deadline rules"), for all six kinds of clock built from canonical rows as known at a date.

It shares nothing with tasks/clocks/engine.py or tasks/clocks/builders.py but the day statuses, which it asks for one
date at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class RefClock:
    start: date
    limit: int
    kind: str  # workday | calendar
    completed: date | None = None
    warning_days: int = 1
    escalate_after: int = 5


@dataclass(frozen=True)
class RefPause:
    start: date
    end: date | None
    restart: bool = False


@dataclass(frozen=True)
class RefResult:
    due_date: date | None
    elapsed: int
    remaining: int
    overdue_workdays: int
    level: str
    calendar: str


@dataclass(frozen=True)
class Inactivity:
    """A project clock's pauses given day by day: `paused(day)` for any day, and whether it stays paused from T on
    (nothing known at T ends it)."""

    paused: Callable[[date], bool]
    for_good: bool


def evaluate_one(
    clock: RefClock,
    pauses: Sequence[RefPause],
    as_of: date,
    is_workday: Callable[[date], bool],
    is_provisional: Callable[[date], bool],
    inactivity: Inactivity | None = None,
) -> RefResult:
    completed = clock.completed if clock.completed is not None and clock.completed <= as_of else None
    known = [p for p in pauses if p.start <= as_of]

    def end_of(pause: RefPause) -> date | None:
        """The pause's end as known at T; None while it is open."""
        return pause.end if pause.end is not None and pause.end <= as_of else None

    start = clock.start
    for pause in known:
        ended = end_of(pause)
        if pause.restart and ended is not None:
            start = max(start, ended)  # counting starts over from the end of the restart pause

    def paused(day: date) -> bool:
        if inactivity is not None:
            return inactivity.paused(day)
        for pause in known:
            ended = end_of(pause)
            if pause.start < day and (ended is None or day <= ended):
                return True
        return False

    def counted(day: date) -> bool:
        return (clock.kind == "calendar" or is_workday(day)) and not paused(day)

    open_starts = [p.start for p in known if end_of(p) is None]
    if inactivity is not None and inactivity.for_good:
        open_starts.append(max(as_of, clock.start))  # nothing is counted after T
    paused_now = completed is None and bool(open_starts)

    due: date | None
    if clock.limit == 0:
        due = start  # 即办件
        if clock.kind == "calendar":  # a fixed due date on the start day still moves off a rest day
            while not is_workday(due):
                due += ONE_DAY
    else:
        due = None
        day, seen = start, 0
        # After the start of an open pause nothing is counted any more: the N-th day is not reachable.
        horizon = min(open_starts) if open_starts else None
        while horizon is None or day <= horizon:
            day += ONE_DAY
            if counted(day):
                seen += 1
                if seen == clock.limit:
                    due = day
                    break
        if due is not None:
            while not is_workday(due):  # a calendar-day deadline on a rest day moves to the next working day
                due += ONE_DAY
    if paused_now:
        due = None

    end = completed if completed is not None else as_of
    elapsed = 0
    day = start
    while day < end:
        day += ONE_DAY
        if counted(day):
            elapsed += 1
    remaining = clock.limit - elapsed

    overdue_workdays = 0
    if due is not None and end > due:
        day = due
        while day < end:
            day += ONE_DAY
            overdue_workdays += is_workday(day)

    if completed is not None:
        level = "completed_late" if due is not None and completed > due else "completed_on_time"
    elif paused_now:
        level = "paused"
    elif due is not None and as_of > due:
        level = "escalated" if overdue_workdays >= clock.escalate_after else "overdue"
    elif remaining <= clock.warning_days:
        level = "warning"
    else:
        level = "normal"

    last = max(end, due) if due is not None else end
    low, high = min(clock.start, last), max(clock.start, last)
    provisional = False
    day = low
    while day <= high:
        if is_provisional(day):
            provisional = True
            break
        day += ONE_DAY
    return RefResult(due, elapsed, remaining, overdue_workdays, level, "provisional" if provisional else "official")


# -- clocks from canonical rows, as known at T ---------------------------------------------------------------------


@dataclass(frozen=True)
class RefCase:
    case_id: str
    accepted: date
    limit: int
    kind: str
    completed: date | None = None
    project: str | None = None


@dataclass(frozen=True)
class RefStep:
    case_id: str
    step_no: int
    start: date
    end: date | None
    limit: int
    kind: str


@dataclass(frozen=True)
class RefSuspension:
    case_id: str
    kind: str  # its name
    start: date
    end: date | None
    effect: str  # pause | restart | extend
    limit: int | None = None  # a special procedure's own limit; an extension's days
    limit_kind: str = "workday"


@dataclass(frozen=True)
class RefProject:
    code: str
    limit: int
    kind: str = "workday"


@dataclass(frozen=True)
class RefDeferral:
    case_id: str
    due_days: int | None
    due_date: date | None
    supplied: date | None
    rule_limit: int = 10  # working days


@dataclass(frozen=True)
class RefPush:
    push_id: str
    case_id: str
    pushed: date
    claimed: date | None
    limit: int = 3  # working days


@dataclass(frozen=True)
class RefRecords:
    cases: Sequence[RefCase] = ()
    steps: Sequence[RefStep] = ()
    suspensions: Sequence[RefSuspension] = ()
    projects: Sequence[RefProject] = ()
    deferrals: Sequence[RefDeferral] = ()
    pushes: Sequence[RefPush] = ()


def default_warning(limit: int) -> int:
    return max(1, -(-limit // 5))  # max(1, ceil(0.2 * N))


def evaluate_records(
    records: RefRecords, as_of: date, is_workday: Callable[[date], bool], is_provisional: Callable[[date], bool]
) -> dict[str, RefResult]:
    """Every clock that exists at the end of `as_of`, by clock id, evaluated day by day from the rows."""
    out: dict[str, RefResult] = {}

    def add(clock_id: str, clock: RefClock, pauses: Sequence[RefPause], inactivity: Inactivity | None = None) -> None:
        if clock.start <= as_of:  # a clock that has not started by T does not exist at T
            out[clock_id] = evaluate_one(clock, pauses, as_of, is_workday, is_provisional, inactivity)

    def clock(start: date, limit: int, kind: str, completed: date | None) -> RefClock:
        return RefClock(start, limit, kind, completed, default_warning(limit), 5)

    def case_suspensions(case_id: str) -> list[RefSuspension]:
        return [s for s in records.suspensions if s.case_id == case_id and s.effect != "extend"]

    def workdays_after(day: date, count: int) -> date:
        while count:
            day += ONE_DAY
            count -= is_workday(day)
        return day

    for case in records.cases:
        extra = 0
        for s in records.suspensions:
            if s.case_id != case.case_id or s.effect != "extend" or s.start > as_of or s.limit is None:
                continue
            if s.limit_kind == case.kind:
                extra += s.limit
            elif s.limit_kind == "calendar":  # calendar days granted on a working-day clock
                extra += sum(is_workday(s.start + timedelta(days=i)) for i in range(1, s.limit + 1))
            else:  # working days granted on a calendar-day clock
                extra += (workdays_after(s.start, s.limit) - s.start).days
        pauses = [RefPause(s.start, s.end, s.effect == "restart") for s in case_suspensions(case.case_id)]
        base = clock(case.accepted, case.limit, case.kind, case.completed)
        add(f"case:{case.case_id}", RefClock(base.start, case.limit + extra, base.kind, base.completed,
                                             base.warning_days, base.escalate_after), pauses)

    for step in records.steps:
        pauses = []
        for s in case_suspensions(step.case_id):
            overlaps = (step.end is None or s.start < step.end) and (s.end is None or s.end > step.start)
            if overlaps:
                ended_before = step.end is not None and s.end is not None and step.end < s.end
                pauses.append(RefPause(s.start, s.end, s.effect == "restart" and not ended_before))
        add(f"step:{step.case_id}:{step.step_no}", clock(step.start, step.limit, step.kind, step.end), pauses)

    for s in records.suspensions:
        if s.effect != "extend" and s.limit is not None:  # a special procedure: never paused by other suspensions
            add(f"special:{s.case_id}:{s.kind}:{s.start}", clock(s.start, s.limit, s.limit_kind, s.end), ())

    cases = {case.case_id: case for case in records.cases}
    for deferral in records.deferrals:
        accepted = cases[deferral.case_id].accepted
        if deferral.due_date is not None:
            limit, kind = (deferral.due_date - accepted).days, "calendar"
        elif deferral.due_days is not None:
            limit, kind = deferral.due_days, "workday"
        else:
            limit, kind = deferral.rule_limit, "workday"
        add(f"deferral:{deferral.case_id}", clock(accepted, limit, kind, deferral.supplied), ())

    for push in records.pushes:
        add(f"claim:{push.push_id}", clock(push.pushed, push.limit, "workday", push.claimed), ())

    for project in records.projects:
        members = [c for c in records.cases if c.project == project.code and c.accepted <= as_of]
        if not members:
            continue

        def known(day: date | None) -> date | None:
            return day if day is not None and day <= as_of else None

        completions = [known(m.completed) for m in members]
        completed = None if None in completions else max(c for c in completions if c is not None)

        def active(day: date, members: list[RefCase] = members, completed: date | None = completed) -> bool:
            """Some member case is open on `day` (after acceptance, up to its completion) and not suspended; after
            the project's completion every day counts as usual (for the due date)."""
            if completed is not None and day > completed:
                return True
            for member in members:
                done = known(member.completed)
                if not (member.accepted < day and (done is None or day <= done)):
                    continue
                suspended = False
                for s in case_suspensions(member.case_id):
                    end = known(s.end)
                    suspended |= s.start <= as_of and s.start < day and (end is None or day <= end)
                if not suspended:
                    return True
            return False

        start = min(m.accepted for m in members)
        # Nothing known at T changes after T: an open project inactive the day after T stays paused.
        for_good = completed is None and not active(as_of + ONE_DAY)
        inactivity = Inactivity(lambda day, active=active: not active(day), for_good)
        add(f"project:{project.code}", clock(start, project.limit, project.kind, completed), (), inactivity)
    return out
