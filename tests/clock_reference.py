"""A slow, obviously correct clock evaluator: one day at a time, straight from DOMAIN.md "Time rules".

It shares nothing with tasks/clocks.py but the day statuses, which it asks for one date at a time.
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


def evaluate_one(
    clock: RefClock,
    pauses: Sequence[RefPause],
    as_of: date,
    is_workday: Callable[[date], bool],
    is_provisional: Callable[[date], bool],
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
        for pause in known:
            ended = end_of(pause)
            if pause.start < day and (ended is None or day <= ended):
                return True
        return False

    def counted(day: date) -> bool:
        return (clock.kind == "calendar" or is_workday(day)) and not paused(day)

    open_starts = [p.start for p in known if end_of(p) is None]
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
