"""Delivery end to end: cards stored, digests sent to a real SMTP server and a real HTTP SMS gateway on loopback."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml
from alert_servers import SmsGateway, SmtpServer, running_sms_gateway, running_smtp_server
from sqlalchemy import Engine, insert, select, update

from config.bundle import PermitwatchConfig, load_config
from config.settings import BUNDLED_CONFIG_DIR, TIMEZONE, load_settings
from schemas.tables import Card, Case, Delivery, DeliveryLease, Run
from tasks.alerts.card_store import issue_cards
from tasks.alerts.claims import Attempt, claim, holder_alive, process_start
from tasks.alerts.delivery import DeliveryIncomplete, deliver_pending
from tasks.alerts.digests import Digest
from tasks.alerts.idempotency import digest_key
from tasks.alerts.sending import TIMEOUT_ERROR, SendOptions, display_target
from tasks.alerts.silences import add_silence, list_silences, remove_silence
from tasks.store.runs import close_run, open_run

NOW = datetime(2026, 3, 5, 10, 0, tzinfo=TIMEZONE)  # Thursday, a working day
AS_OF = date(2026, 3, 4)
TOKEN = "s3cret-gateway-token"

# code, parent, tags, has contacts
UNITS = [
    ("360700WXB", None, ["supervisor"], True),
    ("360700XNB", "360700WXB", ["ops"], True),
    ("360700SCJ", "360700WXB", [], True),
    ("360702ZF", "360700WXB", ["supervisor"], True),
    ("360702SPJ", "360702ZF", [], True),
    ("360703ZF", "360700WXB", ["supervisor"], True),
    ("360703SPJ", "360703ZF", [], True),
    ("360704ZF", "360700WXB", ["supervisor"], True),
    ("360704SPJ", "360704ZF", [], False),
]
APPLICANTS = {"C1": ("张小三", "13812345678"), "C2": ("李四", "13987654321"), "C3": ("欧阳娜娜", "0797-8123456")}


def mobile(code: str) -> str:
    return "139" + str(zlib.crc32(code.encode()) % 10**8).zfill(8)


def mailbox(code: str) -> str:
    return f"{code.lower()}@example.gov.cn"


@dataclass
class World:
    engine: Engine
    config: PermitwatchConfig
    smtp: SmtpServer
    gateway: SmsGateway
    outbox: Path

    def deliver(  # type: ignore[no-untyped-def]
        self, now: datetime = NOW, *, force: bool = False, options: SendOptions | None = None
    ):
        return deliver_pending(self.engine, self.config, now, self.outbox, force=force, options=options)

    def issue(self, evaluations: pl.DataFrame, as_of: date = AS_OF, now: datetime = NOW):  # type: ignore[no-untyped-def]
        return issue_cards(self.engine, evaluations, self.config.units, as_of=as_of, now=now)

    def emails(self, code: str) -> list:  # type: ignore[type-arg]
        return self.smtp.to(mailbox(code))

    def sms(self, code: str) -> list:  # type: ignore[type-arg]
        return self.gateway.to(mobile(code))


def write_config(
    directory: Path,
    smtp: SmtpServer,
    gateway: SmsGateway,
    max_attempts: int = 5,
    form_units: frozenset[str] = frozenset(),
) -> None:
    shutil.copytree(BUNDLED_CONFIG_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    units = []
    for code, parent, tags, has_contacts in UNITS:
        contacts = (
            [
                {"url": smtp.mailto(mailbox(code)), "tag": "email"},
                {"url": (gateway.form_url if code in form_units else gateway.json_url)(mobile(code)), "tag": "sms"},
            ]
            if has_contacts
            else []
        )
        units.append(
            {
                "code": code,
                "name": f"单位{code}",
                "region": code[:6],
                "parent": parent,
                "tags": tags,
                "contacts": contacts,
            }
        )
    document = {"alerting": {"max_attempts": max_attempts}, "units": units}
    (directory / "units.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def sms_gateway() -> Iterator[SmsGateway]:
    with running_sms_gateway() as gateway:
        yield gateway


@pytest.fixture
def world(
    engine: Engine, tmp_path: Path, smtp_server: SmtpServer, sms_gateway: SmsGateway, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setenv("SMS_GATEWAY_TOKEN", TOKEN)
    write_config(tmp_path / "config", smtp_server, sms_gateway)
    with engine.begin() as connection:
        connection.execute(
            insert(Case),
            [
                {
                    "case_id": case_id,
                    "matter_code": "SXTQ-A001",
                    "matter_name": "食品经营许可",
                    "unit_code": "360702SPJ",
                    "accepted_at": date(2026, 2, 2),
                    "applicant_name": name,
                    "applicant_phone": phone,
                    "row_hash": "x",
                }
                for case_id, (name, phone) in APPLICANTS.items()
            ],
        )
    yield World(engine, load_config(tmp_path / "config"), smtp_server, sms_gateway, tmp_path / "outbox")


def evaluations(*rows: tuple[str, str, str, int, int], calendar: str = "official") -> pl.DataFrame:
    """rows: (case_id, unit_code, level, remaining, overdue_workdays); all due 2026-02-26 (or per level)."""
    return pl.DataFrame(
        {
            "clock_id": [f"case:{row[0]}" for row in rows],
            "clock_type": ["case"] * len(rows),
            "subject_id": [row[0] for row in rows],
            "case_id": [row[0] for row in rows],
            "unit_code": [row[1] for row in rows],
            "matter_code": ["SXTQ-A001"] * len(rows),
            "due_date": [date(2026, 2, 26)] * len(rows),
            "remaining": [row[3] for row in rows],
            "overdue_workdays": [row[4] for row in rows],
            "level": [row[2] for row in rows],
            "calendar": [calendar] * len(rows),
            "repeat_every": [3] * len(rows),
        },
        schema_overrides={"remaining": pl.Int32, "overdue_workdays": pl.Int32, "repeat_every": pl.Int32},
    )


STANDARD = evaluations(
    ("C1", "360702SPJ", "warning", 1, 0),
    ("C2", "360702SPJ", "overdue", -2, 2),
    ("C3", "360703SPJ", "overdue", -4, 4),
    ("C4", "360700SCJ", "warning", 0, 0),
    ("C5", "360700SCJ", "normal", 8, 0),
    ("C6", "360703SPJ", "paused", 3, 0),
)


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(Delivery.status)).scalars().all()
    return {status: rows.count(status) for status in set(rows)}


def test_each_unit_with_cards_gets_one_email_and_one_sms_and_a_second_delivery_sends_nothing(world: World) -> None:
    plan = world.issue(STANDARD)
    assert plan.counts["new"] == 4
    report = world.deliver()
    assert report.skipped is None and report.messages_failed == 0
    for code in ("360702SPJ", "360703SPJ", "360700SCJ"):
        assert len(world.emails(code)) == 1, code
        assert len(world.sms(code)) == 1, code
    for code in ("360700WXB", "360702ZF", "360703ZF", "360700XNB"):
        assert world.emails(code) == [] and world.sms(code) == [], code
    digest = world.sms("360702SPJ")[0]
    assert digest.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "超期1" in digest.body["content"] and "预警1" in digest.body["content"]
    assert digest.body["content"].index("C2") < digest.body["content"].index("C1")  # most urgent first
    assert "title" not in digest.body
    email = world.emails("360702SPJ")[0]
    html = email.html()
    assert html.index("C2") < html.index("C1")
    assert "cards.csv" in email.attachments()
    assert statuses(world.engine) == {"sent": 8}  # 4 cards x (email, sms)
    with world.engine.connect() as connection:
        assert set(connection.execute(select(Card.status)).scalars()) == {"sent"}

    world.issue(STANDARD)  # the nightly run again for the same as-of date: nothing new
    again = world.deliver()
    assert again.messages_sent == 0
    assert len(world.smtp.messages) == 3 and len(world.gateway.requests) == 3


def test_overdue_clock_is_reminded_every_repeat_every_working_days(world: World) -> None:
    for overdue in (1, 2, 3, 4):
        world.issue(evaluations(("C2", "360702SPJ", "overdue", -overdue, overdue)))
        world.deliver()
    # overdue working days 1..3 are one reminder, day 4 (1 + repeat_every) the next
    assert len(world.sms("360702SPJ")) == 2
    with world.engine.connect() as connection:
        assert sorted(connection.execute(select(Card.reminder_no)).scalars()) == [0, 1]


def test_escalation_reaches_the_supervisor_and_supersedes_the_pending_overdue_card(world: World) -> None:
    world.issue(evaluations(("C2", "360702SPJ", "overdue", -4, 4)))
    plan = world.issue(evaluations(("C2", "360702SPJ", "escalated", -5, 5)), as_of=date(2026, 3, 5))
    assert plan.superseded.height == 1
    assert plan.superseded["superseded_by"][0] == "inhibited by escalated"
    world.deliver()
    owner_sms = world.sms("360702SPJ")
    supervisor_sms = world.sms("360702ZF")
    assert len(owner_sms) == 1 and len(supervisor_sms) == 1
    assert "督办1" in owner_sms[0].body["content"] and "超期" not in owner_sms[0].body["content"]
    assert "C2" in supervisor_sms[0].body["content"]
    assert len(world.emails("360702ZF")) == 1 and "C2" in world.emails("360702ZF")[0].html()
    assert world.emails("360700WXB") == []  # one supervisor level by default
    with world.engine.connect() as connection:
        cards = dict(connection.execute(select(Card.level, Card.status)).all())
    assert cards == {"overdue": "superseded", "escalated": "sent"}


def test_unit_without_contacts_is_alerted_through_its_parent(world: World) -> None:
    world.issue(evaluations(("C1", "360704SPJ", "warning", 1, 0)))
    world.deliver()
    assert len(world.sms("360704ZF")) == 1 and len(world.emails("360704ZF")) == 1


def test_gateway_down_keeps_sms_pending_until_it_is_back_then_delivers_once(world: World) -> None:
    world.issue(STANDARD)
    world.gateway.down()
    first = world.deliver()
    assert first.messages_sent == 3 and first.messages_failed == 3
    assert statuses(world.engine) == {"sent": 4, "pending": 4}
    with world.engine.connect() as connection:
        pending = connection.execute(
            select(Delivery.channel, Delivery.attempts, Delivery.last_error).where(Delivery.status == "pending")
        ).all()
    assert {row.channel for row in pending} == {"sms"}
    assert all(row.attempts == 1 and "Connection error" in (row.last_error or "") for row in pending)

    world.gateway.up()
    world.gateway.fail(500)
    second = world.deliver(datetime(2026, 3, 5, 11, 0, tzinfo=TIMEZONE))
    assert second.messages_failed == 3 and len(world.gateway.requests) == 3
    with world.engine.connect() as connection:
        errors = connection.execute(select(Delivery.last_error).where(Delivery.status == "pending")).scalars().all()
    assert all("500" in error for error in errors)

    world.gateway.fail(200)
    world.gateway.clear()
    third = world.deliver(datetime(2026, 3, 5, 12, 0, tzinfo=TIMEZONE))
    assert third.messages_sent == 3 and third.messages_failed == 0
    world.deliver(datetime(2026, 3, 5, 13, 0, tzinfo=TIMEZONE))
    for code in ("360702SPJ", "360703SPJ", "360700SCJ"):
        assert len(world.sms(code)) == 1
        assert len(world.emails(code)) == 1
    assert statuses(world.engine) == {"sent": 8}


def test_a_target_failing_max_attempts_times_is_failed_and_reported_to_ops(world: World, tmp_path: Path) -> None:
    write_config(tmp_path / "config2", world.smtp, world.gateway, max_attempts=2)
    world.config = load_config(tmp_path / "config2")
    world.issue(evaluations(("C1", "360702SPJ", "warning", 1, 0)))
    world.gateway.fail(500)
    first = world.deliver()
    assert first.deliveries_failed == 0 and first.ops_notified is None
    second = world.deliver(datetime(2026, 3, 5, 11, 0, tzinfo=TIMEZONE))
    assert second.deliveries_failed == 1 and second.ops_notified is True
    ops = world.emails("360700XNB")
    assert len(ops) == 1
    assert "360702SPJ" in ops[0].html() and "SMS_GATEWAY_TOKEN" in ops[0].html() and TOKEN not in ops[0].html()
    with world.engine.connect() as connection:
        assert connection.execute(select(Card.status)).scalar_one() == "failed"
    world.gateway.fail(200)
    world.deliver(datetime(2026, 3, 5, 12, 0, tzinfo=TIMEZONE))
    assert len(world.sms("360702SPJ")) == 2  # the two failed attempts; a failed delivery is not retried again


def test_a_silence_suppresses_and_records_the_cards(world: World) -> None:
    silence = add_silence(world.engine, "unit", "360703SPJ", date(2026, 3, 31), "机构调整", now=NOW)
    world.issue(STANDARD)
    with world.engine.connect() as connection:
        suppressed = connection.execute(
            select(Card.subject_id, Card.suppressed_by).where(Card.status == "suppressed")
        ).all()
    assert [card.subject_id for card in suppressed] == ["C3"]
    assert suppressed[0].suppressed_by.startswith(f"silence {silence} unit=360703SPJ")
    world.deliver()
    assert world.sms("360703SPJ") == [] and world.emails("360703SPJ") == []
    assert len(world.sms("360702SPJ")) == 1


def test_a_silence_added_after_the_nightly_run_holds_back_pending_cards(world: World) -> None:
    world.issue(STANDARD)
    add_silence(world.engine, "case", "C2", date(2026, 3, 5), "申请人撤回中", now=NOW)
    report = world.deliver()
    assert report.suppressed_cards == 1
    assert "C2" not in world.sms("360702SPJ")[0].body["content"]
    assert "C1" in world.sms("360702SPJ")[0].body["content"]


def test_silences_can_be_listed_and_removed(world: World) -> None:
    first = add_silence(world.engine, "matter", "SXTQ-A001", date(2026, 4, 1), "事项调整", now=NOW)
    add_silence(world.engine, "case", "C9", date(2026, 4, 1), "核查", now=NOW)
    assert list_silences(world.engine)["id"].to_list() == [first, first + 1]
    assert remove_silence(world.engine, first) is True
    assert remove_silence(world.engine, first) is False
    assert list_silences(world.engine)["value"].to_list() == ["C9"]
    with pytest.raises(ValueError, match="scope"):
        add_silence(world.engine, "region", "360702", date(2026, 4, 1), "x", now=NOW)
    with pytest.raises(ValueError, match="past"):
        add_silence(world.engine, "case", "C1", date(2026, 3, 1), "x", now=NOW)


def test_a_backfill_sends_nothing(world: World) -> None:
    plan = world.issue(STANDARD, as_of=date(2026, 2, 20))
    assert not plan.deliverable and plan.counts["backfill"] == 4
    report = world.deliver()
    assert report.messages_sent == 0
    assert world.smtp.messages == [] and world.gateway.requests == []
    with world.engine.connect() as connection:
        assert connection.execute(select(Card)).first() is None


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (datetime(2026, 3, 5, 7, 59, tzinfo=TIMEZONE), "outside the delivery window 08:30-18:00"),
        (datetime(2026, 3, 5, 18, 0, tzinfo=TIMEZONE), "outside the delivery window"),
        (datetime(2026, 3, 7, 10, 0, tzinfo=TIMEZONE), "2026-03-07 (Saturday) is not an official working day"),
        (datetime(2026, 2, 17, 10, 0, tzinfo=TIMEZONE), "2026-02-17 (Tuesday) is not an official working day"),
        (datetime(2026, 3, 5, 1, 0, tzinfo=TIMEZONE), "01:00 is outside"),
    ],
)
def test_outside_the_window_nothing_is_sent_unless_forced(world: World, now: datetime, reason: str) -> None:
    world.issue(STANDARD)
    report = world.deliver(now)
    assert report.skipped is not None and reason in report.skipped
    assert world.smtp.messages == [] and world.gateway.requests == []
    forced = world.deliver(now, force=True)
    assert forced.skipped is None and forced.messages_sent == 6


def test_a_make_up_working_saturday_is_inside_the_window(world: World) -> None:
    world.issue(STANDARD, as_of=date(2026, 2, 13), now=datetime(2026, 2, 14, 1, 30, tzinfo=TIMEZONE))
    report = world.deliver(datetime(2026, 2, 14, 9, 0, tzinfo=TIMEZONE))  # 调休 Saturday
    assert report.skipped is None and report.messages_sent == 6


def test_no_applicant_name_or_phone_in_any_sms_or_log_line(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world.issue(STANDARD)
    world.gateway.down()
    world.deliver()
    world.gateway.up()
    world.deliver(datetime(2026, 3, 5, 11, 0, tzinfo=TIMEZONE))
    assert len(world.gateway.requests) == 3
    sms_bodies = [str(request.body) for request in world.gateway.requests]
    captured = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    assert "Sent JSON POST notification" in captured  # apprise's own log lines were captured
    assert TOKEN not in captured
    for name, phone in APPLICANTS.values():
        for text in [*sms_bodies, captured]:
            assert name not in text and phone not in text
            assert phone.replace("-", "") not in text
    html = world.emails("360702SPJ")[0].html()
    assert "张*三" in html and "138****5678" in html and "张小三" not in html and "13812345678" not in html
    csv = world.emails("360702SPJ")[0].attachments()["cards.csv"].decode("utf-8-sig")
    assert "张*三" in csv and "张小三" not in csv


def test_outbox_contacts_write_one_file_per_unit_and_channel(engine: Engine, tmp_path: Path) -> None:
    config = load_config(BUNDLED_CONFIG_DIR)
    issue_cards(engine, STANDARD, config.units, as_of=AS_OF, now=NOW)
    report = deliver_pending(engine, config, NOW, tmp_path / "outbox")
    assert report.messages_sent == 6
    folder = tmp_path / "outbox" / "20260305T100000"
    names = sorted(path.name for path in folder.iterdir())
    assert names == sorted(
        f"{code}.{suffix}"
        for code in ("360702SPJ", "360703SPJ", "360700SCJ")
        for suffix in ("email.html", "email.cards.csv", "sms.txt")
    )
    assert "C2" in (folder / "360702SPJ.sms.txt").read_text(encoding="utf-8")


def test_an_sms_gateway_taking_form_posts_gets_its_fields_and_key_header(world: World, tmp_path: Path) -> None:
    write_config(tmp_path / "config2", world.smtp, world.gateway, form_units=frozenset({"360703SPJ"}))
    world.config = load_config(tmp_path / "config2")
    world.issue(STANDARD)
    world.deliver()
    [request] = world.sms("360703SPJ")
    assert request.path == "/api/sms/form" and request.headers["X-Api-Key"] == TOKEN
    assert request.body["phone"] == mobile("360703SPJ") and request.body["text"].startswith("【时限预警】超期1")
    assert "title" not in request.body
    assert world.sms("360702SPJ")[0].path == "/api/sms/send"


def test_the_deliver_and_silence_commands(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", world.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("PERMITWATCH_CONFIG_DIR", str(world.config.directory))
    monkeypatch.setenv("PERMITWATCH_OUTBOX_DIR", str(tmp_path / "cli-outbox"))
    runner = CliRunner()
    added = runner.invoke(app, ["silence", "add", "--case", "C2", "--until", "2099-12-31", "--reason", "专家评审"])
    assert added.exit_code == 0 and "Silence 1: case C2 until 2099-12-31" in added.output
    both = runner.invoke(
        app, ["silence", "add", "--case", "C2", "--unit", "360702SPJ", "--until", "2099-12-31", "--reason", "x"]
    )
    assert both.exit_code == 2 and "exactly one of --case, --unit, --matter" in both.output
    unknown = runner.invoke(app, ["silence", "add", "--unit", "369999XYZ", "--until", "2099-12-31", "--reason", "x"])
    assert unknown.exit_code == 2 and "not a unit" in unknown.output
    listed = runner.invoke(app, ["silence", "list"])
    assert listed.exit_code == 0 and "C2" in listed.output and "active" in listed.output

    world.issue(STANDARD)
    sent = runner.invoke(app, ["deliver", "--now", "2026-03-05T10:00"])
    assert sent.exit_code == 0, sent.output
    assert "6 messages sent" in sent.output
    assert "C2" not in world.sms("360702SPJ")[0].body["content"]  # silenced when the nightly run issued it
    assert not (tmp_path / "cli-outbox").exists()  # loopback contacts here: nothing written to the outbox
    again = runner.invoke(app, ["deliver", "--now", "2026-03-05T10:05"])
    assert again.exit_code == 0 and "0 messages sent" in again.output
    bad = runner.invoke(app, ["deliver", "--now", "tomorrow"])
    assert bad.exit_code == 2 and "ISO date-time" in bad.output
    world.issue(evaluations(("C4", "360700SCJ", "overdue", -1, 1)), as_of=date(2026, 3, 5))
    world.gateway.fail(500)
    failing = runner.invoke(app, ["deliver", "--now", "2026-03-05T11:00"])
    assert failing.exit_code == 1
    assert "deliver: Failed: 1 of 2 messages not sent: 360700SCJ sms:" in failing.output
    # (CliRunner closes the stream Prefect's console handler writes to, so "Traceback" of a logging error may appear)
    assert "Unexpected result for failed state" not in failing.output and TOKEN not in failing.output
    world.gateway.fail(200)

    removed = runner.invoke(app, ["silence", "remove", "1"])
    assert removed.exit_code == 0 and "Silence 1 removed" in removed.output
    assert runner.invoke(app, ["silence", "remove", "1"]).exit_code == 2
    assert "removed" in runner.invoke(app, ["silence", "list", "--all"]).output


def _sms_row_of(engine: Engine, case_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            select(Delivery.id)
            .join(Card, Card.card_id == Delivery.card_id)
            .where(Card.subject_id == case_id, Delivery.channel == "sms")
        ).scalar_one()


def test_rows_a_live_delivery_is_sending_are_left_to_it_and_given_back_once_its_process_is_gone(world: World) -> None:
    world.issue(STANDARD)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        started = process_start(other.pid)
        assert started
        now = datetime.now(UTC)
        with world.engine.begin() as connection:
            connection.execute(
                insert(DeliveryLease).values(
                    attempt_id="other", host=socket.gethostname(), pid=other.pid, process_started=started,
                    flow_run_id=None, started_at=now, expires_at=now + timedelta(hours=1),
                )
            )
            connection.execute(
                update(Delivery)
                .where(Delivery.id == _sms_row_of(world.engine, "C3"))
                .values(status="sending", claimed_by="other", sent_at=now)
            )
        meanwhile = world.deliver(datetime(2026, 3, 5, 10, 10, tzinfo=TIMEZONE))
        assert meanwhile.messages_sent == 5 and meanwhile.released == 0
        assert world.sms("360703SPJ") == []
    finally:
        other.kill()
        other.wait()
    # the other delivery's process is gone: its row is given back at once, not after a timeout
    recovered = world.deliver(datetime(2026, 3, 5, 10, 11, tzinfo=TIMEZONE))
    assert recovered.released == 1 and recovered.messages_sent == 1 and len(world.sms("360703SPJ")) == 1
    assert statuses(world.engine) == {"sent": 8}
    with world.engine.connect() as connection:
        assert connection.execute(select(DeliveryLease)).first() is None


def test_an_attempt_is_dead_when_its_process_is_gone_or_its_pid_reused_or_its_lease_lapsed() -> None:
    now = datetime.now(UTC)
    me = Attempt.of_this_process()

    def lease(**changes: object) -> DeliveryLease:
        values: dict[str, object] = {
            "attempt_id": "a", "host": me.host, "pid": me.pid, "process_started": me.process_started,
            "flow_run_id": None, "started_at": now, "expires_at": now + timedelta(minutes=1),
        }
        return DeliveryLease(**{**values, **changes})

    assert holder_alive(lease(), now)
    assert not holder_alive(None, now)
    assert not holder_alive(lease(expires_at=now - timedelta(seconds=1)), now)
    assert not holder_alive(lease(process_started="1"), now)  # the pid now belongs to another process
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not holder_alive(lease(pid=int(finished.stdout)), now)
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    deadline = time.monotonic() + 10
    while process_start(killed.pid) is not None and time.monotonic() < deadline:  # a zombie until it is collected
        time.sleep(0.01)
    assert not holder_alive(lease(pid=killed.pid), now)
    killed.wait()
    elsewhere = lease(host="another-host.invalid", flow_run_id="f")
    assert holder_alive(elsewhere, now)  # another host's process cannot be looked up: its lease decides
    assert holder_alive(elsewhere, now, run_ended=lambda run_id: False)
    assert not holder_alive(elsewhere, now, run_ended=lambda run_id: run_id == "f")


def test_a_digest_is_claimed_whole_or_not_at_all_and_only_from_pending_rows(world: World) -> None:
    world.issue(evaluations(("C1", "360702SPJ", "warning", 1, 0), ("C2", "360702SPJ", "overdue", -2, 2)))
    with world.engine.connect() as connection:
        sms_ids = connection.execute(select(Delivery.id).where(Delivery.channel == "sms")).scalars().all()
        email_ids = connection.execute(select(Delivery.id).where(Delivery.channel == "email")).scalars().all()
    attempt = Attempt.of_this_process()
    stamp = NOW.astimezone(UTC)
    # another delivery claimed one SMS row first; a review step holds one email row back
    with world.engine.begin() as connection:
        connection.execute(update(Delivery).where(Delivery.id == sms_ids[0]).values(status="sending"))
        connection.execute(update(Delivery).where(Delivery.id == email_ids[0]).values(status="awaiting_review"))
    assert claim(world.engine, attempt, sms_ids, stamp) is False
    assert claim(world.engine, attempt, email_ids, stamp) is False
    assert statuses(world.engine) == {"sending": 1, "pending": 2, "awaiting_review": 1}  # nothing half-claimed
    assert claim(world.engine, attempt, email_ids[1:], stamp) is True
    with world.engine.connect() as connection:
        held = connection.execute(select(Delivery.claimed_by).where(Delivery.id == email_ids[1])).scalar_one()
    assert held == attempt.attempt_id


def test_a_gateway_answering_after_the_timeout_is_not_retried_until_the_next_delivery(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERMITWATCH_SMS_TIMEOUT", "0.5")
    options = SendOptions.from_settings(load_settings())
    world.issue(STANDARD)
    world.gateway.delay = 1.5  # the gateway takes the SMS, then answers too late
    first = world.deliver(options=options)
    assert first.messages_sent == 3 and first.messages_failed == 3
    assert len(world.gateway.requests) == 3  # one request per SMS digest: no retry inside the delivery
    with world.engine.connect() as connection:
        pending = connection.execute(
            select(Delivery.attempts, Delivery.last_error).where(Delivery.status == "pending")
        ).all()
    assert len(pending) == 4 and all(row.attempts == 1 and row.last_error == TIMEOUT_ERROR for row in pending)
    assert {failure["error"] for failure in first.failures} == {TIMEOUT_ERROR}

    world.gateway.delay = 0
    second = world.deliver(datetime(2026, 3, 5, 11, 0, tzinfo=TIMEZONE), options=options)
    assert second.messages_sent == 3 and second.messages_failed == 0
    assert statuses(world.engine) == {"sent": 8}
    for code in ("360702SPJ", "360703SPJ", "360700SCJ"):
        requests = world.sms(code)
        assert len(requests) == 2  # the documented repeat: the first one may have been delivered
        keys = {request.headers["Idempotency-Key"] for request in requests}
        assert len(keys) == 1 and len(keys.pop()) == 32  # the same key both times: a gateway can drop the repeat


def test_the_sms_idempotency_key_can_go_in_a_body_field_and_email_gets_it_as_message_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERMITWATCH_SMS_IDEMPOTENCY_HEADER", "")
    monkeypatch.setenv("PERMITWATCH_SMS_IDEMPOTENCY_FIELD", "request_id")
    world.issue(STANDARD)
    world.deliver(options=SendOptions.from_settings(load_settings()))
    [request] = world.sms("360702SPJ")
    assert "Idempotency-Key" not in request.headers and len(request.body["request_id"]) == 32
    [email] = world.emails("360702SPJ")
    with world.engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.id, Delivery.target).where(
                Delivery.recipient_unit == "360702SPJ", Delivery.channel == "email"
            )
        ).all()
    carried = Digest("360702SPJ", "email", rows[0].target, "", "", delivery_ids=tuple(row.id for row in rows))
    assert email.message["Message-ID"] == f"<pw-{digest_key(carried)}@127.0.0.1>"  # derived from the digest
    assert len(email.message.get_all("Message-ID")) == 1


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("json://127.0.0.1:8080/api/sms/send?+Authorization=Bearer%20${TOKEN}&:mobile=13912345678&:message=content",
         "json://127.0.0.1:8080 to 139****5678"),
        ("mailtos://${SMTP_USER}:${SMTP_PASSWORD}@smtp.example.gov.cn:465?from=a@example.gov.cn&to=spj@example.gov.cn",
         "mailtos://smtp.example.gov.cn:465 to spj@example.gov.cn"),
        ("outbox://sms", "outbox://sms"),
    ],
)
def test_targets_are_shown_short_without_credentials_and_with_phones_masked(target: str, shown: str) -> None:
    assert display_target(target) == shown


def _flow_environment(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The deliver flow reads its settings from the environment, as under `permitwatch serve` or a worker."""
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", world.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("PERMITWATCH_CONFIG_DIR", str(world.config.directory))
    monkeypatch.setenv("PERMITWATCH_OUTBOX_DIR", str(tmp_path / "flow-outbox"))


def test_a_failed_delivery_shows_in_prefect_with_its_reasons_and_no_traceback(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    from flows.deliver import deliver_flow

    _flow_environment(world, monkeypatch, tmp_path)
    world.issue(STANDARD)
    world.gateway.fail(500)
    final = deliver_flow(now=NOW, force=True, return_state=True)
    assert final.is_failed()
    assert final.message is not None and final.message.startswith("3 of 6 messages not sent: 360")
    assert "500" in final.message and "\n" not in final.message
    incomplete = final.result(raise_on_failure=False)
    assert isinstance(incomplete, DeliveryIncomplete) and str(incomplete) == final.message
    assert incomplete.summary["messages_failed"] == 3 and incomplete.summary["messages_sent"] == 3
    with pytest.raises(DeliveryIncomplete, match=r"^3 of 3 messages not sent: 360"):  # not a TypeError about the data
        deliver_flow(now=datetime(2026, 3, 5, 11, 0, tzinfo=TIMEZONE), force=True)

    run_id = final.state_details.flow_run_id
    APILogWorker.drain_all(timeout=30)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["delivery-status"]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])
            )
        )
    warnings = [log.message for log in logs if log.level == logging.WARNING and log.message.startswith("not sent:")]
    assert len(warnings) == 3
    assert any(
        line.startswith("not sent: unit 360702SPJ 单位360702SPJ, sms to json://127.0.0.1:")
        and "to 139****" in line and "attempt 1 of 5:" in line and "500" in line
        for line in warnings
    ), warnings
    text = "\n".join(log.message for log in logs)
    assert "Traceback" not in text and TOKEN not in text and mobile("360702SPJ") not in text
    stages = {task.name.rsplit("-", 1)[0] for task in tasks}
    assert {"check-nightly", "plan-delivery", "send-digests", "settle-delivery"} <= stages

    rows = artifact.data if isinstance(artifact.data, list) else json.loads(str(artifact.data))
    assert list(rows[0]) == ["status", "unit", "unit_name", "channel", "cards", "attempt", "last_error", "target"]
    failed = [row for row in rows if row["status"] == "pending"]
    assert {row["unit"] for row in failed} == {"360702SPJ", "360703SPJ", "360700SCJ"}
    assert all("500" in row["last_error"] and row["attempt"] == 1 and "****" in row["target"] for row in failed)
    assert all(len(row["target"]) <= 60 and "Authorization" not in row["target"] for row in rows)
    with world.engine.connect() as connection:
        assert connection.execute(select(Run.status).where(Run.flow == "deliver")).scalars().all() == ["failed"] * 2


def test_deliver_tells_ops_once_a_day_before_the_cards_when_the_nightly_run_before_did_not_complete(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    from flows.deliver import deliver_flow

    _flow_environment(world, monkeypatch, tmp_path)
    world.issue(STANDARD)
    first = deliver_flow(now=NOW, force=True, return_state=True)  # no nightly run as of 2026-03-04 recorded
    assert first.is_completed(), first.message
    assert first.result()["nightly_problem"] == "no nightly run as of 2026-03-04 was recorded"
    [notice] = world.emails("360700XNB")
    assert "2026-03-04" in notice.subject and "permitwatch run --as-of 2026-03-04" in notice.html()
    assert world.smtp.messages.index(notice) == 0  # ops hear of it before any card goes out
    deliver_flow(now=datetime(2026, 3, 5, 11, 0, tzinfo=TIMEZONE), force=True)
    assert len(world.emails("360700XNB")) == 1  # once a day

    failed = open_run(world.engine, "nightly", date(2026, 3, 5))
    close_run(world.engine, failed, "failed", {})
    crashed = open_run(world.engine, "nightly", date(2026, 3, 6))  # never closed: its process died
    completed = open_run(world.engine, "nightly", date(2026, 3, 7))
    close_run(world.engine, completed, "completed", {})
    deliver_flow(now=datetime(2026, 3, 6, 9, 0, tzinfo=TIMEZONE), force=True)
    deliver_flow(now=datetime(2026, 3, 7, 9, 0, tzinfo=TIMEZONE), force=True)
    deliver_flow(now=datetime(2026, 3, 8, 9, 0, tzinfo=TIMEZONE), force=True)
    notices = [mail.html() for mail in world.emails("360700XNB")]
    assert len(notices) == 3 and crashed
    assert "as of 2026-03-05" in notices[1] and "ended failed" in notices[1]
    assert "as of 2026-03-06" in notices[2] and "never finished" in notices[2]
    assert len({mail.message["Message-ID"] for mail in world.emails("360700XNB")}) == 3  # each notice is new


def test_a_crashed_deliver_run_gives_back_what_it_was_sending_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    import uuid

    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Crashed

    from flows.deliver import deliver_flow
    from flows.hooks import release_delivery_claims

    _flow_environment(world, monkeypatch, tmp_path)
    world.issue(STANDARD)
    crashed_run = uuid.uuid4()
    now = datetime.now(UTC)
    with world.engine.begin() as connection:
        # the run's process is alive (a worker whose flow run crashed): only the run's end tells it is dead
        connection.execute(
            insert(DeliveryLease).values(
                attempt_id="crashed", host=socket.gethostname(), pid=Attempt.of_this_process().pid,
                process_started=Attempt.of_this_process().process_started, flow_run_id=str(crashed_run),
                started_at=now, expires_at=now + timedelta(hours=1),
            )
        )
        connection.execute(
            update(Delivery)
            .where(Delivery.id == _sms_row_of(world.engine, "C3"))
            .values(status="sending", claimed_by="crashed", sent_at=now)
        )
    release_delivery_claims(deliver_flow, FlowRun(id=crashed_run, flow_id=uuid.uuid4(), name="deliver-x"), Crashed())
    assert statuses(world.engine) == {"pending": 8}
    report = world.deliver()
    assert report.messages_sent == 6 and len(world.sms("360703SPJ")) == 1


def test_a_database_at_the_first_schema_is_upgraded_and_rows_an_older_delivery_left_sending_are_given_back(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer, sms_gateway: SmsGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from schemas.database import ensure_schema, make_engine, upgrade

    monkeypatch.setenv("SMS_GATEWAY_TOKEN", TOKEN)
    write_config(tmp_path / "config", smtp_server, sms_gateway)
    config = load_config(tmp_path / "config")
    old = make_engine(database_url)
    upgrade(old, "0001")
    issue_cards(old, STANDARD, config.units, as_of=AS_OF, now=NOW)
    with old.begin() as connection:  # a delivery of the previous version died while sending the SMS
        connection.execute(update(Delivery).where(Delivery.channel == "sms").values(status="sending"))
    old.dispose()

    engine = ensure_schema(database_url)
    report = deliver_pending(engine, config, NOW, tmp_path / "outbox")
    assert report.released == 4 and report.messages_sent == 6
    assert statuses(engine) == {"sent": 8}
    engine.dispose()
