from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from config.bundle import load_config
from config.canonical import canonical_names
from config.settings import BUNDLED_CONFIG_DIR
from tasks.clocks.calendar import default_work_calendar
from tasks.ingest.sample import SampleSpec, generate_sample, write_sample

CONFIG = load_config(BUNDLED_CONFIG_DIR)
LAST = date(2026, 11, 24)


def _sample(**overrides: object) -> dict[str, pl.DataFrame]:
    spec = SampleSpec(**{"cases": 3000, "seed": 11, "last_date": LAST, **overrides})  # type: ignore[arg-type]
    return generate_sample(spec, CONFIG.rules, CONFIG.units, default_work_calendar())


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    first = write_sample(_sample(), tmp_path / "a")
    second = write_sample(_sample(), tmp_path / "b")
    third = write_sample(_sample(seed=12), tmp_path / "c")
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes(), name
    assert first["cases"].read_bytes() != third["cases"].read_bytes()


def test_tables_use_only_canonical_columns() -> None:
    for name, frame in _sample().items():
        assert set(frame.columns) <= set(canonical_names(name)), name


def test_units_matters_and_regions_come_from_the_config() -> None:
    tables = _sample(dirty_fraction=0.0)
    cases = tables["cases"]
    assert set(cases["unit_code"].unique()) <= set(CONFIG.units.units)
    assert set(cases["matter_code"].unique()) <= {m.code for m in CONFIG.rules.matters}
    counties = {code for code, unit in CONFIG.units.units.items() if code.endswith("SPJ") and unit.region != "360700"}
    assert len(counties) == 20
    assert set(cases["unit_code"].unique()) & counties == counties, "every county-level unit has cases"
    assert set(tables["steps"]["unit_code"].unique()) <= set(CONFIG.units.units)
    assert set(tables["pushes"]["supervisor_unit_code"].unique()) <= set(CONFIG.units.units)


def test_mixes_on_time_late_open_and_all_three_modes() -> None:
    tables = _sample(dirty_fraction=0.0)
    cases = tables["cases"]
    modes = {m.code: m.mode for m in CONFIG.rules.matters}
    assert set(cases["matter_code"].replace_strict(modes)) >= {
        "county_end_to_end", "county_review_city_approve", "county_forward_city_handle"
    }
    open_share = cases["completed_at"].is_null().mean()
    assert 0.02 < open_share < 0.3
    assert set(tables["projects"]["category"]) >= {"enterprise_investment", "simple_low_risk", "rongjiang_engineering"}
    rongjiang = tables["projects"].filter(pl.col("category") == "rongjiang_engineering")
    assert set(rongjiang["region_code"]) == {"360792"}
    assert tables["suspensions"]["ended_at"].null_count() > 0, "some special procedures are still running"
    assert set(tables["suspensions"]["kind"]) >= {"补正", "专家评审"}
    accepted = cases["accepted_at"].str.slice(0, 10).str.to_date()
    assert accepted.min() >= date(2025, 1, 2) and accepted.max() <= LAST
    calendar = default_work_calendar()
    assert all(calendar.is_workday(day) for day in accepted.unique().to_list())


def test_dirty_rows_are_the_requested_share_and_of_known_kinds() -> None:
    clean = _sample(dirty_fraction=0.0)["cases"]
    dirty = _sample(dirty_fraction=0.02)["cases"]
    spoiled = round(clean.height * 0.02)
    assert dirty.height == clean.height + max(1, spoiled // 4), "duplicates are added, spoiled rows replace others"
    assert (dirty["case_id"] == "").sum() > 0
    assert (dirty["matter_code"] == "XX-9999").sum() > 0
    assert dirty["case_id"].is_duplicated().sum() > 0


@pytest.mark.parametrize("cases", [1, 7])
def test_tiny_samples_work(cases: int) -> None:
    tables = _sample(cases=cases, dirty_fraction=0.0)
    assert tables["cases"].height == cases


def test_colliding_project_codes_leave_their_cases_regular(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large sample draws the same random project code now and then; the project is kept once and the cases
    meant for the dropped ones become regular cases, so the sample still has every case and no orphan project."""
    import tasks.ingest.sample as sample

    drawn = sample._projects

    def colliding(*args: object, **kwargs: object) -> pl.DataFrame:
        projects = drawn(*args, **kwargs)  # type: ignore[arg-type]
        return projects.head(projects.height - 3)

    monkeypatch.setattr(sample, "_projects", colliding)
    tables = _sample(dirty_fraction=0.0)
    assert tables["cases"]["case_id"].n_unique() == 3000
    members = set(tables["cases"]["project_code"].drop_nulls())
    assert members and members <= set(tables["projects"]["project_code"])
