"""`permitwatch evaluate` and `permitwatch explain`, run through the real command line."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli.main import app
from schemas.contracts import canonical_schema
from schemas.database import ensure_schema
from tasks.ingest.load import LIMIT_KIND_VALUES
from tasks.store.upsert import store_table

HEADER = "办件编号,事项编码,承办单位编码,受理时间,办结时间,承诺时限,时限类型\n"
CASES = [
    "C1,SXTQ-B001,360702SPJ,2025/9/26 9:05,,,",  # 8 working days, paused (09-29, 10-10]
    "C2,SXTQ-A004,360702SPJ,2025-09-26,2025-10-09,,",  # 7 working days since 2025-07-01: on time
    "C3,UNKNOWN,360702SPJ,20250926,,,",  # unknown matter, no limit: rejected
    "C4,UNKNOWN,360702SPJ,2025年9月26日,,10,自然日",  # 10 calendar days end in the holiday
    "C5,SJ-D001,360702SPJ,2025-09-26,2025-09-20,,",  # completed before accepted: rejected
    "C6,SJ-D001,360702SPJ,2025-09-26,,5,每周",  # unknown limit kind: rejected
    "C7,SJ-D001,360702SPJ,下周一,,,",  # not a date: rejected
]
SUSPENSIONS = "办件编号,特别程序种类,开始时间,结束时间\nC1,专家评审,2025-09-29,2025-10-10\nC9,公示,2025-09-29,\n"
EXPECTED = [
    {
        "case_id": "C1",
        "due_date": "2025-10-17",
        "elapsed": "9",
        "remaining": "-1",
        "overdue_workdays": "1",
        "level": "overdue",
        "calendar": "official",
    },
    {
        "case_id": "C2",
        "due_date": "2025-10-13",
        "elapsed": "4",
        "remaining": "3",
        "overdue_workdays": "0",
        "level": "completed_on_time",
        "calendar": "official",
    },
    {
        "case_id": "C4",
        "due_date": "2025-10-09",
        "elapsed": "24",
        "remaining": "-14",
        "overdue_workdays": "8",
        "level": "escalated",
        "calendar": "official",
    },
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    cases = tmp_path / "cases.csv"
    cases.write_bytes((HEADER + "\n".join(CASES) + "\n").encode("gb18030"))  # a GBK export
    suspensions = tmp_path / "suspensions.csv"
    suspensions.write_text("\ufeff" + SUSPENSIONS, encoding="utf-8")  # UTF-8 with a BOM
    return cases, suspensions


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_evaluate_csv_gives_exactly_the_output_columns(files: tuple[Path, Path], tmp_path: Path) -> None:
    cases, suspensions = files
    out = tmp_path / "out.csv"
    rejects = tmp_path / "rejects.csv"
    code, output = run(
        "evaluate",
        str(cases),
        "--suspensions",
        str(suspensions),
        "--as-of",
        "2025-10-20",
        "-o",
        str(out),
        "--rejects",
        str(rejects),
    )
    assert code == 0, output
    result = pl.read_csv(out, infer_schema=False)
    assert result.columns == ["case_id", "due_date", "elapsed", "remaining", "overdue_workdays", "level", "calendar"]
    assert result.to_dicts() == EXPECTED
    assert "Rejected 5 row(s)" in output
    rejected = pl.read_csv(rejects, infer_schema=False)
    assert rejected.columns == ["source", "line", "table", "reasons", "raw"]
    reasons = {f"{source} line {line}": reason for source, line, reason in rejected.select("source", "line", "reasons")
               .iter_rows()}
    # The nightly run's reasons, with the file and line of each row: the load's own, then the clock builder's.
    assert reasons == {
        "cases.csv line 4": "clock builder: unknown matter 'UNKNOWN' and no limit_days",
        "cases.csv line 6": "completed_at is before accepted_at",
        "cases.csv line 7": "limit_kind: not 工作日/workday or 自然日/calendar '每周'",
        "cases.csv line 8": "accepted_at: not a date '下周一'",
        "suspensions.csv line 3": "clock builder: no case 'C9' among the cases",
    }
    assert "cases.csv line 8: accepted_at: not a date '下周一'" in output
    # read = evaluated + rejected (the suspension of C9 is not a case row)
    assert result.height + sum(key.startswith("cases.csv") for key in reasons) == len(CASES)


def test_evaluate_parquet_with_datetimes_and_a_provisional_year(tmp_path: Path) -> None:
    shanghai_evening = datetime(2026, 12, 24, 17, 30, tzinfo=UTC)  # 2026-12-25 01:30 in Shanghai
    pl.DataFrame(
        {
            "case_id": ["D1", "D2"],
            "matter_code": ["SJ-D001", "SJ-D001"],
            "unit_code": ["360702SPJ", "360702SPJ"],
            "accepted_at": [shanghai_evening, datetime(2026, 12, 1, 9, 0, tzinfo=UTC)],
            "limit_days": [6, None],
        }
    ).write_parquet(tmp_path / "cases.parquet")
    code, output = run(
        "evaluate", str(tmp_path / "cases.parquet"), "--as-of", "2026-12-28", "-o", str(tmp_path / "out.parquet")
    )
    assert code == 0, output
    result = pl.read_parquet(tmp_path / "out.parquet")
    assert result.schema["due_date"] == pl.Date
    rows = {row["case_id"]: row for row in result.iter_rows(named=True)}
    # Accepted 12-25 (Shanghai): 12-28..12-31, then 2027's estimated New Year, so the 6th day is in January.
    assert rows["D1"]["due_date"] == date(2027, 1, 5)
    assert rows["D1"]["calendar"] == "provisional"
    assert rows["D2"]["calendar"] == "official"  # 15 working days from 12-01 end in December
    assert "provisional calendar (预计)" in output
    assert "2027" in output


def test_evaluate_exits_non_zero_only_when_nothing_could_be_evaluated(tmp_path: Path) -> None:
    cases = tmp_path / "cases.csv"
    cases.write_text("case_id,matter_code,unit_code,accepted_at\nX1,NOPE,360702SPJ,2025-01-02\n", encoding="utf-8")
    code, output = run("evaluate", str(cases), "--as-of", "2025-02-01", "-o", str(tmp_path / "out.csv"))
    assert code == 1
    assert "Evaluated 0 case(s)" in output
    assert "unknown matter 'NOPE'" in output
    assert not (tmp_path / "out.csv").exists()


def test_evaluate_names_a_missing_column(tmp_path: Path) -> None:
    cases = tmp_path / "cases.csv"
    cases.write_text("case_id,unit_code,accepted_at\nX1,360702SPJ,2025-01-02\n", encoding="utf-8")
    code, output = run("evaluate", str(cases), "--as-of", "2025-02-01", "-o", str(tmp_path / "out.csv"))
    assert code == 2
    assert "missing required column(s) matter_code (事项编码) for table cases" in output


def test_a_missing_file_is_named_and_nothing_is_written(files: tuple[Path, Path], tmp_path: Path) -> None:
    cases, _ = files
    missing = tmp_path / "suspensions-typo.csv"
    out = tmp_path / "out.csv"
    code, output = run("evaluate", str(cases), "--suspensions", str(missing), "--as-of", "2025-02-01", "-o", str(out))
    assert code == 2
    assert output.strip() == f"error: {missing}: no such file"
    assert not out.exists()
    code, output = run("explain", "X1", "--cases", str(missing), "--as-of", "2025-02-01")
    assert (code, output.strip()) == (2, f"error: {missing}: no such file")


def test_explain_from_files_shows_the_days_that_matter(files: tuple[Path, Path]) -> None:
    cases, suspensions = files
    code, output = run(
        "explain", "--cases", str(cases), "--suspensions", str(suspensions), "--case-id", "C1", "--as-of", "2025-10-20"
    )
    assert code == 0, output
    assert "counting starts the next day" in output
    assert "2025-09-28 (Sun)" in output and "make-up working day 调休上班（国庆节）" in output
    assert "paused (专家评审)" in output
    assert "2025-10-01 – 2025-10-05 国庆节" in output
    assert "Due date: 2025-10-17 (Fri)" in output
    assert "overdue (红牌超期)" in output  # the alerts' name of the level


def test_explain_a_rejected_case_says_why(files: tuple[Path, Path]) -> None:
    cases, _ = files
    code, output = run("explain", "--cases", str(cases), "--case-id", "C5", "--as-of", "2025-10-20")
    assert code == 2
    assert "case C5: cases.csv line 6: completed_at is before accepted_at" in output


def test_explain_from_the_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = database_url
    engine = ensure_schema(url)

    def canonical(table: str, rows: list[dict]) -> pl.DataFrame:
        schema = canonical_schema(table)
        return pl.DataFrame([{**dict.fromkeys(schema), **row} for row in rows], schema=schema)

    store_table(
        engine,
        "cases",
        canonical(
            "cases",
            [
                {
                    "case_id": "DB1",
                    "matter_code": "SXTQ-B001",
                    "unit_code": "360703SPJ",
                    "accepted_at": date(2026, 2, 10),
                }
            ],
        ),
        None,
    )
    store_table(
        engine,
        "steps",
        canonical(
            "steps",
            [
                {
                    "case_id": "DB1",
                    "step_no": 1,
                    "unit_code": "360703SPJ",
                    "started_at": date(2026, 2, 10),
                    "ended_at": date(2026, 2, 12),
                },
                {"case_id": "DB1", "step_no": 2, "unit_code": "360700SCJ", "started_at": date(2026, 2, 12)},
            ],
        ),
        None,
    )
    engine.dispose()
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", url)
    code, output = run("explain", "DB1", "--as-of", "2026-02-13")
    assert code == 0, output
    assert "step:1" in output and "step:2" in output  # a case id lists all the case's clocks
    code, output = run("explain", "DB1", "--clock", "case", "--as-of", "2026-02-13")
    assert code == 0, output
    # 8 working days from Tue 02-10: 02-11, 02-12, 02-13, Sat 02-14 (调休), then 春节 to 02-23, 02-24..02-27.
    assert "Due date: 2026-02-27 (Fri)" in output
    code, output = run("explain", "step:DB1:2", "--as-of", "2026-02-24")
    assert code == 0, output
    # The city's 3 working days from the county's submission on 02-12: 02-13, Sat 02-14 (调休), 02-24.
    assert "unit 360700SCJ" in output
    assert "Due date: 2026-02-24 (Tue)" in output
    code, output = run("explain", "NOPE", "--as-of", "2026-02-24")
    assert code == 2
    assert "NOPE: no case, push (审管推送) or project with this id" in output


def test_rows_missing_a_matter_or_case_id_are_rejected_with_a_reason(tmp_path: Path) -> None:
    cases = tmp_path / "cases.csv"
    cases.write_text(
        "case_id,matter_code,unit_code,accepted_at\n"
        "E1,SJ-D001,360702SPJ,2025-09-26\n"
        "E2,,360702SPJ,2025-09-26\n"
        ",SJ-D001,360702SPJ,2025-09-26\n",
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.csv"
    code, output = run(
        "evaluate", str(cases), "--as-of", "2025-10-20", "-o", str(tmp_path / "out.csv"), "--rejects", str(rejects)
    )
    assert code == 0, output
    assert pl.read_csv(tmp_path / "out.csv")["case_id"].to_list() == ["E1"]
    assert "Rejected 2 row(s)" in output
    rejected = pl.read_csv(rejects, infer_schema=False)
    assert rejected.select("source", "line").rows() == [("cases.csv", "3"), ("cases.csv", "4")]
    reasons = rejected["reasons"]
    assert reasons.null_count() == 0 and (reasons.str.len_chars() > 0).all()


def test_evaluate_accepts_every_limit_kind_spelling_the_nightly_load_accepts(tmp_path: Path) -> None:
    # The nightly load's spellings of 时限类型 that give a clock (hours, minutes and months are refused there).
    nightly = {spelling: kind for spelling, kind in LIMIT_KIND_VALUES.items() if kind in ("workday", "calendar")}
    assert nightly["日历日"] == "calendar"
    rows = [f"K{n},UNKNOWN,360702SPJ,2025-09-26,,10,{spelling}" for n, spelling in enumerate(nightly)]
    cases = tmp_path / "cases.csv"
    cases.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    code, output = run("evaluate", str(cases), "--as-of", "2025-10-20", "-o", str(out))
    assert code == 0, output
    assert "Rejected 0 row(s)" in output
    due = dict(pl.read_csv(out, infer_schema=False).select("case_id", "due_date").iter_rows())
    # 10 working days from 09-26 skip the National Day holiday (09-28 and 10-11 are make-up working days); 10 calendar
    # days end inside it, so they fall due on the first working day after it.
    expected = {"workday": "2025-10-16", "calendar": "2025-10-09"}
    assert due == {f"K{n}": expected[kind] for n, kind in enumerate(nightly.values())}


def test_evaluate_matches_headers_as_the_nightly_load_does(tmp_path: Path) -> None:
    # Case, width, a BOM or zero-width space and stray blanks do not hide a header, here as in the nightly load.
    cases = tmp_path / "cases.csv"
    cases.write_text(
        "\ufeffCase_ID,ＭＡＴＴＥＲ＿ＣＯＤＥ,承办单位编码\u200b, 受理时间 ,LIMIT_DAYS,时限类型\n"
        "H1,UNKNOWN,360702SPJ,2025-09-26,10,日历日\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    code, output = run("evaluate", str(cases), "--as-of", "2025-10-20", "-o", str(out))
    assert code == 0, output
    assert pl.read_csv(out, infer_schema=False).select("case_id", "due_date").rows() == [("H1", "2025-10-09")]


def test_evaluating_files_imports_neither_prefect_nor_sqlalchemy(tmp_path: Path) -> None:
    """`evaluate` reads files through the nightly loader but runs no flow and opens no database: in a fresh process,
    evaluating a file imports neither Prefect (most of a second of start-up) nor SQLAlchemy, and the loader's
    warnings go to its own logger."""
    import subprocess
    import sys

    (tmp_path / "cases.csv").write_text(HEADER + "\n".join(CASES[:2]) + "\n", encoding="utf-8")
    probe = (
        "import sys\n"
        "from cli.main import app\n"
        "from typer.testing import CliRunner\n"
        f"outcome = CliRunner().invoke(app, ['evaluate', {str(tmp_path / 'cases.csv')!r}, '--as-of', '2025-10-20',"
        f" '-o', {str(tmp_path / 'out.csv')!r}])\n"
        "print(outcome.exit_code, 'prefect' in sys.modules, 'sqlalchemy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.split()[-3:] == ["0", "False", "False"]
    assert pl.read_csv(tmp_path / "out.csv")["case_id"].to_list() == ["C1", "C2"]
