"""Official calendar files: config/calendar/YYYY.yaml, one per year, each transcribing a State Council holiday notice.

The one calendar-file format of the product. `permitwatch calendar import` writes it (`dump_calendar_file`), the config
bundle reads it (`load_calendar_files`), and the working-day calendar (tasks/clocks/calendar.py) applies it.

Meaning of a file for YEAR:
- `holidays`: every date of every announced holiday span (放假), weekend dates inside a span and 补休 days included.
- `workdays`: every make-up working day (调休上班). Each falls on a Saturday or Sunday.
- Every other date keeps its weekday meaning: Monday–Friday worked, Saturday and Sunday rest.

Dates belong to YEAR, with one exception: the notice for YEAR announces the New Year (元旦) arrangement, which may
begin in the last days of the previous December (the 2023 notice: 2022年12月31日至2023年1月2日; the 2012 notice made
Saturday 2011-12-31 a working day). Such dates, within the last `NEW_YEAR_LEAD_IN_DAYS` days of YEAR-1, are accepted;
they come from the newer notice, so they take precedence over the file (or package data) for YEAR-1.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from datetime import date, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from config.loader import ConfigError, load_model

CALENDAR_SUBDIR = "calendar"
NEW_YEAR_LEAD_IN_DAYS = 7
_FILE_NAME = re.compile(r"^(\d{4})\.yaml$")
_WEEKDAY_NAMES = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


class NoticeSource(BaseModel):
    """The notice a file transcribes: 国务院办公厅关于YYYY年部分节假日安排的通知."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1)
    document_number: str | None = None  # 发文字号, e.g. 国办发明电〔2024〕12号; some published copies omit it
    issued: date  # 成文日期


class CalendarFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    year: int = Field(ge=2000, le=2100)
    source: NoticeSource
    holidays: list[date]
    workdays: list[date]

    @field_validator("holidays", "workdays")
    @classmethod
    def _sorted_and_in_year(cls, dates: list[date], info: ValidationInfo) -> list[date]:
        for earlier, later in itertools.pairwise(dates):
            if later <= earlier:
                raise ValueError(f"dates must be sorted ascending without repeats: {later} comes after {earlier}")
        year = info.data.get("year")
        if year is not None:
            first, last = first_allowed_date(year), date(year, 12, 31)
            outside = [d.isoformat() for d in dates if not first <= d <= last]
            if outside:
                raise ValueError(
                    f"{', '.join(outside)} outside {year} (only {year} and New Year days from {first} are allowed)"
                )
        return dates

    @field_validator("workdays")
    @classmethod
    def _workdays_on_weekends(cls, dates: list[date], info: ValidationInfo) -> list[date]:
        weekdays = [f"{d} ({_WEEKDAY_NAMES[d.weekday()]})" for d in dates if d.weekday() < 5]
        if weekdays:
            raise ValueError(f"a make-up workday (调休上班) must fall on a weekend: {', '.join(weekdays)}")
        both = sorted(set(dates) & set(info.data.get("holidays") or ()))
        if both:
            raise ValueError(f"listed both as holiday and as workday: {', '.join(d.isoformat() for d in both)}")
        return dates

    @model_validator(mode="after")
    def _issued_before_year_ends(self) -> CalendarFile:
        # Notices come out the autumn before; amendments (e.g. 2019's 劳动节, 2020's extended 春节) within the year.
        if self.source.issued.year > self.year:
            raise ValueError(f"source.issued {self.source.issued} is after the year {self.year} it arranges")
        return self


def first_allowed_date(year: int) -> date:
    """The earliest date a file for `year` may list: New Year spans can start in the previous December."""
    return date(year, 1, 1) - timedelta(days=NEW_YEAR_LEAD_IN_DAYS)


def calendar_dir(config_dir: Path) -> Path:
    return config_dir / CALENDAR_SUBDIR


def calendar_file_path(config_dir: Path, year: int) -> Path:
    return calendar_dir(config_dir) / f"{year}.yaml"


def load_calendar_file(path: Path) -> CalendarFile:
    match = _FILE_NAME.match(path.name)
    if match is None:
        raise ConfigError(f"{path}: a calendar file is named YYYY.yaml after the year it arranges")
    calendar = load_model(path, CalendarFile)
    if calendar.year != int(match.group(1)):
        raise ConfigError(f"{path}: field 'year': {calendar.year} does not match the file name {path.name}")
    return calendar


def load_calendar_files(config_dir: Path) -> list[CalendarFile]:
    """Every config/calendar/*.yaml, checked, ordered by year. A missing directory means no files."""
    directory = calendar_dir(config_dir)
    if not directory.is_dir():
        return []
    paths = sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml"})
    problems: list[str] = []
    calendars: list[CalendarFile] = []
    for path in paths:
        try:
            calendars.append(load_calendar_file(path))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return sorted(calendars, key=lambda calendar: calendar.year)


def render_calendar_file(calendar: CalendarFile) -> str:
    """The YAML text: a header citing the notice, then one date per line with its weekday for review."""
    source = calendar.source
    citation = source.title + (f"（{source.document_number}）" if source.document_number else "")
    header = [
        f"# Official calendar for {calendar.year}: {citation}, issued {source.issued.isoformat()}.",
        "# holidays: every date of each announced span, weekend dates and 补休 included;",
        "# workdays: the make-up working days (调休上班).",
        "# Written by `permitwatch calendar import`; edit only to correct a transcription, citing the notice.",
    ]
    body = yaml.safe_dump(
        {"year": calendar.year, "source": source.model_dump(mode="python")},
        allow_unicode=True,
        sort_keys=False,
        default_flow_style=False,
    )
    lines = [*header, body.rstrip("\n")]
    for key, dates in (("holidays", calendar.holidays), ("workdays", calendar.workdays)):
        if not dates:
            lines.append(f"{key}: []")
            continue
        lines.append(f"{key}:")
        lines.extend(f"  - {d.isoformat()}  # {_WEEKDAY_NAMES[d.weekday()]}" for d in dates)
    return "\n".join(lines) + "\n"


def dump_calendar_file(calendar: CalendarFile, path: Path) -> None:
    """Write atomically (temporary file, then rename): a reader never sees half a calendar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(render_calendar_file(calendar))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
