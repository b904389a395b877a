"""Digests: at each delivery, one message per recipient unit and channel target, holding all its pending cards.

Pure functions: a frame of pending items in, rendered messages out. The wording is in Jinja2 templates
(config/templates/, falling back to the bundled ones per file): sms.txt.j2, email_subject.txt.j2, email.html.j2,
im.md.j2, with shared words in _labels.j2. Applicant name and phone are masked before any template sees them.

SMS size: a message in Chinese is UCS-2, 70 characters in one segment, 67 per segment once split. The SMS names
as many of the most urgent ids as fit in one segment; if even the counts alone do not fit it may use up to
`max_segments` segments, and it is cut (with …) rather than ever running past them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from config.units import AlertingPolicy, SmsLimits, UnitDirectory
from tasks.pii import mask_name, mask_phone

BUNDLED_TEMPLATES = Path(__file__).resolve().parents[1] / "config" / "templates"
ATTACHMENT_NAME = "cards.csv"
IM_ROWS = 10
_FORMULA_PATTERN = r"^[=+\-@\t\r]"
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}

ITEM_COLUMNS = (
    "recipient_unit",
    "channel",
    "target",
    "level",
    "clock_type",
    "subject_id",
    "unit_code",
    "due_date",
    "remaining",
    "overdue_workdays",
    "calendar",
)


@dataclass(frozen=True)
class Digest:
    recipient_unit: str
    channel: str
    target: str
    title: str
    body: str
    attachments: dict[str, bytes] = field(default_factory=dict)
    delivery_ids: tuple[int, ...] = ()
    card_count: int = 0


class DigestTemplates:
    """The alert templates of one config directory (each file may override the bundled one)."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(templates_dir))] if templates_dir else []
        loaders.append(FileSystemLoader(str(BUNDLED_TEMPLATES)))
        self.environment = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
        )
        self.sms = self.environment.get_template("sms.txt.j2")
        self.email_subject = self.environment.get_template("email_subject.txt.j2")
        self.email = self.environment.get_template("email.html.j2")
        self.im = self.environment.get_template("im.md.j2")
        self.ops_failure = self.environment.get_template("ops_failure.txt.j2")
        labels = self.environment.get_template("_labels.j2").module
        self.level_names: dict[str, str] = labels.level_names  # type: ignore[attr-defined]
        self.clock_type_names: dict[str, str] = labels.clock_type_names  # type: ignore[attr-defined]
        self.status_formats: dict[str, str] = labels.status_formats  # type: ignore[attr-defined]
        self.calendar_names: dict[str, str] = labels.calendar_names  # type: ignore[attr-defined]
        self.columns: dict[str, str] = labels.columns  # type: ignore[attr-defined]
        self.row_styles: dict[str, str] = labels.row_styles  # type: ignore[attr-defined]


def sms_length(text: str) -> int:
    """UCS-2 code units: a character outside the Basic Multilingual Plane takes two."""
    return len(text.encode("utf-16-le")) // 2


def sms_segments(text: str, limits: SmsLimits) -> int:
    length = sms_length(text)
    if length <= limits.single_segment_chars:
        return 1
    return math.ceil(length / limits.multipart_segment_chars)


def urgency_order(items: pl.DataFrame, policy: AlertingPolicy) -> pl.DataFrame:
    """Most urgent first: by level (policy.urgency), then most overdue, then least remaining, then earliest due."""
    ranks = {level: position for position, level in enumerate(policy.urgency)}
    rank = pl.col("level").replace_strict(ranks, default=len(ranks), return_dtype=pl.Int32)
    return items.with_columns(rank.alias("urgency_rank")).sort(
        ["urgency_rank", "overdue_workdays", "remaining", "due_date", "subject_id"],
        descending=[False, True, False, False, False],
        nulls_last=True,
    )


def display_rows(items: pl.DataFrame, units: UnitDirectory, templates: DigestTemplates) -> pl.DataFrame:
    """Display columns for tables and CSV, vectorised; applicant data masked here and nowhere later."""
    unit_names = pl.DataFrame(
        {"unit_code": list(units.units), "unit_name": [unit.name for unit in units.units.values()]}
    )
    status = templates.status_formats
    remaining = pl.col("remaining")
    optional = {
        name: pl.col(name) if name in items.columns else pl.lit(None, pl.String)
        for name in ("matter_code", "matter_name", "applicant_name", "applicant_phone")
    }
    matter = pl.coalesce(optional["matter_name"], optional["matter_code"], pl.lit(""))
    return items.join(unit_names, on="unit_code", how="left").with_columns(
        pl.col("level").alias("level_code"),
        pl.col("level").replace_strict(templates.level_names, default=pl.col("level")).alias("level"),
        pl.col("clock_type")
        .replace_strict(templates.clock_type_names, default=pl.col("clock_type"))
        .alias("clock_type"),
        matter.alias("matter"),
        pl.col("unit_name").fill_null(pl.col("unit_code")),
        pl.col("due_date").dt.to_string("%Y-%m-%d").alias("due_date"),
        pl.when(pl.col("level").is_in(["overdue", "escalated"]))
        .then(pl.format(status["overdue"], pl.col("overdue_workdays")))
        .when(remaining <= 0)
        .then(pl.lit(status["due_today"]))
        .otherwise(pl.format(status["remaining"], remaining))
        .alias("status"),
        pl.col("calendar").alias("calendar_code"),
        pl.col("calendar").replace_strict(templates.calendar_names, default=pl.col("calendar")).alias("calendar"),
        mask_name(optional["applicant_name"].cast(pl.String)).alias("applicant_name"),
        mask_phone(optional["applicant_phone"].cast(pl.String)).alias("applicant_phone"),
    )


def formula_safe(value: pl.Expr) -> pl.Expr:
    """A spreadsheet-safe string: one starting with = + - @ (or tab / CR) gets a leading apostrophe."""
    return pl.when(value.str.contains(_FORMULA_PATTERN)).then("'" + value).otherwise(value)


def escape_formula(frame: pl.DataFrame) -> pl.DataFrame:
    """Every String column of `frame` made spreadsheet-safe (numbers are left as numbers)."""
    return frame.with_columns(
        formula_safe(pl.col(name)).alias(name) for name, dtype in frame.schema.items() if dtype == pl.String
    )


def _csv_field(value: pl.Expr) -> pl.Expr:
    """RFC 4180 quoting: a field holding a comma, quote or line break is quoted, its quotes doubled."""
    text = value.fill_null("")
    return pl.when(text.str.contains('[",\r\n]')).then('"' + text.str.replace_all('"', '""') + '"').otherwise(text)


def _html_text(value: pl.Expr) -> pl.Expr:
    return value.fill_null("").str.replace_many(list(_HTML_ESCAPES), list(_HTML_ESCAPES.values()))


def build_digests(
    items: pl.DataFrame,
    units: UnitDirectory,
    templates: DigestTemplates,
    *,
    as_of: date,
) -> list[Digest]:
    """One digest per (recipient unit, channel, target) present in `items`.

    `items`: one row per pending delivery (ITEM_COLUMNS, optional delivery_id, matter_code, matter_name,
    applicant_name, applicant_phone). Everything per row — ordering, masking, the email's table rows and the CSV
    lines — is computed in one vectorised pass; only the per-message templates are rendered one by one.
    """
    missing = [column for column in ITEM_COLUMNS if column not in items.columns]
    if missing:
        raise ValueError(f"digest items lack columns {missing}")
    if items.height == 0:
        return []
    if "delivery_id" not in items.columns:
        items = items.with_columns(pl.lit(None, pl.Int64).alias("delivery_id"))
    policy = units.alerting
    group_key = ["recipient_unit", "channel", "target"]
    ordered = display_rows(urgency_order(items, policy), units, templates).with_columns(
        pl.int_range(1, pl.len() + 1).over(group_key).cast(pl.String).alias("rank")
    )
    columns = list(templates.columns)
    cells = [pl.col(name).cast(pl.String) for name in columns]
    row_style = pl.col("level_code").replace_strict(templates.row_styles, default="", return_dtype=pl.String)
    table_row = pl.concat_str(
        [
            pl.format('<tr style="{}"><td>', row_style),
            pl.concat_str([_html_text(c) for c in cells], separator="</td><td>"),
            pl.lit("</td></tr>"),
        ]
    )
    csv_line = pl.concat_str([_csv_field(formula_safe(c)) for c in cells], separator=",")
    levels = policy.urgency
    groups = ordered.group_by(group_key, maintain_order=True).agg(
        pl.col("delivery_id").drop_nulls().alias("delivery_ids"),
        pl.len().alias("card_count"),
        *[(pl.col("level_code") == level).sum().alias(f"count_{level}") for level in levels],
        (pl.col("calendar_code") == "provisional").any().alias("provisional"),
        pl.col("subject_id").unique(maintain_order=True).head(policy.sms.top_ids).alias("top_ids"),
        pl.col("subject_id").n_unique().alias("subject_count"),
        pl.when(pl.col("channel") == "email").then(table_row).str.join("\n").alias("table_rows"),
        pl.when(pl.col("channel") == "email").then(csv_line).str.join("\r\n").alias("csv_lines"),
        pl.struct(columns).head(IM_ROWS).alias("im_rows"),
    )
    header = ",".join(_quote_csv(label) for label in templates.columns.values())
    return [_render(group, header, units, templates, as_of) for group in groups.iter_rows(named=True)]


def _quote_csv(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\r\n') else value


def _render(
    group: dict[str, Any], csv_header: str, units: UnitDirectory, templates: DigestTemplates, as_of: date
) -> Digest:
    policy = units.alerting
    counts = [[level, group[f"count_{level}"]] for level in policy.urgency if group[f"count_{level}"]]
    context = {
        "unit": units[group["recipient_unit"]],
        "counts": counts,
        "total": group["card_count"],
        "provisional": group["provisional"],
        "as_of": as_of.isoformat(),
    }
    common = {
        "recipient_unit": group["recipient_unit"],
        "channel": group["channel"],
        "target": group["target"],
        "delivery_ids": tuple(group["delivery_ids"]),
        "card_count": group["card_count"],
    }
    if group["channel"] == "sms":
        body = render_sms(templates, context, group["top_ids"], group["subject_count"], policy.sms)
        return Digest(title="", body=body, **common)
    if group["channel"] == "im":
        return Digest(title="", body=templates.im.render(context, rows=group["im_rows"]), **common)
    attachment = ("\ufeff" + csv_header + "\r\n" + group["csv_lines"] + "\r\n").encode("utf-8")
    return Digest(
        title=templates.email_subject.render(context).strip(),
        body=templates.email.render(context, table_rows=Markup(group["table_rows"]), attachment=ATTACHMENT_NAME),
        # The BOM makes Excel read the UTF-8 correctly.
        attachments={ATTACHMENT_NAME: attachment},
        **common,
    )


def render_sms(
    templates: DigestTemplates, context: dict[str, Any], ids: list[str], id_count: int, limits: SmsLimits
) -> str:
    """The SMS naming as many of the most urgent `ids` as fit one segment; failing that the fewest segments (most ids
    among equals); cut with … rather than ever running past `max_segments`. `id_count`: ids in the whole digest."""
    candidates = []
    for count in range(len(ids), -1, -1):
        text = templates.sms.render(context, ids=ids[:count], more=count < id_count).strip()
        if sms_length(text) <= limits.single_segment_chars:
            return text
        candidates.append(text)
    cap = limits.max_segments * limits.multipart_segment_chars
    fitting = [text for text in candidates if sms_length(text) <= cap]
    if fitting:
        return min(fitting, key=lambda text: sms_segments(text, limits))  # min keeps the first: most ids
    return cut_sms(candidates[-1], cap)


def cut_sms(text: str, cap: int) -> str:
    """The text cut to `cap` UCS-2 units, ending with an ellipsis."""
    kept = ""
    for character in text:
        if sms_length(kept + character) > cap - 1:
            break
        kept += character
    return kept + "…"
