"""The working-day calendar (工作日历): one table of every day with its status and a cumulative working-day index.

Sources, in order of precedence (a later one wins for the days it covers):
1. provisional: Monday–Friday, minus the `holidays` package's estimate of China's holidays, for a year nobody has
   announced yet. Every such day is flagged `provisional`, and a clock that touches one says so.
2. the `chinese-calendar` package (official, 2004–2026 in version 1.11), make-up workdays (调休) included.
3. config/calendar/YYYY.yaml files transcribing a State Council notice (config/calendar_files.py), applied in year
   order so that a notice's New Year days in the previous December win, as that module documents.

`workday_index` counts working days from the first day of the table up to and including each day, so the working days in
(a, b] are workday_index[b] - workday_index[a]: every count and addition the clock engine needs is an array look-up.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

import chinese_calendar
import holidays
import numpy as np
import polars as pl

CALENDAR_FIRST_DATE = date(2004, 1, 1)  # chinese-calendar's first year
# Inputs are accepted up to 2040 (tasks/clocks/builders.py); the table runs further so that a due date computed from a
# late start and the largest accepted limit (3650 days) still lands inside it.
CALENDAR_LAST_DATE = date(2060, 12, 31)
EPOCH = date(1970, 1, 1)

PACKAGE_SOURCE = "chinese-calendar package"
PROVISIONAL_SOURCE = "provisional: weekends and the holidays package's estimated holidays"

# chinese-calendar names festivals in English; show them as the notices do.
_FESTIVAL_NAMES = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "Mid-autumn Festival": "中秋节",
    "National Day": "国庆节",
    "Anti-Fascist 70th Day": "中国人民抗日战争暨世界反法西斯战争胜利70周年纪念日",
}
MAKEUP_NOTE = "调休上班"


class CalendarSource(Protocol):
    """What the calendar needs from a config/calendar/YYYY.yaml file (config.calendar_files.CalendarFile)."""

    @property
    def year(self) -> int: ...

    @property
    def holidays(self) -> Sequence[date]: ...

    @property
    def workdays(self) -> Sequence[date]: ...


@dataclass(frozen=True)
class YearCoverage:
    year: int
    source: str
    provisional: bool


@dataclass(frozen=True)
class _Day:
    is_workday: bool
    note: str | None


class WorkCalendar:
    """One calendar table (date, is_workday, workday_index, provisional, note) plus numpy views for the engine.

    Day offsets (`offset(d)`, 0 = first day) index every array. Scalar helpers serve explanations and the delivery
    window; the clock engine reads the arrays directly.
    """

    def __init__(self, table: pl.DataFrame, coverage: Sequence[YearCoverage]) -> None:
        self.table = table
        self._coverage = tuple(coverage)
        self.first_date: date = table["date"][0]
        self.last_date: date = table["date"][-1]
        self.origin = (self.first_date - EPOCH).days  # epoch day number of offset 0
        self.is_workday_array: np.ndarray = table["is_workday"].to_numpy()
        self.workday_index_array: np.ndarray = table["workday_index"].to_numpy()
        self.provisional_array: np.ndarray = table["provisional"].to_numpy()
        self.provisional_index_array: np.ndarray = np.cumsum(self.provisional_array, dtype=np.int32)
        # offset of the k-th working day (k = 1, 2, …) is workday_offsets[k - 1]
        self.workday_offsets: np.ndarray = np.flatnonzero(self.is_workday_array).astype(np.int32)
        # the first working day on or after each offset; len(table) where none remains
        following = np.full(len(table) + 1, len(table), dtype=np.int32)
        following[self.workday_offsets] = self.workday_offsets
        self.roll_forward_array: np.ndarray = np.minimum.accumulate(following[::-1])[::-1][: len(table)]

    def __len__(self) -> int:
        return len(self.table)

    # -- scalar helpers ------------------------------------------------------------------------------------------

    def offset(self, day: date) -> int:
        if not self.first_date <= day <= self.last_date:
            raise ValueError(f"{day} is outside the calendar ({self.first_date} to {self.last_date})")
        return (day - self.first_date).days

    def day(self, offset: int) -> date:
        if not 0 <= offset < len(self):
            raise ValueError(f"the calendar ({self.first_date} to {self.last_date}) has no day at offset {offset}")
        return self.first_date + timedelta(days=int(offset))

    def is_workday(self, day: date) -> bool:
        return bool(self.is_workday_array[self.offset(day)])

    def is_provisional(self, day: date) -> bool:
        return bool(self.provisional_array[self.offset(day)])

    def note(self, day: date) -> str | None:
        """The holiday's name, or 调休上班 for a make-up working day, or None for an ordinary day."""
        return self.table["note"][self.offset(day)]

    def next_workday(self, day: date) -> date:
        """The first working day strictly after `day`."""
        return self.roll_forward(day + timedelta(days=1))

    def roll_forward(self, day: date) -> date:
        """`day` itself when it is a working day, else the next one (民法典 第二百零三条)."""
        return self.day(int(self.roll_forward_array[self.offset(day)]))

    def add_workdays(self, day: date, count: int) -> date:
        """The count-th working day after `day` (count > 0), before it (count < 0), or `day` itself (count = 0)."""
        if count == 0:
            return day
        position = self.offset(day)
        worked_up_to = int(self.workday_index_array[position])
        # Counting back from a working day starts at that day's own ordinal, from a rest day at the one before it.
        worked_before = worked_up_to - int(self.is_workday_array[position])
        ordinal = worked_up_to + count if count > 0 else worked_before + count + 1
        if not 1 <= ordinal <= len(self.workday_offsets):
            raise ValueError(f"{count} working days from {day} leave the calendar ending {self.last_date}")
        return self.day(int(self.workday_offsets[ordinal - 1]))

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in (start, end]; negative when end is before start."""
        return int(self.workday_index_array[self.offset(end)]) - int(self.workday_index_array[self.offset(start)])

    def days(self, start: date, end: date) -> pl.DataFrame:
        """The table's rows for start..end inclusive."""
        return self.table.filter(pl.col("date").is_between(start, end))

    # -- coverage ------------------------------------------------------------------------------------------------

    def coverage(self) -> list[YearCoverage]:
        """Each year of the table with the source of its days."""
        return list(self._coverage)

    def provisional_years(self, first: int | None = None, last: int | None = None) -> list[int]:
        return [
            entry.year
            for entry in self._coverage
            if entry.provisional and (first is None or entry.year >= first) and (last is None or entry.year <= last)
        ]


@functools.cache
def _package_days() -> tuple[tuple[int, int], dict[date, _Day]]:
    """chinese-calendar's years and its exceptions to the weekday rule, read once per process."""
    first_year = min(chinese_calendar.holidays).year
    last_year = max(chinese_calendar.holidays).year
    days: dict[date, _Day] = {}
    for day, name in chinese_calendar.holidays.items():
        days[day] = _Day(False, _FESTIVAL_NAMES.get(name, name))
    for day, name in chinese_calendar.workdays.items():
        days[day] = _Day(True, f"{MAKEUP_NOTE}（{_FESTIVAL_NAMES.get(name, name)}）")
    return (first_year, last_year), days


@functools.cache
def _estimated_days(year: int) -> dict[date, _Day]:
    """The holidays package's estimate for a year without an official calendar."""
    estimate = holidays.China(years=year, language="zh_CN")
    days = {day: _Day(False, f"{name}（预计）") for day, name in estimate.items()}
    for day in estimate.weekend_workdays:
        if day.year == year:
            days[day] = _Day(True, f"{MAKEUP_NOTE}（预计）")
    return days


def _weekday_rule(day: date) -> _Day:
    return _Day(day.weekday() < 5, None)


def _file_label(calendar_file: CalendarSource) -> str:
    source = getattr(calendar_file, "source", None)
    title = getattr(source, "title", None)
    return f"config/calendar/{calendar_file.year}.yaml" + (f": {title}" if title else "")


def load_work_calendar(
    calendar_files: Iterable[CalendarSource] = (),
    *,
    first_date: date = CALENDAR_FIRST_DATE,
    last_date: date = CALENDAR_LAST_DATE,
) -> WorkCalendar:
    """The calendar from chinese-calendar, the config/calendar files and provisional estimates for any other year."""
    files = sorted(calendar_files, key=lambda calendar_file: calendar_file.year)
    (package_first, package_last), package_days = _package_days()
    file_years = {calendar_file.year for calendar_file in files}
    years = range(first_date.year, last_date.year + 1)

    coverage = []
    for year in years:
        if year in file_years:
            label = next(_file_label(f) for f in files if f.year == year)
            coverage.append(YearCoverage(year, label, provisional=False))
        elif package_first <= year <= package_last:
            coverage.append(YearCoverage(year, PACKAGE_SOURCE, provisional=False))
        else:
            coverage.append(YearCoverage(year, PROVISIONAL_SOURCE, provisional=True))
    provisional_years = {entry.year for entry in coverage if entry.provisional}

    overrides: dict[date, _Day] = {}
    for year in sorted(provisional_years):
        overrides.update(_estimated_days(year))
    overrides.update(package_days)
    for calendar_file in files:
        year_start, year_end = date(calendar_file.year, 1, 1), date(calendar_file.year, 12, 31)
        # A file states its whole year: package days of that year that it does not list revert to the weekday rule.
        for day in [d for d in overrides if year_start <= d <= year_end]:
            del overrides[day]
        overrides.update({day: _Day(False, "法定节假日") for day in calendar_file.holidays})
        overrides.update({day: _Day(True, MAKEUP_NOTE) for day in calendar_file.workdays})

    count = (last_date - first_date).days + 1
    dates = [first_date + timedelta(days=i) for i in range(count)]
    statuses = [overrides.get(day) or _weekday_rule(day) for day in dates]
    is_workday = np.fromiter((status.is_workday for status in statuses), dtype=bool, count=count)
    table = pl.DataFrame(
        {
            "date": pl.Series(dates, dtype=pl.Date),
            "is_workday": is_workday,
            "workday_index": np.cumsum(is_workday, dtype=np.int32),
            "provisional": np.fromiter((day.year in provisional_years for day in dates), dtype=bool, count=count),
            "note": pl.Series([status.note for status in statuses], dtype=pl.String),
        }
    )
    return WorkCalendar(table, coverage)


@functools.cache
def default_work_calendar() -> WorkCalendar:
    """The calendar without config files (chinese-calendar + provisional years), built once per process."""
    return load_work_calendar(())
