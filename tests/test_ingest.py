"""Loading real-looking exports: encodings, Chinese headers, mixed dates, spreadsheets, broken files; nothing lost."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from config.loader import ConfigError
from config.sources import Source, SourceCatalog, adhoc_source, load_sources
from tasks.ingest.load import LoadResult, load_source
from tasks.ingest.load import load_sources as load_all

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
JAN_20 = date(2023, 1, 20)


def source(table: str, path: str, **options: Any) -> Source:
    return Source(name=f"test-{table}", kind=options.pop("kind", "csv"), table=table, path=path, **options)


def load(table: str, path: str, inbox: Path, **options: Any) -> LoadResult:
    result = load_source(source(table, path, **options), inbox_dir=inbox)
    assert result.error is None, result.error
    return result


def copy_fixture(name: str, inbox: Path, encoding: str | None = None, target: str | None = None) -> Path:
    """A fixture into the inbox, re-encoded (e.g. to GB18030 or UTF-8 with BOM) when asked."""
    inbox.mkdir(parents=True, exist_ok=True)
    destination = inbox / (target or name)
    if encoding is None:
        shutil.copy(FIXTURES / name, destination)
    else:
        destination.write_bytes((FIXTURES / name).read_text(encoding="utf-8").encode(encoding))
    return destination


def rejected_by_line(result: LoadResult) -> dict[int, str]:
    return dict(result.rejected.select("line", "reasons").iter_rows())


def assert_nothing_lost(result: LoadResult) -> None:
    assert result.accepted.height + result.rejected.height == result.rows_read
    for count in result.file_counts:
        assert count.accepted + count.rejected == count.rows_read


# -------------------------------------------------------------------------------------------------- messy cases


MESSY_REJECTS = {
    3: "duplicate of line 12",
    7: "region_code: not a 6-digit region code '36070'",
    8: "accepted_at: not a date '2023-02-30'",
    9: "completed_at is before accepted_at",
    10: "case_id: missing",
    13: "project_code: not a national project code (e.g. 2301-360702-04-01-123456) '2313-360702-04-01-123456'; "
    "limit_days: not a whole number 'x'; limit_kind: a limit in months (月) is not supported: only 工作日 or 自然日",
}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_messy_export_with_chinese_headers_in_any_encoding(tmp_path: Path, encoding: str) -> None:
    copy_fixture("cases_messy.csv", tmp_path, encoding=encoding)
    result = load("cases", "cases*.csv", tmp_path, max_reject_fraction=1)
    assert_nothing_lost(result)
    assert result.rows_read == 11  # 12 data lines, one of them blank
    assert rejected_by_line(result) == MESSY_REJECTS
    accepted = result.accepted.sort("case_id")
    assert accepted["case_id"].to_list() == ["GZ2023-0001", "GZ2023-0002", "GZ2023-0003", "GZ2023-0004", "GZ2023-0005"]
    assert accepted["accepted_at"].to_list() == [JAN_20] * 5
    by_id = {row["case_id"]: row for row in accepted.iter_rows(named=True)}
    # trailing space trimmed, full-width digits folded, 2023年1月30日 read
    assert by_id["GZ2023-0003"]["region_code"] == "360704"
    assert by_id["GZ2023-0003"]["limit_days"] == 8
    assert by_id["GZ2023-0003"]["completed_at"] == date(2023, 1, 30)
    # the newer export line of a duplicate wins
    assert by_id["GZ2023-0002"]["completed_at"] == date(2023, 2, 6)
    assert by_id["GZ2023-0002"]["updated_at"] == datetime(2023, 2, 6, 16, 30)
    # an Excel serial in a CSV, and 自然日 as the canonical limit kind
    assert by_id["GZ2023-0005"]["limit_kind"] == "calendar"
    assert by_id["GZ2023-0001"]["limit_kind"] == "workday"
    assert result.accepted.schema["limit_days"] == pl.Int32


def test_gb18030_export_is_not_taken_for_utf8(tmp_path: Path) -> None:
    path = copy_fixture("cases_messy.csv", tmp_path, encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    result = load("cases", path.name, tmp_path, max_reject_fraction=1)
    assert "食品经营许可" in result.accepted["matter_name"].to_list()


def test_rejected_rows_keep_their_original_values(tmp_path: Path) -> None:
    copy_fixture("cases_messy.csv", tmp_path, encoding="gb18030")
    result = load("cases", "cases_messy.csv", tmp_path, max_reject_fraction=1)
    row = result.rejected.filter(pl.col("line") == 8).row(0, named=True)
    raw = json.loads(row["raw"])
    assert raw["办件编号"] == "GZ2023-0007"
    assert raw["受理时间"] == "2023-02-30"
    assert row["source"] == "cases_messy.csv"
    assert row["table"] == "cases"
    assert result.pii_headers == ("申请人", "联系电话")


def test_over_the_reject_threshold_nothing_is_storable(tmp_path: Path) -> None:
    copy_fixture("cases_messy.csv", tmp_path)
    result = load("cases", "cases_messy.csv", tmp_path)  # 6 of 11 rejected, limit 20%
    assert result.over_threshold
    assert not result.storable
    assert result.accepted.height == 5  # still reported, for validate and the run summary


def test_truncated_file_rejects_the_cut_record(tmp_path: Path) -> None:
    copy_fixture("cases_truncated.csv", tmp_path)
    assert not (tmp_path / "cases_truncated.csv").read_text().endswith("\n")
    result = load("cases", "cases_truncated.csv", tmp_path, max_reject_fraction=1)
    assert_nothing_lost(result)
    assert result.accepted["case_id"].to_list() == ["T1", "T2"]
    assert rejected_by_line(result) == {4: "line has 4 fields, the header has 6 (truncated or shifted record)"}
    assert json.loads(result.rejected["raw"].item()) == {
        "case_id": "T3",
        "matter_code": "SXTQ-A001",
        "unit_code": "360702SPJ",
        "accepted_at": "2023-01-2",
    }


def test_quoted_newlines_keep_physical_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text(
        "case_id,matter_code,unit_code,accepted_at,matter_name\n"
        'Q1,M,U,2023-01-20,"two\nline name"\n'
        "\n"
        "Q2,M,U,2023-13-01,plain\n"
        'Q3,M,U,2023-01-20,"a, b"\n'
        'Q4,M,U,2023-01-20,"unterminated\n',
        encoding="utf-8",
    )
    result = load("cases", "cases.csv", tmp_path, max_reject_fraction=1)
    assert_nothing_lost(result)
    assert result.accepted["matter_name"].to_list() == ["two\nline name", "a, b", "unterminated"]
    assert rejected_by_line(result) == {5: "accepted_at: not a date '2023-13-01'"}


def test_ragged_lines_are_rejected_whole(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text(
        "case_id,matter_code,unit_code,accepted_at\nA,M,U,2023-01-20\nB,M,U,2023-01-20,extra\nC,M,U,2023-01-20\n"
    )
    result = load("cases", "cases.csv", tmp_path, max_reject_fraction=1)
    assert result.accepted["case_id"].to_list() == ["A", "C"]
    assert json.loads(result.rejected["raw"].item())["_extra"] == '["extra"]'


@pytest.mark.parametrize("block", [1, 9, 40, 1 << 18])
def test_line_counts_are_the_same_whatever_the_scan_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Lines are scanned in blocks of whole lines; a line longer than a block, a block ending just after a line feed
    and a CRLF file without its last line feed read as in one block."""
    monkeypatch.setattr("tasks.ingest.load._LINE_BLOCK", block)
    (tmp_path / "cases.csv").write_bytes(
        b"case_id,matter_code,unit_code,accepted_at,matter_name\r\n"
        b"A,M,U,2023-01-20,a long name that is longer than every small block\r\n"
        b"\r\n"
        b"B,M,U,2023-01-20,extra,fields\r\n"
        b'C,M,U,2023-01-20,"quoted, with a comma"\r\n'
        b"D,M,U,2023-01-20"
    )
    result = load("cases", "cases.csv", tmp_path, max_reject_fraction=1)
    assert_nothing_lost(result)
    assert result.accepted["case_id"].to_list() == ["A", "C"]
    assert result.accepted["matter_name"].to_list() == [
        "a long name that is longer than every small block", "quoted, with a comma"
    ]
    assert rejected_by_line(result) == {
        4: "line has 6 fields, the header has 5 (truncated or shifted record)",
        6: "line has 4 fields, the header has 5 (truncated or shifted record)",
    }


# ----------------------------------------------------------------------------------------------------- spreadsheets


def write_xlsx(path: Path) -> None:
    workbook = xlsxwriter.Workbook(path)
    sheet = workbook.add_worksheet("办件清单")
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    sheet.write_row(0, 0, ["办件编号", "事项编码", "承办单位编码", "行政区划代码", "受理时间", "办结时间", "承诺时限"])
    sheet.write_row(1, 0, ["X1", "SXTQ-A001", "360702SPJ", 360702, 44946, 44953.5, 10])  # plain serial numbers
    sheet.write_row(2, 0, ["X2", "SXTQ-A001", "360702SPJ", "360702"])
    sheet.write_datetime(2, 4, datetime(2023, 1, 20, 9, 5), date_format)  # a real date cell
    sheet.write_string(2, 5, "2023年1月31日")
    sheet.write_row(4, 0, ["X3", "SXTQ-A001", "360702SPJ", "360702", "not a date"])  # row 4 left blank
    sheet.write_row(5, 0, ["X4", "SXTQ-A001", "360702SPJ", 360702, 44946, None, 10.5])
    workbook.close()


def test_xlsx_with_serial_dates(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "cases.xlsx")
    result = load("cases", "*.xlsx", tmp_path, kind="xlsx", max_reject_fraction=1)
    assert_nothing_lost(result)
    assert result.rows_read == 4  # the blank sheet row is not a record
    rows = {row["case_id"]: row for row in result.accepted.iter_rows(named=True)}
    assert rows["X1"]["accepted_at"] == JAN_20
    assert rows["X1"]["completed_at"] == date(2023, 1, 27)
    assert rows["X1"]["region_code"] == "360702"
    assert rows["X1"]["limit_days"] == 10
    assert rows["X2"]["accepted_at"] == JAN_20
    assert rows["X2"]["completed_at"] == date(2023, 1, 31)
    # sheet rows: header is row 1, so X3 is row 5 and X4 row 6
    assert rejected_by_line(result) == {
        5: "accepted_at: not a date 'not a date'",
        6: "limit_days: not a whole number '10.5'",
    }


def test_xlsx_sheet_by_name_and_a_missing_sheet_fails_the_source(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "cases.xlsx")
    assert load("cases", "cases.xlsx", tmp_path, kind="xlsx", sheet="办件清单", max_reject_fraction=1).rows_read == 4
    failed = load_source(source("cases", "cases.xlsx", kind="xlsx", sheet="nope"), inbox_dir=tmp_path)
    assert failed.error is not None and "cases.xlsx" in failed.error


# --------------------------------------------------------------------------------------------- other formats


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    pl.DataFrame(
        {
            "case_id": ["P1", "P2"],
            "matter_code": ["M", "M"],
            "unit_code": ["U", "U"],
            "accepted_at": [datetime(2023, 1, 19, 17, 0), datetime(2023, 1, 20, 8, 0)],
            "completed_at": [None, date(2023, 1, 10)],
            "limit_days": [10, 10],
        }
    ).with_columns(pl.col("accepted_at").dt.replace_time_zone("UTC")).write_parquet(tmp_path / "cases.parquet")
    result = load("cases", "cases.parquet", tmp_path, kind="parquet", max_reject_fraction=1)
    assert result.accepted.select("case_id", "accepted_at").rows() == [("P1", JAN_20)]
    assert rejected_by_line(result) == {2: "completed_at is before accepted_at"}


def test_jsonl_with_a_broken_line(tmp_path: Path) -> None:
    lines = [
        json.dumps({"push_id": "J1", "case_id": "C1", "supervisor_unit_code": "S", "pushed_at": "2023-01-20"}),
        "",
        '{"push_id": "J2", "case_id": ',
        json.dumps({"push_id": "J3", "case_id": "C1", "supervisor_unit_code": "S", "pushed_at": 44946}),
        "[1, 2]",
    ]
    (tmp_path / "pushes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load("pushes", "pushes.jsonl", tmp_path, kind="jsonl", max_reject_fraction=1)
    assert_nothing_lost(result)
    assert result.accepted.select("push_id", "pushed_at").rows() == [("J1", JAN_20), ("J3", JAN_20)]
    reasons = rejected_by_line(result)
    assert set(reasons) == {3, 5}
    assert reasons[3].startswith("not valid JSON")
    assert reasons[5] == "not a JSON object"


def test_jsonl_mixing_english_and_chinese_keys_maps_both(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"case_id": "X", "办件编号": "Y"}) + "\n", encoding="utf-8")
    result = load_source(source("deferrals", "a.jsonl", kind="jsonl"), inbox_dir=tmp_path)
    assert result.error is not None and "both map to case_id" in result.error


def test_sql_source_reads_a_query_with_the_url_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "platform.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE bj (bjbh TEXT, sxbm TEXT, dwbm TEXT, slsj TEXT, bjsj TEXT)")
        connection.executemany(
            "INSERT INTO bj VALUES (?, ?, ?, ?, ?)",
            [("S1", "M", "U", "2023-01-20 09:00:00", None), ("S2", "M", "U", "2023/1/20", "2023-01-01")],
        )
    monkeypatch.setenv("PLATFORM_DB", str(database))
    spec = Source(
        name="platform",
        kind="sql",
        table="cases",
        url="sqlite:///${PLATFORM_DB}",
        query="SELECT bjbh AS case_id, sxbm AS matter_code, dwbm AS unit_code, slsj AS 受理时间, bjsj AS 办结时间 "
        "FROM bj",
        max_reject_fraction=1,
    )
    result = load_source(spec, inbox_dir=tmp_path)
    assert result.error is None
    assert result.accepted.select("case_id", "accepted_at").rows() == [("S1", JAN_20)]
    assert rejected_by_line(result) == {2: "completed_at is before accepted_at"}

    broken = spec.model_copy(update={"query": "SELECT * FROM missing_table"})
    failed = load_source(broken, inbox_dir=tmp_path)
    assert failed.error is not None and "query failed" in failed.error and str(database) not in failed.error


# ---------------------------------------------------------------------------------------- schema-level failures


def test_undecodable_bytes_fail_the_source_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_bytes(
        b"case_id,matter_code,unit_code,accepted_at\nA,M,U,2023-01-20\nB,\xff\xfe,U,x\n"
    )
    result = load_source(source("cases", "cases.csv"), inbox_dir=tmp_path)
    assert result.error is not None
    assert "cases.csv" in result.error and "line 3" in result.error and "GB18030" in result.error
    assert result.accepted.height == 0


def test_missing_required_column_fails_the_source(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text("办件编号,事项编码,受理时间\nA,M,2023-01-20\n", encoding="utf-8")
    result = load_source(source("cases", "cases.csv"), inbox_dir=tmp_path)
    assert result.error is not None
    assert "cases.csv" in result.error and "unit_code (承办单位编码)" in result.error


def test_a_mapping_names_other_headers(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text("BJBH,SXBM,DWBM,SLSJ\nA,M,U,2023-01-20\n", encoding="utf-8")
    mapping = {"BJBH": "case_id", "SXBM": "matter_code", "DWBM": "unit_code", "SLSJ": "accepted_at"}
    result = load("cases", "cases.csv", tmp_path, mapping=mapping)
    assert result.accepted.select("case_id", "accepted_at").rows() == [("A", JAN_20)]


def test_one_broken_source_does_not_stop_the_others(tmp_path: Path) -> None:
    copy_fixture("steps.csv", tmp_path)
    (tmp_path / "cases.csv").write_bytes(b"\xff\xff\xff")
    sources = [source("cases", "cases.csv"), source("steps", "steps.csv", max_reject_fraction=1)]
    results = {result.table: result for result in load_all(sources, inbox_dir=tmp_path)}
    assert results["cases"].error is not None
    assert results["steps"].error is None
    assert results["steps"].accepted.height == 2
    assert rejected_by_line(results["steps"]) == {4: "ended_at is before started_at"}


def test_no_file_is_nothing_to_load_unless_required(tmp_path: Path) -> None:
    assert load("cases", "cases*.csv", tmp_path).rows_read == 0
    required = load_source(source("cases", "cases*.csv", required=True), inbox_dir=tmp_path)
    assert required.error is not None and "no file matches" in required.error


# ------------------------------------------------------------------------------------------ the other tables


def test_suspensions_are_checked_against_their_case(tmp_path: Path) -> None:
    copy_fixture("cases_messy.csv", tmp_path, target="cases.csv")
    copy_fixture("suspensions.csv", tmp_path)
    sources = [
        source("suspensions", "suspensions.csv", max_reject_fraction=1),
        source("cases", "cases.csv", max_reject_fraction=1),
    ]
    results = {result.table: result for result in load_all(sources, inbox_dir=tmp_path)}
    suspensions = results["suspensions"]
    assert_nothing_lost(suspensions)
    assert suspensions.accepted["kind"].to_list() == ["专家评审", "补正", "现场勘查"]  # the last: case not loaded yet
    assert rejected_by_line(suspensions) == {
        4: "started_at 2023-01-10 is before the case was accepted (2023-01-20)",
        5: "ended_at 2023-02-05 is after the case was completed (2023-02-01)",
    }


def test_without_a_case_reference_only_row_checks_apply(tmp_path: Path) -> None:
    copy_fixture("suspensions.csv", tmp_path)
    assert load("suspensions", "suspensions.csv", tmp_path).accepted.height == 5


@pytest.mark.parametrize(
    ("table", "accepted", "rejected"),
    [
        ("steps", 2, {4: "ended_at is before started_at"}),
        (
            "projects",
            2,
            {4: "project_code: not a national project code (e.g. 2301-360702-04-01-123456) '360722-47-03-012345'"},
        ),
        ("deferrals", 2, {4: "due_days: not within 0..3650 '-3'"}),
        ("pushes", 2, {4: "claimed_at is before pushed_at"}),
    ],
)
def test_chinese_headers_load_for_every_table(
    tmp_path: Path, table: str, accepted: int, rejected: dict[int, str]
) -> None:
    copy_fixture(f"{table}.csv", tmp_path, encoding="gb18030")
    result = load(table, f"{table}.csv", tmp_path, max_reject_fraction=1)
    assert result.accepted.height == accepted
    assert rejected_by_line(result) == rejected


def test_duplicates_across_files_keep_the_later_file(tmp_path: Path) -> None:
    header = "case_id,matter_code,unit_code,accepted_at,status\n"
    (tmp_path / "cases-1.csv").write_text(header + "A,M,U,2023-01-20,在办\n")
    (tmp_path / "cases-2.csv").write_text(header + "A,M,U,2023-01-20,办结\n")
    result = load("cases", "cases-*.csv", tmp_path, max_reject_fraction=1)
    assert result.accepted["status"].to_list() == ["办结"]
    assert result.rejected.select("source", "line", "reasons").rows() == [
        ("cases-1.csv", 2, "duplicate of line 2 of cases-2.csv")
    ]


# ------------------------------------------------------------------------------------------------ config


def test_default_sources_cover_every_table_from_the_inbox(tmp_path: Path) -> None:
    catalog = load_sources(Path(__file__).resolve().parents[1] / "config")
    assert {s.table for s in catalog.sources} == {"cases", "steps", "suspensions", "projects", "deferrals", "pushes"}
    copy_fixture("cases_messy.csv", tmp_path, encoding="gb18030", target="cases-20230120.csv")
    result = load_source(catalog.get("cases"), inbox_dir=tmp_path)
    assert result.files == ["cases-20230120.csv"]
    assert result.rows_read == 11


def test_bad_source_config_fails_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PASSWORD", raising=False)
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - {name: db, kind: sql, table: cases, url: 'postgresql://u:${NO_SUCH_PASSWORD}@h/db', query: 'select 1'}\n"
    )
    with pytest.raises(ConfigError, match=r"entry 'db'.*NO_SUCH_PASSWORD"):
        load_sources(tmp_path)
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - {name: a, kind: csv, table: cases, path: a.csv, mapping: {X: nope}}\n"
    )
    with pytest.raises(ConfigError, match="no column nope in table cases"):
        load_sources(tmp_path)
    assert load_sources(tmp_path / "missing") == SourceCatalog()


def test_adhoc_source_takes_the_kind_from_the_suffix(tmp_path: Path) -> None:
    assert adhoc_source(tmp_path / "x.xlsx", "cases").kind == "xlsx"
    with pytest.raises(ConfigError, match="cannot tell the kind"):
        adhoc_source(tmp_path / "x.doc", "cases")


# ---------------------------------------------------------------------------------------------------- CLI


def test_validate_writes_accepted_and_rejected(tmp_path: Path) -> None:
    path = copy_fixture("cases_messy.csv", tmp_path / "in", encoding="gb18030")
    accepted, rejected = tmp_path / "out" / "accepted.csv", tmp_path / "out" / "rejected.csv"
    outcome = CliRunner().invoke(
        app, ["validate", str(path), "--kind", "cases", "--accepted", str(accepted), "--rejected", str(rejected)]
    )
    assert outcome.exit_code == 1, outcome.output  # 6 of 11 rejected: over the 20% limit
    assert "duplicate of line N" in outcome.output
    good = pl.read_csv(accepted, infer_schema=False)
    assert good.columns[:4] == ["case_id", "matter_code", "matter_name", "unit_code"]
    assert good.filter(pl.col("case_id") == "GZ2023-0002")["completed_at"].item() == "2023-02-06"
    bad = pl.read_csv(rejected, infer_schema=False)
    assert bad.columns[-3:] == ["source", "line", "reasons"]
    assert "办件编号" in bad.columns
    assert bad.filter(pl.col("line") == "8")["受理时间"].item() == "2023-02-30"
    assert bad.height == 6


def test_validate_fails_cleanly_on_a_missing_column(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text(
        "case_id,matter_code,unit_code,accepted_at,applicant_name\nA,M,U,2023-01-20,张三\n"
    )
    outcome = CliRunner().invoke(app, ["validate", str(tmp_path / "cases.csv"), "--kind", "cases"])
    assert outcome.exit_code == 0, outcome.output
    missing = CliRunner().invoke(app, ["validate", str(tmp_path / "cases.csv"), "--kind", "steps"])
    assert missing.exit_code == 2
    assert "missing required column" in missing.output


def test_db_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", url)
    outcome = CliRunner().invoke(app, ["db", "upgrade"])
    assert outcome.exit_code == 0, outcome.output
    with sqlite3.connect(tmp_path / "pw.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"cases", "rejects", "change_history", "alembic_version"} <= tables


# ---------------------------------------------------------------------------------------- nothing is ever lost


CELL = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "A1",
            "GZ-1",
            "360702",
            "３６０７０２",
            "2023-01-20",
            "2023/1/20 9:05",
            "2023年1月20日",
            "20230120",
            "44946",
            "2023-02-30",
            "x",
            "10",
            "-1",
            "工作日",
            "自然日",
            '"',
            '""',
            "a,b",
            "\t",
        ]
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\x00"), max_size=8),
)
HEADERS = ["case_id", "matter_code", "unit_code", "accepted_at", "completed_at", "limit_days", "limit_kind", "status"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(  # once made polars panic on pandera's unevenly chunked failure cases
    rows=[
        ["2023-01-20", "GZ-1", "", "20230120", "ÎÓ", "_after", "360702", "３６０７０２"],
        ["工作日"],
        ["è\x94v", "自然日", '""', "10", "工作日", "\nÐ¨k\nº", " "],
        ["ÔÍë", "", "-1", "", "-1"],
        ["", "HÈ\x03.\x91þ»Ä", "20230120", " ", " ", "", "b", "2023/1/20 9:05", "", "2023-01-20"],
        ["工作日"],
    ],
    encoding="utf-8",
    trailing_newline=False,
)
@given(
    rows=st.lists(st.lists(CELL, min_size=0, max_size=10), max_size=25),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
    trailing_newline=st.booleans(),
)
def test_accepted_plus_rejected_is_rows_read_on_broken_input(
    tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]], encoding: str, trailing_newline: bool
) -> None:
    inbox = tmp_path_factory.mktemp("inbox")
    body = "\n".join([",".join(HEADERS), *(",".join(row) for row in rows)]) + ("\n" if trailing_newline else "")
    try:
        data = body.encode(encoding)
    except UnicodeEncodeError:
        data = body.encode("utf-8")
    (inbox / "cases.csv").write_bytes(data)
    result = load_source(source("cases", "cases.csv"), inbox_dir=inbox)
    if result.error is None:
        assert_nothing_lost(result)
        assert result.rejected["line"].is_unique().all()
        assert result.rejected["line"].min() is None or result.rejected["line"].min() >= 2
        assert result.accepted["case_id"].is_unique().all()
        assert result.accepted["accepted_at"].null_count() == 0
    else:
        assert "cases.csv" in result.error


def test_a_dropped_last_line_without_a_newline_leaves_the_other_reasons_intact(tmp_path: Path) -> None:
    # polars reads a last line without a newline as a chunk of its own; rejecting that line leaves the kept rows'
    # columns ending in an empty chunk, on which the reasons for line 2 once made polars 2.1's pl.format panic.
    export = ",".join(HEADERS) + "\nA,M,,2023-01-20,,,x,\ny,y,y,y,y,y,y,y,y"
    (tmp_path / "cases.csv").write_text(export, encoding="utf-8")
    result = load("cases", "cases.csv", tmp_path, max_reject_fraction=1)
    assert_nothing_lost(result)
    assert rejected_by_line(result) == {
        2: "unit_code: missing; limit_kind: not 工作日/workday or 自然日/calendar 'x'",
        3: "line has 9 fields, the header has 8 (truncated or shifted record)",
    }


def test_validate_with_a_configured_source_uses_its_mapping(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(Path(__file__).resolve().parents[1] / "config", config_dir)
    (config_dir / "sources.yaml").write_text(
        "sources:\n"
        "  - name: platform\n"
        "    kind: csv\n"
        "    table: cases\n"
        "    path: 'bj*.csv'\n"
        "    separator: ';'\n"
        "    date_formats: ['%d/%m/%Y']\n"
        "    mapping: {BJBH: case_id, SXBM: matter_code, DWBM: unit_code, SLSJ: accepted_at}\n",
        encoding="utf-8",
    )
    export = tmp_path / "bj.csv"
    export.write_text("BJBH;SXBM;DWBM;SLSJ\nA;M;U;20/01/2023\n", encoding="utf-8")
    accepted = tmp_path / "accepted.csv"
    arguments = ["--config", str(config_dir), "validate", str(export), "--kind", "cases", "--accepted", str(accepted)]
    outcome = CliRunner().invoke(app, [*arguments, "--source", "platform"])
    assert outcome.exit_code == 0, outcome.output
    assert pl.read_csv(accepted, infer_schema=False).select("case_id", "accepted_at").rows() == [("A", "2023-01-20")]
    unknown = CliRunner().invoke(app, [*arguments, "--source", "nope"])
    assert unknown.exit_code == 2 and "no source named 'nope'" in unknown.output
