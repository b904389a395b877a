"""Digests: at each delivery, one message per recipient unit and channel target, holding all its pending cards.

Pure functions: a frame of pending items in, rendered messages out. The wording is in Jinja2 templates
(config/templates/, falling back to the bundled ones per file): sms.txt.j2, email_subject.txt.j2, email.html.j2,
im.md.j2, with the vocabulary (levels, clock labels, states, what each level asks of the unit) in _labels.j2.
Applicant name and phone are masked before any template sees them.

The unit of an alert is its subject (对象): a case (办件), a push to a supervising department (审管推送) or a
construction project (工程建设项目). Counts are distinct subjects, each at its most urgent level; the email lists a
subject once with its clocks in alert under it; a digest holding other units' cards (a supervisor's 督办) is grouped
by responsible unit.

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

from config.labels import BUNDLED_TEMPLATES, AlertLabels, read_alert_labels
from config.units import AlertingPolicy, SmsLimits, UnitDirectory
from tasks.pii import mask_name, mask_phone

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
# Optional item columns: clock_id (names a special procedure), step_name, project_name, matter_code, matter_name,
# applicant_name, applicant_phone, delivery_id.
OPTIONAL_COLUMNS = {
    "clock_id": pl.String,
    "step_name": pl.String,
    "project_name": pl.String,
    "matter_code": pl.String,
    "matter_name": pl.String,
    "applicant_name": pl.String,
    "applicant_phone": pl.String,
    "delivery_id": pl.Int64,
}
# Which kind of subject each clock is about (a key of _labels.subject_names); any other clock is about a case.
SUBJECT_KINDS = {"project": "project", "claim": "claim"}
GROUP_KEY = ["recipient_unit", "channel", "target"]  # one digest each
SUBJECT_KEY = ["subject_kind", "subject_id"]  # one block of the email each


@dataclass(frozen=True)
class Digest:
    """One delivery's message to one recipient target, holding its pending cards. The card deliveries it carries
    are its identity (tasks/alerts/idempotency.py): rebuilt from the same rows, it is the same message."""

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
        self.labels: AlertLabels = read_alert_labels(self.environment)


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


def with_optional_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with every optional item column present (null where it was missing)."""
    return frame.with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in OPTIONAL_COLUMNS.items() if name not in frame.columns
    )


def subject_kind(clock_type: pl.Expr) -> pl.Expr:
    """The kind of subject a clock is about: a push for a claim, a project for a project clock, else a case."""
    return clock_type.replace_strict(SUBJECT_KINDS, default=pl.lit("case"), return_dtype=pl.String)


def state_text(templates: DigestTemplates) -> pl.Expr:
    """已超期12个工作日 / 剩余2个工作日，12月3日到期 / 12月3日到期，已无剩余工作日."""
    status = templates.labels.status_formats
    due = pl.col("due_date").dt.strftime(templates.labels.date_format)
    return (
        pl.when(pl.col("level").is_in(["overdue", "escalated"]))
        .then(pl.format(status["overdue"], pl.col("overdue_workdays")))
        .when(pl.col("remaining") <= 0)
        .then(pl.format(status["last_day"], due))
        .otherwise(pl.format(status["remaining"], pl.col("remaining"), due))
    )


def ask_text(templates: DigestTemplates, supervising: pl.Expr) -> pl.Expr:
    """What the recipient is asked to do, by level and clock (`supervising`: a supervisor reading others' cards)."""
    pairs = {
        f"{level}/{clock_type}": text
        for level, by_clock in templates.labels.asks.items()
        for clock_type, text in by_clock.items()
    }
    key = pl.when(supervising).then(pl.lit("supervise")).otherwise(pl.col("level")) + "/" + pl.col("clock_type")
    return key.replace_strict(pairs, default="", return_dtype=pl.String)


def display_rows(items: pl.DataFrame, units: UnitDirectory, templates: DigestTemplates) -> pl.DataFrame:
    """Display columns for tables and CSV, vectorised; applicant data masked here and nowhere later."""
    items = with_optional_columns(items)
    unit_names = pl.DataFrame(
        {"unit_code": list(units.units), "unit_name": [unit.name for unit in units.units.values()]}
    )
    due = pl.col("due_date").dt.to_string("%Y-%m-%d")
    provisional = pl.col("calendar") == "provisional"
    return items.join(unit_names, on="unit_code", how="left").with_columns(
        pl.col("level").alias("level_code"),
        pl.col("level").replace_strict(templates.labels.level_names, default=pl.col("level")).alias("level"),
        subject_kind(pl.col("clock_type")).alias("subject_kind"),
        subject_kind(pl.col("clock_type")).replace_strict(templates.labels.subject_names, default="").alias("subject"),
        templates.labels.clock_label(items).alias("clock"),
        pl.coalesce("matter_name", "project_name", "matter_code", pl.lit("")).alias("matter"),
        pl.col("unit_name").fill_null(pl.col("unit_code")),
        pl.col("due_date").alias("due_day"),
        due.alias("due_date"),
        pl.when(provisional).then(pl.format(templates.labels.provisional_due, due)).otherwise(due).alias("due_shown"),
        state_text(templates).alias("status"),
        ask_text(templates, pl.col("unit_code") != pl.col("recipient_unit")).alias("ask"),
        pl.col("calendar").alias("calendar_code"),
        pl.col("calendar")
        .replace_strict(templates.labels.calendar_names, default=pl.col("calendar"))
        .alias("calendar"),
        mask_name(pl.col("applicant_name").cast(pl.String)).alias("applicant_name"),
        mask_phone(pl.col("applicant_phone").cast(pl.String)).alias("applicant_phone"),
    )


def formula_safe(value: pl.Expr) -> pl.Expr:
    """A spreadsheet-safe string: one starting with = + - @ (or tab / CR) gets a leading apostrophe."""
    return pl.when(value.str.contains(_FORMULA_PATTERN)).then("'" + value).otherwise(value)


def escape_formula(frame: pl.DataFrame) -> pl.DataFrame:
    """Every String column of `frame` made spreadsheet-safe (numbers are left as numbers)."""
    return frame.with_columns(
        formula_safe(pl.col(name)).alias(name) for name, dtype in frame.schema.items() if dtype == pl.String
    )


def _html_text(value: pl.Expr) -> pl.Expr:
    return value.fill_null("").str.replace_many(list(_HTML_ESCAPES), list(_HTML_ESCAPES.values()))


def digest_rows(items: pl.DataFrame, units: UnitDirectory, templates: DigestTemplates) -> pl.DataFrame:
    """One row per item, in digest order: per digest, sections (responsible units, when the digest holds other
    units' cards) by their most urgent subject, subjects by their most urgent clock, clocks most urgent first.

    Adds: rank (the subject's number in its digest), first_of_subject, subject_clocks (rowspan), subject_level,
    section (unit code, or "" when the digest is not grouped), first_of_section, section_subjects."""
    ordered = display_rows(urgency_order(items, units.alerting), units, templates)
    # Windows over several string columns are slow on a quarter of a million rows: each grouping gets one hashed
    # key, and once sorted, "first of its group" is a comparison with the previous row.
    digest = pl.struct(GROUP_KEY).hash().alias("digest")
    ordered = ordered.with_columns(digest).with_columns(
        pl.int_range(pl.len()).over("digest").alias("position"),
        pl.when((pl.col("unit_code") != pl.col("recipient_unit")).any().over("digest"))
        .then(pl.col("unit_code"))
        .otherwise(pl.lit(""))
        .alias("section"),
    )
    ordered = ordered.with_columns(
        pl.struct("digest", "section").hash().alias("section_key"),
        pl.struct("digest", "section", *SUBJECT_KEY).hash().alias("subject_key"),
    ).with_columns(
        pl.col("position").min().over("section_key").alias("section_position"),
        pl.col("position").min().over("subject_key").alias("subject_position"),
    ).sort(["digest", "section_position", "subject_position", "position"])

    def starts(key: str) -> pl.Expr:
        return (pl.col(key) != pl.col(key).shift(1)).fill_null(True)

    first_of_subject = starts("subject_key")
    return ordered.with_columns(
        first_of_subject.alias("first_of_subject"),
        starts("section_key").alias("first_of_section"),
        pl.len().over("subject_key").alias("subject_clocks"),
        pl.col("level_code").first().over("subject_key").alias("subject_level"),
        first_of_subject.sum().over("section_key").alias("section_subjects"),
        first_of_subject.cum_sum().over("digest").cast(pl.String).alias("rank"),
    )


def build_digests(
    items: pl.DataFrame,
    units: UnitDirectory,
    templates: DigestTemplates,
    *,
    as_of: date,
) -> list[Digest]:
    """One digest per (recipient unit, channel, target) present in `items`.

    `items`: one row per pending delivery (ITEM_COLUMNS, and any of OPTIONAL_COLUMNS; with `as_of`, the cards'
    as-of date, the messages say "as of" that day rather than `as_of`). Everything per row —
    ordering, masking, labels, the email's table rows and the CSV lines — is computed in one vectorised pass; only
    the per-message templates are rendered one by one.
    """
    missing = [column for column in ITEM_COLUMNS if column not in items.columns]
    if missing:
        raise ValueError(f"digest items lack columns {missing}")
    if items.height == 0:
        return []
    policy = units.alerting
    rows = digest_rows(items, units, templates)
    # The table rows are built for email rows only (string building is most of the work).
    is_email = pl.col("channel") == "email"
    rows = pl.concat(
        [
            rows.filter(is_email).with_columns(_email_table_rows(templates).alias("table_row")),
            rows.filter(~is_email).with_columns(pl.lit(None, pl.String).alias("table_row")),
        ]
    )
    csv_files = _csv_attachments(rows.filter(is_email), templates)
    overdue = pl.col("level_code").is_in(["overdue", "escalated"])
    first = pl.col("first_of_subject")
    groups = rows.group_by("digest", maintain_order=True).agg(
        *[pl.col(name).first() for name in GROUP_KEY],
        pl.col("delivery_id").drop_nulls().alias("delivery_ids"),
        pl.len().alias("card_count"),
        *[(first & (pl.col("subject_level") == level)).sum().alias(f"count_{level}") for level in policy.urgency],
        (pl.col("calendar_code") == "provisional").any().alias("provisional"),
        pl.col("subject_id").filter(first).head(policy.sms.top_ids).alias("top_ids"),
        first.sum().alias("subject_count"),
        pl.col("section").filter(pl.col("section") != "").n_unique().alias("unit_count"),
        pl.col("overdue_workdays").filter(overdue).max().alias("longest_overdue"),
        pl.col("due_day").filter(~overdue).min().alias("earliest_due"),
        (pl.col("as_of").max() if "as_of" in rows.columns else pl.lit(None, pl.Date)).alias("cards_as_of"),
        pl.col("table_row").str.join("\n").alias("table_rows"),
        pl.struct(
            [
                "rank", "first_of_subject", "subject", "subject_id", "matter", "unit_name",
                *templates.labels.clock_columns,
            ]
        )
        .head(IM_ROWS)
        .alias("im_rows"),
    )
    return [
        _render(group, csv_files.get(group["digest"], ""), units, templates, as_of)
        for group in groups.iter_rows(named=True)
    ]


def _csv_attachments(email_rows: pl.DataFrame, templates: DigestTemplates) -> dict[Any, str]:
    """Each email digest's CSV (RFC 4180, CRLF, headed by the _labels.columns headings), by digest."""
    columns = templates.labels.columns
    cells = [formula_safe(pl.col(name).cast(pl.String)).alias(label) for name, label in columns.items()]
    parts = email_rows.partition_by("digest", as_dict=True, maintain_order=True)
    return {key: part.select(cells).write_csv(line_terminator="\r\n") for (key,), part in parts.items()}


def _email_table_rows(templates: DigestTemplates) -> pl.Expr:
    """The <tr> rows of one item: a section heading before a responsible unit's first subject, the subject's cells
    (spanning its clocks) on its first clock, then the clock's own cells."""
    width = len(templates.labels.subject_columns) + len(templates.labels.clock_columns)
    unit_name = _html_text(pl.col("unit_name"))
    section = pl.when(pl.col("first_of_section") & (pl.col("section") != "")).then(
        pl.format(
            '<tr><td colspan="{}" style="font-weight: bold; background: #eeeeee;">{}</td></tr>\n',
            pl.lit(width),
            pl.format(templates.labels.section_format, unit_name, pl.col("section_subjects")),
        )
    )
    subject_cells = pl.when(pl.col("first_of_subject")).then(
        pl.concat_str(
            [
                pl.format(
                    '<td rowspan="{}">{}</td>', pl.col("subject_clocks"), _html_text(pl.col(name).cast(pl.String))
                )
                for name in templates.labels.subject_columns
            ]
        )
    )
    clock_cells = pl.concat_str(
        [
            pl.format("<td>{}</td>", _html_text(pl.col("due_shown" if name == "due_date" else name).cast(pl.String)))
            for name in templates.labels.clock_columns
        ]
    )
    style = pl.col("level_code").replace_strict(templates.labels.row_styles, default="", return_dtype=pl.String)
    return pl.concat_str(
        [
            section.otherwise(pl.lit("")),
            pl.format('<tr style="{}">', style),
            subject_cells.otherwise(pl.lit("")),
            clock_cells,
            pl.lit("</tr>"),
        ]
    )


def _render(
    group: dict[str, Any], csv_file: str, units: UnitDirectory, templates: DigestTemplates, as_of: date
) -> Digest:
    policy = units.alerting
    counts = [[level, group[f"count_{level}"]] for level in policy.urgency if group[f"count_{level}"]]
    earliest: date | None = group["earliest_due"]
    # The states were computed as of the cards' date (yesterday at delivery); say so rather than the sending day.
    as_of = group["cards_as_of"] or as_of
    context = {
        "unit": units[group["recipient_unit"]],
        "counts": counts,
        "total": group["subject_count"],
        "unit_count": group["unit_count"],
        "longest_overdue": group["longest_overdue"],
        "earliest_due": earliest.strftime(templates.labels.date_format) if earliest else None,
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
    attachment = ("\ufeff" + csv_file).encode("utf-8")
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
