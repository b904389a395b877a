"""Report metrics on a small fixture whose figures were worked out by hand (see tests/report_fixtures.py)."""

from __future__ import annotations

import itertools
from datetime import date

import polars as pl
import pytest
import report_fixtures as fx

from tasks.reports.metrics import (
    TOTAL,
    MetricInputs,
    Period,
    ReportViews,
    build_views,
    case_facts,
    period_containing,
    report_periods,
)

CASE_COUNTS = ["accepted", "completed", "on_time", "late", "open_cases", "open_overdue", "escalated"]


@pytest.fixture
def report() -> ReportViews:
    inputs = MetricInputs(fx.tables(), fx.evaluations(), fx.snapshots(), fx.dimensions(), fx.AS_OF)
    return build_views(inputs, "week", trend_periods=2)


def total_row(frame: pl.DataFrame, key: str) -> dict[str, object]:
    return frame.filter(pl.col(key) == TOTAL).row(0, named=True)


def parts(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    return frame.filter(pl.col(key) != TOTAL)


# -- periods ------------------------------------------------------------------------------------------------------


def test_week_runs_monday_to_sunday_and_is_cut_at_the_as_of_date() -> None:
    week = period_containing("week", date(2026, 3, 11), cut_at=date(2026, 3, 11))
    assert (week.start, week.end, week.label, week.is_complete) == (
        date(2026, 3, 9),
        date(2026, 3, 11),
        "2026-W11",
        False,
    )
    assert week.previous() == Period("week", date(2026, 3, 2), date(2026, 3, 8))
    assert week.previous().is_complete


def test_month_previous_crosses_the_year_and_labels_by_month() -> None:
    january = period_containing("month", date(2026, 1, 31))
    assert (january.start, january.end, january.label) == (date(2026, 1, 1), date(2026, 1, 31), "2026-01")
    assert january.previous() == Period("month", date(2025, 12, 1), date(2025, 12, 31))
    february = period_containing("month", date(2028, 2, 10))
    assert february.full_end == date(2028, 2, 29)


def test_iso_week_label_uses_the_iso_year() -> None:
    assert period_containing("week", date(2026, 1, 1)).label == "2026-W01"
    assert period_containing("week", date(2027, 1, 1)).label == "2026-W53"


def test_report_periods_are_consecutive_oldest_first() -> None:
    periods = report_periods("month", date(2026, 3, 11), 4)
    assert [p.label for p in periods] == ["2025-12", "2026-01", "2026-02", "2026-03"]
    assert periods[-1].end == date(2026, 3, 11)
    for earlier, later in itertools.pairwise(periods):
        assert (later.start - earlier.end).days == 1


def test_unknown_period_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown period kind"):
        period_containing("quarter", date(2026, 3, 11))  # type: ignore[arg-type]


# -- figures worked out by hand -----------------------------------------------------------------------------------


def test_overall_case_figures_match_the_hand_count(report: ReportViews) -> None:
    # This week (03-09..03-11): accepted C5, C8; completed C1 (on time), C2 (late), C3 (on time), C9 (late).
    # Working days used: C1 5, C2 12, C3 6, C9 21 (a 30-calendar-day clock; its working days from the engine).
    # Mean 44 / 4 = 11; P90 of [5, 6, 12, 21] at position 0.9 * 3 = 2.7: 12 + 0.7 * 9 = 18.3.
    # Open at 03-11: C4 (escalated, 9 working days over), C5, C7 (overdue, 3), C8 (paused).
    total = total_row(report.views["by_unit"], "unit_code")
    assert total["accepted"] == 2
    assert (total["completed"], total["on_time"], total["late"]) == (4, 2, 2)
    assert total["on_time_rate"] == pytest.approx(0.5)
    assert total["avg_workdays"] == pytest.approx(11.0)
    assert total["p90_workdays"] == pytest.approx(18.3)
    assert (total["open_cases"], total["open_overdue"], total["escalated"]) == (4, 2, 1)
    assert total["avg_overdue_workdays"] == pytest.approx(6.0)
    assert total["max_overdue_workdays"] == 9


def test_previous_week_and_change(report: ReportViews) -> None:
    # Previous week (03-02..03-08): completed C6 on time; open at 03-08: C1 C2 C3 C4 C7 C9, overdue C2 C4 C7 C9.
    trend = report.views["trend"]
    previous = trend.filter(pl.col("period") == "2026-W10").row(0, named=True)
    assert (previous["accepted"], previous["completed"], previous["on_time_rate"]) == (2, 1, 1.0)
    assert (previous["open_cases"], previous["open_overdue"]) == (6, 4)
    assert previous["avg_overdue_workdays"] == pytest.approx((0 + 6 + 0 + 2) / 4)
    assert previous["avg_workdays"] == 6.0
    overview = {row["metric"]: row for row in report.overview.iter_rows(named=True)}
    assert overview["on_time_rate"]["change"] == pytest.approx(-0.5)
    assert overview["open_overdue"]["current"] == 2
    assert overview["open_overdue"]["change"] == -2
    by_unit = report.views["by_unit"].filter(pl.col("unit_code") == "360702SPJ").row(0, named=True)
    assert (by_unit["completed_prev"], by_unit["on_time_rate_prev"]) == (1, 1.0)
    assert by_unit["on_time_rate_change"] == pytest.approx(-0.5)


def test_breakdowns_by_unit_region_mode_and_category(report: ReportViews) -> None:
    by_unit = {row["unit_code"]: row for row in report.views["by_unit"].iter_rows(named=True)}
    assert (by_unit["360702SPJ"]["completed"], by_unit["360702SPJ"]["on_time"]) == (2, 1)
    assert by_unit["360702SPJ"]["p90_workdays"] == pytest.approx(5 + 0.9 * 7)
    assert by_unit["360703SPJ"]["open_overdue"] == 1
    assert by_unit["360700SPJ"]["on_time_rate"] == 0.0
    # C5 has no region of its own: it takes its unit's (360700, 市本级).
    by_region = {row["region_code"]: row for row in report.views["by_region"].iter_rows(named=True)}
    assert by_region["360700"]["region_name"] == "市本级"
    assert by_region["360700"]["accepted"] == 1
    by_mode = {row["mode"]: row for row in report.views["by_mode"].iter_rows(named=True)}
    assert by_mode["county_review_city_approve"]["open_cases"] == 2
    assert by_mode["county_forward_city_handle"]["late"] == 1
    by_category = {row["category"]: row for row in report.views["by_category"].iter_rows(named=True)}
    assert by_category["enterprise_investment"]["open_overdue"] == 1
    assert by_category["simple_low_risk"]["completed"] == 1
    assert by_category["非工程建设项目"]["completed"] == 2


@pytest.mark.parametrize(
    ("view", "key"),
    [
        ("by_unit", "unit_code"),
        ("by_region", "region_code"),
        ("by_matter", "matter_code"),
        ("by_mode", "mode"),
        ("by_category", "category"),
    ],
)
def test_case_totals_are_the_sum_of_their_parts(report: ReportViews, view: str, key: str) -> None:
    frame = report.views[view]
    total = total_row(frame, key)
    sums = parts(frame, key).select(pl.col([*CASE_COUNTS, "completed_prev"]).sum()).row(0, named=True)
    for column, value in sums.items():
        assert total[column] == value, column
    assert total["on_time_rate"] == pytest.approx(total["on_time"] / total["completed"])
    assert total["on_time"] + total["late"] == total["completed"]


def test_every_breakdown_agrees_with_the_trend_row(report: ReportViews) -> None:
    current = report.views["trend"].row(-1, named=True)
    for view, key in [("by_unit", "unit_code"), ("by_mode", "mode"), ("by_category", "category")]:
        total = total_row(report.views[view], key)
        assert all(total[column] == current[column] for column in CASE_COUNTS), view


def test_overdue_ages_bands_and_detail(report: ReportViews) -> None:
    ages = report.views["overdue_ages"]
    total = total_row(ages, "unit_code")
    bands = ["overdue_1_5", "overdue_6_10", "overdue_11_20", "overdue_over_20"]
    assert [total[band] for band in bands] == [1, 1, 0, 0]
    assert sum(total[band] for band in bands) == total["open_overdue"] == 2
    assert parts(ages, "unit_code")["open_overdue"].sum() == 2
    detail = report.views["overdue_cases"]
    assert detail["case_id"].to_list() == ["C4", "C7"]
    assert detail["overdue_workdays"].to_list() == [9, 3]
    assert "applicant_name" not in detail.columns and "applicant_phone" not in detail.columns


def test_step_shares_sum_to_one_per_matter(report: ReportViews) -> None:
    steps = report.views["steps"]
    b001 = steps.filter(pl.col("matter_code") == "SXTQ-B001").sort("step_no")
    assert b001["share"].to_list() == pytest.approx([4 / 6, 2 / 6])
    assert b001["step_name"].to_list() == ["县级受理审核", "市级审批"]
    a001 = steps.filter(pl.col("matter_code") == "SXTQ-A001").row(0, named=True)
    assert (a001["steps"], a001["workdays"], a001["late_steps"]) == (2, 17, 1)
    assert steps.group_by("matter_code").agg(pl.col("share").sum())["share"].to_list() == pytest.approx([1.0, 1.0])
    # C4's open step is not part of any completed case's time.
    assert steps["steps"].sum() == 4


def test_projects_against_their_category_limit(report: ReportViews) -> None:
    projects = {row["category"]: row for row in report.views["projects"].iter_rows(named=True)}
    assert projects["simple_low_risk"]["limit_days"] == 18
    assert (projects["simple_low_risk"]["completed"], projects["simple_low_risk"]["within_limit"]) == (1, 1)
    assert projects["simple_low_risk"]["avg_workdays"] == 9.0
    assert (projects["enterprise_investment"]["limit_days"], projects["enterprise_investment"]["open_projects"]) == (
        45,
        1,
    )
    assert (projects[TOTAL]["completed"], projects[TOTAL]["open_projects"]) == (1, 1)


def test_deferral_fulfilment_counts_the_deadlines_in_the_period(report: ReportViews) -> None:
    # Due this week: C3 (supplied 03-09, due 03-10) and C7 (due 03-11, nothing supplied). C8 is due later.
    deferrals = report.views["deferrals"]
    total = total_row(deferrals, "unit_code")
    assert (total["due"], total["supplied_on_time"], total["not_supplied"]) == (2, 1, 1)
    assert total["fulfilment_rate"] == pytest.approx(0.5)
    # Previous week: C2 due 03-05, supplied a day late.
    assert (total["due_prev"], total["supplied_on_time_prev"], total["fulfilment_rate_prev"]) == (1, 0, 0.0)
    assert parts(deferrals, "unit_code")["due"].sum() == total["due"]


def test_claim_rate_ranks_supervising_units(report: ReportViews) -> None:
    # Pushed this week: ZJJ PU3 PU4 PU6 (2 claimed), SCJ PU2 PU5 (1 claimed). Claim delays 1, 2, 1 working days.
    claims = report.views["claims"]
    ranked = claims.filter(pl.col("rank").is_not_null())
    assert ranked["unit_code"].to_list() == ["360700ZJJ", "360700SCJ"]
    assert ranked["claim_rate"].to_list() == pytest.approx([2 / 3, 1 / 2])
    total = total_row(claims, "unit_code")
    assert (total["pushed"], total["claimed"]) == (5, 3)
    assert total["claim_rate"] == pytest.approx(0.6)
    assert total["avg_claim_workdays"] == pytest.approx(4 / 3)
    assert total["claim_rate_prev"] == 1.0
    assert total["avg_claim_workdays_prev"] == 1.0
    assert parts(claims, "unit_code")["pushed"].sum() == total["pushed"]


# -- rules of counting --------------------------------------------------------------------------------------------


def test_a_completion_after_the_as_of_date_is_not_counted() -> None:
    late_news = fx.evaluations().with_columns(
        completed_date=pl.when(pl.col("clock_id") == "case:C3")
        .then(date(2026, 3, 12))
        .otherwise(pl.col("completed_date"))
    )
    facts = case_facts(fx.tables()["cases"], fx.tables()["projects"], late_news, fx.dimensions(), fx.AS_OF)
    assert facts.filter(pl.col("case_id") == "C3")["completed_date"].to_list() == [None]


def test_without_working_days_a_calendar_clock_is_left_out_of_the_average() -> None:
    evaluations = fx.evaluations().drop("workdays_used")
    inputs = MetricInputs(fx.tables(), evaluations, fx.snapshots(), fx.dimensions(), fx.AS_OF)
    total = total_row(build_views(inputs, "week", trend_periods=2).views["by_unit"], "unit_code")
    assert total["completed"] == 4
    assert total["avg_workdays"] == pytest.approx((5 + 12 + 6) / 3)


def test_a_missing_snapshot_is_an_error_not_zero_open_cases() -> None:
    snapshots = fx.snapshots().filter(pl.col("as_of") != fx.PREVIOUS_END)
    inputs = MetricInputs(fx.tables(), fx.evaluations(), snapshots, fx.dimensions(), fx.AS_OF)
    with pytest.raises(ValueError, match="2026-03-08, when 6 cases were open"):
        build_views(inputs, "week", trend_periods=2)


def test_unknown_matter_and_unit_are_grouped_not_dropped() -> None:
    tables = fx.tables()
    tables["cases"] = tables["cases"].with_columns(
        matter_code=pl.when(pl.col("case_id") == "C1").then(pl.lit("X-999")).otherwise(pl.col("matter_code"))
    )
    inputs = MetricInputs(tables, fx.evaluations(), fx.snapshots(), fx.dimensions(), fx.AS_OF)
    by_mode = build_views(inputs, "week", trend_periods=2).views["by_mode"]
    assert by_mode.filter(pl.col("mode") == "未知")["completed"].to_list() == [1]
    assert total_row(by_mode, "mode")["completed"] == 4


def test_a_unit_serving_several_regions_is_one_row() -> None:
    tables = fx.tables()
    tables["cases"] = tables["cases"].with_columns(
        region_code=pl.when(pl.col("case_id") == "C5").then(pl.lit("360702")).otherwise(pl.col("region_code"))
    )
    inputs = MetricInputs(tables, fx.evaluations(), fx.snapshots(), fx.dimensions(), fx.AS_OF)
    views = build_views(inputs, "week", trend_periods=2).views
    city = views["by_unit"].filter(pl.col("unit_code") == "360700SPJ")
    assert city.height == 1
    assert (city["accepted"].item(), city["completed"].item()) == (1, 1)
    by_region = {row["region_code"]: row for row in views["by_region"].iter_rows(named=True)}
    assert by_region["360702"]["accepted"] == 1 and by_region["360700"]["completed"] == 1
