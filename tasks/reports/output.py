"""How the reports look, shared by the periodic report (report.py) and the what-if (simulate_report.py): values shown
as text, coded values by their names, XLSX sheets, the chart style on the packaged CJK font, the HTML environment.

- XLSX: each view is written by polars' `write_excel` into a workbook that never turns a string into a formula, link
  or number; header row frozen, numbers kept as numbers with a number format per column. A text cell that starts
  like a formula (= + - @, tab, CR) also gets Excel's quote prefix, so editing it in Excel does not run it either.
- Charts use the Noto Sans CJK SC face shipped by the `noto-cjk-sans-otc` package, registered with matplotlib
  explicitly, so Chinese renders on a machine without any system CJK font.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
import xlsxwriter
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from noto_cjk_sans_otc import FONT_PATH

from config.labels import BUNDLED_TEMPLATES, bundled_alert_labels, bundled_report_labels

CJK_FAMILY = "Noto Sans CJK SC"
FORMULA_START = r"^[=+\-@\t\r]"
MISSING = "—"

# Coded values shown by their Chinese names: 市县同权 modes and the alerts' short level names.
VALUE_LABELS: dict[str, dict[str, str]] = {
    "mode": bundled_report_labels().mode_names,
    "level": bundled_alert_labels().level_short,
}

_HEADER_FORMAT = {"bold": True, "bg_color": "#dde8f0", "border": 1, "text_wrap": True}
_NUMBER_FORMATS = {
    "rate": "0.0%",
    "points": "+0.0;-0.0;0.0",
    "float": "0.0",
    "int": "0",
    "date": "yyyy-mm-dd",
}


def is_rate(column: str) -> bool:
    return column == "share" or column.endswith("_rate") or column.endswith("_rate_prev")


def is_point_change(column: str) -> bool:
    return column.endswith("_rate_change")


# -- display ------------------------------------------------------------------------------------------------------


def label_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Coded values (mode, level) shown by their Chinese names; codes without a name stay as they are."""
    replacements = [
        pl.col(column).replace(mapping) for column, mapping in VALUE_LABELS.items() if column in frame.columns
    ]
    return frame.with_columns(replacements) if replacements else frame


def display_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    """One column as text: rates as percentages, a rate's change in signed percentage points, floats to 0.1."""
    value = pl.col(column)
    if is_point_change(column):
        text = (value * 100).round(1).cast(pl.String)
        return pl.when(value > 0).then(pl.lit("+") + text).otherwise(text)
    if is_rate(column):
        return (value * 100).round(1).cast(pl.String) + pl.lit("%")
    if dtype.is_float():
        return value.round(1).cast(pl.String)
    return value.cast(pl.String)


def shown_frame(frame: pl.DataFrame, labels: dict[str, str]) -> pl.DataFrame:
    """The frame as text under its Chinese headings (`labels`, by column), empty cells as "—"."""
    labelled = label_values(frame)
    return labelled.select(
        display_expr(column, dtype).fill_null(MISSING).alias(labels.get(column, column))
        for column, dtype in labelled.schema.items()
    )


# -- XLSX ---------------------------------------------------------------------------------------------------------


def open_workbook(path: Path) -> xlsxwriter.Workbook:
    # Strings are never turned into formulas, links or numbers: a cell holds exactly the text it was given.
    return xlsxwriter.Workbook(
        str(path),
        {
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "nan_inf_to_errors": True,
        },
    )


def _number_format(column: str, dtype: pl.DataType) -> str | None:
    if is_point_change(column):
        return _NUMBER_FORMATS["points"]
    if is_rate(column):
        return _NUMBER_FORMATS["rate"]
    if dtype.is_float():
        return _NUMBER_FORMATS["float"]
    if dtype.is_integer():
        return _NUMBER_FORMATS["int"]
    if dtype == pl.Date:
        return _NUMBER_FORMATS["date"]
    return None


def _text_width(series: pl.Series) -> int:
    """Display width: CJK characters are two columns wide (3 UTF-8 bytes), ASCII one."""
    text = series.cast(pl.String).drop_nulls()
    if text.is_empty():
        return 0
    widths = (text.str.len_bytes() + text.str.len_chars()) // 2
    return int(widths.max() or 0)


def write_sheet(book: xlsxwriter.Workbook, title: str, frame: pl.DataFrame, headers: list[str]) -> None:
    """One view as one sheet: `headers` over the frame's columns, a number format per column (a rate's change in
    percentage points), widths fitted to the text, header frozen, an autofilter on the table."""
    formats = {
        header: number_format
        for header, (column, dtype) in zip(headers, frame.schema.items(), strict=True)
        if (number_format := _number_format(column, dtype)) is not None
    }
    points = [column for column in frame.columns if is_point_change(column)]
    table = frame.with_columns(pl.col(points) * 100).rename(dict(zip(frame.columns, headers, strict=True)))
    table.write_excel(
        book,
        title,
        table_style="Table Style Light 1",
        header_format=_HEADER_FORMAT,
        column_formats=formats,  # type: ignore[arg-type]
        freeze_panes=(1, 0),
    )
    sheet = book.get_worksheet_by_name(title)
    quoted = book.add_format({"quote_prefix": True})
    for index, (header, series) in enumerate(zip(headers, frame.get_columns(), strict=True)):
        if series.dtype == pl.String:
            for row in series.str.contains(FORMULA_START).fill_null(False).arg_true().to_list():
                sheet.write_string(row + 1, index, series[row], quoted)
        width = max(_text_width(pl.Series([header])), _text_width(series), 6)
        sheet.set_column(index, index, min(width + 2, 60))


@dataclass(frozen=True)
class KeyFigure:
    """One row of a key-figures sheet: a rate (shown as a percentage, its change in points), a count or a float."""

    label: str
    kind: str  # rate | int | float
    first: float | None
    second: float | None
    change: float | None


def write_key_figures(
    book: xlsxwriter.Workbook, title: str, headers: list[str], rows: list[KeyFigure], label_width: int
) -> Any:
    """The key figures sheet (指标 and two compared values with their change); returns the sheet for a note."""
    sheet = book.add_worksheet(title)
    sheet.write_row(0, 0, headers, book.add_format(_HEADER_FORMAT))
    formats = {kind: book.add_format({"num_format": number_format}) for kind, number_format in _NUMBER_FORMATS.items()}
    for row, item in enumerate(rows, start=1):
        rate = item.kind == "rate"
        sheet.write_string(row, 0, item.label)
        sheet.write(row, 1, item.first, formats[item.kind])
        sheet.write(row, 2, item.second, formats[item.kind])
        change = item.change * 100 if rate and item.change is not None else item.change
        sheet.write(row, 3, change, formats["points" if rate else item.kind])
    sheet.set_column(0, 0, label_width)
    sheet.set_column(1, 3, 14)
    sheet.freeze_panes(1, 0)
    return sheet


def write_notes(book: xlsxwriter.Workbook, title: str, lines: list[str]) -> None:
    notes = pl.DataFrame({"说明": lines}, schema={"说明": pl.String})
    notes.write_excel(book, title, header_format=_HEADER_FORMAT, autofilter=False, freeze_panes=(1, 0))
    book.get_worksheet_by_name(title).set_column(0, 0, 120)


# -- charts -------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def register_cjk_font() -> font_manager.FontPath:
    """Add the packaged Noto Sans CJK collection to matplotlib's font list and resolve Noto Sans CJK SC in it (the
    packaged file, or an identical system copy listed before it)."""
    font_manager.fontManager.addfont(str(FONT_PATH))
    # fallback_to_default=False: a missing font is an error here, not a chart full of empty boxes.
    return font_manager.findfont(font_manager.FontProperties(family=CJK_FAMILY), fallback_to_default=False)


def chart_style() -> dict[str, Any]:
    register_cjk_font()
    return {"font.family": [CJK_FAMILY], "axes.unicode_minus": False, "font.size": 10}


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


# -- HTML ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    title: str
    headers: list[str]
    rows: list[tuple[str, ...]]
    note: str = ""


def html_environment(template_dir: Path) -> jinja2.Environment:
    # A config directory may override the bundled template; without its own, the bundled one is used.
    loaders = [jinja2.FileSystemLoader(str(template_dir)), jinja2.FileSystemLoader(str(BUNDLED_TEMPLATES))]
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
