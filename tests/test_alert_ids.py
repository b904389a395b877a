"""Every id an alert prints works with `permitwatch explain`: the demo's SMS and email files, id by id."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from orchestration_fixtures import make_pipeline
from typer.testing import CliRunner

from cli.main import app

SMS_IDS = re.compile(r"最急(.+?)等?。")


def outbox_ids(outbox: Path) -> dict[str, set[str]]:
    """Ids by where they were printed: the SMS's 最急 list and the email attachment's 编号 column (the email's table
    holds the same rows)."""
    found: dict[str, set[str]] = {"sms": set(), "email": set()}
    for path in outbox.rglob("*.sms.txt"):
        match = SMS_IDS.search(path.read_text(encoding="utf-8"))
        if match:
            found["sms"].update(match.group(1).split("、"))
    for path in outbox.rglob("*.email.cards.csv"):
        rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        found["email"].update(row["编号"] for row in rows)
    return found


@pytest.mark.usefixtures("prefect_harness")
def test_explain_works_on_every_id_in_the_demo_outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, None)
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "--cases", "300"])
    assert demo.exit_code == 0, demo.output

    ids = outbox_ids(pipeline.outbox)
    assert ids["sms"] and ids["email"] and ids["sms"] <= ids["email"]
    kinds = {pipeline.scalar("SELECT clock_type FROM cards WHERE subject_id = :id LIMIT 1", id=subject)
             for subject in ids["email"]}
    assert {"case", "claim"} <= kinds or {"step", "claim"} <= kinds  # case ids and push ids are both printed
    for subject in sorted(ids["email"]):
        result = runner.invoke(app, ["explain", subject], env={"COLUMNS": "200"})
        assert result.exit_code == 0, f"explain {subject}: {result.output}"
        assert "→" in result.output and "Due date:" in result.output, subject


@pytest.mark.usefixtures("prefect_harness")
def test_explain_picks_a_clock_of_a_case_by_selector_or_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, None)
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--cases", "300"]).exit_code == 0
    case_id, step_no, step_name = pipeline.rows(
        "SELECT s.case_id, s.step_no, s.step_name FROM steps s JOIN cases c ON c.case_id = s.case_id "
        "WHERE s.step_no = 2 AND s.step_name IS NOT NULL LIMIT 1")[0]

    by_selector = runner.invoke(app, ["explain", case_id, "--clock", f"step:{step_no}"], env={"COLUMNS": "200"})
    by_label = runner.invoke(app, ["explain", case_id, "--clock", f"环节「{step_name}」"], env={"COLUMNS": "200"})
    by_clock_id = runner.invoke(app, ["explain", f"step:{case_id}:{step_no}"], env={"COLUMNS": "200"})
    for result in (by_selector, by_label, by_clock_id):
        assert result.exit_code == 0, result.output
        assert f"Step (环节) step:{case_id}:{step_no}" in result.output
        assert "办件" in result.output and f"环节「{step_name}」" in result.output  # the case's clocks are listed
    wrong = runner.invoke(app, ["explain", case_id, "--clock", "step:9"], env={"COLUMNS": "200"})
    assert wrong.exit_code == 2 and "no clock matches --clock 'step:9'; choose one of:" in wrong.output
    assert f"step:{step_no} (环节「{step_name}」)" in wrong.output and "case (办件)" in wrong.output
    unknown = runner.invoke(app, ["explain", "NO-SUCH-ID"])
    assert unknown.exit_code == 2 and "no case, push (审管推送) or project with this id" in unknown.output
