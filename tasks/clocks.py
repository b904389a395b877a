"""The clock engine: due date, elapsed and remaining days, days overdue and level of every clock as of a date.

The rules are DOMAIN.md "Time rules". In short, for a clock with start A, limit N (working or calendar days), pauses
(S, E] and completion C, as of the end of day T:

- Only what is known at T counts: a completion after T is ignored, a pause with S > T is ignored, and a pause whose
  end is empty or after T is open (it extends without end).
- A restart pause (补正 under restarting rules) that has ended moves the start to its end E: counting starts over.
- Counted days are the working days (workday kind) or all days (calendar kind) after the start that no pause covers.
  The due date D is the N-th counted day, moved to the next working day when that is not one; D = start when N = 0.
  An open pause reached before the N-th counted day leaves D unknown (null).
- elapsed = counted days in (start, min(T, C)]; remaining = N - elapsed; overdue_workdays = working days in (D, T]
  (open) or (D, C] (completed), 0 when on time or paused.
- level: completed_on_time / completed_late for a completion known at T; else paused (an open pause), escalated
  (T > D and overdue_workdays >= escalate_after), overdue (T > D), warning (remaining <= warning_days), normal.
- calendar = provisional when any day from the start to the last day used (T, C or D) lies in a provisional year.

How it is fast: dates become day offsets into the calendar table, whose cumulative working-day index turns "count the
working days in (a, b]" into W[b] - W[a] and "the k-th working day" into one gather. For a calendar clock the
count is simply b - a. Pauses are merged per clock into disjoint intervals with a running maximum over the pauses
sorted by clock and start; each merged interval removes a block of positions from the counting. Every step is a numpy
operation over a block of clocks and their pauses at once; blocks are small enough for the processor's cache and are
evaluated on all cores (numpy releases the GIL inside each operation).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from tasks.calendar import WorkCalendar

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


def empty_clocks() -> pl.DataFrame:
    return pl.DataFrame(schema=CLOCK_COLUMNS)


def empty_pauses() -> pl.DataFrame:
    return pl.DataFrame(schema=PAUSE_COLUMNS)


def evaluate_clocks(clocks: pl.DataFrame, pauses: pl.DataFrame, calendar: WorkCalendar, as_of: date) -> pl.DataFrame:
    """The clocks, in their order, with due_date, elapsed, remaining, overdue_workdays, level and calendar added.

    Required clock columns: clock_id (unique), start_date, limit_days (>= 0), limit_kind (workday|calendar),
    completed_date, warning_days (null: 1), escalate_after (null: never); other columns pass through. Pauses:
    clock_id, start_date, end_date (null = open), restart. Pauses of clock ids not among the clocks are ignored.
    Start, completion and pause dates must lie in the calendar (tasks/clock_builders.py rejects rows that do not); a
    due date that would fall after its last day raises ValueError.
    """
    if clocks.is_empty():
        return clocks.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in EVALUATION_COLUMNS.items())
    days = _Days(calendar)
    t = days.offset_of(as_of)
    columns = _ClockColumns.read(clocks, days)
    known = _KnownPauses.read(clocks["clock_id"], pauses, as_of, days)
    bounds = [*range(0, len(clocks), BLOCK_ROWS), len(clocks)]
    pause_bounds = np.searchsorted(known.row, bounds).tolist()
    out = _Outputs.allocate(len(clocks))

    def evaluate_block(block: int) -> None:
        first, stop = bounds[block], bounds[block + 1]
        inputs = columns.block(slice(first, stop), days, t)
        merged = _merge_pauses(known.part(pause_bounds[block], pause_bounds[block + 1], first), inputs.start, days)
        effects = _PauseEffects.compute(merged, inputs, days, t)
        _evaluate_rows(inputs, effects, days, t, out, slice(first, stop))

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(evaluate_block, range(len(bounds) - 1)))

    return pl.concat(
        [
            clocks.drop(EVALUATION_COLUMNS, strict=False),
            pl.DataFrame({"due": out.due, "due_known": out.due_known}).select(
                pl.when("due_known").then(pl.col("due").cast(pl.Date)).alias("due_date")
            ),
            pl.DataFrame(
                {
                    "elapsed": out.elapsed,
                    "remaining": out.remaining,
                    "overdue_workdays": out.overdue_workdays,
                    "level": pl.Series(LEVELS, dtype=pl.String).gather(pl.Series(out.level)),
                    "calendar": pl.Series(CALENDAR_STATES, dtype=pl.String).gather(pl.Series(out.provisional)),
                }
            ),
        ],
        how="horizontal",
    )


@dataclass(frozen=True)
class _ClockColumns:
    """The clock columns the engine reads, checked, as numpy arrays over all clocks (dates as epoch days)."""

    start: np.ndarray
    limit: np.ndarray
    calendar_kind: np.ndarray  # True: calendar-day clock; False: working-day clock
    completed: np.ndarray  # epoch days; far in the future when there is none
    warning_days: np.ndarray
    escalate_after: np.ndarray

    @classmethod
    def read(cls, clocks: pl.DataFrame, days: _Days) -> _ClockColumns:
        limit = clocks["limit_days"]
        if limit.null_count() or limit.min() < 0:  # type: ignore[operator]
            raise ValueError("limit_days must be present and >= 0 for every clock")
        kind = clocks["limit_kind"]
        calendar_kind = (kind == "calendar").fill_null(False)
        if not (calendar_kind | (kind == "workday").fill_null(False)).all():
            raise ValueError("limit_kind must be 'workday' or 'calendar' for every clock")
        start = days.epoch_days(clocks["start_date"], "start_date", required=True)
        never = np.iinfo(np.int32).max
        return cls(
            start=start,
            limit=limit.cast(pl.Int32).to_numpy(),
            calendar_kind=calendar_kind.to_numpy(),
            completed=days.epoch_days(clocks["completed_date"], "completed_date", required=False, missing=never),
            warning_days=clocks["warning_days"].cast(pl.Int32).fill_null(1).to_numpy(),
            escalate_after=clocks["escalate_after"].cast(pl.Int32).fill_null(never).to_numpy(),
        )

    def block(self, rows: slice, days: _Days, t: int) -> _ClockInputs:
        calendar_kind = self.calendar_kind[rows]
        completed = np.subtract(self.completed[rows], days.origin, dtype=np.int64)
        return _ClockInputs(
            start=np.subtract(self.start[rows], days.origin, dtype=np.int64),
            limit=self.limit[rows].astype(np.int64),
            calendar_kind=calendar_kind,
            position_base=calendar_kind * days.position_stride,
            due_base=calendar_kind * days.due_stride,
            completed=np.where(completed > t, days.never, completed),
            warning_days=self.warning_days[rows],
            escalate_after=self.escalate_after[rows],
        )


@dataclass(frozen=True)
class _ClockInputs:
    """One block of clocks: dates as day offsets, and where each clock's kind starts in the look-up tables."""

    start: np.ndarray
    limit: np.ndarray
    calendar_kind: np.ndarray
    position_base: np.ndarray
    due_base: np.ndarray
    completed: np.ndarray  # `never` when there is none, or it comes after T
    warning_days: np.ndarray
    escalate_after: np.ndarray


@dataclass(frozen=True)
class _KnownPauses:
    """The pauses known at T (S <= T) whose clock is present, sorted by clock row, then start; ends after T are
    `never` (open)."""

    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    restart: np.ndarray

    @classmethod
    def read(cls, clock_ids: pl.Series, pauses: pl.DataFrame, as_of: date, days: _Days) -> _KnownPauses:
        known = pauses.filter(pl.col("start_date") <= as_of)
        row = _rows_of(clock_ids, known["clock_id"])
        start = days.offsets(known["start_date"], "pause start_date")
        end = days.offsets(known["end_date"], "pause end_date", unknown_after=days.offset_of(as_of))
        restart = known["restart"].fill_null(False).to_numpy()
        found = np.flatnonzero(row >= 0)
        order = found[np.argsort(row[found] * (days.never + 1) + start[found])]
        return cls(row[order], start[order], end[order], restart[order])

    def part(self, first: int, stop: int, first_row: int) -> _KnownPauses:
        """Pauses first..stop, with rows counted from `first_row`."""
        return _KnownPauses(
            self.row[first:stop] - first_row, self.start[first:stop], self.end[first:stop], self.restart[first:stop]
        )


@dataclass(frozen=True)
class _MergedPauses:
    """Per clock: the start after restarts and whether a pause is open at T. Per merged pause, sorted by clock and
    start: the clock's row, the (start, end] offsets, whether it is open, and whether it is the clock's first."""

    start: np.ndarray
    open_clock: np.ndarray
    row: np.ndarray
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_open: np.ndarray
    seg_first: np.ndarray

    @classmethod
    def none(cls, start: np.ndarray) -> _MergedPauses:
        nothing = np.empty(0, dtype=np.int64)
        flags = np.empty(0, dtype=bool)
        return cls(start, np.zeros(len(start), dtype=bool), nothing, nothing, nothing, flags, flags)


def _merge_pauses(pauses: _KnownPauses, start: np.ndarray, days: _Days) -> _MergedPauses:
    """Restarts applied, then each clock's pauses merged into disjoint (start, end] intervals."""
    if len(pauses.row) == 0:
        return _MergedPauses.none(start)
    row = pauses.row
    # A finished restart pause starts the count over from its end.
    new_start = start.copy()
    restarted = pauses.restart & (pauses.end != days.never)
    np.maximum.at(new_start, row[restarted], pauses.end[restarted])

    # Days up to the (new) start are not counted anyway, so a pause is clipped to start there; one that ends by then
    # changes nothing. Clipping raises the starts of one clock to a common floor, so the order still holds.
    pause_start = np.maximum(pauses.start, new_start[row])
    effective = np.flatnonzero(pauses.end > pause_start)
    if len(effective) == 0:
        return _MergedPauses.none(new_start)
    row, pause_start, pause_end = row[effective], pause_start[effective], pauses.end[effective]

    first = np.ones(len(row), dtype=bool)
    first[1:] = row[1:] != row[:-1]
    # Running maximum of the ends within each clock: offsetting each clock's ends by row * span keeps clocks apart.
    span = days.never + 1
    running_end = np.maximum.accumulate(pause_end + row * span) - row * span
    previous_end = np.empty_like(running_end)
    previous_end[0] = -1
    previous_end[1:] = running_end[:-1]
    begins = first | (pause_start > previous_end)  # (s, e] joins the previous pause when s <= its end
    seg_index = np.flatnonzero(begins)
    seg_last = np.empty_like(seg_index)
    seg_last[:-1] = seg_index[1:] - 1
    seg_last[-1] = len(row) - 1
    seg_end = running_end[seg_last]
    seg_open = seg_end == days.never
    seg_row = row[seg_index]
    open_clock = np.zeros(len(start), dtype=bool)
    open_clock[seg_row[seg_open]] = True
    return _MergedPauses(
        start=new_start,
        open_clock=open_clock,
        row=seg_row,
        seg_start=pause_start[seg_index],
        seg_end=seg_end,
        seg_open=seg_open,
        seg_first=first[seg_index],
    )


@dataclass(frozen=True)
class _PauseEffects:
    """Per clock, what its merged pauses do: the start after restarts, the counted positions the due date moves by,
    whether an open pause comes before the due date, whether a pause is open at T, and the paused positions within
    the days elapsed."""

    start: np.ndarray
    shift: np.ndarray
    blocked: np.ndarray
    open_now: np.ndarray
    paused_positions: np.ndarray

    @classmethod
    def compute(cls, pause: _MergedPauses, inputs: _ClockInputs, days: _Days, t: int) -> _PauseEffects:
        count = len(inputs.start)
        shift = np.zeros(count, dtype=np.int64)
        paused_positions = np.zeros(count, dtype=np.int64)
        blocked = np.zeros(count, dtype=bool)
        if len(pause.row) == 0:
            return cls(pause.start, shift, blocked, pause.open_clock, paused_positions)
        rows = pause.row
        kind = inputs.position_base[rows]
        start = pause.start[rows]
        base = days.position[start + kind]
        seg_from = days.position[pause.seg_start + kind]
        seg_length = np.where(pause.seg_open, 0, days.position[pause.seg_end + kind] - seg_from)
        # Merged pauses are disjoint and sorted, so one starts before the N-th counted day exactly when the counted
        # positions before it (its start, less the lengths of the clock's earlier pauses) are fewer than base + N.
        counted_before = seg_from - _exclusive_group_cumsum(seg_length, pause.seg_first)
        reached = counted_before < base + inputs.limit[rows]
        blocked[rows[reached & pause.seg_open]] = True  # an open pause comes first: the due date is not known yet

        completed = inputs.completed[rows]
        stop = np.maximum(np.where(completed != days.never, completed, t), start)
        covered = np.maximum(0, days.position[np.minimum(pause.seg_end, stop) + kind] - seg_from)

        group_starts = np.flatnonzero(pause.seg_first)
        group_rows = rows[group_starts]
        shift[group_rows] = np.add.reduceat(np.where(reached, seg_length, 0), group_starts)
        paused_positions[group_rows] = np.add.reduceat(covered, group_starts)
        return cls(pause.start, shift, blocked, pause.open_clock, paused_positions)


@dataclass(frozen=True)
class _Outputs:
    due: np.ndarray  # epoch days
    due_known: np.ndarray
    elapsed: np.ndarray
    remaining: np.ndarray
    overdue_workdays: np.ndarray
    level: np.ndarray
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
            provisional=np.empty(count, dtype=np.uint8),
        )


def _evaluate_rows(
    inputs: _ClockInputs, effects: _PauseEffects, days: _Days, t: int, out: _Outputs, rows: slice
) -> None:
    """Everything per clock for one block of clocks, written into `out[rows]`."""
    start, limit = effects.start, inputs.limit
    completed_known = inputs.completed != days.never  # a completion after T is not known at T
    end = np.where(completed_known, inputs.completed, t)  # the last day the clock ran, as known at T
    paused_now = effects.open_now & ~completed_known

    base = days.position[start + inputs.position_base]
    target = np.minimum(base + limit + effects.shift, days.due_stride - 1)
    due = np.where(limit == 0, start, days.due[target + inputs.due_base])
    due_known = ~(effects.blocked | paused_now)
    if (due_known & (due > days.last)).any():
        raise ValueError(f"a due date falls after the calendar's last day ({days.describe()})")

    elapsed = days.position[np.maximum(end, start) + inputs.position_base] - base - effects.paused_positions
    remaining = limit - elapsed
    late = due_known & (end > due)
    overdue_workdays = np.where(late, days.workday_index[end] - days.workday_index[due], 0)

    level = np.where(remaining <= inputs.warning_days, np.uint8(WARNING), np.uint8(NORMAL))
    escalated = overdue_workdays >= inputs.escalate_after
    level = np.where(late, np.where(escalated, np.uint8(ESCALATED), np.uint8(OVERDUE)), level)
    level = np.where(paused_now, np.uint8(PAUSED), level)
    level = np.where(completed_known, np.where(late, np.uint8(COMPLETED_LATE), np.uint8(COMPLETED_ON_TIME)), level)

    # The days used run from the start to the completion or T, and to the due date when it is known.
    last_used = np.where(due_known, np.maximum(end, due), end)
    out.due[rows] = due + days.origin
    out.due_known[rows] = due_known
    out.elapsed[rows] = elapsed
    out.remaining[rows] = remaining
    out.overdue_workdays[rows] = overdue_workdays
    out.level[rows] = level
    out.provisional[rows] = days.any_provisional(inputs.start, last_used)


class _Days:
    """The calendar as integer look-up tables, and date columns as day offsets (0 = the calendar's first day).

    Offsets run 0..last; `never` (last + 2) stands for "no date yet": an open pause's end, an unknown completion.
    Tables are padded so that `never` and positions past the calendar can be looked up without checks.
    """

    def __init__(self, calendar: WorkCalendar) -> None:
        self.calendar = calendar
        self.origin = calendar.origin
        size = len(calendar)
        self.last = size - 1
        self.never = size + 1
        offsets = np.arange(size + 2, dtype=np.int64)
        workday_index = calendar.workday_index_array.astype(np.int64)
        self.workday_index = np.concatenate([workday_index, workday_index[-1:], workday_index[-1:]])
        # A day's position on a clock's counting scale: position[offset] for a working-day clock (its working-day
        # index), position[position_stride + offset] for a calendar-day clock (the day itself).
        self.position_stride = size + 2
        self.position = np.concatenate([self.workday_index, offsets])
        # The due day for a counting position: due[k] = the k-th working day (working-day clocks);
        # due[due_stride + k] = the first working day on or after day k (calendar-day clocks); `never` past the end.
        workdays = calendar.workday_offsets.astype(np.int64)
        rolled = calendar.roll_forward_array.astype(np.int64)
        self.due_stride = max(len(workdays), size) + 2
        kth = np.full(self.due_stride, self.never, dtype=np.int64)
        kth[1 : len(workdays) + 1] = workdays
        rolled_forward = np.full(self.due_stride, self.never, dtype=np.int64)
        rolled_forward[:size] = np.where(rolled > self.last, self.never, rolled)
        self.due = np.concatenate([kth, rolled_forward])
        provisional = calendar.provisional_array
        self.provisional_index = np.concatenate([[0], np.cumsum(provisional, dtype=np.int64), [0]])
        self.provisional_index[-1] = self.provisional_index[-2]
        # Provisional years are usually the calendar's tail (from the first year without a notice): then "does a
        # range touch one" is a comparison with the first provisional day.
        first = int(np.argmax(provisional)) if provisional.any() else size
        self.provisional_from = first if provisional[first:].all() else None

    def offset_of(self, day: date) -> int:
        return self.calendar.offset(day)

    def epoch_days(self, column: pl.Series, name: str, *, required: bool, missing: int = 0) -> np.ndarray:
        """A Date column as int32 epoch days, checked against the calendar; nulls become `missing`."""
        physical = column.cast(pl.Date).to_physical()
        if required and physical.null_count():
            raise ValueError(f"{name} must be present for every row")
        low, high = physical.min(), physical.max()
        if low is not None and (low < self.origin or (required and high > self.origin + self.last)):  # type: ignore[operator]
            raise ValueError(f"{name} has dates outside the calendar ({self.describe()})")
        return physical.fill_null(missing).to_numpy()

    def offsets(self, column: pl.Series, name: str, *, unknown_after: int | None = None) -> np.ndarray:
        """Day offsets of a Date column. With `unknown_after`, nulls and days after it become `never`."""
        if column.is_empty():
            return np.empty(0, dtype=np.int64)
        days = self.epoch_days(column, name, required=unknown_after is None, missing=self.origin + self.never)
        values = np.subtract(days, self.origin, dtype=np.int64)
        return values if unknown_after is None else np.where(values > unknown_after, self.never, values)

    def any_provisional(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Whether any day between `first` and `last` (either order) lies in a provisional year."""
        high = np.maximum(first, last)
        if self.provisional_from is not None:
            return high >= self.provisional_from
        low = np.minimum(first, last)
        return self.provisional_index[high + 1] > self.provisional_index[low]

    def describe(self) -> str:
        return f"{self.calendar.first_date} to {self.calendar.last_date}"


# Successive slices of the 64-bit hash, one per round of the hash join below.
_HASH_SHIFTS = (0, 22, 42)


def _rows_of(clock_ids: pl.Series, wanted: pl.Series) -> np.ndarray:
    """Row of each wanted id among the clock ids, -1 when absent. Clock ids must be unique.

    A hash join written out, because polars' general join would cost more than all the rest of the engine. In each
    round, the remaining clocks' hashes (a slice of their 64 bits) index a direct-address table four times larger
    than them; a wanted id finds its candidate row with one gather. Clocks that lost their slot to another clock, and
    the ids that missed, go to the next round with another slice of the hash, and what is left after the last round
    to polars' join. The strings of every pair are compared at the end, so a hash collision can never pair a pause
    with the wrong clock.
    """
    rows = np.full(len(wanted), -1, dtype=np.int64)
    if wanted.is_empty() or clock_ids.is_empty():
        return rows
    clock_hash = clock_ids.hash().to_numpy()
    wanted_hash = wanted.hash().to_numpy()
    clocks_left: np.ndarray | None = None  # None: all of them (saves copying in the first round)
    wanted_left: np.ndarray | None = None
    for shift in _HASH_SHIFTS:
        left_hash = clock_hash if clocks_left is None else clock_hash[clocks_left]
        asked_hash = wanted_hash if wanted_left is None else wanted_hash[wanted_left]
        if len(left_hash) == 0 or len(asked_hash) == 0:
            break
        bits = int(np.clip(np.ceil(np.log2(4 * len(left_hash))), 8, 22))
        mask = np.uint64((1 << bits) - 1)
        slot = ((left_hash >> np.uint64(shift)) & mask).astype(np.intp)
        table = np.full(1 << bits, -1, dtype=np.int32)
        table[slot] = np.arange(len(left_hash), dtype=np.int32) if clocks_left is None else clocks_left
        candidate = table[((asked_hash >> np.uint64(shift)) & mask).astype(np.intp)]
        hit = (candidate >= 0) & (clock_hash[candidate] == asked_hash)
        asked = np.arange(len(wanted_hash)) if wanted_left is None else wanted_left
        rows[asked[hit]] = candidate[hit]
        wanted_left = asked[~hit]
        winners = table[slot]
        clocks_left = (
            np.flatnonzero(winners != np.arange(len(left_hash)))
            if clocks_left is None
            else (clocks_left[winners != clocks_left])
        )
    if wanted_left is not None and len(wanted_left) and clocks_left is not None and len(clocks_left):
        rows[wanted_left] = _join_rows(clock_ids, clocks_left, wanted.gather(wanted_left))

    matched = np.flatnonzero(rows >= 0)
    asked_ids = wanted if len(matched) == len(wanted) else wanted.gather(matched)
    same = (clock_ids.gather(rows[matched]) == asked_ids).to_numpy()
    if not same.all():  # two different ids share a 64-bit hash
        wrong = matched[~same]
        rows[wrong] = _join_rows(clock_ids, np.arange(len(clock_ids)), wanted.gather(wrong))
    return rows


def _join_rows(clock_ids: pl.Series, candidates: np.ndarray, wanted: pl.Series) -> np.ndarray:
    """Row of each wanted id among clock_ids[candidates], -1 when absent, by polars' join."""
    lookup = pl.DataFrame({"clock_id": clock_ids.gather(candidates), "row": candidates})
    found = pl.DataFrame({"clock_id": wanted}).join(
        lookup, on="clock_id", how="left", maintain_order="left", validate="m:1"
    )
    return found["row"].fill_null(-1).to_numpy()


def _exclusive_group_cumsum(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Sum of the earlier values within each group of consecutive rows (a group begins where `first` is True)."""
    if len(values) == 0:
        return values
    before = np.cumsum(values) - values
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(values)), 0))
    return before - before[group_start]
