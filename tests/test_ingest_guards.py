"""What a load refuses and how it says so: control characters, a first line of data, errors that retrying cannot
fix, and the freshness verdicts against the last stored load."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from cli.main import app
from config.sources import Source
from tasks.ingest.freshness import LastLoad, content_hash, judge, last_loads
from tasks.ingest.load import load_source
from tasks.store.upsert import store_rejects, store_table

HEADER = "case_id,matter_code,matter_name,unit_code,accepted_at,applicant_name,applicant_phone"
NAME, PHONE = "张小三", "13812345678"


def cases_source(path: str = "cases.csv", **options: object) -> Source:
    options.setdefault("kind", "csv")
    return Source(name="cases", table="cases", path=path, **options)  # type: ignore[arg-type]


def write_controls(folder: Path) -> Path:
    """Line 2 clean; 3 a NUL in the name; 4 a form feed in the matter name; 5-6 a quoted CRLF line break and a tab
    (both allowed); 7 a vertical tab in the phone."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cases.csv"
    path.write_bytes(
        (
            f"{HEADER}\r\n"
            f"C1,M1,设立登记,360702SPJ,2026-01-05,{NAME},{PHONE}\r\n"
            f"C2,M1,设立登记,360702SPJ,2026-01-05,张\x00三,{PHONE}\r\n"
            f"C3,M1,设立\x0c登记,360702SPJ,2026-01-05,{NAME},{PHONE}\r\n"
            f'C4,M1,"设立\r\n登记\t变更",360702SPJ,2026-01-05,{NAME},{PHONE}\r\n'
            f"C5,M1,设立登记,360702SPJ,2026-01-05,{NAME},138\x0b12345678\r\n"
        ).encode()
    )
    return path


def test_control_characters_make_a_row_a_reject_with_a_reason(tmp_path: Path) -> None:
    write_controls(tmp_path)
    result = load_source(cases_source(max_reject_fraction=1), inbox_dir=tmp_path)
    assert result.error is None, result.error
    assert sorted(result.accepted["case_id"]) == ["C1", "C4"]
    reasons = dict(result.rejected.select("line", "reasons").iter_rows())
    assert reasons == {
        3: "applicant_name: control character U+0000",
        4: "matter_name: control character U+000C",
        7: "applicant_phone: control character U+000B",
    }
    assert result.accepted.height + result.rejected.height == result.rows_read == 5


def test_validate_gives_the_same_verdict(tmp_path: Path) -> None:
    path = write_controls(tmp_path / "in")
    rejected = tmp_path / "rejected.csv"
    outcome = CliRunner().invoke(app, ["validate", str(path), "--kind", "cases", "--rejected", str(rejected)])
    assert outcome.exit_code == 1, outcome.output  # 3 of 5 rejected: over the 20% limit
    bad = pl.read_csv(rejected, infer_schema=False)
    assert dict(bad.select(pl.col("line").cast(int), "reasons").iter_rows()) == {
        3: "applicant_name: control character U+0000",
        4: "matter_name: control character U+000C",
        7: "applicant_phone: control character U+000B",
    }


def test_rows_with_control_characters_store_as_rejects_on_every_database(tmp_path: Path, engine: Engine) -> None:
    write_controls(tmp_path)
    result = load_source(cases_source(max_reject_fraction=1), inbox_dir=tmp_path)
    store_table(engine, "cases", result.accepted, run_id=None)
    assert store_rejects(engine, result.rejected, run_id=None) == 3
    with engine.connect() as connection:
        stored = sorted(connection.execute(text("SELECT case_id, matter_name FROM cases")).all())
        quarantined = connection.execute(text("SELECT line, raw FROM rejects ORDER BY line")).all()
    assert stored == [("C1", "设立登记"), ("C4", "设立\r\n登记\t变更")]
    raw = {line: value if isinstance(value, dict) else json.loads(value) for line, value in quarantined}
    assert raw[3]["applicant_name"] == "张\x00三", "the original value is kept, escaped, in the quarantine"


def test_a_first_line_of_data_is_named_but_never_echoed(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text(
        f"GZ2026000001,0101-001,设立登记,360702SPJ,2026-01-05,{NAME},{PHONE}\n"
        f"GZ2026000002,0101-001,设立登记,360702SPJ,2026-01-06,李四,13900001111\n",
        encoding="utf-8",
    )
    result = load_source(cases_source(), inbox_dir=tmp_path)
    assert result.error is not None and not result.error_transient
    assert "cases.csv: missing required column(s) case_id (办件编号)" in result.error
    assert "line 1 looks like data, not a header line (7 fields, not shown)" in result.error
    assert NAME not in result.error and PHONE not in result.error and "GZ2026000001" not in result.error


def test_a_header_line_missing_a_column_is_listed(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text("办件编号,事项编码,受理时间\nA,M,2023-01-20\n", encoding="utf-8")
    result = load_source(cases_source(), inbox_dir=tmp_path)
    assert result.error is not None and "headers found: 办件编号, 事项编码, 受理时间" in result.error


@pytest.mark.parametrize(
    ("content", "transient"),
    [
        (None, True),  # no file yet: it may still be on its way
        (b"", False),  # empty
        (b"case_id,matter_code,unit_code,accepted_at\nA,\xff\xfe,U,x\n", False),  # neither UTF-8 nor GB18030
        (b"case_id,unit_code,accepted_at\nA,U,2026-01-05\n", False),  # a missing column
    ],
    ids=["missing", "empty", "undecodable", "missing-column"],
)
def test_only_an_error_that_may_clear_up_is_transient(tmp_path: Path, content: bytes | None, transient: bool) -> None:
    if content is not None:
        (tmp_path / "cases.csv").write_bytes(content)
    result = load_source(cases_source(required=True), inbox_dir=tmp_path)
    assert result.error is not None and result.error_transient is transient


# ------------------------------------------------------------------------------------------------- freshness


LAST = LastLoad(run_id=7, as_of="2026-11-19", rows_read=1000, content_hash="abc")


def test_a_row_count_drop_over_the_limit_is_refused_saying_by_how_much() -> None:
    verdict = judge(cases_source(), 600, ["cases.csv"], "new", LAST)
    assert verdict.refusal == ("600 rows read, 40.0% fewer than the 1,000 of the last stored load (as of 2026-11-19, "
                               "run 7); the limit is 30%: a truncated export?")
    assert judge(cases_source(), 700, ["cases.csv"], "new", LAST) == judge(cases_source(), 1500, ["x"], "new", LAST)
    assert judge(cases_source(max_row_drop=None), 10, ["cases.csv"], "new", LAST).refusal is None


def test_an_identical_export_is_stored_with_a_warning_and_a_missing_optional_one_is_a_warning() -> None:
    same = judge(cases_source(), 1000, ["cases.csv"], "abc", LAST)
    assert same.refusal is None
    assert same.warning == ("cases: not refreshed: the export is identical to the last stored load (as of 2026-11-19, "
                            "run 7)")
    missing = judge(cases_source("cases*.csv"), 0, [], None, LAST)
    assert missing.refusal is None and missing.warning == (
        "cases: no file matches cases*.csv; nothing loaded tonight (an optional source)")
    assert judge(cases_source(), 1000, ["cases.csv"], "abc", None).warning is None


def test_the_last_stored_load_is_the_newest_run_that_stored_the_source(tmp_path: Path) -> None:
    ledger = [
        (9, "2026-11-21", {"sources": [{"source": "cases", "stored": False, "rows_read": 10}]}),
        (8, "2026-11-20", {"sources": [{"source": "steps", "stored": True, "rows_read": 5, "content_hash": "s"}]}),
        (7, "2026-11-19", {"sources": [{"source": "cases", "stored": True, "rows_read": 1000, "content_hash": "abc"}]}),
        (6, "2026-11-18", None),
    ]
    assert last_loads(ledger) == {"cases": LAST, "steps": LastLoad(8, "2026-11-20", 5, "s")}
    one, two = tmp_path / "a.csv", tmp_path / "b.csv"
    one.write_text("x"), two.write_text("x")
    assert content_hash([one]) == content_hash([two]) != content_hash([one, two]) and content_hash([]) is None


def test_a_reason_about_a_phone_never_quotes_it(tmp_path: Path) -> None:
    pl.DataFrame({
        "case_id": ["C1", "C2"], "matter_code": ["M", "M"], "unit_code": ["U", "U"],
        "accepted_at": ["2026-01-05", "2026-01-05"], "applicant_name": [NAME, "李四"],
        "applicant_phone": [13812345678.5, 13900001111.0],  # a spreadsheet turned the phone into a number
    }).write_parquet(tmp_path / "cases.parquet")
    result = load_source(cases_source("cases.parquet", kind="parquet", max_reject_fraction=1), inbox_dir=tmp_path)
    assert dict(result.rejected.select("line", "reasons").iter_rows()) == {1: "applicant_phone: not a code"}
    assert result.accepted["applicant_phone"].to_list() == ["13900001111"]


def test_a_parquet_column_of_lists_fails_the_source_naming_it(tmp_path: Path) -> None:
    pl.DataFrame({"case_id": ["C1"], "matter_code": ["M"], "unit_code": ["U"], "accepted_at": ["2026-01-05"],
                  "applicant_name": [[NAME]]}).write_parquet(tmp_path / "cases.parquet")
    result = load_source(cases_source("cases.parquet", kind="parquet"), inbox_dir=tmp_path)
    assert result.error == "cases.parquet: column(s) applicant_name hold lists or structs, not single values"
    assert not result.error_transient
