"""The `weekly-report` flow end to end: database → report → mail to supervisors on a real SMTP server → artifact."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
import report_fixtures as fx
import yaml
from alert_servers import SmtpServer, free_port, running_smtp_server
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from config.settings import BUNDLED_CONFIG_DIR
from flows.weekly_report import weekly_report
from schemas.database import ensure_schema
from tasks.store.upsert import store_table

SUPERVISORS = ["360700WXB", "360702ZF", "360703ZF"]


def address(unit_code: str) -> str:
    return f"{unit_code.lower()}@gov.test"


def write_config(directory: Path, contacts: dict[str, str]) -> Path:
    """The bundled config with three supervisors (the top office and two county governments) on `contacts`."""
    shutil.copytree(BUNDLED_CONFIG_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    units_file = directory / "units.yaml"
    document = yaml.safe_load(units_file.read_text(encoding="utf-8"))
    for unit in document["units"]:
        tags = [tag for tag in unit.get("tags", []) if tag != "supervisor" or unit["code"] in contacts]
        unit["tags"] = tags
        if unit["code"] in contacts:
            unit["contacts"] = [{"url": contacts[unit["code"]], "tag": "email"}]
    units_file.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return directory


@pytest.fixture
def environment(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    engine = ensure_schema(sqlite_url)
    for name, frame in fx.tables().items():
        store_table(engine, name, frame, None)
    engine.dispose()
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(tmp_path / "var"))
    yield tmp_path


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


def read_artifact_markdown(key: str) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert artifacts, f"no artifact with key {key}"
    latest = max(artifacts, key=lambda artifact: artifact.created)
    return str(latest.data)


@pytest.mark.usefixtures("prefect_harness")
def test_supervisors_get_the_report_with_both_files_attached(
    environment: Path,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contacts = {code: smtp_server.mailto(address(code)) for code in SUPERVISORS}
    monkeypatch.setenv("PERMITWATCH_CONFIG_DIR", str(write_config(environment / "config", contacts)))

    result = weekly_report(as_of=fx.AS_OF, output_dir=str(environment / "out"))

    assert sorted(result["sent"]) == sorted(SUPERVISORS)
    for code in SUPERVISORS:
        mails = smtp_server.to(address(code))
        assert len(mails) == 1, code
        mail = mails[0]
        assert "审批时效周报 2026-W11" in mail.subject
        assert "按时办结率" in mail.html() and "50.0%" in mail.html()
        attachments = mail.attachments()
        assert sorted(attachments) == ["permitwatch-week-2026-W11.html", "permitwatch-week-2026-W11.xlsx"]
        book = openpyxl.load_workbook(io.BytesIO(attachments["permitwatch-week-2026-W11.xlsx"]))
        assert book.sheetnames[0] == "概览"
        page = attachments["permitwatch-week-2026-W11.html"].decode("utf-8")
        assert page.count("data:image/png;base64,") == 2
        for value in ["张小三", "13812345678"]:
            assert value not in page
    # Units that are not supervisors get nothing.
    assert len(smtp_server.messages) == len(SUPERVISORS)
    assert (environment / "out" / "permitwatch-week-2026-W11.xlsx").is_file()

    markdown = read_artifact_markdown("weekly-report")
    assert "| 按时办结率 | 50.0% |" in markdown
    assert "张小三" not in markdown and "13812345678" not in markdown


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_send_fails_the_run_after_mailing_the_others(
    environment: Path,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contacts = {code: smtp_server.mailto(address(code)) for code in SUPERVISORS}
    contacts["360703ZF"] = f"mailto://127.0.0.1:{free_port()}?from=permitwatch@gov.test&to=dead@gov.test"
    monkeypatch.setenv("PERMITWATCH_CONFIG_DIR", str(write_config(environment / "config", contacts)))

    state = weekly_report(as_of=fx.AS_OF, output_dir=str(environment / "out"), return_state=True)

    assert state.is_failed()
    assert "360703ZF" in str(state.message)
    assert len(smtp_server.to(address("360700WXB"))) == 1
    assert len(smtp_server.to(address("360702ZF"))) == 1
