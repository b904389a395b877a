"""The what-if's outputs: terminal summary, Markdown artifact, and an XLSX and HTML page in the report's style.

The XLSX writer (formula-like text quoted), the chart style on the packaged CJK font, the value formatting and the
page's look all come from tasks/reports/output.py, the report's column headings from config/templates/
_report_labels.j2; only the what-if's own views, labels and chart are defined here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from matplotlib import rc_context
from matplotlib.figure import Figure

from config.labels import bundled_report_labels
from tasks.reports.metrics import TOTAL
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
from tasks.reports.simulate import WhatIf

TEMPLATE_NAME = "what_if.html.j2"
HTML_LIST_ROWS = 50
TERMINAL_ROWS = 5

_WORDING = bundled_report_labels()
VIEW_TITLES = _WORDING.what_if_titles
LABELS = {**_WORDING.column_labels, **_WORDING.what_if_columns}
NOTES = tuple(_WORDING.what_if_notes)


@dataclass(frozen=True)
class WhatIfFiles:
    xlsx: Path
    html: Path
    chart: Path


def _notes(result: WhatIf) -> list[str]:
    if result.takes_effect_later is None:
        return list(NOTES)
    later = (f"拟调整版本最早于 {result.takes_effect_later:%Y-%m-%d} 生效，晚于统计日：统计日在办的时限均在此前起算，"
             "仍适用起算日有效的版本，故在办部分无变化；回溯部分按拟调整时限一直适用测算。")
    return [*NOTES, later]


def _title(result: WhatIf) -> str:
    return f"拟调整时限测算（统计日 {result.as_of:%Y-%m-%d}）"


def _window(result: WhatIf) -> str:
    return f"{result.window_start:%Y-%m-%d} 至 {result.as_of:%Y-%m-%d}"


def _views(result: WhatIf) -> dict[str, pl.DataFrame]:
    return {
        **result.retrospective,
        "elapsed": result.elapsed,
        "finished_changed": result.finished_changed,
        "open_levels": result.open_levels,
        "open_by_unit": result.open_by_unit,
        "open_changed": result.open_changed,
    }


def _shown(frame: pl.DataFrame) -> pl.DataFrame:
    return shown_frame(frame, LABELS)


def _overview_rows(result: WhatIf) -> list[tuple[str, str, str, str]]:
    rows = []
    for item in result.overview.iter_rows(named=True):
        if item["metric"] == "on_time_rate":
            before, after = (f"{v * 100:.1f}%" if v is not None else "—" for v in (item["before"], item["after"]))
            change = "—" if item["change"] is None else f"{item['change'] * 100:+.1f}个百分点"
        else:
            before, after = f"{item['before']:.0f}", f"{item['after']:.0f}"
            change = f"{item['change']:+.0f}"
        rows.append((item["label"], before, after, change))
    return rows


# -- chart --------------------------------------------------------------------------------------------------------


def on_time_comparison_chart(by_unit: pl.DataFrame, title: str) -> bytes:
    """各单位按时办结率, in force against proposed: two bars per unit, the largest drop at the top."""
    rows = by_unit.filter(pl.col("unit_code") != TOTAL).sort(
        ["on_time_rate_change", "unit_code"], descending=[True, True]
    )
    with rc_context(chart_style()):
        figure = Figure(figsize=(8, max(2.5, 0.42 * rows.height + 1.4)), dpi=110, layout="constrained")
        axes = figure.add_subplot()
        positions = list(range(rows.height))
        old = [rate * 100 for rate in rows["old_on_time_rate"].fill_null(0).to_list()]
        new = [rate * 100 for rate in rows["new_on_time_rate"].fill_null(0).to_list()]
        height = 0.4
        axes.barh([p + height / 2 for p in positions], old, height, color="#9db7cc", label="现行")
        bars = axes.barh([p - height / 2 for p in positions], new, height, color="#2f6f9f", label="拟调整")
        axes.bar_label(bars, labels=[f"{rate:.1f}%" for rate in new], padding=3, fontsize=7)
        axes.set_yticks(positions, rows["unit_name"].to_list())
        axes.set_xlim(0, 110)
        axes.set_xlabel("按时办结率（%）")
        axes.set_title(title)
        if not positions:
            axes.text(55, 0, "窗口内无办结的时限", ha="center", va="center")
        axes.legend(loc="lower right")
        axes.grid(axis="x", alpha=0.3)
        return png(figure)


# -- files --------------------------------------------------------------------------------------------------------


def write_xlsx(result: WhatIf, path: Path) -> None:
    book = open_workbook(path)
    try:
        figures = [
            KeyFigure(
                item["label"],
                "rate" if item["metric"] == "on_time_rate" else "int",
                item["before"],
                item["after"],
                item["change"],
            )
            for item in result.overview.iter_rows(named=True)
        ]
        write_key_figures(book, "概览", ["指标", "现行", "拟调整", "变化"], figures, 30)
        for name, frame in _views(result).items():
            write_sheet(book, VIEW_TITLES[name], label_values(frame), [LABELS.get(c, c) for c in frame.columns])
        write_notes(book, "说明", [_title(result), f"回溯窗口：{_window(result)}", *result.changes, *_notes(result)])
    finally:
        book.close()


def render_html(result: WhatIf, chart: bytes, template_dir: Path) -> str:
    overview = Section("概览", ["指标", "现行", "拟调整", "变化"], _overview_rows(result))
    sections = [overview]
    for name, frame in _views(result).items():
        note = ""
        if name in ("finished_changed", "open_changed") and frame.height > HTML_LIST_ROWS:
            note = f"共 {frame.height} 个，此处列出前 {HTML_LIST_ROWS} 个，全部见 XLSX。"
        shown = _shown(frame.head(HTML_LIST_ROWS))
        sections.append(Section(VIEW_TITLES[name], shown.columns, shown.rows(), note))
    return html_environment(template_dir).get_template(TEMPLATE_NAME).render(
        title=_title(result),
        as_of=result.as_of.isoformat(),
        window=_window(result),
        changes=result.changes,
        sections=sections,
        chart=base64.b64encode(chart).decode("ascii"),
        notes=_notes(result),
    )


def write_what_if(result: WhatIf, directory: Path, template_dir: Path) -> WhatIfFiles:
    """Write permitwatch-what-if-<as-of>.xlsx, .html (chart embedded) and the chart's PNG into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"permitwatch-what-if-{result.as_of.isoformat()}"
    title = f"各单位按时办结率：现行与拟调整（{_window(result)}）"
    chart = on_time_comparison_chart(result.retrospective["by_unit"], title)
    files = WhatIfFiles(directory / f"{stem}.xlsx", directory / f"{stem}.html", directory / f"{stem}-on-time.png")
    files.chart.write_bytes(chart)
    write_xlsx(result, files.xlsx)
    files.html.write_text(render_html(result, chart, template_dir), encoding="utf-8")
    return files


# -- text ---------------------------------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def summary_lines(result: WhatIf) -> list[str]:
    """A short plain-text summary: the changes, the retrospective rate, the open clocks that change."""
    overview = {row["metric"]: row for row in result.overview.iter_rows(named=True)}
    lines = [f"What if, as of {result.as_of}:", *(f"  {change}" for change in result.changes or ["(no change)"])]
    finished, rate = overview["finished"], overview["on_time_rate"]
    by_kind = result.retrospective["by_kind"]
    turned_late = result.finished_changed.filter(pl.col("level_after") == "completed_late").height
    lines += [
        f"Retrospective, {finished['before']:.0f} clocks finished {result.window_start}..{result.as_of}, "
        "as if the proposal had always applied:",
        f"  on-time rate {_rate(rate['before'])} -> {_rate(rate['after'])}; {turned_late} clocks turn late, "
        f"{result.finished_changed.height - turned_late} turn on time",
    ]
    for row in by_kind.filter((pl.col("changed") > 0) & (pl.col("clock_type") != TOTAL)).iter_rows(named=True):
        lines.append(f"  {row['clock_type']}: {_rate(row['old_on_time_rate'])} -> {_rate(row['new_on_time_rate'])} "
                     f"({row['clocks']} clocks)")
    for row in result.elapsed.filter(pl.col("limit_changed") > 0).head(TERMINAL_ROWS).iter_rows(named=True):
        lines.append(
            f"  {row['clock_type']} {row['entry']} ({row['clocks']} clocks): on time {_rate(row['old_on_time_rate'])} "
            f"-> {_rate(row['new_on_time_rate'])}; elapsed P50 {row['elapsed_p50']:.0f}, P90 {row['elapsed_p90']:.1f}, "
            f"max {row['elapsed_max']}; limit {row['old_limit_p50']:.0f} -> {row['new_limit_p50']:.0f}"
        )
    opened, changed = overview["open"], overview["open_changed"]
    overdue = overview["open_overdue"]
    lines += [
        f"Prospective, {opened['before']:.0f} clocks open on {result.as_of} (each keeps the version in force on its "
        "start date):",
        f"  {changed['after']:.0f} change due date or level; overdue or escalated {overdue['before']:.0f} -> "
        f"{overdue['after']:.0f}",
    ]
    units = result.open_by_unit.filter((pl.col("changed") > 0) & (pl.col("unit_code") != TOTAL))
    for row in units.head(TERMINAL_ROWS).iter_rows(named=True):
        lines.append(f"  {row['unit_name']}: {row['changed']} of {row['open']} open clocks change, "
                     f"{row['newly_overdue']} newly overdue")
    if result.takes_effect_later:
        lines.append(f"  (every proposed version takes effect on {result.takes_effect_later} or later: the clocks open "
                     f"on {result.as_of} started earlier and keep the versions they started under)")
    return lines


def markdown_summary(result: WhatIf) -> str:
    """The overview and the per-kind rates as Markdown (Prefect artifact). Aggregates only."""
    lines = [f"### {_title(result)}", "", f"回溯窗口：{_window(result)}", ""]
    lines += [f"- {change}" for change in result.changes or ["与现行规则相同"]]
    lines += ["", "| 指标 | 现行 | 拟调整 | 变化 |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in _overview_rows(result)]
    for name, frame in (("by_kind", result.retrospective["by_kind"]), ("open_by_unit", result.open_by_unit)):
        shown = _shown(frame)
        lines += ["", f"**{VIEW_TITLES[name]}**", "", "| " + " | ".join(shown.columns) + " |",
                  "|" + "---|" * shown.width]
        lines += ["| " + " | ".join(row) + " |" for row in shown.head(15).rows()]
    return "\n".join(lines) + "\n"
