"""Digests: at each delivery, one message per recipient unit and channel target, holding all its pending cards.

Pure functions: a frame of pending items in, rendered messages out. The wording is in Jinja2 templates
(config/templates/, falling back to the bundled ones per file): sms.txt.j2, email_subject.txt.j2, email.html.j2,
im.md.j2, with shared words in _labels.j2. Applicant name and phone are masked before any template sees them.

SMS size: a message in Chinese is UCS-2, 70 characters in one segment, 67 per segment once split. The SMS names
as many of the most urgent ids as fit in one segment; if even the counts alone do not fit it may use up to
`max_segments` segments, and it is cut (with …) rather than ever running past them.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from config.units import AlertingPolicy, SmsLimits, UnitDirectory
from tasks.pii import mask_name, mask_phone

BUNDLED_TEMPLATES = Path(__file__).resolve().parents[1] / "config" / "templates"
ATTACHMENT_NAME = "cards.csv"
IM_ROWS = 10
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

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


def sms_length(text: str) -> int:
    """UCS-2 code units: a character outside the Basic Multilingual Plane takes two."""
    return sum(2 if ord(character) > 0xFFFF else 1 for character in text)


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
        pl.col("calendar").replace_strict(templates.calendar_names, default=pl.col("calendar")).alias("calendar"),
        mask_name(optional["applicant_name"].cast(pl.String)).alias("applicant_name"),
        mask_phone(optional["applicant_phone"].cast(pl.String)).alias("applicant_phone"),
    )


def escape_formula(frame: pl.DataFrame) -> pl.DataFrame:
    """Spreadsheet-safe strings: a cell starting with = + - @ (or tab / CR) gets a leading apostrophe."""
    pattern = "^[" + "".join("\\" + prefix if prefix in "+-" else prefix for prefix in FORMULA_PREFIXES) + "]"
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(pattern)).then("'" + pl.col(name)).otherwise(pl.col(name)).alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    )


def csv_attachment(rows: pl.DataFrame, templates: DigestTemplates) -> bytes:
    table = escape_formula(rows.select(list(templates.columns)).cast(pl.String)).rename(templates.columns)
    buffer = io.BytesIO()
    table.write_csv(buffer)
    return "\ufeff".encode() + buffer.getvalue()  # BOM: Excel opens UTF-8 CSV correctly only with it


def build_digests(
    items: pl.DataFrame,
    units: UnitDirectory,
    templates: DigestTemplates,
    *,
    as_of: date,
) -> list[Digest]:
    """One digest per (recipient unit, channel, target) present in `items`.

    `items`: one row per pending delivery (ITEM_COLUMNS, optional delivery_id, matter_code, matter_name,
    applicant_name, applicant_phone).
    """
    missing = [column for column in ITEM_COLUMNS if column not in items.columns]
    if missing:
        raise ValueError(f"digest items lack columns {missing}")
    if items.height == 0:
        return []
    if "delivery_id" not in items.columns:
        items = items.with_columns(pl.lit(None, pl.Int64).alias("delivery_id"))
    policy = units.alerting
    ordered = display_rows(urgency_order(items, policy), units, templates).with_columns(
        pl.int_range(1, pl.len() + 1).over(["recipient_unit", "channel", "target"]).alias("rank")
    )
    digests = []
    for group in ordered.partition_by(["recipient_unit", "channel", "target"], maintain_order=True):
        recipient, channel, target = group["recipient_unit"][0], group["channel"][0], group["target"][0]
        digests.append(_render(group, recipient, channel, target, units, templates, policy, as_of))
    return digests


def _summary(group: pl.DataFrame, policy: AlertingPolicy, unit: Any, as_of: date) -> dict[str, Any]:
    counts_by_level = dict(group.group_by("level_code").len().iter_rows())
    counts = [[level, counts_by_level[level]] for level in policy.urgency if counts_by_level.get(level)]
    return {
        "unit": unit,
        "counts": counts,
        "total": group.height,
        "provisional": bool((group["calendar"] != "").any()),
        "as_of": as_of.isoformat(),
    }


def _render(
    group: pl.DataFrame,
    recipient: str,
    channel: str,
    target: str,
    units: UnitDirectory,
    templates: DigestTemplates,
    policy: AlertingPolicy,
    as_of: date,
) -> Digest:
    context = _summary(group, policy, units[recipient], as_of)
    delivery_ids = tuple(int(value) for value in group["delivery_id"].drop_nulls())
    common = {
        "recipient_unit": recipient,
        "channel": channel,
        "target": target,
        "delivery_ids": delivery_ids,
        "card_count": group.height,
    }
    if channel == "sms":
        ids = group["subject_id"].unique(maintain_order=True).to_list()
        return Digest(title="", body=render_sms(templates, context, ids, policy.sms), **common)
    if channel == "im":
        rows = group.head(IM_ROWS).to_dicts()
        return Digest(title="", body=templates.im.render(context, rows=rows), **common)
    rows = group.to_dicts()
    return Digest(
        title=templates.email_subject.render(context).strip(),
        body=templates.email.render(context, rows=rows, attachment=ATTACHMENT_NAME),
        attachments={ATTACHMENT_NAME: csv_attachment(group, templates)},
        **common,
    )


def render_sms(templates: DigestTemplates, context: dict[str, Any], ids: list[str], limits: SmsLimits) -> str:
    """The SMS with as many of the most urgent ids as fit one segment; else the fewest segments; never past the cap."""
    candidates = [
        templates.sms.render(context, ids=ids[:count], more=count < len(ids)).strip()
        for count in range(min(limits.top_ids, len(ids)), -1, -1)
    ]
    for text in candidates:
        if sms_length(text) <= limits.single_segment_chars:
            return text
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
