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
operation over all clocks or all pauses at once.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from tasks.calendar import WorkCalendar

LEVELS = ("normal", "warning", "overdue", "escalated", "paused", "completed_on_time", "completed_late")
NORMAL, WARNING, OVERDUE, ESCALATED, PAUSED, COMPLETED_ON_TIME, COMPLETED_LATE = range(len(LEVELS))
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


def empty_clocks() -> pl.DataFrame:
    return pl.DataFrame(schema=CLOCK_COLUMNS)


def empty_pauses() -> pl.DataFrame:
    return pl.DataFrame(schema=PAUSE_COLUMNS)


def evaluate_clocks(clocks: pl.DataFrame, pauses: pl.DataFrame, calendar: WorkCalendar, as_of: date) -> pl.DataFrame:
    """The clocks, in their order, with due_date, elapsed, remaining, overdue_workdays, level and calendar added.

    Required clock columns: clock_id (unique), start_date, limit_days (>= 0), limit_kind (workday|calendar),
    completed_date, warning_days, escalate_after; other columns pass through. Pauses: clock_id, start_date, end_date
    (null = open), restart. Pauses of clock ids not among the clocks are ignored. Every date must lie in the calendar
    (clock_builders rejects rows that do not); a computation that would leave the calendar raises ValueError.
    """
    if clocks.is_empty():
        return clocks.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in EVALUATION_COLUMNS.items())
    days = _Days(calendar)
    t = days.offset_of(as_of)
    count = len(clocks)

    original_start = days.offsets(clocks["start_date"], "start_date")
    limit = clocks["limit_days"].cast(pl.Int64).to_numpy()
    if clocks["limit_days"].null_count() or limit.min() < 0:
        raise ValueError("limit_days must be present and >= 0 for every clock")
    workday_kind = (clocks["limit_kind"] == "workday").fill_null(False).to_numpy()
    calendar_kind = (clocks["limit_kind"] == "calendar").fill_null(False).to_numpy()
    if not (workday_kind | calendar_kind).all():
        raise ValueError("limit_kind must be 'workday' or 'calendar' for every clock")
    completed = days.offsets(clocks["completed_date"], "completed_date", unknown_after=t)
    completed_known = completed != days.never  # a completion after T is not known at T
    end = np.where(completed_known, completed, t)  # the last day the clock ran, as known at T

    pause = _merge_pauses(clocks["clock_id"], pauses, original_start, as_of, days)
    start = pause.start  # moved by restarts
    paused_now = ~completed_known & pause.open_clock

    def position(offset: np.ndarray, workday: np.ndarray) -> np.ndarray:
        """Where `offset` lies on a clock's counting scale: its working-day index, or the day itself."""
        return np.where(workday, days.workday_index[np.minimum(offset, days.last)], offset)

    base = position(start, workday_kind)
    rows = pause.row
    seg_workday = workday_kind[rows]
    seg_from = position(pause.seg_start, seg_workday)
    seg_length = np.where(pause.seg_open, 0, position(pause.seg_end, seg_workday) - seg_from)

    # Due date: the N-th counted position, pushed back by every merged pause that starts before it. Pauses are
    # disjoint and sorted, so a pause starts before the N-th counted day exactly when the counted positions before it
    # (its start minus the lengths of the clock's earlier pauses) are fewer than base + N.
    counted_before = seg_from - _exclusive_group_cumsum(seg_length, pause.seg_first)
    reached = counted_before < base[rows] + limit[rows]
    shift = np.bincount(rows, weights=seg_length * reached, minlength=count).astype(np.int64)
    blocked = np.zeros(count, dtype=bool)
    blocked[rows[reached & pause.seg_open]] = True  # an open pause comes first: the due date is not known yet
    target = base + limit + shift
    needs_due = ~blocked & ~paused_now & (limit > 0)
    due = np.where(workday_kind, days.kth_workday(target, needs_due & workday_kind), 0)
    due = np.where(calendar_kind, days.roll_forward(target, needs_due & calendar_kind), due)
    due = np.where(limit == 0, start, due)
    due_known = ~blocked & ~paused_now

    # Elapsed: counted positions in (start, end] that no merged pause covers.
    stop = np.maximum(end, start)
    seg_stop = stop[rows]
    covered = np.maximum(0, position(np.minimum(pause.seg_end, seg_stop), seg_workday) - seg_from)
    paused_positions = np.bincount(rows, weights=covered, minlength=count).astype(np.int64)
    elapsed = position(stop, workday_kind) - base - paused_positions
    remaining = limit - elapsed

    late = due_known & (end > due)
    overdue_workdays = np.where(late, days.workday_index[end] - days.workday_index[np.where(late, due, 0)], 0)

    warning_days = clocks["warning_days"].cast(pl.Int64).fill_null(1).to_numpy()
    escalate_after = clocks["escalate_after"].cast(pl.Int64).fill_null(np.iinfo(np.int64).max).to_numpy()
    level = np.full(count, NORMAL, dtype=np.uint8)
    level[remaining <= warning_days] = WARNING
    level[late] = OVERDUE
    level[late & (overdue_workdays >= escalate_after)] = ESCALATED
    level[paused_now] = PAUSED
    level[completed_known & ~late] = COMPLETED_ON_TIME
    level[completed_known & late] = COMPLETED_LATE

    last_used = np.where(due_known, np.maximum(end, due), end)
    provisional = days.any_provisional(np.minimum(original_start, last_used), np.maximum(original_start, last_used))

    computed = pl.DataFrame(
        {
            "due": (due + days.origin).astype(np.int32),
            "due_known": due_known,
            "elapsed": elapsed.astype(np.int32),
            "remaining": remaining.astype(np.int32),
            "overdue_workdays": overdue_workdays.astype(np.int32),
            "level": level,
            "provisional": provisional,
        }
    ).select(
        pl.when("due_known").then(pl.col("due").cast(pl.Date)).alias("due_date"),
        "elapsed",
        "remaining",
        "overdue_workdays",
        pl.col("level").replace_strict(dict(enumerate(LEVELS)), return_dtype=pl.String),
        pl.when("provisional").then(pl.lit(CALENDAR_STATES[1])).otherwise(pl.lit(CALENDAR_STATES[0])).alias("calendar"),
    )
    return pl.concat([clocks.drop(EVALUATION_COLUMNS, strict=False), computed], how="horizontal")


class _Days:
    """The calendar as integer arrays, and conversion of date columns to day offsets (0 = the calendar's first day)."""

    def __init__(self, calendar: WorkCalendar) -> None:
        self.calendar = calendar
        self.origin = calendar.origin
        self.last = len(calendar) - 1
        self.never = len(calendar) + 1  # stands for "no date yet": an open pause's end, an unknown completion
        self.workday_index = calendar.workday_index_array.astype(np.int64)
        self.workday_offsets = calendar.workday_offsets.astype(np.int64)
        self.roll_forward_array = calendar.roll_forward_array.astype(np.int64)
        self.provisional_index = calendar.provisional_index_array.astype(np.int64)
        self.provisional = calendar.provisional_array

    def offset_of(self, day: date) -> int:
        return self.calendar.offset(day)

    def offsets(self, column: pl.Series, name: str, *, unknown_after: int | None = None) -> np.ndarray:
        """Day offsets of a Date column. With `unknown_after`, nulls and days after it become `never`."""
        physical = column.cast(pl.Date).to_physical()
        if physical.is_empty():
            return np.empty(0, dtype=np.int64)
        if unknown_after is None and physical.null_count():
            raise ValueError(f"{name} must be present for every row")
        values = physical.fill_null(self.never + self.origin).to_numpy().astype(np.int64) - self.origin
        if unknown_after is not None:
            values = np.where(values > unknown_after, self.never, values)
        if values.min() < 0 or (unknown_after is None and values.max() > self.last):
            raise ValueError(f"{name} has dates outside the calendar ({self._range()})")
        return values

    def kth_workday(self, ordinal: np.ndarray, needed: np.ndarray) -> np.ndarray:
        """Offset of the ordinal-th working day of the calendar (ordinal >= 1) where `needed`."""
        if (needed & (ordinal > len(self.workday_offsets))).any():
            raise ValueError(f"a due date falls after the calendar's last day ({self._range()})")
        return self.workday_offsets[np.clip(ordinal - 1, 0, len(self.workday_offsets) - 1)]

    def roll_forward(self, offset: np.ndarray, needed: np.ndarray) -> np.ndarray:
        """The first working day on or after each offset, where `needed`."""
        rolled = self.roll_forward_array[np.clip(offset, 0, self.last)]
        if (needed & ((offset > self.last) | (rolled > self.last))).any():
            raise ValueError(f"a due date falls after the calendar's last day ({self._range()})")
        return rolled

    def any_provisional(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Whether any day in [low, high] lies in a provisional year."""
        return (self.provisional_index[high] - self.provisional_index[low] + self.provisional[low]) > 0

    def _range(self) -> str:
        return f"{self.calendar.first_date} to {self.calendar.last_date}"


class _MergedPauses:
    """Per clock: the start after restarts and whether a pause is open; per merged pause (sorted by clock, start):
    its clock row, start and end offsets ((start, end] paused), whether it is open and whether it is the clock's first.
    """

    def __init__(
        self,
        start: np.ndarray,
        open_clock: np.ndarray,
        row: np.ndarray,
        seg_start: np.ndarray,
        seg_end: np.ndarray,
        seg_open: np.ndarray,
        seg_first: np.ndarray,
    ) -> None:
        self.start = start
        self.open_clock = open_clock
        self.row = row
        self.seg_start = seg_start
        self.seg_end = seg_end
        self.seg_open = seg_open
        self.seg_first = seg_first


def _merge_pauses(
    clock_ids: pl.Series, pauses: pl.DataFrame, start: np.ndarray, as_of: date, days: _Days
) -> _MergedPauses:
    count = len(start)
    known = pauses.filter(pl.col("start_date") <= as_of)  # a pause that starts after T is not known at T
    if known.is_empty():
        nothing = np.empty(0, dtype=np.int64)
        return _MergedPauses(
            start, np.zeros(count, dtype=bool), nothing, nothing, nothing, nothing.astype(bool), nothing.astype(bool)
        )
    row = _rows_of(clock_ids, known["clock_id"])
    found = row >= 0
    t = days.offset_of(as_of)
    row = row[found]
    pause_start = days.offsets(known["start_date"], "pause start_date")[found]
    pause_end = days.offsets(known["end_date"], "pause end_date", unknown_after=t)[found]
    restart = known["restart"].fill_null(False).to_numpy()[found]

    # A finished restart pause starts the count over from its end.
    new_start = start.copy()
    restarted = restart & (pause_end != days.never)
    np.maximum.at(new_start, row[restarted], pause_end[restarted])

    pause_start = np.maximum(pause_start, new_start[row])
    effective = pause_end > pause_start
    row, pause_start, pause_end = row[effective], pause_start[effective], pause_end[effective]
    if len(row) == 0:
        return _MergedPauses(new_start, np.zeros(count, dtype=bool), row, row, row, row.astype(bool), row.astype(bool))

    span = days.never + 1
    order = np.argsort(row * span + pause_start, kind="stable")
    row, pause_start, pause_end = row[order], pause_start[order], pause_end[order]

    first = np.ones(len(row), dtype=bool)
    first[1:] = row[1:] != row[:-1]
    # Running maximum of the ends within each clock: offsetting each clock's ends by row * span keeps clocks apart.
    running_end = np.maximum.accumulate(pause_end + row * span) - row * span
    previous_end = np.empty_like(running_end)
    previous_end[0] = -1
    previous_end[1:] = running_end[:-1]
    begins = first | (pause_start > previous_end)  # (s, e] joins the previous pause when s <= its end
    seg_index = np.flatnonzero(begins)
    seg_last = np.empty_like(seg_index)
    seg_last[:-1] = seg_index[1:] - 1
    seg_last[-1:] = len(row) - 1
    seg_end = running_end[seg_last]
    seg_open = seg_end == days.never
    seg_row = row[seg_index]
    open_clock = np.zeros(count, dtype=bool)
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


def _rows_of(clock_ids: pl.Series, pause_clock_ids: pl.Series) -> np.ndarray:
    """Row of each pause's clock among the clocks, -1 when it has none."""
    lookup = pl.DataFrame({"clock_id": clock_ids}).with_row_index("row")
    matched = pl.DataFrame({"clock_id": pause_clock_ids}).join(
        lookup, on="clock_id", how="left", maintain_order="left", validate="m:1"
    )
    return matched["row"].fill_null(-1).cast(pl.Int64).to_numpy()


def _exclusive_group_cumsum(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Sum of the earlier values within each group of consecutive rows (a group begins where `first` is True)."""
    if len(values) == 0:
        return values
    before = np.cumsum(values) - values
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(values)), 0))
    return before - before[group_start]
