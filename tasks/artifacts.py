"""What ops see in the Prefect UI: a run summary, the most overdue clocks, the rejects, load progress, deliveries.

Keys are stable, so the UI shows each artifact's history run after run. Builders are plain functions (tested without
Prefect); `publish_*` hand their output to Prefect. Nothing here shows an applicant's name or phone unmasked.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from sqlalchemy import Engine, select

from schemas.tables import Card, Delivery
from tasks.delivery import DeliveryReport
from tasks.ingest import LoadResult
from tasks.pii import mask_name, mask_phone

SUMMARY_KEY = "nightly-summary"
OVERDUE_KEY = "nightly-most-overdue"
REJECTS_KEY = "nightly-rejects"
DELIVERY_KEY = "delivery-status"
TOP_OVERDUE = 50
TOP_REJECTS = 100
PII_FIELDS = {"applicant_name": mask_name, "applicant_phone": mask_phone, "申请人": mask_name, "联系电话": mask_phone}
LEVEL_ORDER = ["escalated", "overdue", "warning", "paused", "normal", "completed_late", "completed_on_time"]


class LoadProgress:
    """A Prefect progress artifact for one source's load, fed by the loader's progress callback."""

    def __init__(self, key: str, label: str) -> None:
        self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=f"Loading {label}")

    def __call__(self, message: str, done: int, total: int) -> None:
        update_progress_artifact(self.artifact_id, progress=100.0 * done / total if total else 0.0)

    def finish(self) -> None:
        update_progress_artifact(self.artifact_id, progress=100.0)


CLOCK_TYPES = ["case", "step", "project", "deferral", "claim", "special"]


def level_table(evaluations: pl.DataFrame) -> pl.DataFrame:
    """One row per level (most urgent first), one column per clock type, and the total."""
    counts = evaluations.group_by("level", "clock_type").len("clocks")
    table = pl.DataFrame({"level": LEVEL_ORDER}).join(
        counts.pivot(on="clock_type", index="level", values="clocks"), on="level", how="left"
    )
    for clock_type in CLOCK_TYPES:
        if clock_type not in table.columns:
            table = table.with_columns(pl.lit(0, pl.UInt32).alias(clock_type))
    table = table.select("level", *CLOCK_TYPES).fill_null(0)
    return table.with_columns(pl.sum_horizontal(CLOCK_TYPES).alias("total"))


def overdue_by_unit(evaluations: pl.DataFrame) -> pl.DataFrame:
    """unit_code, overdue (overdue + escalated clocks), escalated: units with the most overdue clocks first."""
    late = evaluations.filter(pl.col("level").is_in(["escalated", "overdue"]))
    return (
        late.group_by("unit_code")
        .agg(pl.len().alias("overdue"), (pl.col("level") == "escalated").sum().alias("escalated"))
        .sort(["overdue", "unit_code"], descending=[True, False])
    )


def most_overdue(evaluations: pl.DataFrame, limit: int = TOP_OVERDUE) -> pl.DataFrame:
    return (
        evaluations.filter(pl.col("level").is_in(["escalated", "overdue"]))
        .sort("overdue_workdays", "clock_id", descending=[True, False])
        .head(limit)
        .select("clock_id", "clock_type", "unit_code", "matter_code", "due_date", "overdue_workdays", "level",
                "calendar")
    )


def masked_raw(raw: str | None) -> str:
    """A rejected row's raw values with the applicant's name and phone masked."""
    if not raw:
        return ""
    try:
        values = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if isinstance(values, dict):
        for field, mask in PII_FIELDS.items():
            if field in values:
                values[field] = mask(values[field])
    return json.dumps(values, ensure_ascii=False)


def reject_rows(results: list[LoadResult], limit: int = TOP_REJECTS) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for result in results:
        for record in result.rejected.head(limit - len(rows)).iter_rows(named=True):
            rows.append({"source": record["source"], "line": record["line"], "reasons": record["reasons"],
                         "raw": masked_raw(record.get("raw"))})
        if len(rows) >= limit:
            break
    return rows


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# permitwatch nightly run as of {summary['as_of']}", ""]
    if summary.get("failed_sources"):
        lines += [f"**Failed sources:** {', '.join(summary['failed_sources'])}", ""]
    provisional = summary.get("provisional_years") or []
    if summary.get("provisional_clocks"):
        lines += [
            f"> **Calendar warning:** {summary['provisional_clocks']:,} clocks use a provisional calendar "
            f"(years {', '.join(map(str, provisional)) or '?'} have no official holiday notice loaded). Their due "
            "dates are estimates (预计). Import the State Council notice: `permitwatch calendar import NOTICE.txt`.",
            "",
        ]
    lines += [
        "## Sources",
        "",
        "| source | table | read | accepted | rejected | stored | note |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for row in summary["sources"]:
        lines.append(
            f"| {row['source']} | {row['table']} | {row['rows_read']:,} | {row['accepted']:,} | {row['rejected']:,} "
            f"| {'yes' if row['stored'] else '**no**'} | {row.get('note') or ''} |"
        )
    lines += ["", "## Clocks per level", "", "| level | " + " | ".join(CLOCK_TYPES) + " | total |",
              "|---|" + "---:|" * (len(CLOCK_TYPES) + 1)]
    for row in summary["level_table"]:
        lines.append(f"| {row['level']} | " + " | ".join(f"{row[c]:,}" for c in [*CLOCK_TYPES, "total"]) + " |")
    cards = summary.get("cards", {})
    lines += [
        "",
        "## Cards",
        "",
        f"New cards: {cards.get('new', 0):,} (pending {cards.get('pending', 0):,}, suppressed by silences "
        f"{cards.get('suppressed', 0):,}, backfill {cards.get('backfill', 0):,}); deliveries queued "
        f"{cards.get('deliveries', 0):,}.",
        f"Clocks whose due date moved since the last run: {summary.get('due_date_changed', 0):,}.",
    ]
    if summary.get("clock_rejects"):
        lines.append(f"Rows the clock builder could not use: {summary['clock_rejects']:,}.")
    return "\n".join(lines) + "\n"


def publish_nightly(summary: dict[str, Any], evaluations: pl.DataFrame, results: list[LoadResult]) -> None:
    create_markdown_artifact(summary_markdown(summary), key=SUMMARY_KEY,
                             description=f"Nightly run as of {summary['as_of']}")
    create_table_artifact(_jsonable(most_overdue(evaluations)), key=OVERDUE_KEY,
                          description="Most overdue clocks (no applicant data)")
    create_table_artifact(reject_rows(results) or [{"source": "", "line": "", "reasons": "no rejects", "raw": ""}],
                          key=REJECTS_KEY, description="First rejected rows with reasons (PII masked)")


def delivery_rows(engine: Engine, limit: int = 500) -> list[dict[str, Any]]:
    query = (
        select(Delivery.card_id, Card.clock_id, Card.level, Delivery.recipient_unit, Delivery.channel,
               Delivery.status, Delivery.attempts, Delivery.last_error, Delivery.sent_at)
        .join(Card, Card.card_id == Delivery.card_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [
            {key: (str(value) if value is not None else "") for key, value in row._mapping.items()}
            for row in connection.execute(query)
        ]


def publish_delivery(engine: Engine, report: DeliveryReport) -> None:
    rows = delivery_rows(engine) or [{"status": report.summary()}]
    create_table_artifact(rows, key=DELIVERY_KEY, description=report.summary())


def _jsonable(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.with_columns(pl.col(pl.Date).cast(pl.String)).to_dicts()
