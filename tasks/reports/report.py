"""The statistics report (统计报表): views from tasks/reports/metrics.py written as one XLSX, one HTML page and PNG
charts.

- XLSX: the key figures, one sheet per view and the notes (tasks/reports/output.py: header row frozen, numbers kept
  as numbers, formula-like text never run).
- HTML (config/templates/report.html.j2): Chinese labels, the charts embedded as PNG data so the single file can be
  mailed; the PNG files are written beside it too.
- Wording (region and mode names, titles, headings, key figures, notes): config/templates/_report_labels.j2.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from config.bundle import PermitwatchConfig
from config.labels import bundled_report_labels
from config.rules import RuleBook
from config.units import UnitDirectory
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
from tasks.reports.output import (
    KeyFigure,
    Section,
    chart_style,
    html_environment,
    label_values,
    open_workbook,
    png,
    shown_frame,
    write_key_figures,
    write_notes,
    write_sheet,
)

TEMPLATE_NAME = "report.html.j2"
HTML_PREVIEW_ROWS = 20

LABELS = bundled_report_labels()
VIEW_TITLES = LABELS.view_titles
COUNT_METRICS = frozenset({"accepted", "completed", "open_cases", "open_overdue", "escalated"})


def dimensions_from_config(rules: RuleBook, units: UnitDirectory) -> Dimensions:
    """Names and groupings for the report: the newest version's name and mode of each matter and category."""
    unit_frame = pl.DataFrame(
        [(unit.code, unit.name, unit.region) for unit in units.units.values()],
        schema={"unit_code": pl.String, "unit_name": pl.String, "unit_region": pl.String},
        orient="row",
    )
    regions = pl.DataFrame(
        list(LABELS.region_names.items()), schema={"region_code": pl.String, "region_name": pl.String}, orient="row"
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


def on_time_chart(by_unit: pl.DataFrame, title: str) -> bytes:
    """各单位按时办结率: one horizontal bar per unit with completions in the period, best at the top."""
    rows = by_unit.filter((pl.col("unit_code") != TOTAL) & (pl.col("completed") > 0)).sort(
        ["on_time_rate", "unit_code"], descending=[False, True]
    )
    with rc_context(chart_style()):
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
        return png(figure)


def overdue_trend_chart(trend: pl.DataFrame, title: str) -> bytes:
    """在办超期趋势: open overdue and escalated cases at the end of each period."""
    with rc_context(chart_style()):
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
        return png(figure)


# -- display ------------------------------------------------------------------------------------------------------


def column_label(view: str, column: str) -> str:
    return LABELS.view_column_labels.get(view, {}).get(column, LABELS.column_labels.get(column, column))


def display_frame(view: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The view as text, Chinese headers, rates as percentages, empty cells as "—"."""
    return shown_frame(frame, {column: column_label(view, column) for column in frame.columns})


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
        metric.replace_strict(LABELS.metric_labels).alias("指标"),
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


def report_notes(report: ReportViews) -> list[str]:
    lines = [
        period_title(report),
        f"统计日：{report.as_of:%Y-%m-%d}；上期：{report.previous.label}"
        f"（{report.previous.start:%Y-%m-%d} 至 {report.previous.end:%Y-%m-%d}）",
        *LABELS.notes,
    ]
    if report.provisional_clocks:
        lines.append(f"注意：{report.provisional_clocks} 个时限涉及尚无国务院放假通知的年份，按预计日历计算（预计）。")
    return lines


def _figure_kind(metric: str) -> str:
    return "rate" if metric.endswith("_rate") else "int" if metric in COUNT_METRICS else "float"


def key_figures(overview: pl.DataFrame) -> list[KeyFigure]:
    return [
        KeyFigure(
            LABELS.metric_labels[item["metric"]],
            _figure_kind(item["metric"]),
            item["current"],
            item["previous"],
            item["change"],
        )
        for item in overview.iter_rows(named=True)
    ]


def write_xlsx(report: ReportViews, path: Path) -> None:
    book = open_workbook(path)
    try:
        sheet = write_key_figures(
            book, VIEW_TITLES["overview"], ["指标", "本期", "上期", "变化"], key_figures(report.overview), 24
        )
        sheet.write_string(report.overview.height + 1, 3, "（比率的变化以百分点计）")
        for name, frame in report.views.items():
            write_sheet(book, VIEW_TITLES[name], label_values(frame), [column_label(name, c) for c in frame.columns])
        write_notes(book, "说明", report_notes(report))
    finally:
        book.close()


# -- HTML ---------------------------------------------------------------------------------------------------------


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


def render_html(
    report: ReportViews, charts: Mapping[str, bytes], template_dir: Path, *, summary_only: bool = False
) -> str:
    """The report page; `summary_only` renders just the key figures (an email body)."""
    images = {name: base64.b64encode(data).decode("ascii") for name, data in charts.items()}
    template = html_environment(template_dir).get_template(TEMPLATE_NAME)
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
