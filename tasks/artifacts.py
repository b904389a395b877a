"""What ops see in the Prefect UI: a run summary, the most overdue clocks, the rejects, load progress, deliveries.

Keys are stable, so the UI shows each artifact's history run after run. Builders are plain functions (tested without
Prefect); `publish_*` hand their output to Prefect. Nothing here shows an applicant's name or phone unmasked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC
from typing import Any

import polars as pl
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from sqlalchemy import Engine, func, select

from config.sources import Source
from config.units import UnitDirectory
from schemas.tables import Delivery
from tasks.alerts import review
from tasks.alerts.delivery import DeliveryReport
from tasks.alerts.sending import display_target
from tasks.ingest.load import LoadResult
from tasks.pii import masked_raw, pii_headers

SUMMARY_KEY = "nightly-summary"
OVERDUE_KEY = "nightly-most-overdue"
REJECTS_KEY = "nightly-rejects"
PROGRESS_KEY = "nightly-progress"
DELIVERY_KEY = "delivery-status"
PLATFORM_KEY = "platform-disagreements"
TOP_DISAGREEMENTS = 200
REVIEW_KEY = "review-waiting"
REVIEW_DECISION_KEY = "review-decision"
TOP_OVERDUE = 50
TOP_REJECTS = 100
LEVEL_ORDER = ["escalated", "overdue", "warning", "paused", "normal", "completed_late", "completed_on_time"]
CLOCK_TYPES = ["case", "step", "project", "deferral", "claim", "special"]


class RunProgress:
    """One progress artifact for a whole nightly run, advanced as each stage of each source finishes.

    Sources load in parallel threads, so advancing is serialised; the description says what finished last."""

    def __init__(self, key: str, label: str, steps: int) -> None:
        self.label = label
        self.steps = max(steps, 1)
        self.done = 0
        self._lock = threading.Lock()
        self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=f"{label}: starting")

    def advance(self, what: str) -> None:
        with self._lock:
            self.done = min(self.done + 1, self.steps)
            update_progress_artifact(
                self.artifact_id,
                progress=round(100.0 * self.done / self.steps, 1),
                description=f"{self.label}: {what} ({self.done}/{self.steps})",
            )

    def finish(self, what: str) -> None:
        with self._lock:
            self.done = self.steps
            update_progress_artifact(self.artifact_id, progress=100.0, description=f"{self.label}: {what}")


def level_table(evaluations: pl.DataFrame) -> pl.DataFrame:
    """One row per level (most urgent first), one column per clock type, and the total. `evaluations` is one row
    per clock, or already counted (a `clocks` column per level and clock type, as
    tasks.store.settled.settled_totals)."""
    if "clocks" in evaluations.columns:
        counts = evaluations.group_by("level", "clock_type").agg(pl.col("clocks").sum().cast(pl.UInt32))
    else:
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


def most_overdue(
    evaluations: pl.DataFrame,
    limit: int = TOP_OVERDUE,
    unit_names: dict[str, str] | None = None,
    matter_names: dict[str, str] | None = None,
) -> pl.DataFrame:
    """The open clocks furthest past their due date, with the unit's and the matter's name beside their codes (a code
    without a known name keeps an empty name). Clocks carry no applicant data, so nothing needs masking."""
    def name_of(column: str, names: dict[str, str] | None) -> pl.Expr:
        return pl.col(column).replace_strict(names or {}, default=None, return_dtype=pl.String).fill_null("")

    return (
        evaluations.filter(pl.col("level").is_in(["escalated", "overdue"]))
        .sort("overdue_workdays", "clock_id", descending=[True, False])
        .head(limit)
        .select("clock_id", "clock_type", "unit_code", name_of("unit_code", unit_names).alias("unit_name"),
                "matter_code", name_of("matter_code", matter_names).alias("matter_name"), "due_date",
                "overdue_workdays", "level", "calendar")
    )


def reject_rows(
    results: Iterable[LoadResult],
    sources: dict[str, Source] | None = None,
    limit: int = TOP_REJECTS,
    refused: pl.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """The first `limit` rejected rows over all sources: source file, line, reasons, raw values with PII masked.
    The clock builder's refusals (`refused`, whose raw is only the row's key) get up to half the rows, after them."""
    refused = refused if refused is not None else pl.DataFrame()
    ingest_limit = limit - min(refused.height, limit // 2)
    rows: list[dict[str, Any]] = []
    for result in results:
        if len(rows) >= ingest_limit:
            break
        pii = pii_headers((sources or {}).get(result.source))
        for record in result.rejected.head(ingest_limit - len(rows)).iter_rows(named=True):
            rows.append({"source": record["source"], "line": record["line"], "reasons": record["reasons"],
                         "raw": masked_raw(record.get("raw"), pii)})
    for record in refused.head(limit - len(rows)).iter_rows(named=True):
        rows.append({"source": record["source"], "line": record["line"], "reasons": record["reasons"],
                     "raw": record["raw"]})
    return rows


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# permitwatch nightly run as of {summary['as_of']}", ""]
    if summary.get("failed_sources"):
        lines += [f"**Failed sources:** {', '.join(summary['failed_sources'])} (nothing from them was stored; the run "
                  "is marked Failed)", ""]
    if summary.get("warnings"):
        lines += ["**Warnings:**", "", *(f"- {warning}" for warning in summary["warnings"]), ""]
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
        note = str(row.get("note") or "").replace("|", "/").replace("\n", " ")
        lines.append(
            f"| {row['source']} | {row['table']} | {row['rows_read']:,} | {row['accepted']:,} | {row['rejected']:,} "
            f"| {'yes' if row['stored'] else '**no**'} | {note} |"
        )
    lines += [
        "",
        f"Rows read {summary.get('rows_read', 0):,}, rejected {summary.get('rows_rejected', 0):,} "
        f"(see the `{REJECTS_KEY}` artifact and the `rejects` table).",
        "",
        "## Clocks per level",
        "",
    ]
    if evaluation := summary.get("evaluation"):
        lines += [
            f"Evaluation: **{evaluation['mode']}**, {evaluation['evaluated_clocks']:,} clocks evaluated of "
            f"{summary.get('clocks', 0):,}: {evaluation['reason']}.",
            "",
        ]
    lines += [
        "| level | " + " | ".join(CLOCK_TYPES) + " | total |",
        "|---|" + "---:|" * (len(CLOCK_TYPES) + 1),
    ]
    for row in summary["level_table"]:
        lines.append(f"| {row['level']} | " + " | ".join(f"{row[c]:,}" for c in [*CLOCK_TYPES, "total"]) + " |")
    cards = summary.get("cards", {})
    lines += [
        "",
        "## Cards",
        "",
        f"New cards: {cards.get('new', 0):,} (pending {cards.get('pending', 0):,}, suppressed by silences "
        f"{cards.get('suppressed', 0):,}, backfill {cards.get('backfill', 0):,}); deliveries queued "
        f"{cards.get('deliveries', 0):,}. They are sent by the `deliver` flow (08:30 on official working days).",
        f"Clocks whose due date moved since the last run: {summary.get('due_date_changed', 0):,}.",
    ]
    if cards.get("awaiting_review"):
        lines.append(f"Escalations to supervisors waiting for the 督办 review (the `review` flow, 07:30): "
                     f"{cards['awaiting_review']:,} deliveries.")
    if summary.get("clock_reconciliation"):
        lines += [
            "",
            "## Stored rows and clocks",
            "",
            f"Every stored row makes its clocks or is refused with a reason (in the `{REJECTS_KEY}` artifact and "
            "the `rejects` table): stored = used + refused.",
            "",
            "| table | stored | used | refused |",
            "|---|---:|---:|---:|",
            *(f"| {row['table']} | {row['stored']:,} | {row['used']:,} | {row['refused']:,} |"
              for row in summary["clock_reconciliation"]),
        ]
    if summary.get("platform_due_date_disagreements"):
        lines.append(f"Open cases whose platform due date differs from ours: "
                     f"{summary['platform_due_date_disagreements']:,} (see the `{PLATFORM_KEY}` artifact).")
    return "\n".join(lines) + "\n"


def publish_nightly(
    summary: dict[str, Any],
    evaluations: pl.DataFrame,
    results: list[LoadResult],
    sources: dict[str, Source],
    refused: pl.DataFrame | None = None,
    names: dict[str, dict[str, str]] | None = None,
) -> None:
    """`names`: {"unit": {code: name}, "matter": {code: name}} for the most-overdue table."""
    create_markdown_artifact(summary_markdown(summary), key=SUMMARY_KEY,
                             description=f"Nightly run as of {summary['as_of']}")
    names = names or {}
    top = most_overdue(evaluations, unit_names=names.get("unit"), matter_names=names.get("matter"))
    overdue = _jsonable(top) or [{"clock_id": "", "level": "no overdue clocks"}]
    create_table_artifact(overdue, key=OVERDUE_KEY,
                          description=f"The {TOP_OVERDUE} most overdue clocks as of {summary['as_of']}")
    none = [{"source": "", "line": "", "reasons": "no rejects", "raw": ""}]
    rejects = reject_rows(results, sources, refused=refused) or none
    create_table_artifact(rejects, key=REJECTS_KEY,
                          description=f"The first {TOP_REJECTS} rejected rows with reasons (PII masked)")


def publish_platform_disagreements(disagreements: pl.DataFrame, as_of: str) -> None:
    """The open cases whose platform due date differs from ours (tasks/clocks/platform_check.py): case, both dates, the
    difference in working days and a likely cause. Cases carry no applicant data here."""
    rows = _jsonable(disagreements.head(TOP_DISAGREEMENTS)) or [{"case_id": "", "likely_cause": "no disagreements"}]
    create_table_artifact(
        rows,
        key=PLATFORM_KEY,
        description=f"{disagreements.height:,} open cases whose platform due date differs from ours as of {as_of} "
        f"(the first {TOP_DISAGREEMENTS} shown)",
    )


def delivery_rows(engine: Engine, report: DeliveryReport, units: UnitDirectory) -> list[dict[str, Any]]:
    """One row per message this delivery attempted, what ops read first on the left: status, unit (code and name),
    channel, cards carried, attempt and last error, then the target as configured, shortened, without credentials and
    with phone numbers masked. Rows are found by the delivery's timestamp, stamped on every row it claims."""
    if report.skipped:
        return [_delivery_row("skipped", "", "", "", 0, 0, report.skipped, "")]
    stamp = report.now.astimezone(UTC)
    query = (
        select(Delivery.recipient_unit, Delivery.channel, Delivery.target, Delivery.status,
               func.count().label("cards"), func.max(Delivery.attempts).label("attempts"),
               func.max(Delivery.last_error).label("last_error"))
        .where(Delivery.sent_at == stamp)
        .group_by(Delivery.recipient_unit, Delivery.channel, Delivery.target, Delivery.status)
        .order_by(Delivery.status, Delivery.recipient_unit, Delivery.channel, Delivery.target)
    )
    with engine.connect() as connection:
        rows = [
            _delivery_row(row.status, row.recipient_unit,
                          units[row.recipient_unit].name if row.recipient_unit in units else "?", row.channel,
                          int(row.cards), int(row.attempts or 0), row.last_error or "", display_target(row.target))
            for row in connection.execute(query)
        ]
    return rows or [_delivery_row("nothing pending", "", "", "", 0, 0, "", "")]


def _delivery_row(
    status: str, unit: str, name: str, channel: str, cards: int, attempt: int, error: str, target: str
) -> dict[str, Any]:
    return {"status": status, "unit": unit, "unit_name": name, "channel": channel, "cards": cards,
            "attempt": attempt, "last_error": " ".join(error.split())[:300], "target": target}


def publish_delivery(engine: Engine, report: DeliveryReport, units: UnitDirectory) -> None:
    create_table_artifact(delivery_rows(engine, report, units), key=DELIVERY_KEY, description=report.summary())


def publish_review(waiting: pl.DataFrame, timeout_text: str) -> None:
    """The escalations waiting for the 督办 review (unit, subject, clock, days overdue, reason) and what happens if
    nobody answers. No applicant data: cards carry none."""
    rows = review.waiting_table(waiting) or [{"责任单位": "", "编号": "", "督办原因": "nothing waiting for review"}]
    create_table_artifact(rows, key=REVIEW_KEY, description=f"{waiting.height} escalation(s) wait for review. "
                          + timeout_text)


def publish_review_decision(text: str) -> None:
    create_markdown_artifact(text, key=REVIEW_DECISION_KEY, description="督办 review: what was decided")


def _jsonable(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.with_columns(pl.col(pl.Date).cast(pl.String)).to_dicts()
