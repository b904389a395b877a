"""The report files: XLSX sheets and escaping, HTML, Chinese charts, and the report built with the real engine."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import noto_cjk_sans_otc
import openpyxl
import polars as pl
import pytest
import report_fixtures as fx
from matplotlib import font_manager, ft2font, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from cli.main import app
from config.bundle import load_config
from config.settings import BUNDLED_CONFIG_DIR
from schemas.database import ensure_schema
from tasks.clocks.builders import ClockSet, build_clocks
from tasks.clocks.calendar import WorkCalendar, load_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tasks.reports.metrics import TOTAL, MetricInputs, ReportViews, build_views
from tasks.reports.output import CJK_FAMILY, register_cjk_font
from tasks.reports.report import (
    VIEW_TITLES,
    build_report,
    dimensions_from_config,
    markdown_table,
    render_charts,
    write_report,
)
from tasks.store.upsert import store_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Views whose row order is part of the result (ranked, or longest overdue first).
ORDERED_VIEWS = {"claims", "overdue_cases", "trend"}
PII = ["张小三", "13812345678", "李四", "13900001111"]


def fixture_report(dimensions: fx.Dimensions | None = None) -> ReportViews:
    inputs = MetricInputs(fx.tables(), fx.evaluations(), fx.snapshots(), dimensions or fx.dimensions(), fx.AS_OF)
    return build_views(inputs, "week", trend_periods=2)


def renamed(frame: pl.DataFrame, key: str, column: str, names: dict[str, str]) -> pl.DataFrame:
    return frame.with_columns(pl.col(key).replace_strict(names, default=pl.col(column)).alias(column))


def glyph_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(item.message) for item in caught if "missing from font" in str(item.message)]


def render_text(family: str, text: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught, rc_context({"font.family": [family]}):
        warnings.simplefilter("always")
        figure = Figure(figsize=(3, 1))
        figure.text(0.1, 0.5, text)
        FigureCanvasAgg(figure).draw()
    return glyph_warnings(caught)


# -- fonts and charts ---------------------------------------------------------------------------------------------


def test_the_packaged_cjk_font_is_registered_and_found() -> None:
    packaged = Path(str(noto_cjk_sans_otc.FONT_PATH)).resolve()
    found = register_cjk_font()
    registered = {entry.name for entry in font_manager.fontManager.ttflist if Path(entry.fname).resolve() == packaged}
    assert CJK_FAMILY in registered
    face = ft2font.FT2Font(found.path, face_index=found.face_index)
    assert face.family_name == CJK_FAMILY
    assert face.get_char_index(ord("办")) != 0


def test_chinese_renders_without_missing_glyphs() -> None:
    register_cjk_font()
    assert render_text(CJK_FAMILY, "各单位按时办结率 在办超期 赣州市行政审批局 章贡区 2026-W11 −5") == []


def test_the_missing_glyph_check_does_detect_a_font_without_chinese() -> None:
    # The check above could pass vacuously if matplotlib stopped warning; a Latin-only font must trip it.
    assert render_text("DejaVu Sans", "按时办结率")


def test_report_charts_are_pngs_rendered_without_missing_glyphs() -> None:
    report = fixture_report()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        charts = render_charts(report)
    assert glyph_warnings(caught) == []
    assert set(charts) == {"on_time_by_unit", "overdue_trend"}
    for data in charts.values():
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 10_000


# -- XLSX ---------------------------------------------------------------------------------------------------------


def test_xlsx_has_one_sheet_per_view_with_frozen_chinese_headers(tmp_path: Path) -> None:
    files = write_report(fixture_report(), tmp_path, BUNDLED_CONFIG_DIR / "templates")
    book = openpyxl.load_workbook(files.xlsx)
    assert book.sheetnames == [*VIEW_TITLES.values(), "说明"]
    for sheet in book.worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
    by_unit = book["按单位"]
    headers = [cell.value for cell in by_unit[1]]
    assert headers[:4] == ["单位编码", "单位", "受理件数", "办结件数"]
    rows = {row[0]: dict(zip(headers, row, strict=True)) for row in by_unit.iter_rows(min_row=2, values_only=True)}
    assert rows[TOTAL]["办结件数"] == 4
    assert rows[TOTAL]["按时办结率"] == pytest.approx(0.5)
    assert rows["360702SPJ"]["按时办结率变化(百分点)"] == pytest.approx(-50.0)
    rate_column = headers.index("按时办结率") + 1
    assert by_unit.cell(row=2, column=rate_column).number_format == "0.0%"
    overview = {row[0]: row for row in book["概览"].iter_rows(min_row=2, values_only=True)}
    assert overview["按时办结率"][1:4] == pytest.approx((0.5, 1.0, -50.0))
    assert overview["在办超期件数"][1:4] == (2, 4, -2)
    modes = [row[0] for row in book["按市县同权模式"].iter_rows(min_row=2, values_only=True)]
    assert "下放实质性审核权" in modes and "county_review_city_approve" not in modes


def test_formula_like_text_is_written_as_quoted_text(tmp_path: Path) -> None:
    dimensions = fx.dimensions()
    hostile = {
        "360702SPJ": '=HYPERLINK("http://evil","点我")',
        "360703SPJ": "+1+cmd|' /C calc'!A0",
        "360700SPJ": "-2+3",
    }
    units = renamed(dimensions.units, "unit_code", "unit_name", hostile)
    matters = renamed(dimensions.matters, "matter_code", "matter_name", {"SXTQ-A001": "@SUM(1,1)"})
    report = fixture_report(dataclasses.replace(dimensions, units=units, matters=matters))
    files = write_report(report, tmp_path, BUNDLED_CONFIG_DIR / "templates")
    book = openpyxl.load_workbook(files.xlsx)
    formula_like = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"{sheet.title}!{cell.coordinate} is a formula"
                if isinstance(cell.value, str) and re.match(r"[=+\-@]", cell.value):
                    formula_like.append(cell)
                    assert cell.quotePrefix, f"{sheet.title}!{cell.coordinate} {cell.value!r} is not quoted"
    values = {cell.value for cell in formula_like}
    assert set(hostile.values()) | {"@SUM(1,1)"} <= values
    # Numbers stay numbers: a negative change is a number, not quoted text.
    overview = {row[0]: row for row in book["概览"].iter_rows(min_row=2, values_only=True)}
    assert overview["在办超期件数"][3] == -2


# -- HTML and the artifact ----------------------------------------------------------------------------------------


def test_html_page_has_chinese_labels_embedded_charts_and_no_applicant_data(tmp_path: Path) -> None:
    dimensions = fx.dimensions()
    units = renamed(dimensions.units, "unit_code", "unit_name", {"360703SPJ": "<script>alert(1)</script>"})
    files = write_report(
        fixture_report(dataclasses.replace(dimensions, units=units)), tmp_path, BUNDLED_CONFIG_DIR / "templates"
    )
    page = files.html.read_text(encoding="utf-8")
    assert "审批时效周报 2026-W11（2026-03-09 至 2026-03-11（截至统计日））" in page
    for label in ["按时办结率", "在办超期", "容缺后补按期补齐率", "审管互动认领率", "环节用时占比", "市县同权"]:
        assert label in page
    assert page.count('src="data:image/png;base64,') == 2
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "50.0%" in page and "-50.0个百分点" in page
    for value in PII:
        assert value not in page
    for chart in files.charts.values():
        assert chart.read_bytes().startswith(PNG_MAGIC)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "permitwatch-week-2026-W11-on-time-by-unit.png",
        "permitwatch-week-2026-W11-overdue-trend.png",
        "permitwatch-week-2026-W11.html",
        "permitwatch-week-2026-W11.xlsx",
    ]


def test_markdown_key_table_for_the_artifact() -> None:
    markdown = markdown_table(fixture_report())
    assert "| 按时办结率 | 50.0% | 100.0% | -50.0个百分点 |" in markdown
    assert "| 在办超期件数 | 2 | 4 | -2 |" in markdown
    assert "南康区行政审批局" in markdown
    for value in PII:
        assert value not in markdown


# -- the real engine ----------------------------------------------------------------------------------------------


def engine_clocks() -> tuple[ClockSet, WorkCalendar]:
    config = load_config(BUNDLED_CONFIG_DIR)
    return build_clocks(fx.tables(), config.rules), load_work_calendar(config.calendar_files)


def test_the_fixture_evaluations_are_what_the_engine_says() -> None:
    clock_set, calendar = engine_clocks()
    assert clock_set.rejects.is_empty()
    engine = evaluate_clocks(clock_set.clocks, clock_set.pauses, calendar, fx.AS_OF)
    written = fx.evaluations().drop("workdays_used")
    assert_frame_equal(engine.select(written.columns).sort("clock_id"), written.sort("clock_id"))
    case_clocks = clock_set.clocks.filter(pl.col("clock_type") == "case")
    open_then = case_clocks.filter(
        (pl.col("start_date") <= fx.PREVIOUS_END)
        & (pl.col("completed_date").is_null() | (pl.col("completed_date") > fx.PREVIOUS_END))
    )
    previous = evaluate_clocks(open_then, clock_set.pauses, calendar, fx.PREVIOUS_END)
    written_previous = fx.previous_snapshot().drop("as_of")
    assert_frame_equal(previous.select(written_previous.columns).sort("clock_id"), written_previous.sort("clock_id"))


def test_report_built_with_the_deadline_engine_matches_the_hand_checked_one() -> None:
    config = load_config(BUNDLED_CONFIG_DIR)
    _, calendar = engine_clocks()
    built = build_report(fx.tables(), config, "week", fx.AS_OF, trend_periods=2, calendar=calendar)
    by_hand = fixture_report(dimensions_from_config(config.rules, config.units))
    assert_frame_equal(built.overview, by_hand.overview)
    for name, view in by_hand.views.items():
        assert_frame_equal(built.views[name], view, check_row_order=name not in ORDERED_VIEWS)
    # C9 counts 30 calendar days; its working days come from the same engine counting in working days.
    assert built.views["by_matter"].filter(pl.col("matter_code") == "SXTQ-C004")["avg_workdays"].to_list() == [21.0]


def test_engine_report_trend_evaluates_each_period_end() -> None:
    config = load_config(BUNDLED_CONFIG_DIR)
    _, calendar = engine_clocks()
    report = build_report(fx.tables(), config, "week", fx.AS_OF, trend_periods=3, calendar=calendar)
    trend = report.views["trend"]
    assert trend["period"].to_list() == ["2026-W09", "2026-W10", "2026-W11"]
    # End of 2026-W09 (Sunday 03-01): C2, C4, C6, C7, C9 open; C4 was due 02-27 and is the only one overdue then.
    assert trend["open_cases"].to_list() == [5, 6, 4]
    assert trend["open_overdue"].to_list() == [1, 4, 2]


# -- the command --------------------------------------------------------------------------------------------------


def test_report_command_reads_the_database_and_writes_the_files(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = ensure_schema(database_url)
    for name, frame in fx.tables().items():
        store_table(engine, name, frame, None)
    engine.dispose()
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(tmp_path / "var"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "--period", "week", "--as-of", "2026-03-11", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "按时办结率" in result.output and "50.0%" in result.output
    book = openpyxl.load_workbook(out / "permitwatch-week-2026-W11.xlsx")
    by_unit = list(book["按单位"].iter_rows(min_row=2, values_only=True))
    assert by_unit[-1][0] == TOTAL and by_unit[-1][3] == 4
    assert (out / "permitwatch-week-2026-W11.html").is_file()

    monthly = CliRunner().invoke(app, ["report", "--period", "month", "--as-of", "2026-03-11", "-o", str(out)])
    assert monthly.exit_code == 0, monthly.output
    assert (out / "permitwatch-month-2026-03.xlsx").is_file()


def test_report_command_reads_canonical_csv_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name, frame in fx.tables().items():
        frame.write_csv(data / f"{name}.csv")
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(tmp_path / "var"))
    out = tmp_path / "out"
    args = ["report", "--as-of", "2026-03-11", "--data", str(data), "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    overview = {row[0]: row for row in openpyxl.load_workbook(out / "permitwatch-week-2026-W11.xlsx")["概览"].values}
    assert overview["办结件数"][1] == 4
    assert overview["按时办结率"][1] == pytest.approx(0.5)


def test_report_command_refuses_a_bad_date_and_an_empty_database(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(tmp_path / "var"))
    bad_date = CliRunner().invoke(app, ["report", "--as-of", "2026/13/01"])
    assert bad_date.exit_code == 2
    assert "not a date" in bad_date.output
    empty = CliRunner().invoke(app, ["report", "--as-of", "2026-03-11", "-o", str(tmp_path / "out")])
    assert empty.exit_code == 2
    assert "no cases" in empty.output
    assert not (tmp_path / "out").exists()
