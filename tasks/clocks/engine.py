"""The clock engine: due date, elapsed and remaining days, days overdue and level of every clock as of a date.

The rules are the README's "The deadline rules". In short, for a clock with start A, limit N (working or calendar
days), pauses (S, E] and completion C, as of the end of day T:

- Only what is known at T counts: a completion after T is ignored, a pause with S > T is ignored, and a pause whose
  end is empty or after T is open (it extends without end).
- A restart pause (补正 under restarting rules) that has ended moves the start to its end E: counting starts over.
- Counted days are the working days (workday kind) or all days (calendar kind) after the start that no pause covers.
  The due date D is the N-th counted day, moved to the next working day when that is not one; D = start when N = 0
  (for a calendar-day clock, moved to the next working day when the start is a rest day).
  An open pause reached before the N-th counted day leaves D unknown (null).
- elapsed = counted days in (start, min(T, C)]; remaining = N - elapsed; overdue_workdays = working days in (D, T]
  (open) or (D, C] (completed), 0 when on time or paused.
- level: completed_on_time / completed_late for a completion known at T; else paused (an open pause), escalated
  (T > D and overdue_workdays >= escalate_after), overdue (T > D), warning (remaining <= warning_days), normal.
- calendar = provisional when any day from the start to the last day used (T, C or D) lies in a provisional year.

How it is fast is tasks/clocks/kernels.py's business: dates become day offsets into look-up tables of the calendar,
every clock is first evaluated as if it had no pause while the pauses are attached to their clocks and sorted, and
only the clocks that have pauses are evaluated again. This module states the rules over whole columns of clocks:
`_evaluate` (due date, elapsed, remaining, overdue, level), `_PauseEffects` (restarts, pauses counted once, open
pauses) and `level`, the order in which the facts decide the level; then how the columns are read and assembled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from tasks.clocks.calendar import WorkCalendar
from tasks.clocks.kernels import (
    DayTables,
    LevelCodes,
    blocks,
    first_of_runs,
    group_sums,
    merge_overlaps,
    raise_to_group_max,
    rows_of,
    sort_pauses,
    split_runs,
    sums_before,
    two_passes,
)

LEVELS = ("normal", "warning", "overdue", "escalated", "paused", "completed_on_time", "completed_late")
CALENDAR_STATES = ("official", "provisional")

CLOCK_COLUMNS = {
    "clock_id": pl.String,
    "clock_type": pl.String,
    "subject_id": pl.String,
    "case_id": pl.String,
    "unit_code": pl.String,
    "matter_code": pl.String,
    "region_code": pl.String,
    "start_date": pl.Date,
    "limit_days": pl.Int32,
    "limit_kind": pl.String,
    "completed_date": pl.Date,
    "warning_days": pl.Int32,
    "escalate_after": pl.Int32,
    "repeat_every": pl.Int32,
}
PAUSE_COLUMNS = {"clock_id": pl.String, "start_date": pl.Date, "end_date": pl.Date, "restart": pl.Boolean}
EVALUATION_COLUMNS = {
    "due_date": pl.Date,
    "elapsed": pl.Int32,
    "remaining": pl.Int32,
    "overdue_workdays": pl.Int32,
    "level": pl.String,
    "calendar": pl.String,
}

_NEVER_INT32 = np.iinfo(np.int32).max


def empty_clocks() -> pl.DataFrame:
    return pl.DataFrame(schema=CLOCK_COLUMNS)


def empty_pauses() -> pl.DataFrame:
    return pl.DataFrame(schema=PAUSE_COLUMNS)


def evaluate_clocks(clocks: pl.DataFrame, pauses: pl.DataFrame, calendar: WorkCalendar, as_of: date) -> pl.DataFrame:
    """The clocks, in their order, with due_date, elapsed, remaining, overdue_workdays, level and calendar added.

    Required clock columns: clock_id (unique), start_date, limit_days (>= 0), limit_kind (workday|calendar),
    completed_date, warning_days (null: 1), escalate_after (null: never); other columns pass through. Pauses:
    clock_id, start_date, end_date (null = open), restart. Pauses of clock ids not among the clocks are ignored.
    Start, completion and pause dates must lie in the calendar (tasks/clocks/builders.py rejects rows that do not); a
    due date that would fall after its last day raises ValueError.
    """
    if clocks.is_empty():
        return clocks.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in EVALUATION_COLUMNS.items())
    days = DayTables(calendar)
    t = days.offset_of(as_of)
    out = _Outputs.allocate(len(clocks))

    def known_pauses(parts: int) -> list[_KnownPauses]:
        known = _KnownPauses.read(clocks["clock_id"], pauses, days, t) if not pauses.is_empty() else None
        return known.split(parts) if known is not None and len(known.row) else []

    def with_pauses(effects: _PauseEffects) -> None:
        for rows in blocks(len(effects.rows)):
            _evaluate(effects.clock.part(rows), effects.part(rows), days, t, out, effects.rows[rows])

    two_passes(
        len(clocks),
        read_clocks=lambda: _ClockColumns.read(clocks, days),
        read_pauses=known_pauses,
        without_pauses=lambda columns, rows: _evaluate(columns.part(rows), None, days, t, out, rows),
        prepare=lambda columns, known: _PauseEffects.of(known, columns, days, t),
        with_pauses=with_pauses,
    )
    days.check_due(out.due, out.due_known)
    return _assemble(clocks, out, days)


# -- The rules -------------------------------------------------------------------------------------------------------


def level(completed: bool, paused: bool, escalated: bool, late: bool, warned: bool) -> str:
    """The level of a clock at T, from the facts that decide it, in the order they decide.

    completed: a completion known at T; paused: a pause open at T; late: T (or the completion) is after the due date;
    escalated: overdue by at least escalate_after working days (督办); warned: remaining <= warning_days, the threshold
    max(1, ⌈0.2·N⌉) that config/rules.py's Defaults.warning_days gives each clock (so the due day itself warns).
    """
    if completed:
        return "completed_late" if late else "completed_on_time"
    if paused:
        return "paused"
    if late:
        return "escalated" if escalated else "overdue"
    return "warning" if warned else "normal"


_LEVEL_CODES = LevelCodes(level)


def _evaluate(
    clock: _ClockColumns, pauses: _PauseEffects | None, days: DayTables, t: int, out: _Outputs, rows: slice | np.ndarray
) -> None:
    """The rules for some clocks, written into `out[rows]`; without `pauses`, as if they had no pause."""
    # Known at T: a completion after T is not; the clock ran up to its completion, or up to T.
    completed = clock.completed <= t
    ran_until = np.minimum(clock.completed, t)

    # Counting starts the day after the start date, or after the end of the last restart that has ended. On the clock's
    # scale (working days, or every day for a calendar-day clock) the start is at `counted_at_start`; the due date D is
    # the day the count reaches N more, the days paused before it not counted, and for a calendar-day clock it moves to
    # the next working day when it is not one (民法典 第二百零三条).
    start = clock.start if pauses is None else pauses.start
    counted_at_start = days.position(start, clock.scale)
    to_reach = counted_at_start + clock.limit
    if pauses is not None:
        to_reach += pauses.paused_before_due
    due = days.day_reaching(to_reach, clock.scale, clock.clip_targets)
    # 即办件: a working-day limit of 0 is due on the start date itself. A calendar-day limit of 0 (a fixed due date on
    # the start date) is due that day too, moved off a rest day, which day_reaching already gives.
    instant = np.flatnonzero((clock.limit == 0) & (clock.scale == DayTables.WORKDAY_SCALE))
    due[instant] = start[instant]

    # elapsed: the counted days in (start, min(T, C)], less those paused; remaining = N - elapsed.
    elapsed = days.position(np.maximum(ran_until, start), clock.scale) - counted_at_start
    if pauses is not None:
        elapsed -= pauses.paused_so_far
    remaining = clock.limit - elapsed

    # Late: the clock ran past D, by the working days in (D, min(T, C)].
    late = ran_until > due
    overdue = days.workdays_after(due, ran_until)
    last_used = np.maximum(ran_until, due)  # the due date is never before the start
    if pauses is None:
        due_known = np.ones(len(due), dtype=bool)
        open_pause = np.zeros(len(due), dtype=bool)
    else:
        # A pause open at T freezes an open clock, and one reached before D leaves D unknown: no due date, not late.
        due_known = ~(pauses.blocked | (pauses.open & ~completed))
        late &= due_known
        overdue *= due_known
        # An unknown due date is not used: the days used end at the completion or T.
        last_used = np.maximum(np.where(due_known, last_used, ran_until), clock.start)
        open_pause = pauses.open

    out.due[rows] = due
    out.due_known[rows] = due_known
    out.elapsed[rows] = elapsed
    out.remaining[rows] = remaining
    out.overdue_workdays[rows] = overdue
    out.level[rows] = _LEVEL_CODES.pack(
        completed, open_pause, overdue >= clock.escalate_after, late, remaining <= clock.warning_days
    )
    # The calendar is provisional when any day from the start to the last day used lies in a provisional year.
    out.provisional[rows] = days.any_provisional(clock.start, last_used)


@dataclass(frozen=True)
class _PauseEffects:
    """What their pauses do to the clocks that have any (rows, ascending): the start after restarts, the counted days
    paused before the due date (which it moves by), the counted days paused up to the completion or T, whether an open
    pause comes before the due date (blocked), and whether a pause is open at T."""

    rows: np.ndarray
    clock: _ClockColumns  # the columns of those clocks
    start: np.ndarray
    paused_before_due: np.ndarray
    paused_so_far: np.ndarray
    blocked: np.ndarray
    open: np.ndarray

    @classmethod
    def of(cls, known: _KnownPauses, columns: _ClockColumns, days: DayTables, t: int) -> _PauseEffects:
        rows = known.row[known.first].astype(np.intp)
        group = np.cumsum(known.first, dtype=np.int32)
        group -= 1  # each pause's clock among `rows`
        clock = columns.part(rows)

        # A restart (补正 under restarting rules) that has ended starts the count over from its end, with the full
        # limit.
        start = clock.start
        finished = np.flatnonzero(known.restart & (known.end != days.never))
        if len(finished):
            start = raise_to_group_max(start, known.end[finished], group[finished])
        # Days up to the (new) start are not counted anyway, so a pause counts from there; one that ends by then changes
        # nothing. Clipping raises the starts of one clock to a common floor, so their order still holds.
        pause_start = np.maximum(known.start, start[group])
        effective = np.flatnonzero(known.end > pause_start)
        # Overlapping pauses count once: each day (S, E] is paused at most once.
        merged = merge_overlaps(group[effective], pause_start[effective], known.end[effective], days.never)
        scale = clock.scale[merged.group]
        is_open = merged.end == days.never
        paused_from = days.position(merged.start, scale)
        length = (days.position(merged.end, scale) - paused_from) * ~is_open

        # A pause moves the due date when it begins before the N-th counted day. Merged pauses are disjoint and sorted,
        # so the counted days before one are its start less the lengths of the clock's earlier pauses.
        counted_before = paused_from - sums_before(length, merged.first)
        target = days.position(start, clock.scale) + clock.limit
        reached = counted_before < target[merged.group]
        # The days a pause has taken from the clock so far: up to the completion or T.
        ran_until = np.maximum(np.minimum(clock.completed, t), start)
        so_far = days.position(np.minimum(merged.end, ran_until[merged.group]), scale) - paused_from
        np.maximum(so_far, 0, out=so_far)
        before_due, paused_so_far, blocked, open_now = group_sums(
            (length * reached, so_far, reached & is_open, is_open), merged.group, merged.first, len(rows)
        )
        return cls(rows, clock, start, before_due, paused_so_far, blocked, open_now)

    def part(self, rows: slice) -> _PauseEffects:
        return _PauseEffects(
            self.rows[rows],
            self.clock.part(rows),
            self.start[rows],
            self.paused_before_due[rows],
            self.paused_so_far[rows],
            self.blocked[rows],
            self.open[rows],
        )


# -- Reading the clocks and the pauses known at T ---------------------------------------------------------------------


@dataclass(frozen=True)
class _ClockColumns:
    """The clock columns the engine reads, checked, as int32 numpy arrays (dates as day offsets)."""

    start: np.ndarray
    limit: np.ndarray
    scale: np.ndarray  # the clock's counting scale in the day tables: working days or calendar days
    completed: np.ndarray  # `never` when there is none
    warning_days: np.ndarray
    escalate_after: np.ndarray
    clip_targets: bool  # a limit too large for the look-up tables' room: counting positions must be clipped

    @classmethod
    def read(cls, clocks: pl.DataFrame, days: DayTables) -> _ClockColumns:
        origin = days.origin
        start = pl.col("start_date").cast(pl.Date).to_physical()
        completed = pl.col("completed_date").cast(pl.Date).to_physical()
        calendar_kind = pl.col("limit_kind") == "calendar"
        checks = clocks.select(
            limit_nulls=pl.col("limit_days").null_count(),
            limit_min=pl.col("limit_days").min(),
            limit_max=pl.col("limit_days").max(),
            bad_kinds=~(calendar_kind | (pl.col("limit_kind") == "workday")).fill_null(False).all(),
            start_nulls=start.null_count(),
            start_min=start.min(),
            start_max=start.max(),
            completed_min=completed.min(),
        ).row(0, named=True)
        if checks["limit_nulls"] or checks["limit_min"] < 0:
            raise ValueError("limit_days must be present and >= 0 for every clock")
        if checks["bad_kinds"]:
            raise ValueError("limit_kind must be 'workday' or 'calendar' for every clock")
        if checks["start_nulls"]:
            raise ValueError("start_date must be present for every row")
        days.check_range("start_date", checks["start_min"], checks["start_max"])
        days.check_range("completed_date", checks["completed_min"], None)
        workday_scale, calendar_scale = pl.lit(DayTables.WORKDAY_SCALE, pl.Int32), pl.lit(days.calendar_scale, pl.Int32)
        arrays = clocks.select(
            start=(start - origin).cast(pl.Int32),
            limit=pl.col("limit_days").cast(pl.Int32),
            scale=pl.when(calendar_kind).then(calendar_scale).otherwise(workday_scale),
            completed=(completed - origin).cast(pl.Int32).fill_null(days.never),
            warning_days=pl.col("warning_days").cast(pl.Int32).fill_null(1),
            escalate_after=pl.col("escalate_after").cast(pl.Int32).fill_null(_NEVER_INT32),
        )
        columns = {name: arrays[name].to_numpy() for name in arrays.columns}
        return cls(**columns, clip_targets=checks["limit_max"] > days.limit_room)

    def part(self, rows: slice | np.ndarray) -> _ClockColumns:
        if isinstance(rows, slice):
            return _ClockColumns(*(getattr(self, name)[rows] for name in _CLOCK_FIELDS), self.clip_targets)
        return _ClockColumns(*(np.take(getattr(self, name), rows) for name in _CLOCK_FIELDS), self.clip_targets)


_CLOCK_FIELDS = ("start", "limit", "scale", "completed", "warning_days", "escalate_after")


@dataclass(frozen=True)
class _KnownPauses:
    """The pauses known at T (S <= T) whose clock is present, sorted by clock row, then start; ends after T are
    `never` (open). `first` marks each clock's first pause."""

    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    restart: np.ndarray
    first: np.ndarray

    @classmethod
    def read(cls, clock_ids: pl.Series, pauses: pl.DataFrame, days: DayTables, t: int) -> _KnownPauses:
        origin = days.origin
        end = (pl.col("end_date").cast(pl.Date).to_physical() - origin).cast(pl.Int32)
        frame = pauses.select(
            start=(pl.col("start_date").cast(pl.Date).to_physical() - origin).cast(pl.Int32).fill_null(days.never),
            end=pl.when(end <= t).then(end).otherwise(days.never),  # open at T: no end, or one after T
            restart=pl.col("restart").fill_null(False),
        )
        start, end_known, restart = (frame[name].to_numpy() for name in frame.columns)
        known = start <= t  # a pause that starts after T is not known, nor one without a start
        days.check_range("pause start_date", int(start.min()) + origin, None)
        if end_known.min() < 0 and (known & (end_known < 0)).any():
            days.check_range("pause end_date", int(end_known[known].min()) + origin, None)
        row = rows_of(clock_ids, pauses["clock_id"])
        ignored = ~known
        ignored |= row < 0
        if ignored.any():
            row[ignored] = len(clock_ids)  # after every clock's row: sorted to the end, and cut off there
        row, start, end_known, restart = sort_pauses(row, start, end_known, restart, days.never)
        count = int(np.searchsorted(row, len(clock_ids)))
        return cls(row[:count], start[:count], end_known[:count], restart[:count], first_of_runs(row[:count]))

    def split(self, parts: int) -> list[_KnownPauses]:
        """About equal parts, each holding all the pauses of its clocks."""
        return [
            _KnownPauses(self.row[s], self.start[s], self.end[s], self.restart[s], self.first[s])
            for s in split_runs(self.row, parts)
        ]


# -- The results -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outputs:
    due: np.ndarray  # day offsets
    due_known: np.ndarray
    elapsed: np.ndarray
    remaining: np.ndarray
    overdue_workdays: np.ndarray
    level: np.ndarray  # the code of LevelCodes
    provisional: np.ndarray

    @classmethod
    def allocate(cls, count: int) -> _Outputs:
        return cls(
            due=np.empty(count, dtype=np.int32),
            due_known=np.empty(count, dtype=bool),
            elapsed=np.empty(count, dtype=np.int32),
            remaining=np.empty(count, dtype=np.int32),
            overdue_workdays=np.empty(count, dtype=np.int32),
            level=np.empty(count, dtype=np.uint8),
            provisional=np.empty(count, dtype=bool),
        )


def _assemble(clocks: pl.DataFrame, out: _Outputs, days: DayTables) -> pl.DataFrame:
    due = out.due
    due += days.origin
    due_date = pl.Series("due_date", due).cast(pl.Date)
    if not out.due_known.all():
        due_date = due_date.scatter(np.flatnonzero(~out.due_known), None)
    calendar = pl.Series("calendar", CALENDAR_STATES, dtype=pl.String).gather(
        pl.Series(out.provisional, dtype=pl.UInt32)
    )
    return clocks.drop(EVALUATION_COLUMNS, strict=False).hstack(
        [
            due_date,
            pl.Series("elapsed", out.elapsed),
            pl.Series("remaining", out.remaining),
            pl.Series("overdue_workdays", out.overdue_workdays),
            _LEVEL_CODES.name(out.level).alias("level"),
            calendar,
        ]
    )
