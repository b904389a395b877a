"""`permitwatch evaluate` and the nightly `permitwatch run` read a messy export the same way: the same accepted cases,
the same due dates and the same rejects, each naming its file and line."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from orchestration_fixtures import Pipeline, make_pipeline
from typer.testing import CliRunner

from cli.main import app

AS_OF = date(2025, 10, 20)
HEADER = "办件编号,事项编码,承办单位编码,行政区划代码,受理时间,办结时间,更新时间,申请人,联系电话"
# Line 2 on: the physical lines of the file (the header is line 1).
MESSY = [
    "M1,SXTQ-B001,360702SPJ,360702,2025-09-26,,2025-09-26 10:00,张小三,13812340000",  # 2: older copy of M1
    "M2,SJ-D001,360702SPJ,360702,2025/9/30 9:05,,2025-09-30 09:05,李四,13900001111",  # 3
    "M3,SXTQ-B001,360702SPJ,360702,2025-10-09,,2025-10-10 08:00,周八,13700002222",  # 4: newest copy of M3
    "M1,SXTQ-B001,360702SPJ,360702,2025-09-29,,2025-10-09 17:00,张小三,13812340000",  # 5: newest M1, re-dated
    "M3,SXTQ-B001,360702SPJ,360702,2025-09-22,,2025-10-01 08:00,周八,13700002222",  # 6: older copy of M3
    "M4,SJ-D001,360702SPJ,36070,2025-09-26,,,吴九,13600003333",  # 7: a 5-digit region code
    "M5,SJ-D001,360702SPJ,360702,2025-13-01,,,郑十,13500004444",  # 8: no 13th month
    "M6,SJ-D001,360702SPJ,360702,2025-09-26,,,王\x07五,13400005555",  # 9: a control character (BEL)
    "M7,SXTQ-B001,360702SPJ,360702,2025年9月29日,,,𠀀六,13300006666",  # 10: a name only GB18030 (not GBK) encodes
]
# Enough clean cases that the spoiled ones stay under the source's 20% reject limit in the nightly run.
CLEAN = [
    f"N{n:02d},{'SJ-D001' if n % 2 else 'SXTQ-B001'},360702SPJ,360702,{date(2025, 9, 1) + timedelta(days=n)},,,"
    f"客户{n},1380000{n:04d}"
    for n in range(30)
]


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    pipeline = make_pipeline(tmp_path, monkeypatch, None)
    pipeline.inbox.mkdir(parents=True)
    (pipeline.inbox / "cases.csv").write_bytes(("\r\n".join([HEADER, *MESSY, *CLEAN]) + "\r\n").encode("gb18030"))
    (pipeline.inbox / "suspensions.csv").write_bytes(
        "办件编号,特别程序种类,开始时间,结束时间\nM2,专家评审,2025-10-09,2025-10-14\n".encode("gb18030")
    )
    (pipeline.inbox / "steps.csv").write_text("办件编号,环节序号,办理单位编码,开始时间\n", encoding="utf-8")
    return pipeline


def frame(pipeline: Pipeline, sql: str, columns: list[str]) -> pl.DataFrame:
    return pl.DataFrame([tuple(row) for row in pipeline.rows(sql)], schema=columns, orient="row")


@pytest.mark.usefixtures("prefect_harness")
def test_evaluate_and_the_nightly_run_accept_and_reject_the_same_rows(pipeline: Pipeline, tmp_path: Path) -> None:
    inbox = pipeline.inbox
    runner = CliRunner()
    out, rejects = tmp_path / "out.csv", tmp_path / "rejects.csv"
    evaluated = runner.invoke(
        app,
        ["evaluate", str(inbox / "cases.csv"), "--suspensions", str(inbox / "suspensions.csv"),
         "--as-of", AS_OF.isoformat(), "-o", str(out), "--rejects", str(rejects)],
        env={"COLUMNS": "200"},
    )
    assert evaluated.exit_code == 0, evaluated.output
    nightly = runner.invoke(app, ["run", "--as-of", AS_OF.isoformat()])
    assert nightly.exit_code == 0, nightly.output

    ours = pl.read_csv(out, schema_overrides={"due_date": pl.Date}).select("case_id", "due_date").sort("case_id")
    stored = frame(
        pipeline,
        "SELECT subject_id, due_date FROM evaluations WHERE clock_type = 'case' ORDER BY subject_id",
        ["case_id", "due_date"],
    ).with_columns(pl.col("due_date").str.to_date())
    assert ours["case_id"].to_list() == sorted(["M1", "M2", "M3", "M7", *(f"N{n:02d}" for n in range(30))])
    assert ours.equals(stored)
    # The newest copy by updated_at wins, wherever it stands in the file: 8 working days (SXTQ-B001) from M1's
    # corrected acceptance on 09-29 (not 09-26, the first copy), across the National Day holiday and the make-up
    # Saturday 10-11; from M3's acceptance on 10-09 (not 09-22, the last copy).
    due = dict(ours.iter_rows())
    assert (due["M1"], due["M3"]) == (date(2025, 10, 16), date(2025, 10, 20))

    file_rejects = pl.read_csv(rejects, infer_schema=False)
    lines = dict(file_rejects.select(pl.format("{} line {}", "source", "line"), "reasons").iter_rows())
    assert lines == {
        "cases.csv line 2": "duplicate of line 5",
        "cases.csv line 6": "duplicate of line 4",
        "cases.csv line 7": "region_code: not a 6-digit region code '36070'",
        "cases.csv line 8": "accepted_at: not a date '2025-13-01'",
        "cases.csv line 9": "applicant_name: control character U+0007",
    }
    stored_rejects = frame(pipeline, "SELECT source, line, reasons FROM rejects", ["source", "line", "reasons"])
    assert dict(stored_rejects.select(pl.format("{} line {}", "source", "line"), "reasons").iter_rows()) == lines
    assert "cases.csv line 7: region_code: not a 6-digit region code '36070'" in evaluated.output
    # The original values are kept for the operator, the applicant's name and phone masked.
    raw = rejects.read_text(encoding="utf-8")
    assert "张小三" not in raw and "13812340000" not in raw and "张*三" in raw and "138****0000" in raw
