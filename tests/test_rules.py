"""config/rules.yaml: the bundled rules load, versions are found by date, and bad entries fail naming what is wrong."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml

from config.loader import ConfigError
from config.rules import RuleBook, load_rules

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture(scope="module")
def rules() -> RuleBook:
    return load_rules(CONFIG_DIR)


def write_rules(tmp_path: Path, edit: object) -> Path:
    data = yaml.safe_load((CONFIG_DIR / "rules.yaml").read_text(encoding="utf-8"))
    edit(data)  # type: ignore[operator]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return tmp_path


def test_bundled_rules_hold_the_seed_figures(rules: RuleBook) -> None:
    categories = rules.category_versions()
    limits = dict(zip(categories["category"], categories["limit_days"], strict=True))
    assert limits["enterprise_investment"] == 45
    assert limits["simple_low_risk"] == 18
    rongjiang = categories.filter(pl.col("category") == "rongjiang_engineering").sort("effective_from")
    assert rongjiang["limit_days"].to_list() == [106, 75]
    special_equipment = rules.matter("SXTQ-B001", date(2025, 1, 1))
    assert special_equipment is not None
    assert special_equipment.mode == "county_review_city_approve"
    assert [(step.level, step.limit) for step in special_equipment.steps] == [("county", 5), ("city", 3)]
    assert {m.mode for m in rules.matters} == {
        "county_end_to_end",
        "county_review_city_approve",
        "county_forward_city_handle",
        "city",
    }


def test_the_version_in_force_on_the_start_date_applies(rules: RuleBook) -> None:
    assert rules.matter("SXTQ-A004", date(2025, 6, 30)).limit == 10  # type: ignore[union-attr]
    assert rules.matter("SXTQ-A004", date(2025, 7, 1)).limit == 7  # type: ignore[union-attr]
    assert rules.matter("SXTQ-A004", date(2021, 12, 31)) is None
    frame = pl.DataFrame(
        {
            "matter_code": ["SXTQ-A004", "SXTQ-A004", "SXTQ-A004", "NOPE", None],
            "accepted_at": [date(2025, 7, 1), date(2025, 6, 30), None, date(2025, 1, 1), date(2025, 1, 1)],
        }
    )
    looked_up = RuleBook.in_force(frame, rules.matter_versions(), on="accepted_at", by="matter_code")
    assert looked_up["matter_code"].to_list() == frame["matter_code"].to_list()  # order kept
    assert looked_up["limit_days"].to_list() == [7, 10, None, None, None]


def test_suspension_effects_default_to_restart_for_corrections_only(rules: RuleBook) -> None:
    assert rules.suspension_effect("补正") == "restart"
    assert rules.suspension_effect("专家评审") == "pause"
    assert rules.suspension_effect("某种新程序") == "pause"
    table = rules.suspension_kind_table()
    assert table.filter(pl.col("kind") == "招标拍卖").row(0, named=True)["limit_kind"] == "calendar"
    assert rules.suspension_effect("延期") == "extend"
    extension = table.filter(pl.col("kind") == "延期").row(0, named=True)
    assert (extension["extend"], extension["restart"], extension["limit_days"]) == (True, False, None)


def test_warning_threshold_is_exact(rules: RuleBook) -> None:
    defaults = rules.defaults
    limits = [0, 1, 4, 5, 6, 35, 45, 75]
    expected = [1, 1, 1, 1, 2, 7, 9, 15]  # max(1, ceil(0.2 N)); 0.2 * 35 is not 7 in floating point
    assert [defaults.warning_days(n) for n in limits] == expected
    assert pl.select(defaults.warning_days_expr(pl.Series(limits))).to_series().to_list() == expected


def test_deferral_and_claim_accept_several_versions(tmp_path: Path) -> None:
    def two_versions(data: dict) -> None:
        data["claim"] = [data["claim"], {"limit": 2, "effective_from": date(2026, 1, 1)}]

    rules = load_rules(write_rules(tmp_path, two_versions))
    assert rules.claim_versions()["limit_days"].to_list() == [3, 2]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["matters"][0].update(limit_kind="weekly"), "entry 'SXTQ-A001': field 'matters.0.limit_kind'"),
        (lambda d: d["matters"][1].pop("limit"), "entry 'SXTQ-A002': field 'matters.1.limit'"),
        (lambda d: d["matters"][2].update(limit=-1), "field 'matters.2.limit'"),
        (lambda d: d["matters"].append(dict(d["matters"][0])), "matter 'SXTQ-A001' has two versions effective"),
        (lambda d: d["matters"][7].update(mode="city"), "mode city needs only city steps"),
        (lambda d: d["suspension_kinds"][0].update(effect="stop"), "entry '补正': field 'suspension_kinds.0.effect'"),
        (lambda d: d["suspension_kinds"].append({"kind": "补正"}), "suspension kind '补正' is listed twice"),
        (
            lambda d: d["suspension_kinds"].append({"kind": "延长", "effect": "extend", "limit": 5}),
            "kind '延长' extends the limit by each row's limit_days: it takes no limit",
        ),
        (lambda d: d["project_categories"][0].update(surprise=1), "field 'project_categories.0.surprise'"),
        (lambda d: d.pop("claim"), "field 'claim'"),
    ],
)
def test_bad_rules_fail_at_load_naming_file_entry_and_field(tmp_path: Path, edit: object, expected: str) -> None:
    directory = write_rules(tmp_path, edit)
    with pytest.raises(ConfigError) as error:
        load_rules(directory)
    assert str(directory / "rules.yaml") in str(error.value)
    assert expected in str(error.value)


def test_a_missing_rules_file_is_a_config_error(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path / "config", ignore=shutil.ignore_patterns("rules.yaml"))
    with pytest.raises(ConfigError, match=r"rules\.yaml: cannot read"):
        load_rules(tmp_path / "config")
