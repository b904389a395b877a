"""The statistics report (统计报表): views from tasks/reports/metrics.py written as one XLSX, one HTML page and PNG
charts.

- XLSX: one sheet per view, header row frozen, numbers kept as numbers; a text cell that starts like a formula
  (= + - @, tab, CR) is written as text with Excel's quote prefix, so opening the file never runs anything.
- HTML (config/templates/report.html.j2): Chinese labels, the charts embedded as PNG data so the single file can be
  mailed; the PNG files are written beside it too.
- Charts use the Noto Sans CJK SC face shipped by the `noto-cjk-sans-otc` package, registered with matplotlib
  explicitly, so Chinese renders on a machine without any system CJK font.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
import xlsxwriter
from matplotlib import font_manager, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from noto_cjk_sans_otc import FONT_PATH

from config.bundle import PermitwatchConfig
from config.rules import RuleBook
from config.settings import BUNDLED_CONFIG_DIR
from config.units import UnitDirectory
from tasks.alerts.digests import bundled_templates
from tasks.clocks.builders import build_clocks
from tasks.clocks.calendar import WorkCalendar, load_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tasks.reports.metrics import (
    TOTAL,
    Dimensions,
    MetricInputs,
    Period,
    PeriodKind,
    ReportViews,
    build_views,
    report_periods,
)

CJK_FAMILY = "Noto Sans CJK SC"
BUNDLED_TEMPLATES = BUNDLED_CONFIG_DIR / "templates"
TEMPLATE_NAME = "report.html.j2"
HTML_PREVIEW_ROWS = 20

# 县级行政区划 of Ganzhou (and the two functional zones, which use the platform's codes).
REGION_NAMES = {
    "360700": "市本级",
    "360702": "章贡区",
    "360703": "南康区",
    "360704": "赣县区",
    "360722": "信丰县",
    "360723": "大余县",
    "360724": "上犹县",
    "360725": "崇义县",
    "360726": "安远县",
    "360728": "定南县",
    "360729": "全南县",
    "360730": "宁都县",
    "360731": "于都县",
    "360732": "兴国县",
    "360733": "会昌县",
    "360734": "寻乌县",
    "360735": "石城县",
    "360781": "瑞金市",
    "360783": "龙南市",
    "360791": "赣州经开区",
    "360792": "赣州蓉江新区",
}

VALUE_LABELS: dict[str, dict[str, str]] = {
    "mode": {
        "county_end_to_end": "直接下放",
        "county_review_city_approve": "下放实质性审核权",
        "county_forward_city_handle": "服务窗口前移",
        "city": "市级办理",
    },
    "level": bundled_templates().level_short,  # the alerts' short level names
}

# Sheet / section titles, in the order they appear.
VIEW_TITLES = {
    "overview": "概览",
    "trend": "分期趋势",
    "by_unit": "按单位",
    "by_region": "按区域",
    "by_matter": "按事项",
    "by_mode": "按市县同权模式",
    "by_category": "按项目类别",
    "overdue_ages": "超期时长分布",
    "overdue_cases": "在办超期明细",
    "steps": "环节用时占比",
    "projects": "工程建设项目时限",
    "deferrals": "容缺后补",
    "claims": "审管互动认领",
}

COLUMN_LABELS = {
    "metric": "指标",
    "current": "本期",
    "previous": "上期",
    "change": "变化",
    "period": "期间",
    "start": "起始日",
    "end": "截止日",
    "unit_code": "单位编码",
    "unit_name": "单位",
    "region_code": "区划代码",
    "region_name": "区域",
    "matter_code": "事项编码",
    "matter_name": "事项",
    "mode": "市县同权模式",
    "category": "项目类别编码",
    "category_name": "项目类别",
    "accepted": "受理件数",
    "completed": "办结件数",
    "on_time": "按时办结",
    "late": "超时办结",
    "on_time_rate": "按时办结率",
    "avg_workdays": "平均用时(工作日)",
    "p90_workdays": "P90用时(工作日)",
    "open_cases": "期末在办",
    "open_overdue": "在办超期",
    "escalated": "督办",
    "avg_overdue_workdays": "平均超期(工作日)",
    "max_overdue_workdays": "最长超期(工作日)",
    "completed_prev": "上期办结",
    "on_time_rate_prev": "上期按时办结率",
    "on_time_rate_change": "按时办结率变化(百分点)",
    "overdue_1_5": "超期≤5日",
    "overdue_6_10": "超期6–10日",
    "overdue_11_20": "超期11–20日",
    "overdue_over_20": "超期20日以上",
    "case_id": "办件编号",
    "accepted_at": "受理日期",
    "due_date": "法定办结日",
    "overdue_workdays": "超期(工作日)",
    "level": "状态",
    "step_no": "环节序号",
    "step_name": "环节",
    "steps": "环节数",
    "workdays": "用时合计(工作日)",
    "late_steps": "超时环节",
    "share": "用时占比",
    "limit_days": "时限(工作日)",
    "within_limit": "时限内办结",
    "within_limit_rate": "时限内办结率",
    "open_projects": "在办项目",
    "open_over_limit": "在办超时限",
    "due": "应补齐",
    "supplied_on_time": "按期补齐",
    "supplied_late": "逾期补齐",
    "not_supplied": "未补齐",
    "due_prev": "上期应补齐",
    "supplied_on_time_prev": "上期按期补齐",
    "fulfilment_rate": "按期补齐率",
    "fulfilment_rate_prev": "上期按期补齐率",
    "fulfilment_rate_change": "补齐率变化(百分点)",
    "pushed": "推送件数",
    "claimed": "已认领",
    "claimed_on_time": "按时认领",
    "avg_claim_workdays": "平均认领用时(工作日)",
    "avg_claim_workdays_prev": "上期平均认领用时(工作日)",
    "claim_rate": "认领率",
    "on_time_claim_rate": "按时认领率",
    "claim_rate_prev": "上期认领率",
    "claim_rate_change": "认领率变化(百分点)",
    "pushed_prev": "上期推送",
    "claimed_prev": "上期认领",
    "rank": "排名",
}
VIEW_COLUMN_LABELS = {"projects": {"completed": "办结项目"}}

METRIC_LABELS = {
    "accepted": "受理件数",
    "completed": "办结件数",
    "on_time_rate": "按时办结率",
    "avg_workdays": "平均用时(工作日)",
    "p90_workdays": "P90用时(工作日)",
    "open_cases": "期末在办件数",
    "open_overdue": "在办超期件数",
    "escalated": "督办件数",
    "avg_overdue_workdays": "平均超期(工作日)",
    "fulfilment_rate": "容缺后补按期补齐率",
    "claim_rate": "审管互动认领率",
    "avg_claim_workdays": "平均认领用时(工作日)",
}
COUNT_METRICS = frozenset({"accepted", "completed", "open_cases", "open_overdue", "escalated"})

NOTES = (
    "时间口径：全部时限、用时与超期均由预警所用的同一时限引擎按法定工作日（含调休上班日）计算，特别程序暂停期间不计入。",
    "按时办结率 = 本期办结件中在法定办结日前（含当日）办结的件数 ÷ 本期办结件数。",
    "用时 = 受理次日起至办结日的工作日数（扣除特别程序暂停）；P90 按线性插值（同 Excel PERCENTILE.INC）。",
    "在办超期 = 期末仍在办且已过法定办结日的办件（含督办件），超期以工作日计。",
    "环节用时占比 = 本期办结件各环节用时 ÷ 该事项全部环节用时。",
    "容缺后补按期补齐率 = 补交期限在本期内的容缺件中按期补齐的件数 ÷ 应补齐件数。",
    "认领率 = 本期推送的审批结果中截至统计日已认领的件数 ÷ 推送件数；认领用时以工作日计。",
    "上期为本期之前的完整一周（周一至周日）或一个自然月；合计行按全部数据计算，件数合计等于各分项之和。",
)


def _is_rate(column: str) -> bool:
    return column == "share" or column.endswith("_rate") or column.endswith("_rate_prev")


def _is_point_change(column: str) -> bool:
    return column.endswith("_rate_change")


def dimensions_from_config(rules: RuleBook, units: UnitDirectory) -> Dimensions:
    """Names and groupings for the report: the newest version's name and mode of each matter and category."""
    unit_frame = pl.DataFrame(
        [(unit.code, unit.name, unit.region) for unit in units.units.values()],
        schema={"unit_code": pl.String, "unit_name": pl.String, "unit_region": pl.String},
        orient="row",
    )
    regions = pl.DataFrame(
        list(REGION_NAMES.items()), schema={"region_code": pl.String, "region_name": pl.String}, orient="row"
    )
    matters = (
        rules.matter_versions()
        .sort("effective_from")
        .group_by("matter_code")
        .agg(pl.col("matter_name").last(), pl.col("mode").last())
    )
    categories = (
        rules.category_versions().sort("effective_from").group_by("category").agg(pl.col("category_name").last())
    )
    return Dimensions(units=unit_frame, regions=regions, matters=matters, categories=categories)


# -- evaluation: the deadline engine, the same calls the nightly run makes ---------------------------------------


def _workdays_used(
    clocks: pl.DataFrame, evaluations: pl.DataFrame, pauses: pl.DataFrame, calendar: WorkCalendar, as_of: date
) -> pl.Series:
    """Working days each clock used, pauses excluded: its elapsed for a `workday` clock; for a calendar-day clock
    (自然日) the elapsed of the same clock evaluated as a workday clock by the same engine."""
    calendar_kind = clocks.get_column("limit_kind") == "calendar"
    as_workdays = clocks.filter(calendar_kind).with_columns(limit_kind=pl.lit("workday"))
    counted = evaluate_clocks(as_workdays, pauses, calendar, as_of).get_column("elapsed")
    # evaluate_clocks keeps the clocks' order, so the subset's results go back to the subset's positions.
    return evaluations.get_column("elapsed").clone().scatter(calendar_kind.arg_true(), counted).alias("workdays_used")


def evaluate_for_report(
    tables: Mapping[str, pl.DataFrame], rules: RuleBook, calendar: WorkCalendar, periods: list[Period], as_of: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every clock evaluated at as-of with `workdays_used`, case clocks open at each earlier period end evaluated
    on that day with an `as_of` column)."""
    clock_set = build_clocks(dict(tables), rules)
    known = clock_set.known_at(as_of, calendar)
    clocks, pauses = known.clocks, known.pauses
    evaluations = evaluate_clocks(clocks, pauses, calendar, as_of)
    evaluations = evaluations.with_columns(_workdays_used(clocks, evaluations, pauses, calendar, as_of))
    snapshots = [
        evaluations.filter(pl.col("clock_type") == "case").drop("workdays_used").with_columns(as_of=pl.lit(as_of))
    ]
    for period in periods:
        if period.end >= as_of:
            continue
        then = clock_set.known_at(period.end, calendar)
        open_then = then.clocks.filter(
            (pl.col("clock_type") == "case")
            & (pl.col("completed_date").is_null() | (pl.col("completed_date") > period.end))
        )
        snapshots.append(
            evaluate_clocks(open_then, then.pauses, calendar, period.end).with_columns(as_of=pl.lit(period.end))
        )
    return evaluations, pl.concat(snapshots, how="vertical_relaxed")


def build_report(
    tables: Mapping[str, pl.DataFrame],
    config: PermitwatchConfig,
    kind: PeriodKind,
    as_of: date,
    *,
    trend_periods: int = 8,
    calendar: WorkCalendar | None = None,
) -> ReportViews:
    """The report's views for the period holding `as_of`, from canonical tables wherever they were read from."""
    calendar = calendar or load_work_calendar(config.calendar_files)
    periods = report_periods(kind, as_of, max(trend_periods, 2))
    evaluations, snapshots = evaluate_for_report(tables, config.rules, calendar, periods, as_of)
    inputs = MetricInputs(tables, evaluations, snapshots, dimensions_from_config(config.rules, config.units), as_of)
    return build_views(inputs, kind, trend_periods=len(periods))


# -- charts -------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def register_cjk_font() -> font_manager.FontPath:
    """Add the packaged Noto Sans CJK collection to matplotlib's font list and resolve Noto Sans CJK SC in it (the
    packaged file, or an identical system copy listed before it)."""
    font_manager.fontManager.addfont(str(FONT_PATH))
    # fallback_to_default=False: a missing font is an error here, not a chart full of empty boxes.
    return font_manager.findfont(font_manager.FontProperties(family=CJK_FAMILY), fallback_to_default=False)


def _chart_style() -> dict[str, Any]:
    register_cjk_font()
    return {"font.family": [CJK_FAMILY], "axes.unicode_minus": False, "font.size": 10}


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def on_time_chart(by_unit: pl.DataFrame, title: str) -> bytes:
    """各单位按时办结率: one horizontal bar per unit with completions in the period, best at the top."""
    rows = by_unit.filter((pl.col("unit_code") != TOTAL) & (pl.col("completed") > 0)).sort(
        ["on_time_rate", "unit_code"], descending=[False, True]
    )
    with rc_context(_chart_style()):
        figure = Figure(figsize=(8, max(2.5, 0.32 * rows.height + 1.2)), dpi=110, layout="constrained")
        axes = figure.add_subplot()
        rates = [rate * 100 for rate in rows["on_time_rate"].to_list()]
        names = rows["unit_name"].to_list()
        bars = axes.barh(names, rates, color="#2f6f9f")
        axes.bar_label(bars, labels=[f"{rate:.1f}%" for rate in rates], padding=3, fontsize=8)
        axes.set_xlim(0, 110)
        axes.set_xlabel("按时办结率（%）")
        axes.set_title(title)
        if not names:
            axes.text(55, 0, "本期无办结件", ha="center", va="center")
        axes.grid(axis="x", alpha=0.3)
        return _png(figure)


def overdue_trend_chart(trend: pl.DataFrame, title: str) -> bytes:
    """在办超期趋势: open overdue and escalated cases at the end of each period."""
    with rc_context(_chart_style()):
        figure = Figure(figsize=(8, 3.6), dpi=110, layout="constrained")
        axes = figure.add_subplot()
        labels = trend["period"].to_list()
        axes.plot(labels, trend["open_overdue"].to_list(), marker="o", color="#c0392b", label="在办超期")
        axes.plot(labels, trend["escalated"].to_list(), marker="s", color="#8e44ad", label="其中督办")
        for x, y in zip(labels, trend["open_overdue"].to_list(), strict=True):
            axes.annotate(str(y), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        axes.set_ylabel("件数（期末）")
        axes.set_ylim(0, max([*trend["open_overdue"].to_list(), 1]) * 1.2)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(title)
        axes.legend(loc="best")
        axes.grid(alpha=0.3)
        axes.tick_params(axis="x", labelrotation=30)
        return _png(figure)


# -- display ------------------------------------------------------------------------------------------------------


def _label_values(view: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Coded values (mode, level) shown by their Chinese names; codes without a name stay as they are."""
    replacements = [
        pl.col(column).replace(mapping) for column, mapping in VALUE_LABELS.items() if column in frame.columns
    ]
    return frame.with_columns(replacements) if replacements else frame


def column_label(view: str, column: str) -> str:
    return VIEW_COLUMN_LABELS.get(view, {}).get(column, COLUMN_LABELS.get(column, column))


def _display_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    value = pl.col(column)
    if _is_point_change(column):
        text = (value * 100).round(1).cast(pl.String)
        return pl.when(value > 0).then(pl.lit("+") + text).otherwise(text)
    if _is_rate(column):
        return (value * 100).round(1).cast(pl.String) + pl.lit("%")
    if dtype.is_float():
        return value.round(1).cast(pl.String)
    return value.cast(pl.String)


def display_frame(view: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The view as text, Chinese headers, rates as percentages, empty cells as "—"."""
    labelled = _label_values(view, frame)
    return labelled.select(
        _display_expr(column, dtype).fill_null("—").alias(column_label(view, column))
        for column, dtype in labelled.schema.items()
    )


def display_overview(overview: pl.DataFrame) -> pl.DataFrame:
    """The key figures with their units: percentages for rates, change of a rate in percentage points."""
    metric = pl.col("metric")
    is_rate = metric.str.ends_with("_rate")
    is_count = metric.is_in(list(COUNT_METRICS))

    def shown(column: str) -> pl.Expr:
        value = pl.col(column)
        return (
            pl.when(value.is_null())
            .then(pl.lit("—"))
            .when(is_rate)
            .then((value * 100).round(1).cast(pl.String) + "%")
            .when(is_count)
            .then(value.cast(pl.Int64).cast(pl.String))
            .otherwise(value.round(1).cast(pl.String))
        )

    change = pl.col("change")
    magnitude = (
        pl.when(is_rate)
        .then((change * 100).round(1).cast(pl.String) + "个百分点")
        .when(is_count)
        .then(change.cast(pl.Int64).cast(pl.String))
        .otherwise(change.round(1).cast(pl.String))
    )
    return overview.select(
        metric.replace_strict(METRIC_LABELS).alias("指标"),
        shown("current").alias("本期"),
        shown("previous").alias("上期"),
        pl.when(change.is_null())
        .then(pl.lit("—"))
        .when(change > 0)
        .then(pl.lit("+") + magnitude)
        .otherwise(magnitude)
        .alias("变化"),
    )


def period_title(report: ReportViews) -> str:
    period = report.period
    kind = "周报" if period.kind == "week" else "月报"
    cut = "" if period.is_complete else "（截至统计日）"
    return f"审批时效{kind} {period.label}（{period.start:%Y-%m-%d} 至 {period.end:%Y-%m-%d}{cut}）"


# -- XLSX ---------------------------------------------------------------------------------------------------------

FORMULA_START = r"^[=+\-@\t\r]"


def _text_width(series: pl.Series) -> int:
    """Display width: CJK characters are two columns wide (3 UTF-8 bytes), ASCII one."""
    text = series.cast(pl.String).drop_nulls()
    if text.is_empty():
        return 0
    widths = (text.str.len_bytes() + text.str.len_chars()) // 2
    return int(widths.max() or 0)


class _Workbook:
    def __init__(self, path: Path) -> None:
        # Strings are never turned into formulas, links or numbers: a cell holds exactly the text it was given.
        self.book = xlsxwriter.Workbook(
            str(path),
            {
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
                "nan_inf_to_errors": True,
            },
        )
        self.header = self.book.add_format({"bold": True, "bg_color": "#dde8f0", "border": 1, "text_wrap": True})
        self.formats = {
            "rate": self.book.add_format({"num_format": "0.0%"}),
            "points": self.book.add_format({"num_format": "+0.0;-0.0;0.0"}),
            "float": self.book.add_format({"num_format": "0.0"}),
            "int": self.book.add_format({"num_format": "0"}),
            "date": self.book.add_format({"num_format": "yyyy-mm-dd"}),
            "text": self.book.add_format({}),
            "quoted": self.book.add_format({"quote_prefix": True}),
        }

    def _format_name(self, column: str, dtype: pl.DataType) -> str:
        if _is_point_change(column):
            return "points"
        if _is_rate(column):
            return "rate"
        if dtype.is_float():
            return "float"
        if dtype.is_integer():
            return "int"
        if dtype == pl.Date:
            return "date"
        return "text"

    def sheet(self, title: str, headers: list[str], frame: pl.DataFrame) -> None:
        sheet = self.book.add_worksheet(title)
        sheet.write_row(0, 0, headers, self.header)
        for index, (column, dtype) in enumerate(frame.schema.items()):
            series = frame.get_column(column)
            kind = self._format_name(column, dtype)
            values = (series * 100).to_list() if kind == "points" else series.to_list()
            sheet.write_column(1, index, values, self.formats[kind])
            if dtype == pl.String:
                self._quote_formula_like(sheet, index, series)
            width = max(_text_width(pl.Series([headers[index]])), _text_width(series), 6)
            sheet.set_column(index, index, min(width + 2, 60))
        sheet.freeze_panes(1, 0)
        if frame.height:
            sheet.autofilter(0, 0, frame.height, max(frame.width - 1, 0))

    def _quote_formula_like(self, sheet: Any, column: int, series: pl.Series) -> None:
        risky = series.str.contains(FORMULA_START).fill_null(False)
        for row in risky.arg_true().to_list():
            sheet.write_string(row + 1, column, series[row], self.formats["quoted"])

    def overview(self, title: str, overview: pl.DataFrame) -> None:
        sheet = self.book.add_worksheet(title)
        sheet.write_row(0, 0, ["指标", "本期", "上期", "变化"], self.header)
        for row, item in enumerate(overview.iter_rows(named=True), start=1):
            metric = item["metric"]
            rate = metric.endswith("_rate")
            value_format = self.formats["rate" if rate else "int" if metric in COUNT_METRICS else "float"]
            sheet.write_string(row, 0, METRIC_LABELS[metric])
            sheet.write(row, 1, item["current"], value_format)
            sheet.write(row, 2, item["previous"], value_format)
            change = None if item["change"] is None else item["change"] * 100 if rate else item["change"]
            sheet.write(row, 3, change, self.formats["points"] if rate else value_format)
        sheet.write_string(len(overview) + 1, 3, "（比率的变化以百分点计）")
        sheet.set_column(0, 0, 24)
        sheet.set_column(1, 3, 14)
        sheet.freeze_panes(1, 0)

    def notes(self, title: str, lines: list[str]) -> None:
        sheet = self.book.add_worksheet(title)
        sheet.write_string(0, 0, "说明", self.header)
        sheet.write_column(1, 0, lines)
        sheet.set_column(0, 0, 120)
        sheet.freeze_panes(1, 0)

    def close(self) -> None:
        self.book.close()


def report_notes(report: ReportViews) -> list[str]:
    lines = [
        period_title(report),
        f"统计日：{report.as_of:%Y-%m-%d}；上期：{report.previous.label}"
        f"（{report.previous.start:%Y-%m-%d} 至 {report.previous.end:%Y-%m-%d}）",
        *NOTES,
    ]
    if report.provisional_clocks:
        lines.append(f"注意：{report.provisional_clocks} 个时限涉及尚无国务院放假通知的年份，按预计日历计算（预计）。")
    return lines


def write_xlsx(report: ReportViews, path: Path) -> None:
    workbook = _Workbook(path)
    try:
        workbook.overview(VIEW_TITLES["overview"], report.overview)
        for name, frame in report.views.items():
            labelled = _label_values(name, frame)
            workbook.sheet(VIEW_TITLES[name], [column_label(name, column) for column in frame.columns], labelled)
        workbook.notes("说明", report_notes(report))
    finally:
        workbook.close()


# -- HTML ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    title: str
    headers: list[str]
    rows: list[tuple[str, ...]]
    note: str = ""


def _section(view: str, frame: pl.DataFrame, note: str = "") -> Section:
    shown = display_frame(view, frame)
    return Section(VIEW_TITLES[view], shown.columns, shown.rows(), note)


def html_sections(report: ReportViews) -> list[Section]:
    overview = display_overview(report.overview)
    sections = [Section(VIEW_TITLES["overview"], overview.columns, overview.rows())]
    for name, frame in report.views.items():
        if name == "overdue_cases":
            note = f"共 {frame.height} 件，此处列出超期最久的 {min(frame.height, HTML_PREVIEW_ROWS)} 件，全部见 XLSX。"
            sections.append(_section(name, frame.head(HTML_PREVIEW_ROWS), note))
        else:
            sections.append(_section(name, frame))
    return sections


def _environment(template_dir: Path) -> jinja2.Environment:
    # A config directory may override the bundled template; without its own, the bundled one is used.
    loaders = [jinja2.FileSystemLoader(str(template_dir)), jinja2.FileSystemLoader(str(BUNDLED_TEMPLATES))]
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


def render_html(
    report: ReportViews, charts: Mapping[str, bytes], template_dir: Path, *, summary_only: bool = False
) -> str:
    """The report page; `summary_only` renders just the key figures (an email body)."""
    images = {name: base64.b64encode(data).decode("ascii") for name, data in charts.items()}
    template = _environment(template_dir).get_template(TEMPLATE_NAME)
    return template.render(
        title=period_title(report),
        as_of=report.as_of.isoformat(),
        previous=f"{report.previous.label}（{report.previous.start:%Y-%m-%d} 至 {report.previous.end:%Y-%m-%d}）",
        sections=html_sections(report) if not summary_only else html_sections(report)[:1],
        charts=images,
        notes=report_notes(report)[2:],
        summary_only=summary_only,
    )


# -- files --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFiles:
    xlsx: Path
    html: Path
    charts: dict[str, Path]

    @property
    def attachments(self) -> list[Path]:
        return [self.xlsx, self.html]


def report_stem(report: ReportViews) -> str:
    return f"permitwatch-{report.period.kind}-{report.period.label}"


def render_charts(report: ReportViews) -> dict[str, bytes]:
    label = report.period.label
    return {
        "on_time_by_unit": on_time_chart(report.views["by_unit"], f"各单位按时办结率（{label}）"),
        "overdue_trend": overdue_trend_chart(report.views["trend"], "在办超期件数趋势（各期期末）"),
    }


def write_report(report: ReportViews, directory: Path, template_dir: Path) -> ReportFiles:
    """Write the XLSX, the HTML page and the PNG charts of one report into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = report_stem(report)
    charts = render_charts(report)
    chart_paths = {}
    for name, data in charts.items():
        chart_path = directory / f"{stem}-{name.replace('_', '-')}.png"
        chart_path.write_bytes(data)
        chart_paths[name] = chart_path
    xlsx = directory / f"{stem}.xlsx"
    write_xlsx(report, xlsx)
    html = directory / f"{stem}.html"
    html.write_text(render_html(report, charts, template_dir), encoding="utf-8")
    return ReportFiles(xlsx=xlsx, html=html, charts=chart_paths)


def markdown_table(report: ReportViews) -> str:
    """The key figures as a Markdown table (Prefect artifact). Aggregates only: no case or applicant data."""
    shown = display_overview(report.overview)
    lines = [f"### {period_title(report)}", "", "| " + " | ".join(shown.columns) + " |", "|---|---:|---:|---:|"]
    lines.extend("| " + " | ".join(row) + " |" for row in shown.rows())
    worst = (
        report.views["by_unit"]
        .filter((pl.col("unit_code") != TOTAL) & (pl.col("open_overdue") > 0))
        .sort(["open_overdue", "unit_code"], descending=[True, False])
        .head(5)
    )
    if worst.height:
        lines += ["", "在办超期最多的单位：", "", "| 单位 | 在办超期 | 督办 |", "|---|---:|---:|"]
        lines.extend(
            f"| {row['unit_name']} | {row['open_overdue']} | {row['escalated']} |"
            for row in worst.iter_rows(named=True)
        )
    return "\n".join(lines) + "\n"
