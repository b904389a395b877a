from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings, yesterday_in_shanghai


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONFIG_DIR", "DATABASE_URL", "VAR_DIR", "OUTBOX_DIR", "INBOX_DIR", "AS_OF", "RETRY_DELAYS"):
        monkeypatch.delenv(f"PERMITWATCH_{name}", raising=False)


def test_embedded_default_lives_in_the_var_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings().database_url == "sqlite:///var/permitwatch.db"
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.database_url == f"sqlite:///{tmp_path}/permitwatch.db"
    assert settings.effective_outbox_dir == tmp_path / "outbox"
    assert settings.effective_inbox_dir == tmp_path / "inbox"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("PERMITWATCH_DATABASE_URL", "not a url", "PERMITWATCH_DATABASE_URL"),
        ("PERMITWATCH_AS_OF", "2026-13-01", "PERMITWATCH_AS_OF"),
        ("PERMITWATCH_CONFIG_DIR", "/nonexistent/config", "PERMITWATCH_CONFIG_DIR (or --config)"),
        ("PERMITWATCH_RETRY_DELAYS", "[-1]", "PERMITWATCH_RETRY_DELAYS"),
    ],
)
def test_a_bad_value_fails_at_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_settings()


def test_as_of_defaults_to_yesterday_in_shanghai() -> None:
    # 17:00 UTC on 24 Nov is already 01:00 on 25 Nov in Shanghai: "yesterday" there is the 24th, not the 23rd.
    assert yesterday_in_shanghai(datetime(2026, 11, 24, 17, 0, tzinfo=UTC)) == date(2026, 11, 24)
    assert yesterday_in_shanghai(datetime(2026, 11, 24, 15, 59, tzinfo=UTC)) == date(2026, 11, 23)
