"""config/calendar/YYYY.yaml: the checks on load, the writer, and `permitwatch calendar show` / `check` over them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from config.calendar_files import CalendarFile, dump_calendar_file, load_calendar_file, load_calendar_files
from config.loader import ConfigError
from tasks.clocks.calendar import load_work_calendar
from tasks.clocks.holiday_notice import read_notice

NOTICES = Path(__file__).resolve().parent / "fixtures" / "notices"
PUBLISHED = Path(__file__).resolve().parent / "fixtures" / "notices" / "published"

VALID = {
    "year": 2027,
    "source": {
        "title": "国务院办公厅关于2027年部分节假日安排的通知",
        "document_number": None,
        "issued": date(2026, 11, 20),
    },
    "holidays": [date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 2)],
    "workdays": [date(2027, 1, 9)],
}


def write(directory: Path, name: str, data: dict) -> Path:
    path = directory / "calendar" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def with_changes(**changes: object) -> dict:
    return {**VALID, **changes}


def test_a_valid_file_loads(tmp_path: Path) -> None:
    write(tmp_path, "2027.yaml", VALID)
    [calendar] = load_calendar_files(tmp_path)
    assert calendar.year == 2027
    assert calendar.holidays[0] == date(2026, 12, 31)  # a New Year span may start in the previous December
    assert calendar.source.issued == date(2026, 11, 20)


def test_no_directory_means_no_files(tmp_path: Path) -> None:
    assert load_calendar_files(tmp_path) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            with_changes(holidays=[date(2027, 1, 2), date(2027, 1, 1)]),
            "field 'holidays'.*sorted.*2027-01-01 comes after",
        ),
        (with_changes(holidays=[date(2027, 1, 1), date(2027, 1, 1)]), "field 'holidays'.*without repeats"),
        (with_changes(holidays=[date(2028, 1, 1)]), "field 'holidays'.*2028-01-01 outside 2027"),
        (with_changes(holidays=[date(2026, 12, 20)]), "field 'holidays'.*2026-12-20 outside 2027"),
        (with_changes(workdays=[date(2027, 1, 8)]), "field 'workdays'.*weekend: 2027-01-08 \\(周五\\)"),
        (with_changes(workdays=[date(2027, 1, 2)]), "field 'workdays'.*both as holiday and as workday: 2027-01-02"),
        (with_changes(source={"title": "t", "issued": date(2028, 1, 5)}), "issued 2028-01-05 is after the year 2027"),
        (with_changes(source={"title": "t"}), "field 'source.issued'"),
        (with_changes(year="next"), "field 'year'"),
        ({**VALID, "festivals": []}, "field 'festivals'.*Extra inputs"),
    ],
)
def test_bad_files_fail_at_load_naming_file_and_field(tmp_path: Path, data: dict, expected: str) -> None:
    path = write(tmp_path, "2027.yaml", data)
    with pytest.raises(ConfigError, match=f"{path}: .*{expected}"):
        load_calendar_files(tmp_path)


def test_file_name_must_be_the_year(tmp_path: Path) -> None:
    write(tmp_path, "2028.yaml", VALID)
    with pytest.raises(ConfigError, match=r"2028\.yaml: field 'year': 2027 does not match the file name"):
        load_calendar_files(tmp_path)
    (tmp_path / "calendar" / "2028.yaml").unlink()
    write(tmp_path, "holidays-2027.yaml", VALID)
    with pytest.raises(ConfigError, match=r"holidays-2027\.yaml: a calendar file is named YYYY\.yaml"):
        load_calendar_files(tmp_path)


def test_every_bad_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "2027.yaml", with_changes(workdays=[date(2027, 1, 8)]))
    write(tmp_path, "2028.yaml", VALID)
    with pytest.raises(ConfigError) as error:
        load_calendar_files(tmp_path)
    assert "2027.yaml" in str(error.value) and "2028.yaml" in str(error.value)


def test_written_file_reads_back_and_cites_the_notice(tmp_path: Path) -> None:
    calendar = read_notice(PUBLISHED / "2025.txt").calendar
    path = tmp_path / "calendar" / "2025.yaml"
    dump_calendar_file(calendar, path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(
        "# Official calendar for 2025: 国务院办公厅关于2025年部分节假日安排的通知（国办发明电〔2024〕12号）"
    )
    assert "  - 2025-01-26  # 周日" in text
    assert load_calendar_file(path) == calendar
    assert [p.name for p in path.parent.iterdir()] == ["2025.yaml"]  # no temporary file left behind


def test_a_file_without_make_up_days_round_trips(tmp_path: Path) -> None:
    calendar = CalendarFile.model_validate(with_changes(workdays=[]))
    dump_calendar_file(calendar, tmp_path / "calendar" / "2027.yaml")
    assert load_calendar_files(tmp_path) == [calendar]


# The commands over the files: `permitwatch calendar show YEAR` and `permitwatch calendar check`.

runner = CliRunner()


def run(config_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--config", str(config_dir), "calendar", *args])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines; compare words


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    return directory


def imported(config_dir: Path, notice: Path) -> CalendarFile:
    calendar = read_notice(notice).calendar
    dump_calendar_file(calendar, config_dir / "calendar" / f"{calendar.year}.yaml")
    return calendar


def test_show_a_package_year(config_dir: Path) -> None:
    code, output = run(config_dir, "show", "2026")
    assert code == 0, output
    assert "2026: official (chinese-calendar)" in output
    assert "2026-02-15 周日 │ 2026-02-23 周一 │ 9 │ 春节" in output
    assert "2026-02-28 周六 调休上班（春节）" in output
    assert "Counts: 33 holiday dates (19 on weekdays), 6 make-up workdays, 248 working days, 117 rest days." in output


def test_show_a_provisional_year_then_the_imported_file(config_dir: Path) -> None:
    code, output = run(config_dir, "show", "2027")
    assert code == 0, output
    assert "2027: PROVISIONAL" in output and "（预计）" in output
    assert "Make-up workdays (调休上班): none" in output

    imported(config_dir, NOTICES / "invented-2027.txt")
    code, output = run(config_dir, "show", "2027")
    assert code == 0, output
    assert "2027: official (file) — config/calendar/2027.yaml: 国务院办公厅关于2027年部分节假日安排的通知" in output
    assert "cites 国务院办公厅关于2027年部分节假日安排的通知, issued 2026-11-20" in output
    assert "2027-02-05 周五 │ 2027-02-12 周五 │ 8 │ 法定节假日" in output
    assert "Counts: 28 holiday dates (18 on weekdays), 4 make-up workdays, 247 working days, 118 rest days." in output


def test_show_outside_the_calendar_fails(config_dir: Path) -> None:
    code, output = run(config_dir, "show", "1999")
    assert code == 2 and "1999 is outside the calendar" in output


def test_check_warns_about_a_provisional_needed_year(config_dir: Path) -> None:
    code, output = run(config_dir, "check", "--as-of", "2026-11-24")
    assert code == 0, output
    assert "No calendar files" in output
    assert "Official calendar: 2004–2026; later years are provisional. Needed as of 2026-11-24: 2026–2027." in output
    assert "warning: 2027 is provisional (weekends plus estimated holidays) until its notice is imported" in output
    assert run(config_dir, "check", "--as-of", "2026-11-24", "--strict")[0] == 1
    code, output = run(config_dir, "check", "--as-of", "2025-06-30", "--strict")
    assert code == 0 and "warning" not in output


def test_check_after_import_reports_the_year_official(config_dir: Path) -> None:
    imported(config_dir, NOTICES / "invented-2027.txt")
    code, output = run(config_dir, "check", "--as-of", "2026-11-24", "--strict")
    assert code == 0, output
    assert (
        "2027.yaml: ok — 国务院办公厅关于2027年部分节假日安排的通知, issued 2026-11-20, 28 holidays, 4 make-up workdays"
        in output
    )
    assert "Official calendar: 2004–2027" in output
    assert "2027: official (file)" in output and "warning" not in output


def test_check_notes_a_file_that_replaces_package_data(config_dir: Path) -> None:
    imported(config_dir, PUBLISHED / "2026.txt")
    code, output = run(config_dir, "check", "--as-of", "2026-11-24")
    assert code == 0, output
    assert "2026.yaml replaces the chinese-calendar package's data for 2026" in output
    assert "working days differ" not in output  # the notice and the package agree

    calendar = CalendarFile.model_validate(
        {**read_notice(PUBLISHED / "2026.txt").calendar.model_dump(), "workdays": [date(2026, 1, 4)]}
    )
    dump_calendar_file(calendar, config_dir / "calendar" / "2026.yaml")
    code, output = run(config_dir, "check", "--as-of", "2026-11-24")
    assert "working days differ on 2026-02-14 周六, 2026-02-28 周六, 2026-05-09 周六" in output


def test_check_fails_on_an_invalid_file(config_dir: Path) -> None:
    path = write(config_dir, "2027.yaml", with_changes(workdays=[date(2027, 1, 8)]))
    code, output = run(config_dir, "check")
    assert code == 2
    assert "invalid calendar file:" in output and path.name in "".join(output.split())
    assert (
        "field 'workdays': Value error, a make-up workday (调休上班) must fall on a weekend: 2027-01-08 (周五)"
        in output
    )


def test_the_calendar_applies_an_imported_year(config_dir: Path) -> None:
    files = [imported(config_dir, NOTICES / "invented-2027.txt")]
    calendar = load_work_calendar(load_calendar_files(config_dir))
    assert load_calendar_files(config_dir) == files
    assert not calendar.is_provisional(date(2027, 2, 20)) and calendar.is_workday(date(2027, 2, 20))
    assert not calendar.is_workday(date(2027, 2, 11))
    assert calendar.workdays_between(date(2027, 2, 4), date(2027, 2, 15)) == 1  # 2月5日至12日 off, then the weekend
    assert calendar.workdays_between(date(2027, 2, 19), date(2027, 2, 22)) == 2  # Saturday 2月20日 worked
