"""The notice parser against chinese-calendar: published notices 2024–2026 exactly, older wordings, bad notices."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from chinese_calendar.constants import holidays as package_holidays
from chinese_calendar.constants import workdays as package_workdays
from typer.testing import CliRunner

from cli.main import app
from config.calendar_files import CalendarFile, dump_calendar_file, load_calendar_file
from tasks.clocks.holiday_notice import NoticeError, parse_notice, read_notice

REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = Path(__file__).resolve().parent / "fixtures" / "notices" / "published"
HISTORICAL = REPO_ROOT / "tests" / "fixtures" / "notices"

# Dates chinese-calendar holds from notices other than the yearly one (the parser reads the yearly notice only).
LATER_NOTICES: dict[int, set[date]] = {
    # 国务院关于中国人民抗日战争暨世界反法西斯战争胜利70周年纪念日调休放假的通知: 9月3日、4日 off, 9月6日 worked.
    2015: {date(2015, 9, 3), date(2015, 9, 4), date(2015, 9, 6)},
    # 调整2019年劳动节放假安排 (2019-03-22): 5月1日至4日 off, 4月28日、5月5日 worked.
    2019: {date(2019, 4, 28), date(2019, 5, 2), date(2019, 5, 3), date(2019, 5, 4), date(2019, 5, 5)},
    # 延长2020年春节假期至2月2日 (2020-01-27): 1月31日 to 2月2日 off; Saturday 2月1日 no longer worked.
    2020: {date(2020, 1, 31), date(2020, 2, 1), date(2020, 2, 2)},
}
# Where the package's transcription lists a different set of weekend days for the same wording. Weekend days are rest
# either way, so working days are identical; the parser applies one reading to every year (the one of 2024–2026).
PACKAGE_WEEKEND_READINGS: dict[int, set[date]] = {
    2011: {date(2011, 6, 5)},  # 6月4日至6日放假公休: the package lists the 4th and 6th only
    2012: {date(2012, 6, 23)},  # 6月22日至24日放假公休: likewise
    2014: {date(2014, 4, 6)},  # 4月5日放假，4月7日补休: the package adds the Sunday between
    # 4月5日 / 6月7日 / 9月13日放假，与周末连休: the package adds the weekend (2016–2018 and 2024 it does not)
    2019: {
        date(2019, 4, 6),
        date(2019, 4, 7),
        date(2019, 6, 8),
        date(2019, 6, 9),
        date(2019, 9, 14),
        date(2019, 9, 15),
    },
}


def package_dates(dates: dict[date, str], year: int) -> set[date]:
    """The package's dates for a year. Late December belongs to the next year's notice (元旦), so it is left out."""
    return {d for d in dates if date(year, 1, 1) <= d <= date(year, 12, 24)}


def official_workday(calendar: CalendarFile, day: date) -> bool:
    """What a calendar file means, day by day (the reference reading of the file format)."""
    if day in calendar.workdays:
        return True
    return day.weekday() < 5 and day not in calendar.holidays


def days_of(calendar: CalendarFile) -> list[date]:
    first = min([date(calendar.year, 1, 1), *calendar.holidays, *calendar.workdays])
    return [first + timedelta(days=n) for n in range((date(calendar.year, 12, 24) - first).days + 1)]


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_published_notices_reproduce_chinese_calendar_exactly(year: int) -> None:
    calendar = read_notice(PUBLISHED / f"{year}.txt").calendar
    assert calendar.year == year
    assert set(calendar.holidays) == package_dates(package_holidays, year)
    assert set(calendar.workdays) == package_dates(package_workdays, year)
    assert all(d.year == year for d in [*calendar.holidays, *calendar.workdays])
    assert [official_workday(calendar, d) for d in days_of(calendar)] == [
        chinese_calendar.is_workday(d) for d in days_of(calendar)
    ]


def test_published_sources_are_cited() -> None:
    sources = {year: read_notice(PUBLISHED / f"{year}.txt").calendar.source for year in (2024, 2025, 2026)}
    assert sources[2024].title == "国务院办公厅关于2024年部分节假日安排的通知"
    assert (sources[2024].document_number, sources[2024].issued) == ("国办发明电〔2023〕7号", date(2023, 10, 25))
    assert (sources[2025].document_number, sources[2025].issued) == ("国办发明电〔2024〕12号", date(2024, 11, 12))
    assert (sources[2026].document_number, sources[2026].issued) == (None, date(2025, 11, 4))


def test_clauses_carry_their_festivals_and_dates() -> None:
    clauses = read_notice(PUBLISHED / "2025.txt").clauses
    assert [clause.festivals for clause in clauses] == [
        ("元旦",),
        ("春节",),
        ("清明节",),
        ("劳动节",),
        ("端午节",),
        ("国庆节", "中秋节"),
    ]
    national_day = clauses[5]
    assert national_day.holidays == tuple(date(2025, 10, d) for d in range(1, 9))
    assert national_day.workdays == (date(2025, 9, 28), date(2025, 10, 11))
    assert clauses[0].holidays == (date(2025, 1, 1),) and clauses[0].workdays == ()


@pytest.mark.parametrize("year", range(2010, 2024))
def test_older_wordings_give_chinese_calendar_working_days(year: int) -> None:
    calendar = read_notice(HISTORICAL / f"{year}.txt").calendar
    later = LATER_NOTICES.get(year, set())
    weekend_readings = PACKAGE_WEEKEND_READINGS.get(year, set())
    assert all(d.weekday() >= 5 for d in weekend_readings)
    holidays = {d for d in calendar.holidays if d.year == year}
    workdays = {d for d in calendar.workdays if d.year == year}
    expected_holidays = package_dates(package_holidays, year)
    expected_workdays = package_dates(package_workdays, year)
    assert holidays ^ expected_holidays == weekend_readings | (later & (holidays | expected_holidays))
    assert workdays ^ expected_workdays == later & (workdays | expected_workdays)
    for day in days_of(calendar):
        if day not in later:
            assert official_workday(calendar, day) == chinese_calendar.is_workday(day), day


@pytest.mark.parametrize(
    ("year", "holidays", "workdays"),
    [
        (2023, [date(2022, 12, 31)], []),  # 2022年12月31日至2023年1月2日
        (2019, [date(2018, 12, 30), date(2018, 12, 31)], [date(2018, 12, 29)]),  # 12月30日至1月1日; 12月29日上班
        (2012, [], [date(2011, 12, 31)]),  # 2011年12月31日（星期六）上班
    ],
)
def test_new_year_spans_reach_into_the_previous_december(year: int, holidays: list[date], workdays: list[date]) -> None:
    calendar = read_notice(HISTORICAL / f"{year}.txt").calendar
    assert [d for d in calendar.holidays if d.year < year] == holidays
    assert [d for d in calendar.workdays if d.year < year] == workdays
    assert all(d in package_holidays for d in holidays) and all(d in package_workdays for d in workdays)


def test_make_up_rest_days_and_weekend_bridges() -> None:
    assert set(read_notice(HISTORICAL / "2015.txt").calendar.holidays) >= {
        date(2015, 4, 5),
        date(2015, 4, 6),
        date(2015, 6, 20),
        date(2015, 6, 22),
    }
    assert date(2015, 6, 21) not in read_notice(HISTORICAL / "2015.txt").calendar.holidays
    calendar_2024 = read_notice(PUBLISHED / "2024.txt").calendar
    assert date(2024, 6, 10) in calendar_2024.holidays and date(2024, 6, 8) not in calendar_2024.holidays
    assert read_notice(HISTORICAL / "2010.txt").calendar.workdays[:2] == [date(2010, 2, 20), date(2010, 2, 21)]


# Wording variants of the same notice must give the same calendar.


def published(year: int) -> str:
    return (PUBLISHED / f"{year}.txt").read_text(encoding="utf-8")


def half_width(text: str) -> str:
    return text.translate(str.maketrans({"（": "(", "）": ")", "：": ":", "，": ",", "。": "."}))


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(half_width, id="half-width punctuation"),
        pytest.param(
            lambda text: unicodedata.normalize("NFKC", text).translate(
                str.maketrans("0123456789", "０１２３４５６７８９")
            ),
            id="full-width digits",
        ),
        pytest.param(lambda text: text.replace("（周", "（星期"), id="星期 for 周"),
        pytest.param(lambda text: text.replace("\n", ""), id="pasted as one line"),
        pytest.param(lambda text: text.replace("\n\n", "\n").replace("：", "： "), id="no blank lines, spaces"),
        pytest.param(lambda text: text.replace("至", "—"), id="dash ranges"),
        pytest.param(lambda text: text.replace("共8天", "共八天"), id="Chinese numeral day count"),
        pytest.param(
            lambda text: text.replace("、2月8日（周六）上班", "和2月8日（周六）上班"), id="和 between workdays"
        ),
        pytest.param(
            lambda text: (
                "索 引 号：000014349/2024-00123\n成文日期：2024年11月12日\n发文字号：国办发明电〔2024〕12号\n" + text
            ),
            id="gov.cn page with its information table",
        ),
    ],
)
def test_wording_variants_give_the_same_calendar(variant: Callable[[str], str]) -> None:
    assert parse_notice(variant(published(2025))).calendar == parse_notice(published(2025)).calendar


def test_encodings(tmp_path: Path) -> None:
    expected = read_notice(PUBLISHED / "2026.txt").calendar
    for name, data in {
        "gb18030.txt": published(2026).encode("gb18030"),
        "bom.txt": published(2026).encode("utf-8-sig"),
    }.items():
        (tmp_path / name).write_bytes(data)
        assert read_notice(tmp_path / name).calendar == expected


def test_new_year_span_with_explicit_years_equals_the_short_form() -> None:
    short = (HISTORICAL / "2019.txt").read_text(encoding="utf-8")
    explicit = short.replace(
        "一、元旦：12月30日至1月1日放假，共3天。 12月29日（星期六）上班。",
        "一、元旦：2018年12月30日至2019年1月1日放假调休，共3天。2018年12月29日（星期六）上班。",
    )
    assert explicit != short
    assert parse_notice(explicit).calendar == parse_notice(short).calendar


def test_advisory_sentences_are_not_arrangements() -> None:
    # 2024: 鼓励各单位…安排职工在除夕（2月9日）休息 — encouraged, not a holiday.
    assert date(2024, 2, 9) not in read_notice(PUBLISHED / "2024.txt").calendar.holidays


# A notice that cannot be read exactly is rejected, naming the clause.


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("1月4日（周日）上班", "1月4日（周一）上班", ["一、元旦", "周一", "2026-01-04 is a 周日"]),
        ("放假调休，共9天", "放假调休，共8天", ["二、春节", "8天", "9 days"]),
        ("5月9日（周六）上班", "5月8日上班", ["四、劳动节", "2026-05-08 is a 周五"]),
        ("9月20日（周日）、10月10日", "9月27日（周日）、10月10日", ["2026-09-27", "clause 六", "clause 七"]),
        ("10月10日（周六）上班", "10月3日（周六）、10月10日（周六）上班", ["2026-10-03", "clause 七"]),
        ("三、清明节：4月4日（周六）至6日（周一）放假，共3天。", "", ["numbered 一, 二, 四"]),
        (
            "七、国庆节：10月1日（周四）至7日（周三）放假调休，共7天。9月20日（周日）、10月10日（周六）上班。",
            "",
            ["no clause for 国庆节"],
        ),
        ("五、端午节：", "五、植树节：", ["unknown festival 植树节"]),
        ("6月19日（周五）至21日（周日）放假，共3天", "6月19日（周五）放假，另行通知", ["五、端午节", "「另行通知」"]),
        ("6月19日（周五）至21日（周日）放假，共3天", "6月17日放假，与周末连休", ["五、端午节", "与周末连休"]),
        ("6月19日（周五）至21日（周日）放假，共3天", "6月20日放假，6月21日补休", ["补休 day 2026-06-21"]),
        ("6月19日（周五）至21日（周日）放假，共3天", "6月19日放假，6月24日补休", ["not one rest period"]),
        (
            "9月25日（周五）至27日（周日）放假，共3天",
            "9月25日放假1天，不调休。9月26日（周六）上班",
            ["六、中秋节", "不调休"],
        ),
        ("2月14日（周六）、2月28日（周六）上班", "2月14日（周六）、2月30日上班", ["no such date: 2026年2月30日"]),
        ("2月14日（周六）、2月28日（周六）上班", "2月14日（周六）、28日（新年）上班", ["remark 「新年」"]),
        ("10月1日（周四）至7日（周三）", "2025年10月1日至7日", ["2025-10-01 is outside the year 2026"]),
        (
            "1月1日（周四）至3日（周六）放假调休，共3天。1月4日（周日）上班。",
            "1月1日至3日放假，共3天。其中，1月1日（星期四）为法定节假日，1月3日（星期六）为公休日。",
            ["一、元旦", "cannot read 「其中"],
        ),
    ],
)
def test_bad_notices_are_rejected_naming_the_clause(old: str, new: str, expected: list[str]) -> None:
    text = published(2026)
    assert old in text
    with pytest.raises(NoticeError) as error:
        parse_notice(text.replace(old, new))
    for fragment in expected:
        assert fragment in str(error.value)


def test_a_notice_without_title_or_signature_is_rejected() -> None:
    with pytest.raises(NoticeError, match="title"):
        parse_notice(published(2026).replace("国务院办公厅关于2026年部分节假日安排的通知", "关于放假的通知"))
    with pytest.raises(NoticeError, match="date of issue"):
        parse_notice(published(2026).replace("2025年11月4日", ""))
    with pytest.raises(NoticeError, match="成文日期"):
        parse_notice("成文日期：2025年11月5日\n" + published(2026))
    with pytest.raises(NoticeError, match="no numbered clauses"):
        parse_notice("国务院办公厅关于2026年部分节假日安排的通知\n国务院办公厅\n2025年11月4日\n")


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "2026.txt"
    bad.write_text(published(2026).replace("共9天", "共10天"), encoding="utf-8")
    with pytest.raises(NoticeError, match=f"^{bad}: clause 二、春节"):
        read_notice(bad)
    with pytest.raises(NoticeError, match="cannot read"):
        read_notice(tmp_path / "missing.txt")


# `permitwatch calendar import`: check, show the changes, write config/calendar/YYYY.yaml; nothing written on error.

runner = CliRunner()
INVENTED_2027 = HISTORICAL / "invented-2027.txt"  # made-up dates for a year the package lacks; see its README


def run_import(config_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--config", str(config_dir), "calendar", "import", *args])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines; compare words


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    return directory


def test_import_writes_the_year_and_shows_changes_against_the_provisional_calendar(config_dir: Path) -> None:
    code, output = run_import(config_dir, str(INVENTED_2027))
    assert code == 0, output
    target = config_dir / "calendar" / "2027.yaml"
    assert load_calendar_file(target) == read_notice(INVENTED_2027).calendar
    assert "│ 春节 │ 02-05 周五 – 02-12 周五 │ 8 │ 02-20 周六 │" in output
    assert "Against the current calendar for 2027 (PROVISIONAL" in output
    # The holidays package estimated 2月5日至10日 and no make-up days; the notice says 5日至12日 and four.
    assert (
        "holidays added (9): 2027-01-02 周六 – 2027-01-03 周日, 2027-02-11 周四 – 2027-02-12 周五, "
        "2027-04-03 周六 – 2027-04-04 周日, 2027-05-05 周三, 2027-10-06 周三 – 2027-10-07 周四 "
        "make-up workdays added (4): 2027-02-20 周六, 2027-04-25 周日, 2027-09-26 周日, 2027-10-09 周六 "
        "9 days change between working day and rest day: 2027-02-11 周四 – 2027-02-12 周五, 2027-02-20 周六, "
        "2027-04-25 周日, 2027-05-05 周三, 2027-09-26 周日, 2027-10-06 周三 – 2027-10-07 周四, 2027-10-09 周六"
    ) in output
    assert "holidays removed" not in output and "make-up workdays removed" not in output
    assert f"Wrote {target}." in output


def test_reimporting_the_same_notice_changes_nothing(config_dir: Path) -> None:
    assert run_import(config_dir, str(INVENTED_2027))[0] == 0
    code, output = run_import(config_dir, str(INVENTED_2027))
    assert code == 0, output
    assert "Against the current calendar for 2027 (official (file) — config/calendar/2027.yaml" in output
    assert "no change" in output


def test_a_published_notice_for_a_package_year_matches_the_package(config_dir: Path) -> None:
    for year in (2024, 2025, 2026):
        code, output = run_import(config_dir, str(PUBLISHED / f"{year}.txt"), "--dry-run")
        assert code == 0, output
        assert f"Against the current calendar for {year} (official (chinese-calendar)" in output
        assert "no change" in output
    assert not (config_dir / "calendar").exists()


def test_import_against_an_older_file_lists_dates_removed(config_dir: Path) -> None:
    older = read_notice(INVENTED_2027).calendar
    amended = CalendarFile.model_validate(
        {**older.model_dump(), "holidays": [*older.holidays, date(2027, 10, 8)], "workdays": older.workdays[:-1]}
    )
    dump_calendar_file(amended, config_dir / "calendar" / "2027.yaml")
    code, output = run_import(config_dir, str(INVENTED_2027))
    assert code == 0, output
    assert "holidays removed (1): 2027-10-08 周五" in output
    assert "make-up workdays added (1): 2027-10-09 周六" in output
    assert "2 days change between working day and rest day: 2027-10-08 周五 – 2027-10-09 周六" in output
    assert load_calendar_file(config_dir / "calendar" / "2027.yaml") == older


def test_dry_run_and_output_option(config_dir: Path, tmp_path: Path) -> None:
    code, output = run_import(config_dir, str(INVENTED_2027), "--dry-run")
    assert code == 0 and "Dry run" in output
    assert not (config_dir / "calendar").exists()
    elsewhere = tmp_path / "review" / "2027.yaml"
    assert run_import(config_dir, str(INVENTED_2027), "-o", str(elsewhere))[0] == 0
    assert load_calendar_file(elsewhere).year == 2027
    code, output = run_import(config_dir, str(INVENTED_2027), "-o", str(tmp_path / "calendar-2027.yaml"))
    assert code == 2 and "must be named 2027.yaml" in output


def test_a_bad_notice_writes_nothing(config_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notice.txt"
    bad.write_text(INVENTED_2027.read_text(encoding="utf-8").replace("共8天", "共9天"), encoding="utf-8")
    code, output = run_import(config_dir, str(bad))
    assert code == 2
    assert "clause 二、春节" in output and "announces 9天 but 2027-02-05 to 2027-02-12 is 8 days" in output
    assert "Nothing was written." in output
    assert not (config_dir / "calendar").exists()


def test_an_invalid_existing_file_for_another_year_stops_the_import(config_dir: Path) -> None:
    broken = config_dir / "calendar" / "2028.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text("year: 2028\n", encoding="utf-8")
    code, output = run_import(config_dir, str(INVENTED_2027))
    assert code == 2 and "fix or remove the invalid calendar file first" in output
    assert not (config_dir / "calendar" / "2027.yaml").exists()
