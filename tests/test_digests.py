"""tasks/alerts/digests.py: one message per unit and channel, most urgent first; SMS size; email table, masking, CSV."""

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
from tasks.alerts.digests import DigestTemplates, build_digests, escape_formula, sms_length, sms_segments
from tasks.clocks.explain import CLOCK_NAMES, LEVEL_NAMES
from tasks.reports.report import display_frame

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


def clock_item(subject: str, level: str, clock_type: str, clock_id: str, **extra: Any) -> dict[str, Any]:
    overdue = extra.pop("overdue", 0)
    remaining = extra.pop("remaining", 2 if level == "warning" else -overdue)
    row = item(subject, level, overdue=overdue, remaining=remaining, **{
        key: extra.pop(key) for key in ("recipient", "channel", "calendar") if key in extra
    })
    return {**row, "clock_type": clock_type, "clock_id": clock_id, "step_name": None, "project_name": None, **extra}


def one(digests: list[Any], channel: str, recipient: str = "360702SPJ") -> Any:
    return next(d for d in digests if d.channel == channel and d.recipient_unit == recipient)


def csv_rows(digest: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(digest.attachments["cards.csv"].decode("utf-8-sig"))))


def test_a_case_with_several_clocks_in_alert_counts_once_at_its_most_urgent_level(
    units: UnitDirectory, templates: DigestTemplates
) -> None:
    rows = [
        clock_item("C1", "escalated", "case", "case:C1", overdue=12),
        clock_item("C1", "overdue", "step", "step:C1:2", overdue=2, step_name="城市审批"),
        clock_item("C1", "warning", "deferral", "deferral:C1"),
        clock_item("C2", "warning", "case", "case:C2"),
    ]
    both = [*rows, *(dict(row, channel="email", target="outbox://email") for row in rows)]

    digests = build_digests(items(*both), units, templates, as_of=AS_OF)

    sms = one(digests, "sms")
    assert sms.body.startswith("【时限预警】督办1、预警1件，最久逾期12个工作日，最急C1、C2。")
    email = one(digests, "email")
    assert "督办1件，预警1件" in email.title and email.card_count == 4
    assert email.body.count('<td rowspan="3">C1</td>') == 1 and '<td rowspan="1">C2</td>' in email.body
    assert " 督办 <b>1</b> 件， 黄牌预警 <b>1</b> 件" in email.body
    table = csv_rows(email)
    assert [(row["序号"], row["编号"], row["时限"]) for row in table] == [
        ("1", "C1", "办件"), ("1", "C1", "环节「城市审批」"), ("1", "C1", "容缺后补"), ("2", "C2", "办件")
    ]


def test_each_line_names_the_subject_and_clock_in_chinese(units: UnitDirectory, templates: DigestTemplates) -> None:
    rows = [
        clock_item("C1", "overdue", "step", "step:C1:2", overdue=3),  # no step name: its number
        clock_item("C1", "overdue", "special", "special:C1:专家评审:2026-02-02", overdue=1),
        clock_item("TS1", "escalated", "claim", "claim:TS1", overdue=7),
        clock_item("2301-360702-04-01-123456", "warning", "project", "project:2301-360702-04-01-123456",
                   matter_name=None, project_name="章贡区物流园"),
    ]
    email = build_digests(items(*(dict(row, channel="email") for row in rows)), units, templates, as_of=AS_OF)[0]
    table = {(row["对象"], row["编号"], row["时限"], row["事项"]) for row in csv_rows(email)}
    assert table == {
        ("办件", "C1", "环节「第2环节」", "食品经营许可"),
        ("办件", "C1", "特别程序「专家评审」", "食品经营许可"),
        ("审管推送", "TS1", "审管认领", "食品经营许可"),
        ("工程建设项目", "2301-360702-04-01-123456", "工程建设项目", "章贡区物流园"),
    }


def test_the_wording_follows_the_level_and_the_clock(units: UnitDirectory, templates: DigestTemplates) -> None:
    rows = [
        clock_item("C1", "escalated", "case", "case:C1", overdue=12),
        clock_item("C2", "overdue", "case", "case:C2", overdue=2),
        clock_item("C3", "warning", "case", "case:C3", remaining=2),
        clock_item("C4", "warning", "deferral", "deferral:C4", remaining=0),
        clock_item("TS5", "overdue", "claim", "claim:TS5", overdue=1),
    ]
    email = build_digests(items(*(dict(row, channel="email") for row in rows)), units, templates, as_of=AS_OF)[0]
    said = {row["编号"]: (row["级别"], row["时限状态"], row["请办理"]) for row in csv_rows(email)}
    assert said == {
        "C1": ("督办", "已超期12个工作日", "已列入督办：请立即办结，并书面报告超期原因和整改措施"),
        "C2": ("红牌超期", "已超期2个工作日", "请立即办结，并说明超期原因"),
        "C3": ("黄牌预警", "剩余2个工作日，3月2日到期", "请在到期日前办结"),
        "C4": ("黄牌预警", "3月2日到期，已无剩余工作日", "请督促申请人在到期日前补齐容缺材料"),
        "TS5": ("红牌超期", "已超期1个工作日", "请立即认领审批结果"),
    }
    assert "请在时限内办结" not in email.body


def test_a_supervisor_digest_groups_escalations_by_responsible_unit(
    units: UnitDirectory, templates: DigestTemplates
) -> None:
    rows = [
        dict(clock_item("C1", "escalated", "case", "case:C1", overdue=6), unit_code="360700SCJ"),
        dict(clock_item("C2", "escalated", "case", "case:C2", overdue=30), unit_code="360700SPJ"),
        dict(clock_item("C3", "escalated", "step", "step:C3:1", overdue=8, step_name="审查"), unit_code="360700SCJ"),
    ]
    supervised = [dict(row, recipient_unit="360700WXB") for row in rows]
    both = [*supervised, *(dict(row, channel="email", target="outbox://email") for row in supervised)]

    digests = build_digests(items(*both), units, templates, as_of=AS_OF)

    email = one(digests, "email", "360700WXB")
    spj = email.body.index("责任单位：赣州市行政审批局（1件）")
    scj = email.body.index("责任单位：赣州市市场监督管理局（2件）")
    assert spj < email.body.index("C2") < scj < email.body.index("C3") < email.body.index("C1")  # most overdue first
    assert "请督促责任单位立即办结并报告" in email.body and "已列入督办" not in email.body
    assert "所辖 2 个责任单位" in email.body
    assert one(digests, "sms", "360700WXB").body.startswith("【时限预警】所辖2单位督办3件，最久逾期30个工作日")


def test_without_overdue_items_the_sms_gives_the_earliest_due_date(
    units: UnitDirectory, templates: DigestTemplates
) -> None:
    rows = [
        dict(clock_item("C1", "warning", "case", "case:C1", remaining=4), due_date=date(2026, 3, 9)),
        dict(clock_item("C2", "warning", "case", "case:C2", remaining=1), due_date=date(2026, 3, 6)),
    ]
    body = build_digests(items(*rows), units, templates, as_of=AS_OF)[0].body
    assert body == "【时限预警】预警2件，最早3月6日到期，最急C2、C1。详见邮件"


def test_only_a_provisional_due_date_is_marked_and_the_csv_says_which_calendar(
    units: UnitDirectory, templates: DigestTemplates
) -> None:
    rows = [
        clock_item("C1", "warning", "case", "case:C1", channel="email", calendar="provisional"),
        clock_item("C2", "warning", "case", "case:C2", channel="email"),
    ]
    email = build_digests(items(*rows), units, templates, as_of=AS_OF)[0]
    assert email.body.count("2026-03-02（预计）") == 1 and email.body.count("<td>2026-03-02</td>") == 1
    assert {row["编号"]: row["日历"] for row in csv_rows(email)} == {"C1": "预计", "C2": "正式"}


def test_explain_and_report_name_levels_and_clocks_as_the_alerts_do(templates: DigestTemplates) -> None:
    for level, name in templates.labels.level_names.items():
        assert LEVEL_NAMES[level] == f"{level} ({name})"
    assert set(CLOCK_NAMES) == set(templates.labels.clock_type_names)
    for kind, name in templates.labels.clock_type_names.items():
        assert CLOCK_NAMES[kind].endswith(f" ({name})")
    levels = list(templates.labels.level_short)
    shown = display_frame("overdue_cases", pl.DataFrame({"level": [*levels, "normal"]}))
    assert shown.to_series().to_list() == [*(templates.labels.level_short[level] for level in levels), "normal"]
