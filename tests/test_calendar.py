"""The working-day calendar: official days from chinese-calendar, calendar files, provisional years, and its helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import chinese_calendar
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.clocks.calendar import (
    PACKAGE_SOURCE,
    PROVISIONAL_SOURCE,
    WorkCalendar,
    default_work_calendar,
    load_work_calendar,
)


@dataclass(frozen=True)
class NoticeSource:
    title: str


@dataclass(frozen=True)
class FakeCalendarFile:
    year: int
    holidays: list[date]
    workdays: list[date]
    source: NoticeSource = field(default_factory=lambda: NoticeSource("国务院办公厅关于2027年部分节假日安排的通知"))


@pytest.fixture(scope="module")
def calendar() -> WorkCalendar:
    return default_work_calendar()


def test_every_official_day_matches_chinese_calendar(calendar: WorkCalendar) -> None:
    official = calendar.table.filter(pl.col("date").dt.year() <= 2026)
    assert official.height == (date(2026, 12, 31) - date(2004, 1, 1)).days + 1
    expected = [chinese_calendar.is_workday(day) for day in official["date"]]
    assert official["is_workday"].to_list() == expected
    assert not official["provisional"].any()


def test_makeup_workdays_and_holidays(calendar: WorkCalendar) -> None:
    assert calendar.is_workday(date(2025, 9, 28))  # Sunday, 调休 before 国庆节
    assert calendar.is_workday(date(2026, 2, 14))  # Saturday, 调休 before 春节
    assert not calendar.is_workday(date(2025, 10, 8))
    assert calendar.note(date(2026, 2, 14)) == "调休上班（春节）"
    assert calendar.note(date(2025, 1, 29)) == "春节"


def test_workday_index_counts_working_days(calendar: WorkCalendar) -> None:
    table = calendar.table
    assert table["workday_index"].to_list() == table["is_workday"].cast(pl.Int32).cum_sum().to_list()
    assert calendar.workdays_between(date(2025, 9, 26), date(2025, 10, 9)) == 4  # 09-28, 09-29, 09-30, 10-09
    assert calendar.workdays_between(date(2025, 10, 9), date(2025, 9, 26)) == -4


def test_years_without_an_official_calendar_are_provisional(calendar: WorkCalendar) -> None:
    coverage = {entry.year: entry for entry in calendar.coverage()}
    assert coverage[2026].source == PACKAGE_SOURCE
    assert not coverage[2026].provisional
    assert coverage[2027].provisional
    assert coverage[2027].source == PROVISIONAL_SOURCE
    assert calendar.is_provisional(date(2027, 3, 1))
    assert not calendar.is_workday(date(2027, 1, 1))  # estimated 元旦
    assert calendar.note(date(2027, 1, 1)) == "元旦（预计）"
    assert calendar.provisional_years(2026, 2028) == [2027, 2028]


def test_calendar_files_cover_their_year_and_their_new_year_lead_in() -> None:
    file_2027 = FakeCalendarFile(
        year=2027,
        holidays=[date(2027, 1, 1), date(2027, 1, 2), date(2027, 1, 3), date(2027, 2, 5), date(2027, 2, 8)],
        workdays=[date(2026, 12, 27), date(2027, 2, 20)],  # a Sunday in 2026 made a working day by the 2027 notice
    )
    calendar = load_work_calendar([file_2027])
    entry = {e.year: e for e in calendar.coverage()}[2027]
    assert not entry.provisional
    assert "2027.yaml" in entry.source
    assert not calendar.is_provisional(date(2027, 6, 1))
    assert calendar.is_workday(date(2027, 2, 20))  # a Saturday
    assert not calendar.is_workday(date(2027, 2, 8))  # a Monday
    # Days the file does not list keep the weekday rule, even where the estimate had a holiday.
    assert calendar.is_workday(date(2027, 2, 9))
    assert calendar.is_workday(date(2026, 12, 27))
    assert calendar.is_provisional(date(2028, 1, 3))


# -- helpers against brute force -----------------------------------------------------------------------------------

days = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31))


def brute_next(calendar: WorkCalendar, day: date) -> date:
    day += timedelta(days=1)
    while not calendar.is_workday(day):
        day += timedelta(days=1)
    return day


@settings(max_examples=300, deadline=None)
@given(day=days, count=st.integers(-30, 30))
def test_scalar_helpers_agree_with_walking_the_calendar(day: date, count: int) -> None:
    calendar = default_work_calendar()
    assert calendar.next_workday(day) == brute_next(calendar, day)
    rolled = day if calendar.is_workday(day) else brute_next(calendar, day)
    assert calendar.roll_forward(day) == rolled
    walked, remaining = day, abs(count)
    step = timedelta(days=1 if count > 0 else -1)
    while remaining:
        walked += step
        remaining -= calendar.is_workday(walked)
    assert calendar.add_workdays(day, count) == walked
    other = day + timedelta(days=count * 3)
    counted = sum(calendar.is_workday(d) for d in (day + timedelta(days=i) for i in range(1, (other - day).days + 1)))
    if other >= day:
        assert calendar.workdays_between(day, other) == counted


def test_dates_outside_the_calendar_are_refused(calendar: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="outside the calendar"):
        calendar.is_workday(date(2003, 12, 31))
    with pytest.raises(ValueError, match="leave the calendar"):
        calendar.add_workdays(calendar.last_date, 10)
