"""config/units.py: the bundled units.yaml loads; every kind of bad config fails at load naming the file and entry."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.loader import ConfigError
from config.settings import BUNDLED_CONFIG_DIR
from config.units import load_units

COUNTIES = [
    "360702",
    "360703",
    "360704",
    "360722",
    "360723",
    "360724",
    "360725",
    "360726",
    "360728",
    "360729",
    "360730",
    "360731",
    "360732",
    "360733",
    "360734",
    "360735",
    "360781",
    "360783",
    "360791",
    "360792",
]


def unit(code: str, parent: str | None = None, tags: list[str] | None = None, contacts: Any = "default") -> dict:
    if contacts == "default":
        contacts = [{"url": "outbox://email", "tag": "email"}, {"url": "outbox://sms", "tag": "sms"}]
    return {
        "code": code,
        "name": f"单位{code}",
        "region": code[:6],
        "parent": parent,
        "tags": tags or [],
        "contacts": contacts,
    }


def write(tmp_path: Path, units: list[dict], alerting: dict | None = None) -> Path:
    document: dict[str, Any] = {"units": units}
    if alerting is not None:
        document["alerting"] = alerting
    (tmp_path / "units.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return tmp_path


def base() -> list[dict]:
    return [unit("TOP", tags=["supervisor"]), unit("OPS", "TOP", ["ops"]), unit("A", "TOP")]


def test_bundled_units_cover_the_city_and_twenty_counties() -> None:
    units = load_units(BUNDLED_CONFIG_DIR)
    for region in COUNTIES:
        assert f"{region}SPJ" in units and f"{region}ZF" in units
        assert units.supervisor_chain(f"{region}SPJ") == [f"{region}ZF", "360700WXB"]
        assert "supervisor" in units[f"{region}ZF"].tags
    assert units.ops_units() == ["360700XNB"]
    assert all(contact.target.startswith("outbox://") for u in units.units.values() for contact in u.contacts)
    assert units.alerting.max_attempts == 5 and units.alerting.window.workdays == "official"


def test_contact_urls_expand_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_TOKEN", "tok-123")
    units = base()
    units[2]["contacts"] = [
        {"url": "json://sms.example.gov.cn/send?+Authorization=Bearer%20${SMS_TOKEN}&:mobile=13900000000", "tag": "sms"}
    ]
    loaded = load_units(write(tmp_path, units))
    contact = loaded["A"].contacts[0]
    assert "tok-123" in contact.url
    assert "${SMS_TOKEN}" in contact.target and "tok-123" not in contact.target
    assert "tok-123" not in repr(contact)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda u: u.append(unit("B", "NOWHERE")), "entry 'B': parent 'NOWHERE' is not a unit in this file"),
        (lambda u: u.extend([unit("X", "Y"), unit("Y", "X")]), "parent cycle"),
        (lambda u: u.append(unit("A")), "entry 'A': duplicate unit code"),
        (
            lambda u: u.append(unit("B", "TOP", contacts=[{"url": "mailto://", "tag": "email"}])),
            "entry 'B': contact 1 (email): not a valid apprise URL",
        ),
        (
            lambda u: u.append(unit("B", "TOP", contacts=[{"url": "nosuchscheme://host", "tag": "sms"}])),
            "entry 'B': contact 1 (sms): not a valid apprise URL",
        ),
        (
            lambda u: u.append(unit("B", "TOP", contacts=[{"url": "outbox://sms", "tag": "email"}])),
            "must be outbox://email",
        ),
        (
            lambda u: u.append(unit("B", "TOP", contacts=[{"url": "json://h/?:k=${PW_UNSET_VARIABLE}", "tag": "sms"}])),
            "entry 'B': contact 1 (sms): environment variable PW_UNSET_VARIABLE is not set",
        ),
        (
            lambda u: u.append(unit("B", "TOP", contacts=[{"url": "outbox://sms", "tag": "pager"}])),
            "entry 'B': field 'units.3.contacts.0.tag'",
        ),
        (lambda u: u.__setitem__(1, unit("OPS", "TOP")), "no unit is tagged 'ops'"),
    ],
)
def test_bad_config_fails_at_load_naming_file_and_entry(tmp_path: Path, change: Any, message: str) -> None:
    units = base()
    change(units)
    with pytest.raises(ConfigError) as raised:
        load_units(write(tmp_path, units))
    assert str(tmp_path / "units.yaml") in str(raised.value)
    assert message in str(raised.value)


def test_a_unit_whose_chain_has_no_contacts_is_an_error(tmp_path: Path) -> None:
    units = [unit("TOP", contacts=[]), unit("OPS", "TOP", ["ops"]), unit("A", "TOP", contacts=[])]
    with pytest.raises(ConfigError, match="entry 'A': neither the unit nor any parent has contacts"):
        load_units(write(tmp_path, units))


def test_a_unit_without_contacts_routes_to_its_parent_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    units = [*base(), unit("B", "A", contacts=[])]
    with caplog.at_level(logging.WARNING):
        loaded = load_units(write(tmp_path, units))
    assert loaded.delivery_unit("B") == "A"
    assert "unit B has no contacts; its alerts go to A" in caplog.text
    routes = loaded.routing_frame().filter(unit_code="B")
    # B's parent A stands in for B and is also its supervisor: an escalation reaches A once
    assert routes.filter(level="escalated").select("recipient_unit", "role").rows() == [("A", "owner")]
    assert routes.filter(level="warning")["recipient_unit"].to_list() == ["A"]


def test_routing_goes_up_the_configured_number_of_supervisors(tmp_path: Path) -> None:
    units = [*base(), unit("B", "A")]
    loaded = load_units(
        write(tmp_path, units, {"routes": {"warning": {}, "overdue": {}, "escalated": {"supervisors": 2}}})
    )
    routes = loaded.routing_frame().filter(unit_code="B", level="escalated")
    assert routes.select("recipient_unit", "role").rows() == [
        ("B", "owner"),
        ("A", "supervisor"),
        ("TOP", "supervisor"),
    ]
    assert loaded.supervisor_chain("B") == ["A", "TOP"]


def test_bad_alerting_section_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="window"):
        load_units(write(tmp_path, base(), {"window": {"start": "18:00", "end": "08:30"}}))
    with pytest.raises(ConfigError, match="max_attempts"):
        load_units(write(tmp_path, base(), {"max_attempts": 0}))
    with pytest.raises(ConfigError, match="urgency"):
        load_units(write(tmp_path, base(), {"urgency": ["warning"]}))


def test_documented_channel_examples_are_valid_apprise_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples in the bundled units.yaml comments load, once their variables are set."""
    text = (BUNDLED_CONFIG_DIR / "units.yaml").read_text(encoding="utf-8")
    examples = [
        line.split('url: "', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.lstrip().startswith("#") and 'url: "' in line
    ]
    assert {example.split("://", 1)[0] for example in examples} == {"mailtos", "jsons", "dingtalk", "wecombot"}
    values = {
        "SMTP_USER": "permitwatch",
        "SMTP_PASSWORD": "pw-123",
        "SMS_GATEWAY_TOKEN": "tok123",
        "SPJ_DUTY_PHONE": "13900000000",
        "DINGTALK_TOKEN": "abcdef0123456789",
        "DINGTALK_SECRET": "SECabc123",
        "WECOM_BOT_KEY": "abc-123_def",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    tags = {"mailtos": "email", "jsons": "sms", "dingtalk": "im", "wecombot": "im"}
    units = [*base(), unit("B", "TOP", contacts=[{"url": url, "tag": tags[url.split("://")[0]]} for url in examples])]
    loaded = load_units(write(tmp_path, units))
    assert len(loaded["B"].contacts) == 4


def test_loading_the_config_imports_nothing_above_it_and_changes_nothing_in_apprise() -> None:
    """config sits below tasks: it loads outbox:// contacts without the outbox plugin, and importing it registers no
    scheme and installs no logging filter (the entry points call tasks.alerts.apprise_setup.setup_apprise)."""
    script = textwrap.dedent(
        """
        import logging, sys
        from apprise.manager_plugins import NotificationManager
        from config.bundle import load_config
        from config.settings import BUNDLED_CONFIG_DIR

        units = load_config(BUNDLED_CONFIG_DIR).units
        assert any(c.target == "outbox://email" for u in units.units.values() for c in u.contacts)
        above = sorted(name for name in sys.modules if name.split(".")[0] in ("tasks", "flows", "cli"))
        assert not above, above
        assert "outbox" not in NotificationManager()
        assert not logging.getLogger("apprise").filters

        from tasks.alerts.apprise_setup import setup_apprise
        setup_apprise()
        setup_apprise()
        assert "outbox" in NotificationManager()
        assert len(logging.getLogger("apprise").filters) == 1
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
