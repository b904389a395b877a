"""The wording vocabularies (用语), each written once as a template in config/templates/ and read here as data.

- `_labels.j2`, the alerts' vocabulary: level names, clock and subject labels, states, what each level asks, the
  email and CSV columns. The message templates import it; digests read it through `read_alert_labels` (from the
  config directory's templates, falling back to the bundled ones); `permitwatch explain` and the periodic report
  name levels and clocks by the bundled copy.
- `_report_labels.j2`, the report's vocabulary: region (县级行政区划) and 市县同权 mode names, sheet titles, column
  headings, key figures and notes, read by the periodic report and the what-if.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any, TypeVar

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from config.settings import BUNDLED_CONFIG_DIR

BUNDLED_TEMPLATES = BUNDLED_CONFIG_DIR / "templates"
ALERT_LABELS_TEMPLATE = "_labels.j2"
REPORT_LABELS_TEMPLATE = "_report_labels.j2"

Labels = TypeVar("Labels", "AlertLabels", "ReportLabels")


@dataclass(frozen=True)
class AlertLabels:
    level_names: dict[str, str]
    level_short: dict[str, str]
    clock_type_names: dict[str, str]
    clock_detail_formats: dict[str, str]
    step_number: str
    subject_names: dict[str, str]
    status_formats: dict[str, str]
    date_format: str
    calendar_names: dict[str, str]
    provisional_due: str
    asks: dict[str, dict[str, str]]
    section_format: str
    subject_columns: dict[str, str]
    clock_columns: dict[str, str]
    columns: dict[str, str]
    row_styles: dict[str, str]

    def clock_label(self, frame: pl.DataFrame) -> pl.Expr:
        """The clock as an alert names it: 办件, 环节「城市审批」, 容缺后补, 审管认领, 特别程序「专家评审」,
        工程建设项目.

        Needs clock_type, and for the details clock_id (step:C1:2, special:C1:专家评审:2026-03-02) and step_name."""
        clock_type = pl.col("clock_type")
        part = pl.col("clock_id").str.split(":").list.get(2, null_on_oob=True) if "clock_id" in frame.columns else None
        step_name = pl.col("step_name") if "step_name" in frame.columns else pl.lit(None, pl.String)
        plain = clock_type.replace_strict(self.clock_type_names, default=clock_type, return_dtype=pl.String)
        if part is None:
            return plain
        details = {
            "step": pl.coalesce(step_name, pl.format(self.step_number, part)),
            "special": part,
        }
        label = plain
        for kind, detail in details.items():
            text = self.clock_detail_formats.get(kind)
            if text:
                named = pl.format(text, detail)
                label = pl.when((clock_type == kind) & detail.is_not_null()).then(named).otherwise(label)
        return label


@dataclass(frozen=True)
class ReportLabels:
    region_names: dict[str, str]
    mode_names: dict[str, str]
    view_titles: dict[str, str]
    column_labels: dict[str, str]
    view_column_labels: dict[str, dict[str, str]]
    metric_labels: dict[str, str]
    notes: list[str]
    what_if_titles: dict[str, str]
    what_if_columns: dict[str, str]
    what_if_overview: dict[str, str]
    what_if_notes: list[str]


def _read(kind: type[Labels], environment: Environment, template: str) -> Labels:
    module: Any = environment.get_template(template).module
    return kind(**{item.name: getattr(module, item.name) for item in fields(kind)})


def read_alert_labels(environment: Environment) -> AlertLabels:
    """The alerts' vocabulary as `environment` finds `_labels.j2` (a config directory's own, or the bundled one)."""
    return _read(AlertLabels, environment, ALERT_LABELS_TEMPLATE)


@cache
def _bundled_environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(BUNDLED_TEMPLATES)), undefined=StrictUndefined)


@cache
def bundled_alert_labels() -> AlertLabels:
    """The bundled alert vocabulary, for outputs that are not alerts (`permitwatch explain`, the periodic report)."""
    return read_alert_labels(_bundled_environment())


@cache
def bundled_report_labels() -> ReportLabels:
    return _read(ReportLabels, _bundled_environment(), REPORT_LABELS_TEMPLATE)
