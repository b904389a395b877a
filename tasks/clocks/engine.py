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

How it is fast: dates become int32 day offsets into the calendar table, whose cumulative working-day index turns
"count the working days in (a, b]" into W[b] - W[a] and "the k-th working day" into one gather; for a calendar clock
the count is simply b - a. Every clock is first evaluated as if it had no pause, in blocks small enough for the
processor's cache, on a worker thread (numpy and polars release the GIL inside each operation). Meanwhile this thread
attaches the pauses to their clocks (a hash join on the clock ids, every pair checked by string), sorts them by clock
and start with one sort of packed integer keys, and merges each clock's pauses into disjoint intervals. Only the
clocks that have pauses are then evaluated again, with what their pauses do, over their first results. The level is
one look-up of a 5-bit code of the facts that decide it. Branchy numpy operations (np.where, boolean indexing) are
avoided in the per-clock passes: on these sizes they cost several times an addition.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from tasks.clocks.calendar import WorkCalendar

LEVELS = ("normal", "warning", "overdue", "escalated", "paused", "completed_on_time", "completed_late")
NORMAL, WARNING, OVERDUE, ESCALATED, PAUSED, COMPLETED_ON_TIME, COMPLETED_LATE = range(len(LEVELS))
CALENDAR_STATES = ("official", "provisional")

BLOCK_ROWS = 1 << 16  # clocks per block: a block's arrays stay in cache
WORKERS = min(8, os.cpu_count() or 1)

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


def _level_names() -> pl.Series:
    """The level for each 5-bit code built in _evaluate (from the high bit: completed, open pause, escalated, late,
    warned). Completion decides first, then an open pause, then lateness (escalated past the threshold), then the
    warning threshold."""
    names = []
    for code in range(32):
        completed, open_pause, escalated, late, warned = (bool(code & bit) for bit in (16, 8, 4, 2, 1))
        if completed:
            level = COMPLETED_LATE if late else COMPLETED_ON_TIME
        elif open_pause:
            level = PAUSED
        elif late:
            level = ESCALATED if escalated else OVERDUE
        else:
            level = WARNING if warned else NORMAL
        names.append(LEVELS[level])
    return pl.Series(names, dtype=pl.String)


_LEVEL_OF_CODE = _level_names()


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
    days = _Days(calendar)
    t = days.offset_of(as_of)
    out = _Outputs.allocate(len(clocks))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        # The clocks are evaluated as if without pauses on the workers while this thread attaches the pauses. A task
        # only ever waits for tasks submitted before it, so the workers cannot all wait on work still queued.
        columns_read = pool.submit(_ClockColumns.read, clocks, days)

        def first_pass(rows: slice) -> None:
            _evaluate(columns_read.result().part(rows), None, days, t, out, rows)

        first_results = [pool.submit(first_pass, rows) for rows in _blocks(len(clocks))]

        def with_pauses(known: _KnownPauses) -> None:
            """The clocks of these pauses evaluated again, with what their pauses do, over their first results."""
            effects = _PauseEffects.compute(known, columns_read.result(), days, t)
            for done in first_results:
                done.result()
            for rows in _blocks(len(effects.rows)):
                _evaluate(effects.clock.part(rows), effects.part(rows), days, t, out, effects.rows[rows])

        try:
            known = _KnownPauses.read(clocks["clock_id"], pauses, days, t) if not pauses.is_empty() else None
        except ValueError:
            columns_read.result()  # a problem with the clocks themselves is reported first
            raise
        if known is not None and len(known.row):
            # Clocks are independent: their pauses are split between this thread and the workers.
            first, *others = known.split(WORKERS)
            handed = [pool.submit(with_pauses, part) for part in others]
            with_pauses(first)
            for done in handed:
                done.result()
        for done in first_results:
            done.result()
        days.check_due(out.due, out.due_known)
        return _assemble(clocks, out, days, pool)


def _blocks(count: int) -> list[slice]:
    return [slice(first, min(first + BLOCK_ROWS, count)) for first in range(0, count, BLOCK_ROWS)]


@dataclass(frozen=True)
class _ClockColumns:
    """The clock columns the engine reads, checked, as int32 numpy arrays (dates as day offsets)."""

    start: np.ndarray
    limit: np.ndarray
    kind_base: np.ndarray  # where the clock's kind starts in the look-up tables: 0 working days, stride calendar days
    completed: np.ndarray  # `never` when there is none
    warning_days: np.ndarray
    escalate_after: np.ndarray
    clip_targets: bool  # a limit too large for the look-up tables' room: counting positions must be clipped

    @classmethod
    def read(cls, clocks: pl.DataFrame, days: _Days) -> _ClockColumns:
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
        arrays = clocks.select(
            start=(start - origin).cast(pl.Int32),
            limit=pl.col("limit_days").cast(pl.Int32),
            kind_base=pl.when(calendar_kind).then(pl.lit(days.stride, pl.Int32)).otherwise(pl.lit(0, pl.Int32)),
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


_CLOCK_FIELDS = ("start", "limit", "kind_base", "completed", "warning_days", "escalate_after")


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
    def read(cls, clock_ids: pl.Series, pauses: pl.DataFrame, days: _Days, t: int) -> _KnownPauses:
        origin = days.origin
        end = (pl.col("end_date").cast(pl.Date).to_physical() - origin).cast(pl.Int32)
        frame = pauses.select(
            start=(pl.col("start_date").cast(pl.Date).to_physical() - origin).cast(pl.Int32).fill_null(days.never),
            end=pl.when(end <= t).then(end).otherwise(days.never),  # open at T: no end, or one after T
            restart=pl.col("restart").fill_null(False),
        )
        start, end_known, restart = (frame[name].to_numpy() for name in frame.columns)
        known = start <= t  # a pause without a start is never known
        days.check_range("pause start_date", int(start.min()) + origin, None)
        if end_known.min() < 0 and (known & (end_known < 0)).any():
            days.check_range("pause end_date", int(end_known[known].min()) + origin, None)
        row = _rows_of(clock_ids, pauses["clock_id"])
        ignored = ~known
        ignored |= row < 0
        if ignored.any():
            row[ignored] = len(clock_ids)  # after every clock's row: sorted to the end, and cut off there
        row, start, end_known, restart = _sort_by_row_and_start(row, start, end_known, restart, days.never)
        count = int(np.searchsorted(row, len(clock_ids)))
        if count == 0:
            return cls.none()
        if count < len(row):
            row, start, end_known, restart = row[:count], start[:count], end_known[:count], restart[:count]
        first = np.empty(len(row), dtype=bool)
        first[0] = True
        np.not_equal(row[1:], row[:-1], out=first[1:])
        return cls(row, start, end_known, restart, first)

    @classmethod
    def none(cls) -> _KnownPauses:
        nothing = np.empty(0, dtype=np.int32)
        return cls(nothing, nothing, nothing, np.empty(0, dtype=bool), np.empty(0, dtype=bool))

    def split(self, parts: int) -> list[_KnownPauses]:
        """About equal parts, each holding all the pauses of its clocks."""
        count = len(self.row)
        cuts = {int(np.searchsorted(self.row, self.row[count * part // parts])) for part in range(1, parts)}
        bounds = [0, *sorted(cut for cut in cuts if 0 < cut < count), count]
        return [
            _KnownPauses(*(getattr(self, name)[first:stop] for name in ("row", "start", "end", "restart", "first")))
            for first, stop in itertools.pairwise(bounds)
        ]


def _sort_by_row_and_start(
    row: np.ndarray, start: np.ndarray, end: np.ndarray, restart: np.ndarray, never: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pauses sorted by row, then start. Each pause is packed into one int64, the row in the high half and
    (start, end, restart) in the low half, so that one sort of plain integers orders them: much faster than an
    argsort and four gathers. A calendar too long to pack falls back to a lexsort."""
    day_bits = never.bit_length()
    if 2 * day_bits + 1 > 31:
        order = np.lexsort((start, row))
        return row[order], start[order], end[order], restart[order]
    low, high = (0, 1) if np.little_endian else (1, 0)
    key = np.empty(len(row), dtype=np.int64)
    halves = key.view(np.int32).reshape(-1, 2)
    packed = halves[:, low]
    np.left_shift(start, day_bits + 1, out=packed)
    packed |= np.left_shift(end, 1)
    packed |= restart
    halves[:, high] = row
    key.sort()
    packed = halves[:, low]
    return (
        halves[:, high].copy(),
        packed >> (day_bits + 1),
        (packed >> 1) & ((1 << day_bits) - 1),
        (packed & 1).astype(bool),
    )


@dataclass(frozen=True)
class _PauseEffects:
    """What their pauses do to the clocks that have any (rows, ascending): the start after restarts, the counted
    positions the due date moves by, the counted positions paused up to the completion or T, whether an open pause
    comes before the due date, and whether a pause is open at T."""

    rows: np.ndarray
    clock: _ClockColumns  # the columns of those clocks
    start: np.ndarray
    shift: np.ndarray
    paused: np.ndarray
    blocked: np.ndarray
    open: np.ndarray

    @classmethod
    def compute(cls, known: _KnownPauses, columns: _ClockColumns, days: _Days, t: int) -> _PauseEffects:
        first = known.first
        group_starts = np.flatnonzero(first)
        rows = np.take(known.row, group_starts).astype(np.intp)
        count = len(rows)
        group = np.cumsum(first, dtype=np.int32)
        group -= 1  # each pause's clock among `rows`
        clock = columns.part(rows)

        # A finished restart pause starts the count over from its end.
        start = clock.start
        finished = np.flatnonzero(known.restart & (known.end != days.never)) if known.restart.any() else ()
        if len(finished):
            restarted, restart_end = np.take(group, finished), np.take(known.end, finished)
            runs = np.flatnonzero(np.concatenate([[True], restarted[1:] != restarted[:-1]]))
            restarted = np.take(restarted, runs)
            start = start.copy()
            start[restarted] = np.maximum(np.take(start, restarted), np.maximum.reduceat(restart_end, runs))
        # Days up to the (new) start are not counted anyway, so a pause is clipped to start there; one that ends by
        # then changes nothing. Clipping raises the starts of one clock to a common floor, so the order still holds.
        pause_start = np.maximum(known.start, np.take(start, group))
        pause_end = known.end
        effective = pause_end > pause_start
        if not effective.all():
            kept = np.flatnonzero(effective)
            group, pause_start, pause_end = group[kept], pause_start[kept], pause_end[kept]
        segments = _Segments.merge(group, pause_start, pause_end, days)

        seg_group = segments.group
        seg_kind = np.take(clock.kind_base, seg_group)
        base = np.take(days.position, start + clock.kind_base)
        seg_from = np.take(days.position, segments.start + seg_kind)
        seg_length = np.take(days.position, segments.end + seg_kind)
        seg_length -= seg_from
        seg_length *= ~segments.open
        # Merged pauses are disjoint and sorted, so one starts before the N-th counted day exactly when the counted
        # positions before it (its start, less the lengths of the clock's earlier pauses) are fewer than base + N.
        counted_before = seg_from - _exclusive_group_cumsum(seg_length, segments.first)
        reached = counted_before < np.take(base + clock.limit, seg_group)
        stop = np.maximum(np.minimum(clock.completed, t), start)
        covered = np.take(days.position, np.minimum(segments.end, np.take(stop, seg_group)) + seg_kind)
        covered -= seg_from
        np.maximum(covered, 0, out=covered)
        seg_length *= reached
        shift, paused, blocked, open_now = _group_sums(
            (seg_length, covered, reached & segments.open, segments.open), segments, count
        )
        return cls(rows, clock, start, shift, paused, blocked, open_now)

    def part(self, rows: slice) -> _PauseEffects:
        return _PauseEffects(
            self.rows[rows],
            self.clock.part(rows),
            self.start[rows],
            self.shift[rows],
            self.paused[rows],
            self.blocked[rows],
            self.open[rows],
        )


@dataclass(frozen=True)
class _Segments:
    """Each clock's pauses merged into disjoint (start, end] intervals, sorted by clock and start: the clock (its
    position among the clocks with pauses), the bounds, whether it is open, and whether it is the clock's first."""

    group: np.ndarray
    start: np.ndarray
    end: np.ndarray
    open: np.ndarray
    first: np.ndarray

    @classmethod
    def merge(cls, group: np.ndarray, start: np.ndarray, end: np.ndarray, days: _Days) -> _Segments:
        if len(group) == 0:
            nothing = np.empty(0, dtype=np.int32)
            return cls(nothing, nothing, nothing, np.empty(0, dtype=bool), np.empty(0, dtype=bool))
        first = np.empty(len(group), dtype=bool)
        first[0] = True
        np.not_equal(group[1:], group[:-1], out=first[1:])
        touching = start[1:] <= end[:-1]
        touching &= ~first[1:]
        if not touching.any():  # each pause starts after the previous one ends: nothing to merge (the usual case)
            return cls(group, start, end, end == days.never, first)
        # Running maximum of the ends within each clock: offsetting each clock's ends by group * span keeps clocks
        # apart (groups ascend).
        offset = np.multiply(group, days.never + 1, dtype=np.int64)
        running_end = np.maximum.accumulate(offset + end)
        running_end -= offset
        running_end = running_end.astype(np.int32)
        begins = first.copy()
        begins[1:] |= start[1:] > running_end[:-1]  # (s, e] joins the previous pause when s <= its end
        if begins.all():
            return cls(group, start, end, end == days.never, first)
        seg_index = np.flatnonzero(begins)
        seg_last = np.empty_like(seg_index)
        seg_last[:-1] = seg_index[1:] - 1
        seg_last[-1] = len(group) - 1
        seg_end = np.take(running_end, seg_last)
        return cls(
            np.take(group, seg_index),
            np.take(start, seg_index),
            seg_end,
            seg_end == days.never,
            np.take(first, seg_index),
        )


@dataclass(frozen=True)
class _Outputs:
    due: np.ndarray  # day offsets
    due_known: np.ndarray
    elapsed: np.ndarray
    remaining: np.ndarray
    overdue_workdays: np.ndarray
    level: np.ndarray  # the 5-bit code of _level_names
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


def _evaluate(
    clock: _ClockColumns, effects: _PauseEffects | None, days: _Days, t: int, out: _Outputs, rows: slice | np.ndarray
) -> None:
    """Everything per clock for some clocks, written into `out[rows]`; without `effects`, as if they had no pause."""
    start = clock.start if effects is None else effects.start
    kind_base = clock.kind_base
    completed_known = clock.completed <= t  # a completion after T is not known at T
    end = np.minimum(clock.completed, t)  # the last day the clock ran, as known at T

    base = np.take(days.position, start + kind_base)
    target = base + clock.limit
    if effects is not None:
        target += effects.shift
    if clock.clip_targets:
        np.minimum(target, days.stride - 1, out=target)
    target += kind_base
    due = np.take(days.due, target, mode="clip")  # the tables are padded: past the calendar's end is `never`
    # 即办件: a working-day limit of 0 is due on the start date itself. A calendar-day limit of 0 (a fixed due date on
    # the start date) is due that day too, but moves to the next working day when that is a rest day, which the
    # look-up above already gives.
    instant = clock.limit == 0
    instant &= kind_base == 0
    if instant.any():
        now = np.flatnonzero(instant)
        due[now] = start[now]

    ran_to = np.maximum(end, start)
    ran_to += kind_base
    elapsed = np.take(days.position, ran_to)
    elapsed -= base
    if effects is not None:
        elapsed -= effects.paused
    remaining = clock.limit - elapsed
    # Working days never decrease, so W[end] - W[due] is the working days in (due, end] when end > due, else <= 0.
    overdue = np.take(days.workday_index, end)
    overdue -= np.take(days.workday_index, due)
    np.maximum(overdue, 0, out=overdue)

    late = end > due
    last_used = np.maximum(end, due)  # the due date is never before the start
    # The level's code, bit by bit from the highest: completed, open pause, escalated, late, warned.
    code = completed_known.view(np.uint8).copy()
    code += code
    if effects is not None:
        paused_now = effects.open & ~completed_known
        due_known = ~(effects.blocked | paused_now)
        late &= due_known
        overdue *= due_known
        code += effects.open.view(np.uint8)
        # An unknown due date is not used: the days used end at the completion or T.
        last_used -= end
        last_used *= due_known
        last_used += end
        np.maximum(last_used, clock.start, out=last_used)
        out.due_known[rows] = due_known
    else:
        out.due_known[rows] = True
    code += code
    code += (overdue >= clock.escalate_after).view(np.uint8)
    code += code
    code += late.view(np.uint8)
    code += code
    code += (remaining <= clock.warning_days).view(np.uint8)

    out.due[rows] = due
    out.elapsed[rows] = elapsed
    out.remaining[rows] = remaining
    out.overdue_workdays[rows] = overdue
    out.level[rows] = code
    out.provisional[rows] = days.any_provisional(clock.start, last_used)


def _assemble(clocks: pl.DataFrame, out: _Outputs, days: _Days, pool: ThreadPoolExecutor) -> pl.DataFrame:
    # The two string columns are gathered at once (polars releases the GIL).
    calendar = pool.submit(
        pl.Series("calendar", CALENDAR_STATES, dtype=pl.String).gather, pl.Series(out.provisional, dtype=pl.UInt32)
    )
    level = _LEVEL_OF_CODE.gather(pl.Series(out.level, dtype=pl.UInt32)).alias("level")
    due = out.due
    due += days.origin
    due_date = pl.Series("due_date", due).cast(pl.Date)
    if not out.due_known.all():
        due_date = due_date.scatter(np.flatnonzero(~out.due_known), None)
    return clocks.drop(EVALUATION_COLUMNS, strict=False).hstack(
        [
            due_date,
            pl.Series("elapsed", out.elapsed),
            pl.Series("remaining", out.remaining),
            pl.Series("overdue_workdays", out.overdue_workdays),
            level,
            calendar.result(),
        ]
    )


class _Days:
    """The calendar as int32 look-up tables, and date columns as day offsets (0 = the calendar's first day).

    Offsets run 0..last; `never` (last + 2) stands for "no date yet": an open pause's end, an unknown completion.
    `position` and `due` hold the working-day part at 0..stride-1 and the calendar-day part at stride..2*stride-1.
    A stride leaves room for any start, plus a limit up to `limit_room`, plus the longest pause, so that no index
    spills into the other part: positions past the calendar's end give `never`, without checks.
    """

    def __init__(self, calendar: WorkCalendar) -> None:
        self.calendar = calendar
        self.origin = calendar.origin
        size = len(calendar)
        self.last = size - 1
        self.never = size + 1
        # Room for limits up to twice the calendar's length; larger ones need their targets clipped to `never`.
        self.limit_room = 2 * size
        self.stride = 2 * (size + 2) + self.limit_room
        workday_index = calendar.workday_index_array.astype(np.int32)
        self.workday_index = np.concatenate([workday_index, workday_index[-1:], workday_index[-1:]])
        # A day's position on a clock's counting scale: its working-day index (working-day clocks) or the day itself.
        position = np.full(2 * self.stride, self.never, dtype=np.int32)
        position[: size + 2] = self.workday_index
        position[self.stride : self.stride + size + 2] = np.arange(size + 2, dtype=np.int32)
        self.position = position
        # The due day for a counting position: the k-th working day (working-day clocks); the first working day on or
        # after day k (calendar-day clocks); `never` past the end.
        workdays = calendar.workday_offsets.astype(np.int32)
        rolled = calendar.roll_forward_array.astype(np.int32)
        due = np.full(2 * self.stride, self.never, dtype=np.int32)
        due[1 : len(workdays) + 1] = workdays
        due[self.stride : self.stride + size] = np.where(rolled > self.last, self.never, rolled)
        self.due = due
        provisional = calendar.provisional_array
        self.provisional_index = np.concatenate([[0], np.cumsum(provisional, dtype=np.int32), [0]]).astype(np.int32)
        self.provisional_index[-1] = self.provisional_index[-2]
        # Provisional years are usually the calendar's tail (from the first year without a notice): then "does a
        # range touch one" is a comparison with the first provisional day.
        first = int(np.argmax(provisional)) if provisional.any() else size
        self.provisional_from = first if provisional[first:].all() else None

    def offset_of(self, day: date) -> int:
        return self.calendar.offset(day)

    def check_range(self, name: str, low: int | None, high: int | None) -> None:
        """Epoch days `low`..`high` (None: not checked) must lie in the calendar."""
        if (low is not None and low < self.origin) or (high is not None and high > self.origin + self.last):
            raise ValueError(f"{name} has dates outside the calendar ({self.describe()})")

    def check_due(self, due: np.ndarray, known: np.ndarray) -> None:
        if due.max() > self.last and (known & (due > self.last)).any():
            raise ValueError(f"a due date falls after the calendar's last day ({self.describe()})")

    def any_provisional(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Whether any day between `first` and `last` (either order) lies in a provisional year."""
        high = np.maximum(first, last)
        if self.provisional_from is not None:
            return high >= self.provisional_from
        low = np.minimum(first, last)
        return np.take(self.provisional_index, high + 1) > np.take(self.provisional_index, low)

    def describe(self) -> str:
        return f"{self.calendar.first_date} to {self.calendar.last_date}"


def _group_sums(columns: tuple[np.ndarray, ...], segments: _Segments, count: int) -> list[np.ndarray]:
    """Per clock 0..count-1, the sum of each column over its merged pauses (any, for a boolean column)."""
    sums = [np.zeros(count, dtype=column.dtype) for column in columns]
    if len(segments.group):
        runs = np.flatnonzero(segments.first)
        present = np.take(segments.group, runs)
        for total, column in zip(sums, columns, strict=True):
            total[present] = np.add.reduceat(column, runs)
    return sums


# Successive slices of the 64-bit hash, one per round of the hash join below.
_HASH_SHIFTS = (0, 22, 42)


def _rows_of(clock_ids: pl.Series, wanted: pl.Series) -> np.ndarray:
    """Row of each wanted id among the clock ids (int32), -1 when absent. Clock ids must be unique.

    A hash join written out, because polars' general join would cost more than all the rest of the engine. In each
    round, the remaining clocks' hashes (a slice of their 64 bits) index a direct-address table four times larger
    than them; a wanted id finds its candidate row with one gather. Clocks that lost their slot to another clock, and
    the ids that missed, go to the next round with another slice of the hash, and what is left after the last round
    to polars' join. The strings of every pair are compared at the end, so a hash collision can never pair a pause
    with the wrong clock.
    """
    rows = np.full(len(wanted), -1, dtype=np.int32)
    if wanted.is_empty() or clock_ids.is_empty():
        return rows
    clock_hash = clock_ids.hash().to_numpy().view(np.int64)
    wanted_hash = wanted.hash().to_numpy().view(np.int64)
    clocks_left: np.ndarray | None = None  # None: all of them (saves copying in the first round)
    wanted_left: np.ndarray | None = None  # None: all of them
    for shift in _HASH_SHIFTS:
        left_hash = clock_hash if clocks_left is None else np.take(clock_hash, clocks_left)
        asked_hash = wanted_hash if wanted_left is None else np.take(wanted_hash, wanted_left)
        bits = int(np.clip(np.ceil(np.log2(4 * len(left_hash))), 8, 22))
        mask = (1 << bits) - 1
        slot = (left_hash >> shift) & mask
        table = np.full(1 << bits, -1, dtype=np.int32)
        np.put(table, slot, np.arange(len(left_hash), dtype=np.int32) if clocks_left is None else clocks_left)
        candidate = np.take(table, (asked_hash >> shift) & mask)
        missed = np.take(clock_hash, candidate, mode="clip") != asked_hash
        missed |= candidate < 0
        if wanted_left is None:
            rows = candidate
            wanted_left = np.flatnonzero(missed)
            rows[wanted_left] = -1
        else:
            found = np.flatnonzero(~missed)
            rows[np.take(wanted_left, found)] = np.take(candidate, found)
            wanted_left = wanted_left[missed]
        if len(wanted_left) == 0:
            break
        winners = np.take(table, slot)
        if clocks_left is None:
            clocks_left = np.flatnonzero(winners != np.arange(len(left_hash), dtype=np.int32))
        else:
            clocks_left = clocks_left[winners != clocks_left]
        if len(clocks_left) == 0:
            break
    if wanted_left is not None and len(wanted_left) and clocks_left is not None and len(clocks_left):
        rows[wanted_left] = _join_rows(clock_ids, clocks_left, wanted.gather(wanted_left))

    matched = rows >= 0
    if matched.all():
        if (clock_ids.gather(rows) == wanted).all():
            return rows
        matched_rows = np.arange(len(rows))
    else:
        matched_rows = np.flatnonzero(matched)
    same = (clock_ids.gather(rows[matched_rows]) == wanted.gather(matched_rows)).to_numpy()
    if not same.all():  # two different ids share a 64-bit hash
        wrong = matched_rows[~same]
        rows[wrong] = _join_rows(clock_ids, np.arange(len(clock_ids)), wanted.gather(wrong))
    return rows


def _join_rows(clock_ids: pl.Series, candidates: np.ndarray, wanted: pl.Series) -> np.ndarray:
    """Row of each wanted id among clock_ids[candidates], -1 when absent, by polars' join."""
    lookup = pl.DataFrame({"clock_id": clock_ids.gather(candidates), "row": candidates.astype(np.int32)})
    found = pl.DataFrame({"clock_id": wanted}).join(
        lookup, on="clock_id", how="left", maintain_order="left", validate="m:1"
    )
    return found["row"].fill_null(-1).to_numpy()


def _exclusive_group_cumsum(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Sum of the earlier values within each group of consecutive rows (a group begins where `first` is True)."""
    if len(values) == 0:
        return values
    before = np.cumsum(values, dtype=np.int64)
    before -= values
    group_start = np.maximum.accumulate(np.arange(len(values), dtype=np.int32) * first)
    return before - np.take(before, group_start)
