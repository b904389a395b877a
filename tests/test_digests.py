"""tasks/digests.py: one message per unit and channel, most urgent first; SMS size; email table, masking, CSV."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import BUNDLED_CONFIG_DIR
from config.units import SmsLimits, UnitDirectory, load_units
from tasks.digests import DigestTemplates, build_digests, escape_formula, sms_length, sms_segments

AS_OF = date(2026, 3, 5)
LIMITS = SmsLimits()


@pytest.fixture(scope="module")
def units() -> UnitDirectory:
    return load_units(BUNDLED_CONFIG_DIR)


@pytest.fixture(scope="module")
def templates() -> DigestTemplates:
    return DigestTemplates(BUNDLED_CONFIG_DIR / "templates")


def item(
    subject: str,
    level: str,
    *,
    recipient: str = "360702SPJ",
    channel: str = "sms",
    overdue: int = 0,
    remaining: int = 1,
    calendar: str = "official",
    name: str | None = "张小三",
    phone: str | None = "13812345678",
) -> dict[str, Any]:
    return {
        "recipient_unit": recipient,
        "channel": channel,
        "target": f"outbox://{channel}",
        "level": level,
        "clock_type": "case",
        "subject_id": subject,
        "unit_code": "360702SPJ",
        "matter_code": "SXTQ-A001",
        "matter_name": "食品经营许可",
        "due_date": date(2026, 3, 2),
        "remaining": remaining,
        "overdue_workdays": overdue,
        "calendar": calendar,
        "applicant_name": name,
        "applicant_phone": phone,
    }


def items(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema_overrides={"remaining": pl.Int32, "overdue_workdays": pl.Int32})


MIXED = [
    item("C1", "warning", remaining=2),
    item("C2", "overdue", overdue=2, remaining=-2),
    item("C3", "escalated", overdue=6, remaining=-6),
    item("C4", "warning", remaining=0),
    item("C5", "overdue", overdue=4, remaining=-4),
]


def test_one_digest_per_unit_and_channel_most_urgent_first(units: UnitDirectory, templates: DigestTemplates) -> None:
    rows = [*MIXED, *(dict(row, channel="email", target="outbox://email") for row in MIXED)]
    rows.append(item("C3", "escalated", recipient="360702ZF", channel="email", overdue=6))
    digests = build_digests(items(*rows), units, templates, as_of=AS_OF)
    assert sorted((d.recipient_unit, d.channel) for d in digests) == [
        ("360702SPJ", "email"),
        ("360702SPJ", "sms"),
        ("360702ZF", "email"),
    ]
    sms = next(d for d in digests if d.channel == "sms")
    assert sms.body == "【时限预警】督办1、超期2、预警2件，最久逾期6个工作日，最急C3、C5、C2等。详见邮件"
    assert sms_length(sms.body) <= 70
    email = next(d for d in digests if d.channel == "email" and d.recipient_unit == "360702SPJ")
    order = [email.body.index(f'<td rowspan="1">{subject}</td>') for subject in ("C3", "C5", "C2", "C4", "C1")]
    assert order == sorted(order)  # escalated, most overdue, overdue, due today, 2 days left
    assert email.card_count == 5
    assert "督办1件" in email.title and "章贡区行政审批局" in email.title


def test_provisional_calendar_says_estimated(units: UnitDirectory, templates: DigestTemplates) -> None:
    digests = build_digests(
        items(item("C1", "warning"), item("C2", "overdue", overdue=1, calendar="provisional")),
        units,
        templates,
        as_of=AS_OF,
    )
    assert "预计" in digests[0].body
    official = build_digests(items(item("C1", "warning")), units, templates, as_of=AS_OF)
    assert "预计" not in official[0].body


def test_sms_drops_ids_rather_than_leave_one_segment(units: UnitDirectory, templates: DigestTemplates) -> None:
    long_ids = [item(f"GZ360702-2026-{n:06d}", "overdue", overdue=n) for n in range(1, 8)]
    body = build_digests(items(*long_ids), units, templates, as_of=AS_OF)[0].body
    assert sms_length(body) <= 70
    assert "GZ360702-2026-000007" in body  # the most overdue is named
    assert "GZ360702-2026-000001" not in body


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-中文𠀀", min_size=1, max_size=60),
            st.sampled_from(["warning", "overdue", "escalated"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_an_sms_never_runs_past_three_segments(cards: list[tuple[str, str, bool]]) -> None:
    units = load_units(BUNDLED_CONFIG_DIR)
    templates = DigestTemplates(BUNDLED_CONFIG_DIR / "templates")
    rows = [
        item(subject, level, overdue=3, calendar="provisional" if provisional else "official")
        for subject, level, provisional in cards
    ]
    body = build_digests(items(*rows), units, templates, as_of=AS_OF)[0].body
    assert sms_segments(body, LIMITS) <= 3
    assert sms_length(body) <= 70  # the bundled wording always fits one segment once ids are dropped
    assert body.startswith("【时限预警】")


def test_a_wordy_template_is_cut_at_three_segments(
    tmp_path: Path, units: UnitDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sms.txt.j2").write_text("各单位请注意：" + "本条提醒内容较长。" * 40 + "{{ total }}", encoding="utf-8")
    custom = DigestTemplates(tmp_path)
    body = build_digests(items(*MIXED), units, custom, as_of=AS_OF)[0].body
    assert sms_length(body) == 3 * 67 and body.endswith("…")
    medium = tmp_path / "sms.txt.j2"
    medium.write_text("各单位请注意：" + "本条提醒内容较长。" * 14 + "{{ ids | join(',') }}", encoding="utf-8")
    body = build_digests(items(*MIXED), units, DigestTemplates(tmp_path), as_of=AS_OF)[0].body
    assert sms_segments(body, LIMITS) == 2 and "C3" not in body  # naming ids would take a third segment


def test_templates_in_the_config_directory_override_the_bundled_ones(tmp_path: Path, units: UnitDirectory) -> None:
    (tmp_path / "sms.txt.j2").write_text("共{{ total }}件待办", encoding="utf-8")
    digests = build_digests(items(*MIXED), units, DigestTemplates(tmp_path), as_of=AS_OF)
    assert digests[0].body == "共5件待办"


def test_email_masks_pii_escapes_html_and_attaches_a_safe_csv(units: UnitDirectory, templates: DigestTemplates) -> None:
    rows = [
        item("<b>C1</b>", "warning", channel="email"),
        item('=HYPERLINK("http://x")', "overdue", channel="email", overdue=1, name="欧阳娜娜", phone="0797-8123456"),
        item("C3", "escalated", channel="email", overdue=5, name=None, phone=None),
    ]
    email = build_digests(items(*rows), units, templates, as_of=AS_OF)[0]
    assert "张*三" in email.body and "138****5678" in email.body and "欧**娜" in email.body
    assert "张小三" not in email.body and "13812345678" not in email.body and "8123456" not in email.body
    assert "<b>C1</b>" not in email.body and "&lt;b&gt;C1&lt;/b&gt;" in email.body
    content = email.attachments["cards.csv"]
    assert content.startswith("\ufeff".encode())
    table = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    assert [row["编号"] for row in table] == ["C3", '\'=HYPERLINK("http://x")', "<b>C1</b>"]
    assert [row["申请人"] for row in table] == ["", "欧**娜", "张*三"]
    assert table[0]["级别"] == "督办" and table[0]["时限状态"] == "已超期5个工作日"
    assert "张小三" not in content.decode("utf-8-sig")


def test_escape_formula_prefixes_only_formula_like_strings() -> None:
    frame = pl.DataFrame({"text": ["=1+1", "+86", "-x", "@SUM", "\tx", "ok", None], "number": [-1, 2, 3, 4, 5, 6, 7]})
    escaped = escape_formula(frame)
    assert escaped["text"].to_list() == ["'=1+1", "'+86", "'-x", "'@SUM", "'\tx", "ok", None]
    assert escaped["number"].to_list() == frame["number"].to_list()


def test_im_digest_lists_the_first_ten(units: UnitDirectory, templates: DigestTemplates) -> None:
    rows = [item(f"C{n:02d}", "overdue", channel="im", overdue=n) for n in range(1, 13)]
    body = build_digests(items(*rows), units, templates, as_of=AS_OF)[0].body
    assert body.count("\n- ") == 11 and "共 12 件" in body and "C12" in body and "C01" not in body


def test_sms_length_counts_ucs2_units() -> None:
    assert sms_length("赣州") == 2 and sms_length("𠀀") == 2
    assert sms_segments("字" * 70, LIMITS) == 1 and sms_segments("字" * 71, LIMITS) == 2
    assert sms_segments("字" * 134, LIMITS) == 2 and sms_segments("字" * 135, LIMITS) == 3


def test_missing_columns_are_refused(units: UnitDirectory, templates: DigestTemplates) -> None:
    with pytest.raises(ValueError, match="calendar"):
        build_digests(items(*MIXED).drop("calendar"), units, templates, as_of=AS_OF)
    assert build_digests(items(*MIXED).clear(), units, templates, as_of=AS_OF) == []
