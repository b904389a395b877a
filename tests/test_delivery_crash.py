"""A real `permitwatch deliver` killed with SIGKILL mid-way, then run again at once, against an SMTP relay that holds
each message a moment before it answers: every card is delivered, only digests in flight at the kill can repeat,
and never one that was recorded as sent."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from alert_servers import SmtpServer, running_smtp_server
from sqlalchemy import Engine, select
from test_delivery import evaluations

from config.bundle import load_config
from config.settings import BUNDLED_CONFIG_DIR, TIMEZONE
from schemas.tables import Delivery
from tasks.alerts.card_store import issue_cards

UNITS = [f"3607{number:02d}SPJ" for number in range(1, 41)]
PARALLEL_SENDS = 4
HOLD_SECONDS = 0.4  # the relay takes each message, then answers this much later
NOW = "2026-03-05T10:00"
PERMITWATCH = Path(sys.executable).with_name("permitwatch")


def mailbox(code: str) -> str:
    return f"{code.lower()}@example.gov.cn"


def write_config(directory: Path, smtp: SmtpServer) -> None:
    shutil.copytree(BUNDLED_CONFIG_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    units = [
        {"code": "360700WXB", "name": "领导小组办公室", "region": "360700", "tags": ["supervisor"],
         "contacts": [{"url": smtp.mailto(mailbox("360700WXB")), "tag": "email"}]},
        {"code": "360700XNB", "name": "效能办", "region": "360700", "parent": "360700WXB", "tags": ["ops"],
         "contacts": [{"url": smtp.mailto(mailbox("360700XNB")), "tag": "email"}]},
        *(
            {"code": code, "name": f"审批局{code[4:6]}", "region": code[:6], "parent": "360700WXB",
             "contacts": [{"url": smtp.mailto(mailbox(code)), "tag": "email"}]}
            for code in UNITS
        ),
    ]
    document = {"alerting": {"parallel_sends": PARALLEL_SENDS}, "units": units}
    (directory / "units.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Prefect home for this module's `permitwatch` processes, so their ephemeral server is set up once."""
    return Path(os.environ.get("PREFECT_HOME") or tmp_path_factory.mktemp("prefect"))


@pytest.fixture
def relay() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


def start_deliver(environment: dict[str, str], output: Path) -> subprocess.Popen[str]:
    # A session of its own, so that the kill reaches the command and the Prefect server it started, and nothing else.
    # Its output goes to a file: a pipe that nobody reads while the command runs fills up and stalls it mid-way.
    with output.open("w", encoding="utf-8") as sink:
        return subprocess.Popen(
            [str(PERMITWATCH), "deliver", "--now", NOW], env=environment, stdout=sink,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )


def unit_mail(relay: SmtpServer) -> Counter[str]:
    return Counter(code for code in UNITS for _ in relay.to(mailbox(code)))


def statuses_by_unit(engine: Engine) -> dict[str, set[str]]:
    with engine.connect() as connection:
        rows = connection.execute(select(Delivery.recipient_unit, Delivery.status)).all()
    found: dict[str, set[str]] = {}
    for unit, status in rows:
        found.setdefault(unit, set()).add(status)
    return found


def test_a_delivery_killed_mid_way_is_finished_by_an_immediate_rerun(
    engine: Engine, tmp_path: Path, relay: SmtpServer, prefect_home: Path
) -> None:
    write_config(tmp_path / "config", relay)
    config = load_config(tmp_path / "config")
    cards = [(f"C{index:03d}{suffix}", code, "warning", 1, 0) for index, code in enumerate(UNITS) for suffix in "ab"]
    issue_cards(engine, evaluations(*cards), config.units, as_of=date(2026, 3, 4),
                now=datetime(2026, 3, 5, 1, 30, tzinfo=TIMEZONE))
    environment = {
        **os.environ,
        "PERMITWATCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "PERMITWATCH_CONFIG_DIR": str(tmp_path / "config"),
        "PERMITWATCH_OUTBOX_DIR": str(tmp_path / "outbox"),
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    relay.hold = HOLD_SECONDS

    first_output = tmp_path / "first.out"
    first = start_deliver(environment, first_output)
    try:
        deadline = time.monotonic() + 240
        while sum(unit_mail(relay).values()) < 2 * PARALLEL_SENDS:
            assert first.poll() is None, first_output.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, "the delivery never started sending"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have ended by itself, and then the test says why
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    at_kill = statuses_by_unit(engine)
    recorded_sent = {unit for unit, seen in at_kill.items() if seen == {"sent"}}
    in_flight = {unit for unit, seen in at_kill.items() if "sending" in seen}
    assert 0 < len(recorded_sent) < len(UNITS)  # killed mid-way
    assert len(in_flight) <= PARALLEL_SENDS  # claimed just before sending, not all up front

    second_output = tmp_path / "second.out"
    second = start_deliver(environment, second_output)
    try:
        second.wait(timeout=300)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    output = second_output.read_text(encoding="utf-8")
    assert second.returncode == 0, output
    assert "given back from a delivery that died mid-send" in output, output

    assert statuses_by_unit(engine) == {code: {"sent"} for code in UNITS}
    received = unit_mail(relay)
    for index, code in enumerate(UNITS):
        bodies = "".join(mail.html() for mail in relay.to(mailbox(code)))
        assert f"C{index:03d}a" in bodies and f"C{index:03d}b" in bodies, code  # every card delivered
    repeated = {code for code, count in received.items() if count > 1}
    assert sum(received.values()) - len(UNITS) <= PARALLEL_SENDS
    assert repeated <= in_flight and not repeated & recorded_sent, (repeated, in_flight)
    for code in repeated:  # a receiver that deduplicates sees the repeat as the same message
        assert len({mail.message["Message-ID"] for mail in relay.to(mailbox(code))}) == 1
