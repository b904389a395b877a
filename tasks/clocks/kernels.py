"""The clock engine's kernels: how tasks/clocks/engine.py is fast, kept apart so that the engine reads as its rules.

Each kernel computes one plain thing for whole numpy columns at once and decides no rule: the calendar as look-up
tables (counting and finding days by index), finding each pause's clock, sorting pauses, merging overlapping
intervals, sums per clock, a level as a code of bits, and the two passes on threads. Each says why it exists.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

import numpy as np
import polars as pl

from tasks.clocks.calendar import WorkCalendar

BLOCK_ROWS = 1 << 16  # clocks per block: a block's arrays stay in the processor's cache
WORKERS = min(8, os.cpu_count() or 1)

Clocks = TypeVar("Clocks")
Pauses = TypeVar("Pauses")
Effects = TypeVar("Effects")


def blocks(count: int) -> list[slice]:
    return [slice(first, min(first + BLOCK_ROWS, count)) for first in range(0, count, BLOCK_ROWS)]


def first_of_runs(values: np.ndarray) -> np.ndarray:
    """Whether each value differs from the one before it (the first always does): where each run of equal values,
    such as one clock's pauses, begins."""
    first = np.empty(len(values), dtype=bool)
    if len(values):
        first[0] = True
        np.not_equal(values[1:], values[:-1], out=first[1:])
    return first


class DayTables:
    """The calendar as int32 look-up tables, and date columns as day offsets (0 = the calendar's first day).

    Why: with the cumulative working-day index, "the working days in (a, b]" is W[b] - W[a] and "the k-th working
    day" one gather, for a million clocks at once and without a loop over days.

    A clock counts on its scale: working days (the working-day index) or calendar days (the day itself). Both scales
    live in the same tables, the working-day part at 0..stride-1 and the calendar-day part at stride..2*stride-1, so
    that one gather serves clocks of both kinds: a clock's `scale` is where its part starts (WORKDAY_SCALE or
    calendar_scale). Offsets run 0..last; `never` (last + 2) stands for "no date yet": an open pause's end, an unknown
    completion. A stride leaves room for any start, plus a limit up to `limit_room`, plus the longest pause, so that no
    index spills into the other part: positions past the calendar's end give `never`, without checks.
    """

    WORKDAY_SCALE = 0

    def __init__(self, calendar: WorkCalendar) -> None:
        self.calendar = calendar
        self.origin = calendar.origin
        size = len(calendar)
        self.last = size - 1
        self.never = size + 1
        # Room for limits up to twice the calendar's length; larger ones need their targets clipped to `never`.
        self.limit_room = 2 * size
        self.stride = 2 * (size + 2) + self.limit_room
        self.calendar_scale = self.stride
        workday_index = calendar.workday_index_array.astype(np.int32)
        self.workday_index = np.concatenate([workday_index, workday_index[-1:], workday_index[-1:]])
        position = np.full(2 * self.stride, self.never, dtype=np.int32)
        position[: size + 2] = self.workday_index
        position[self.stride : self.stride + size + 2] = np.arange(size + 2, dtype=np.int32)
        self._position = position
        # The day reaching each position: the k-th working day (working-day scale); the first working day on or
        # after day k (calendar-day scale); `never` past the end.
        workdays = calendar.workday_offsets.astype(np.int32)
        rolled = calendar.roll_forward_array.astype(np.int32)
        reaching = np.full(2 * self.stride, self.never, dtype=np.int32)
        reaching[1 : len(workdays) + 1] = workdays
        reaching[self.stride : self.stride + size] = np.where(rolled > self.last, self.never, rolled)
        self._reaching = reaching
        provisional = calendar.provisional_array
        self.provisional_index = np.concatenate([[0], np.cumsum(provisional, dtype=np.int32), [0]]).astype(np.int32)
        self.provisional_index[-1] = self.provisional_index[-2]
        # Provisional years are usually the calendar's tail (from the first year without a notice): then "does a
        # range touch one" is a comparison with the first provisional day.
        first = int(np.argmax(provisional)) if provisional.any() else size
        self.provisional_from = first if provisional[first:].all() else None

    def position(self, day: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Each day's position on its clock's scale: the days counted from the calendar's start up to it."""
        return np.take(self._position, day + scale)

    def day_reaching(self, position: np.ndarray, scale: np.ndarray, clip: bool) -> np.ndarray:
        """The day at which each clock's count reaches `position`, moved to the next working day on the calendar-day
        scale; `never` past the calendar. `clip`: some positions may exceed the room left for limits."""
        if clip:
            position = np.minimum(position, self.stride - 1)
        return np.take(self._reaching, position + scale, mode="clip")  # padded: past the calendar's end is `never`

    def workdays_after(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """The working days in (first, last]; 0 when last is not after first (working days never decrease)."""
        count = np.take(self.workday_index, last)
        count -= np.take(self.workday_index, first)
        return np.maximum(count, 0, out=count)

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


# Successive slices of the 64-bit hash, one per round of the hash join below.
_HASH_SHIFTS = (0, 22, 42)


def rows_of(ids: pl.Series, wanted: pl.Series) -> np.ndarray:
    """Row of each wanted id among the ids (int32), -1 when absent. The ids must be unique.

    Why written out: polars' join (`how="left", maintain_order="left"`) takes about twice as long for 600,000 pauses
    of a million clocks (188 ms against 87 ms), as long as the rest of the engine. In each round, the remaining ids'
    hashes (a slice of their 64 bits) index a direct-address table four times larger than them; a wanted id finds its
    candidate row with one gather. Ids that lost their slot to another, and the wanted ids that missed, go to the next
    round with another slice of the hash, and what is left after the last round to polars' join. The strings of every
    pair are compared at the end, so a hash collision can never pair a pause with the wrong clock.
    """
    rows = np.full(len(wanted), -1, dtype=np.int32)
    if wanted.is_empty() or ids.is_empty():
        return rows
    id_hash = ids.hash().to_numpy().view(np.int64)
    wanted_hash = wanted.hash().to_numpy().view(np.int64)
    ids_left: np.ndarray | None = None  # None: all of them (saves copying in the first round)
    wanted_left: np.ndarray | None = None  # None: all of them
    for shift in _HASH_SHIFTS:
        left_hash = id_hash if ids_left is None else np.take(id_hash, ids_left)
        asked_hash = wanted_hash if wanted_left is None else np.take(wanted_hash, wanted_left)
        bits = int(np.clip(np.ceil(np.log2(4 * len(left_hash))), 8, 22))
        mask = (1 << bits) - 1
        slot = (left_hash >> shift) & mask
        table = np.full(1 << bits, -1, dtype=np.int32)
        np.put(table, slot, np.arange(len(left_hash), dtype=np.int32) if ids_left is None else ids_left)
        candidate = np.take(table, (asked_hash >> shift) & mask)
        missed = np.take(id_hash, candidate, mode="clip") != asked_hash
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
        if ids_left is None:
            ids_left = np.flatnonzero(winners != np.arange(len(left_hash), dtype=np.int32))
        else:
            ids_left = ids_left[winners != ids_left]
        if len(ids_left) == 0:
            break
    if wanted_left is not None and len(wanted_left) and ids_left is not None and len(ids_left):
        rows[wanted_left] = _join_rows(ids, ids_left, wanted.gather(wanted_left))

    matched = rows >= 0
    if matched.all():
        if (ids.gather(rows) == wanted).all():
            return rows
        matched_rows = np.arange(len(rows))
    else:
        matched_rows = np.flatnonzero(matched)
    same = (ids.gather(rows[matched_rows]) == wanted.gather(matched_rows)).to_numpy()
    if not same.all():  # two different ids share a 64-bit hash
        wrong = matched_rows[~same]
        rows[wrong] = _join_rows(ids, np.arange(len(ids)), wanted.gather(wrong))
    return rows


def _join_rows(ids: pl.Series, candidates: np.ndarray, wanted: pl.Series) -> np.ndarray:
    """Row of each wanted id among ids[candidates], -1 when absent, by polars' join."""
    lookup = pl.DataFrame({"id": ids.gather(candidates), "row": candidates.astype(np.int32)})
    found = pl.DataFrame({"id": wanted}).join(lookup, on="id", how="left", maintain_order="left", validate="m:1")
    return found["row"].fill_null(-1).to_numpy()


def sort_pauses(
    row: np.ndarray, start: np.ndarray, end: np.ndarray, restart: np.ndarray, never: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pauses sorted by row, then start.

    Why: each pause is packed into one int64, the row in the high half and (start, end, restart) in the low half, so
    that one sort of plain integers orders them, much faster than an argsort and four gathers. A calendar too long to
    pack falls back to a lexsort."""
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
class Intervals:
    """(start, end] intervals sorted by group (ascending), then start: the group, the bounds, and whether the
    interval is its group's first."""

    group: np.ndarray
    start: np.ndarray
    end: np.ndarray
    first: np.ndarray

    @classmethod
    def none(cls) -> Intervals:
        nothing = np.empty(0, dtype=np.int32)
        return cls(nothing, nothing, nothing, np.empty(0, dtype=bool))


def merge_overlaps(group: np.ndarray, start: np.ndarray, end: np.ndarray, never: int) -> Intervals:
    """Each group's intervals (sorted by group, then start) merged where they overlap or touch, so that every day is
    in at most one.

    Why not a loop: the running maximum of the ends within each group is one np.maximum.accumulate, once each group's
    ends are offset by group * (never + 1) to keep the groups apart."""
    if len(group) == 0:
        return Intervals.none()
    first = first_of_runs(group)
    touching = start[1:] <= end[:-1]
    touching &= ~first[1:]
    if not touching.any():  # each interval starts after the previous one ends: nothing to merge (the usual case)
        return Intervals(group, start, end, first)
    offset = np.multiply(group, never + 1, dtype=np.int64)
    running_end = np.maximum.accumulate(offset + end)
    running_end -= offset
    running_end = running_end.astype(np.int32)
    begins = first.copy()
    begins[1:] |= start[1:] > running_end[:-1]  # (s, e] joins the previous interval when s <= its end
    merged_first = np.flatnonzero(begins)
    merged_last = np.empty_like(merged_first)
    merged_last[:-1] = merged_first[1:] - 1
    merged_last[-1] = len(group) - 1
    return Intervals(
        np.take(group, merged_first),
        np.take(start, merged_first),
        np.take(running_end, merged_last),
        np.take(first, merged_first),
    )


def group_sums(columns: tuple[np.ndarray, ...], group: np.ndarray, first: np.ndarray, count: int) -> list[np.ndarray]:
    """Per group 0..count-1, the sum of each column over its rows (any, for a boolean column); rows are sorted by
    group, and `first` marks each group's first row. Why: one np.add.reduceat per column instead of a group_by."""
    sums = [np.zeros(count, dtype=column.dtype) for column in columns]
    if len(group):
        runs = np.flatnonzero(first)
        present = np.take(group, runs)
        for total, column in zip(sums, columns, strict=True):
            total[present] = np.add.reduceat(column, runs)
    return sums


def raise_to_group_max(into: np.ndarray, values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """A copy of `into` where each group that has values (sorted by group) is raised to its largest value, if that is
    larger. Why: np.maximum.reduceat over the runs of each group instead of a group_by."""
    runs = np.flatnonzero(first_of_runs(group))
    present = np.take(group, runs)
    raised = into.copy()
    raised[present] = np.maximum(np.take(into, present), np.maximum.reduceat(values, runs))
    return raised


def sums_before(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Sum of the earlier values within each group of consecutive rows (a group begins where `first` is True).
    Why: one cumulative sum over all groups, less its value at each group's start."""
    if len(values) == 0:
        return values
    before = np.cumsum(values, dtype=np.int64)
    before -= values
    group_start = np.maximum.accumulate(np.arange(len(values), dtype=np.int32) * first)
    return before - np.take(before, group_start)


class LevelCodes:
    """A level decided by five yes/no facts, kept per clock as a 5-bit code and named by one gather at the end.

    Why: adding bits is several times faster than choosing among the names with np.select or boolean masks, and
    gathering strings once from a table of 32 is faster than building them. The table is filled by calling the rule
    on every combination of the facts, so the rule stays written as a rule.
    """

    def __init__(self, rule: Callable[[bool, bool, bool, bool, bool], str]) -> None:
        self.names = pl.Series(
            [rule(*(bool(code & bit) for bit in (16, 8, 4, 2, 1))) for code in range(32)], dtype=pl.String
        )

    @staticmethod
    def pack(*facts: np.ndarray) -> np.ndarray:
        """The code of five boolean columns, the first in the highest bit."""
        code = np.zeros(len(facts[0]), dtype=np.uint8)
        for fact in facts:
            code += code
            code += fact.view(np.uint8)
        return code

    def name(self, codes: np.ndarray) -> pl.Series:
        return self.names.gather(pl.Series(codes, dtype=pl.UInt32))


def two_passes(
    count: int,
    read_clocks: Callable[[], Clocks],
    read_pauses: Callable[[int], Sequence[Pauses]],
    without_pauses: Callable[[Clocks, slice], None],
    prepare: Callable[[Clocks, Pauses], Effects],
    with_pauses: Callable[[Effects], None],
) -> None:
    """Every clock evaluated as if it had no pause, then the clocks that have pauses again, with what they do.

    Why on threads: numpy and polars release the GIL inside each operation. The first pass runs in blocks on the
    workers while this thread reads the pauses (finding their clocks and sorting them takes as long as the first
    pass); their effects are then prepared in parts (clocks are independent) on this thread and the workers, and each
    part is applied once the first pass is over, as it overwrites some of its results. A task only ever waits for
    tasks submitted before it, so the workers cannot all wait on work still queued. A ValueError from the pauses is
    raised after any from the clocks themselves, which are reported first.
    """
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        clocks_read: Future[Clocks] = pool.submit(read_clocks)
        first_pass = [
            pool.submit(lambda rows: without_pauses(clocks_read.result(), rows), rows) for rows in blocks(count)
        ]

        def second_pass(pauses: Pauses) -> None:
            effects = prepare(clocks_read.result(), pauses)
            for done in first_pass:
                done.result()
            with_pauses(effects)

        try:
            parts = read_pauses(WORKERS)
        except ValueError:
            clocks_read.result()
            raise
        if parts:
            mine, *theirs = parts
            handed = [pool.submit(second_pass, part) for part in theirs]
            second_pass(mine)
            for done in handed:
                done.result()
        for done in first_pass:
            done.result()


def split_runs(row: np.ndarray, parts: int) -> list[slice]:
    """About equal slices of rows sorted by `row`, never cutting a run of equal values (one clock's pauses)."""
    count = len(row)
    cuts = {int(np.searchsorted(row, row[count * part // parts])) for part in range(1, parts)}
    bounds = [0, *sorted(cut for cut in cuts if 0 < cut < count), count]
    return [slice(first, stop) for first, stop in itertools.pairwise(bounds)]
