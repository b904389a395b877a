"""Read a State Council holiday notice (国务院办公厅关于YYYY年部分节假日安排的通知) into a calendar file.

The input is the notice's full text as published (gov.cn page or the document), UTF-8 or GB18030. The numbered
clauses (一、元旦：…) are read sentence by sentence; every sentence that carries a date must be understood, or the whole
notice is rejected with an error naming the clause. Nothing is inferred from custom: a date not stated is not added.

What a clause yields (the same reading chinese-calendar's data uses for 2024–2026):
- `A至B放假…` (also 放假调休, 放假公休, 调休放假; 至 or a dash): every date from A to B, weekend dates included.
- `A放假` with `与周末连休`, `不调休`, `共1天` or `放假1天`: the named date only (the weekend is rest anyway).
- `A放假，B补休`: A and B.
- `B、C上班`: make-up working days; each must fall on a weekend.

Checks: an announced `共N天` / `放假N天` equals the rest period (from the first to the last date announced in the
sentence, extended over the adjacent weekend for 与周末连休); a weekday remark `（星期六）`/`（周六）` matches the date;
a 补休 day is a weekday; a 不调休 clause lists no 上班 day; no date is both holiday and workday or announced twice;
clauses are numbered 一、二、三… without gaps; each festival has one clause; the festivals in the introduction
(现将YYYY年元旦、春节…的具体安排通知如下) are exactly those the clauses cover.

Years: a date without a year belongs to the notice's year, except December dates in the 元旦 clause, which belong to the
year before (12月30日至1月1日 in the 2019 notice; the make-up Saturday 12月29日). A range end without a year follows its
start, rolling into the next year when it would fall before it. A date written without a month (2月20日、21日) takes the
month and year of the date before it.

The older wording of 2004–2009 (其中…为法定节假日…公休日调至…) describes make-up days only implicitly and is rejected.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
from pydantic import ValidationError

from config.calendar_files import CalendarFile, NoticeSource, first_allowed_date
from tasks.clocks.calendar import WorkCalendar

_FESTIVALS: dict[str, str] = {
    "元旦": "元旦",
    "春节": "春节",
    "清明": "清明节",
    "清明节": "清明节",
    "劳动节": "劳动节",
    "五一": "劳动节",
    "五一国际劳动节": "劳动节",
    "国际劳动节": "劳动节",
    "端午": "端午节",
    "端午节": "端午节",
    "中秋": "中秋节",
    "中秋节": "中秋节",
    "国庆": "国庆节",
    "国庆节": "国庆节",
    "十一": "国庆节",
}
NEW_YEAR = "元旦"
_NUMERALS = "一二三四五六七八九十"
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_WEEKDAY_NAMES = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")

_TITLE = re.compile(r"国务院办公厅关于(\d{4})年部分节假日安排的通知")
_DOCUMENT_NUMBER = re.compile(r"国办发明电\s*[〔\[(（［]\s*(\d{4})\s*[〕\])）］]\s*(\d+)\s*号")
_DATE_LINE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")
_SIGNED = re.compile(r"国务院办公厅\s*(\d{4})年(\d{1,2})月(\d{1,2})日")
_ISSUED_FIELD = re.compile(r"成文日期\s*[:：]\s*(\d{4})年(\d{1,2})月(\d{1,2})日")
_INTRODUCTION = re.compile(r"现将(\d{4})年(.+?)放假调休日期的?具体安排通知如下")
_CLAUSE_HEAD = re.compile(rf"^([{_NUMERALS}]{{1,3}})、\s*([^:：]{{1,24}}?)\s*[:：](.*)$")
_CLAUSE_BREAK = re.compile(rf"([。.])[ \t　]*(?=[{_NUMERALS}]{{1,3}}、)")
_SIGNATURE_BREAK = re.compile(r"\s*(国务院办公厅)\s*(?=[0-9０-９]{4}年)")  # a signature glued to the text
_DATE = re.compile(r"(?:(?P<year>\d{4})年)?(?:(?P<month>\d{1,2})月)?(?P<day>\d{1,2})日(?:\((?P<note>[^()]*)\))?")
_RANGE = re.compile(r"至|[—–\-~〜]+")
_HOLIDAY = re.compile(
    r"(?P<span>.+?)(?:放假调休|放假公休|调休放假|放假)(?:(?P<days>\d+|[一二三四五六七八九十]+)天)?(?P<rest>(?:,.*)?)"
)
_WORKDAY_SEPARATOR = re.compile(r"[、,和及]")
_HAS_DATE = re.compile(r"\d+[月日]")
_DECLARED_DAYS = re.compile(r"共(\d+|[一二三四五六七八九十]+)天")
_ADVISORY = ("鼓励", "提倡", "倡导")  # encouragement, not an arrangement (e.g. 鼓励…安排职工在除夕（2月9日）休息)
_SIGNATURE = "国务院办公厅"


class NoticeError(ValueError):
    """The notice cannot be read exactly. The message names the clause; nothing is written."""


@dataclass(frozen=True)
class NoticeClause:
    """One numbered clause (一、元旦：…) and what it announces."""

    number: int
    festivals: tuple[str, ...]
    text: str
    holidays: tuple[date, ...]
    workdays: tuple[date, ...]


@dataclass(frozen=True)
class ParsedNotice:
    calendar: CalendarFile
    clauses: tuple[NoticeClause, ...]


@dataclass(frozen=True)
class CalendarChanges:
    """What importing a notice changes, date by date, against the calendar in use before it."""

    holidays_added: list[date]
    holidays_removed: list[date]
    workdays_added: list[date]
    workdays_removed: list[date]
    status_changed: list[date]  # days that turn from working day to rest day or back: the ones clocks feel

    @property
    def empty(self) -> bool:
        return not (
            self.holidays_added
            or self.holidays_removed
            or self.workdays_added
            or self.workdays_removed
            or self.status_changed
        )


def notice_window(calendar: CalendarFile) -> tuple[date, date]:
    """The days a calendar file speaks for: its year, and the previous December's New Year days it lists."""
    return min([date(calendar.year, 1, 1), *calendar.holidays, *calendar.workdays]), date(calendar.year, 12, 31)


def calendar_changes(before: WorkCalendar, after: WorkCalendar, first: date, last: date) -> CalendarChanges:
    """Holidays (named rest days) and make-up workdays (worked weekend days) added or removed in first..last."""

    def marks(calendar: WorkCalendar) -> pl.DataFrame:
        return calendar.days(first, last).select(
            "date",
            "is_workday",
            holiday=~pl.col("is_workday") & pl.col("note").is_not_null(),
            makeup=pl.col("is_workday") & (pl.col("date").dt.weekday() >= 6),
        )

    joined = marks(before).join(marks(after), on="date", suffix="_after").sort("date")

    def dates(condition: pl.Expr) -> list[date]:
        return joined.filter(condition)["date"].to_list()

    return CalendarChanges(
        holidays_added=dates(pl.col("holiday_after") & ~pl.col("holiday")),
        holidays_removed=dates(pl.col("holiday") & ~pl.col("holiday_after")),
        workdays_added=dates(pl.col("makeup_after") & ~pl.col("makeup")),
        workdays_removed=dates(pl.col("makeup") & ~pl.col("makeup_after")),
        status_changed=dates(pl.col("is_workday") != pl.col("is_workday_after")),
    )


def read_notice(path: Path) -> ParsedNotice:
    """Parse a notice file (UTF-8 with or without BOM, else GB18030). Errors are prefixed with the file name."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NoticeError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gb18030")
        except UnicodeDecodeError:
            raise NoticeError(f"{path}: neither UTF-8 nor GB18030 text") from None
    try:
        return parse_notice(text)
    except NoticeError as exc:
        raise NoticeError(f"{path}: {exc}") from None


def parse_notice(text: str) -> ParsedNotice:
    """The calendar file a notice announces, with its clauses. Raises NoticeError on anything it cannot read."""
    title_match = _TITLE.search(re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)))
    if title_match is None:
        raise NoticeError("not a holiday notice: the title 国务院办公厅关于YYYY年部分节假日安排的通知 was not found")
    year = int(title_match.group(1))
    source = NoticeSource(
        title=f"国务院办公厅关于{year}年部分节假日安排的通知",
        document_number=_document_number(text),
        issued=_issued(text),
    )
    lines = _SIGNATURE_BREAK.sub(r"\n\1\n", _CLAUSE_BREAK.sub(r"\1\n", text)).splitlines()
    clauses = _read_clauses(lines, year)
    _check_introduction(text, year, clauses)
    holidays = _unique_across_clauses(clauses, "holidays")
    workdays = _unique_across_clauses(clauses, "workdays")
    _check_disjoint(clauses)
    try:
        calendar = CalendarFile(year=year, source=source, holidays=sorted(holidays), workdays=sorted(workdays))
    except ValidationError as exc:
        raise NoticeError("; ".join(error["msg"] for error in exc.errors())) from None
    return ParsedNotice(calendar=calendar, clauses=tuple(clauses))


def _document_number(text: str) -> str | None:
    match = _DOCUMENT_NUMBER.search(unicodedata.normalize("NFKC", text))
    return f"国办发明电〔{match.group(1)}〕{match.group(2)}号" if match else None


def _issued(text: str) -> date:
    """The date under the signature 国务院办公厅, cross-checked with a 成文日期 field when the page carries one."""
    normal = unicodedata.normalize("NFKC", text)
    signed = _SIGNED.findall(normal)
    if not signed:
        signed = [match.groups() for line in normal.splitlines() if (match := _DATE_LINE.fullmatch(line.strip()))]
    found = signed[-1:] + _ISSUED_FIELD.findall(normal)[:1]
    candidates = [_to_date(*parts) for parts in found]
    if not candidates:
        raise NoticeError("date of issue not found: keep the signature block (国务院办公厅 / YYYY年M月D日) in the text")
    if len(set(candidates)) > 1:
        raise NoticeError(f"date of issue unclear: signed {candidates[0]} but 成文日期 {candidates[1]}")
    return candidates[0]


def _to_date(year: str, month: str, day: str) -> date:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise NoticeError(f"no such date: {year}年{month}月{day}日") from None


def _read_clauses(lines: list[str], year: int) -> list[NoticeClause]:
    """Each numbered clause with the lines that continue it, up to the next clause or the signature."""
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        stripped = line.strip()
        if stripped == _SIGNATURE and blocks:
            break
        if _CLAUSE_HEAD.match(unicodedata.normalize("NFKC", stripped)):
            blocks.append((stripped, []))
        elif blocks and stripped:
            blocks[-1][1].append(stripped)
    if not blocks:
        raise NoticeError("no numbered clauses (一、元旦：…) found")
    clauses = [_read_clause(head, continuation, year) for head, continuation in blocks]
    covered = [festival for clause in clauses for festival in clause.festivals]
    repeated = sorted({festival for festival in covered if covered.count(festival) > 1})
    if repeated:
        raise NoticeError(f"{', '.join(repeated)} arranged by more than one clause")
    numbers = [clause.number for clause in clauses]
    if numbers != list(range(1, len(clauses) + 1)):
        raise NoticeError(f"clauses are numbered {', '.join(map(_numeral, numbers))}: one is missing or repeated")
    return clauses


def _read_clause(head: str, continuation: list[str], year: int) -> NoticeClause:
    published = "".join([head, *continuation])
    normal = re.sub(r"\s+", "", unicodedata.normalize("NFKC", published))
    match = _CLAUSE_HEAD.match(normal)
    assert match is not None  # the head line matched before normalising whitespace away
    label = f"clause {published[:60]}{'…' if len(published) > 60 else ''}"
    names = tuple(part.strip("“”\"'") for part in re.split(r"[、,]", match.group(2)))
    unknown = [name for name in names if name not in _FESTIVALS]
    if unknown:
        raise NoticeError(f"{label}: unknown festival {', '.join(unknown)}")
    festivals = tuple(_FESTIVALS[name] for name in names)
    reader = _ClauseReader(year=year, new_year=NEW_YEAR in festivals, label=label)
    for sentence in re.split(r"[。.;]", match.group(3)):
        reader.read_sentence(sentence)
    if not reader.holidays:
        raise NoticeError(f"{label}: announces no holiday date")
    if reader.no_adjustment and reader.workdays:
        raise NoticeError(f"{label}: says 不调休 but lists make-up workdays")
    return NoticeClause(
        number=_number(match.group(1)),
        festivals=festivals,
        text=published,
        holidays=tuple(sorted(reader.holidays)),
        workdays=tuple(sorted(reader.workdays)),
    )


class _ClauseReader:
    """Reads the sentences of one clause, resolving each written date against the dates before it."""

    def __init__(self, *, year: int, new_year: bool, label: str) -> None:
        self.year = year
        self.new_year = new_year
        self.label = label
        self.earliest = first_allowed_date(year) if new_year else date(year, 1, 1)
        self.holidays: set[date] = set()
        self.workdays: set[date] = set()
        self.no_adjustment = False
        self._previous: date | None = None

    def fail(self, problem: str) -> NoticeError:
        return NoticeError(f"{self.label}: {problem}")

    def read_sentence(self, sentence: str) -> None:
        if not sentence:
            return
        if sentence.endswith("上班"):
            self._read_workdays(sentence)
        elif "放假" in sentence:
            self._read_holidays(sentence)
        elif sentence.startswith(_ADVISORY) or not _HAS_DATE.search(sentence):
            return
        else:
            raise self.fail(f"cannot read 「{sentence}」")

    def _read_workdays(self, sentence: str) -> None:
        for item in _WORKDAY_SEPARATOR.split(sentence[: -len("上班")]):
            for day in self._span(item, sentence):
                if day.weekday() < 5:
                    raise self.fail(f"make-up workday {day} is a {_WEEKDAY_NAMES[day.weekday()]}, not a weekend day")
                if day in self.workdays:
                    raise self.fail(f"make-up workday {day} is listed twice")
                self.workdays.add(day)

    def _read_holidays(self, sentence: str) -> None:
        match = _HOLIDAY.fullmatch(sentence)
        if match is None:
            raise self.fail(f"cannot read 「{sentence}」")
        announced = self._span(match.group("span"), sentence)
        rest_period = list(announced)
        declared = [match.group("days")] if match.group("days") else []
        beside_weekend = False
        for part in filter(None, match.group("rest").split(",")):
            if part == "与周末连休":
                beside_weekend = True
            elif part == "不调休":
                self.no_adjustment = True
            elif days := _DECLARED_DAYS.fullmatch(part):
                declared.append(days.group(1))
            elif part.endswith("补休"):
                for day in self._span(part[: -len("补休")], sentence):
                    if day.weekday() >= 5:
                        raise self.fail(f"补休 day {day} is a {_WEEKDAY_NAMES[day.weekday()]}: it must be a weekday")
                    rest_period.append(day)
            else:
                raise self.fail(f"cannot read 「{part}」 in 「{sentence}」")
        first, last = min(rest_period), max(rest_period)
        gaps = [d for d in _days(first, last) if d not in rest_period and d.weekday() < 5]
        if gaps:
            raise self.fail(f"the announced days of 「{sentence}」 are not one rest period: {gaps[0]} is a working day")
        if beside_weekend:
            # The notice names the day off; the Saturday and Sunday beside it are rest anyway but count in 共N天.
            if first.weekday() not in (0, 4) and last.weekday() not in (0, 4):
                raise self.fail(f"与周末连休, but 「{sentence}」 names no Monday or Friday")
            first = first - timedelta(days=2) if first.weekday() == 0 else first
            last = last + timedelta(days=2) if last.weekday() == 4 else last
        span_days = (last - first).days + 1
        for written in declared:
            if _count(written) != span_days:
                raise self.fail(f"announces {written}天 but {first} to {last} is {span_days} days")
        for day in rest_period:
            if day in self.holidays:
                raise self.fail(f"holiday {day} is announced twice")
            self.holidays.add(day)

    def _span(self, text: str, sentence: str) -> list[date]:
        """One date or a range of dates, each date resolved and checked against its remark."""
        ends = _RANGE.split(text)
        if len(ends) > 2 or not all(ends):
            raise self.fail(f"cannot read the dates 「{text}」 in 「{sentence}」")
        start = self._date(ends[0], sentence, after=None)
        if len(ends) == 1:
            return [start]
        end = self._date(ends[1], sentence, after=start)
        if end <= start:
            raise self.fail(f"range 「{text}」 ends before it starts")
        return _days(start, end)

    def _date(self, text: str, sentence: str, *, after: date | None) -> date:
        match = _DATE.fullmatch(text)
        if match is None:
            raise self.fail(f"cannot read the date 「{text}」 in 「{sentence}」")
        month_text, year_text = match.group("month"), match.group("year")
        if month_text is None:
            if self._previous is None:
                raise self.fail(f"「{text}」 has no month and no date before it")
            year, month = self._previous.year, self._previous.month
        else:
            month = int(month_text)
            if year_text is not None:
                year = int(year_text)
            elif after is not None:
                year = after.year if month >= after.month else after.year + 1
            else:
                year = self.year - 1 if self.new_year and month == 12 else self.year
        day = _to_date(str(year), str(month), match.group("day"))
        if not self.earliest <= day <= date(self.year, 12, 31):
            raise self.fail(f"{day} is outside the year {self.year} this notice arranges")
        self._check_remark(day, match.group("note"), text)
        self._previous = day
        return day

    def _check_remark(self, day: date, note: str | None, text: str) -> None:
        for remark in filter(None, re.split(r"[、,]", note or "")):
            weekday = re.fullmatch(r"(?:星期|周|礼拜)([一二三四五六日天])", remark)
            if weekday is not None:
                if _WEEKDAYS[weekday.group(1)] != day.weekday():
                    raise self.fail(f"「{text}」 says {remark} but {day} is a {_WEEKDAY_NAMES[day.weekday()]}")
            elif not remark.startswith(("农历", "即农历")):
                # Lunar remarks (农历除夕, 农历正月初七) are taken as written; the weekday beside them is checked.
                raise self.fail(f"cannot read the remark 「{remark}」 of 「{text}」")


def _check_introduction(text: str, year: int, clauses: list[NoticeClause]) -> None:
    """The introduction lists the festivals arranged; a clause lost in copying shows up here."""
    match = _INTRODUCTION.search(re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)))
    if match is None:
        return
    if int(match.group(1)) != year:
        raise NoticeError(f"the introduction arranges {match.group(1)}, the title {year}")
    names = [name.strip("“”\"'") for name in re.split(r"[、,和及]", match.group(2)) if name]
    unknown = [name for name in names if name not in _FESTIVALS]
    if unknown:
        raise NoticeError(f"the introduction names an unknown festival: {', '.join(unknown)}")
    introduced = {_FESTIVALS[name] for name in names}
    covered = {festival for clause in clauses for festival in clause.festivals}
    if introduced != covered:
        missing = sorted(introduced - covered)
        extra = sorted(covered - introduced)
        raise NoticeError(
            "the clauses do not match the introduction: "
            + "; ".join(
                filter(
                    None,
                    [
                        missing and f"no clause for {', '.join(missing)}",
                        extra and f"not introduced: {', '.join(extra)}",
                    ],
                )
            )
        )


def _unique_across_clauses(clauses: list[NoticeClause], kind: str) -> set[date]:
    seen: dict[date, NoticeClause] = {}
    for clause in clauses:
        for day in getattr(clause, kind):
            if day in seen:
                raise NoticeError(
                    f"{day} is announced by clause {_numeral(seen[day].number)} and {_numeral(clause.number)}"
                )
            seen[day] = clause
    return set(seen)


def _check_disjoint(clauses: list[NoticeClause]) -> None:
    holidays = {day: clause for clause in clauses for day in clause.holidays}
    for clause in clauses:
        for day in clause.workdays:
            if day in holidays:
                raise NoticeError(
                    f"{day} is a holiday in clause {_numeral(holidays[day].number)} "
                    f"and a workday in clause {_numeral(clause.number)}"
                )


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _count(written: str) -> int:
    return int(written) if written.isdigit() else _number(written)


def _number(numeral: str) -> int:
    """一 … 九十九 (clause numbers, 共三天)."""
    if numeral == "十":
        return 10
    tens, _, units = numeral.rpartition("十")
    if "十" in numeral:
        return (_NUMERALS.index(tens) + 1 if tens else 1) * 10 + (_NUMERALS.index(units) + 1 if units else 0)
    return _NUMERALS.index(numeral) + 1


def _numeral(number: int) -> str:
    tens, units = divmod(number, 10)
    return ((_NUMERALS[tens - 1] if tens > 1 else "") + "十" if tens else "") + (_NUMERALS[units - 1] if units else "")
