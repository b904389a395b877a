"""config/labels.py: each vocabulary is written once, in config/templates/, and every reader derives from it."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from config.bundle import load_config
from config.labels import bundled_alert_labels, bundled_report_labels
from config.settings import BUNDLED_CONFIG_DIR
from tasks.alerts.digests import DigestTemplates
from tasks.clocks.explain import CLOCK_NAMES, LEVEL_NAMES
from tasks.reports.output import VALUE_LABELS
from tasks.reports.report import VIEW_TITLES, dimensions_from_config, display_frame

ROOT = Path(__file__).resolve().parents[1]


def test_the_digests_explain_and_the_report_read_one_level_vocabulary() -> None:
    alerts = bundled_alert_labels()
    assert DigestTemplates().labels == alerts
    assert VALUE_LABELS["level"] is alerts.level_short
    for level, name in alerts.level_names.items():
        assert LEVEL_NAMES[level].endswith(f" ({name})")
    for kind, name in alerts.clock_type_names.items():
        assert CLOCK_NAMES[kind].endswith(f" ({name})")
    shown = display_frame("overdue_cases", pl.DataFrame({"level": ["escalated"], "mode": ["city"]}))
    assert shown.row(0) == (alerts.level_short["escalated"], bundled_report_labels().mode_names["city"])


def test_every_bundled_region_and_mode_has_its_name_in_the_report_vocabulary() -> None:
    config = load_config(BUNDLED_CONFIG_DIR)
    report = bundled_report_labels()
    regions = {unit.region for unit in config.units.units.values() if unit.region}
    assert regions <= set(report.region_names)
    assert set(config.rules.matter_versions()["mode"].unique()) <= set(report.mode_names)
    dimensions = dimensions_from_config(config.rules, config.units)
    assert dict(dimensions.regions.iter_rows()) == report.region_names
    assert VIEW_TITLES is report.view_titles


def test_no_python_module_repeats_a_name_the_vocabularies_hold() -> None:
    """Level, region and mode names, and the what-if's sheet titles and overview rows, appear in Python only as read
    from config/templates."""
    alerts, report = bundled_alert_labels(), bundled_report_labels()
    names = {*alerts.level_names.values(), *report.region_names.values(), *report.mode_names.values(),
             *report.what_if_titles.values(), *report.what_if_overview.values()}
    sources = [*ROOT.glob("tasks/**/*.py"), *ROOT.glob("flows/*.py"), *ROOT.glob("cli/*.py"), *ROOT.glob("config/*.py")]
    repeated = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources
        for name in names
        if f'"{name}"' in path.read_text(encoding="utf-8")
    ]
    assert not repeated
