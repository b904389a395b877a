"""督办 review: escalations bound for supervisors wait for ops to approve or hold them (alerting.review).

With the review on, the nightly run stores the supervisors' deliveries of a new escalated card as `awaiting_review`
(tasks/alerts/cards.py); delivery never picks those up. Ops decide per subject (case, push or project id), in the
`review` flow's form in the Prefect UI or with `permitwatch review`:
- approve: the deliveries become pending and the next `deliver` sends them;
- hold (with a reason, optionally until a date): they are stored as suppressed, and the decision is kept so that
  the same escalation (clock, level, due date) is not proposed again with each reminder. It returns when its level
  or due date changes, or after `until`.
The owner unit's own cards never wait. Every decision is a row of `review_decisions`: who, when, what, why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import polars as pl
from sqlalchemy import Engine, insert, select, update

from config.settings import TIMEZONE
from config.units import ReviewPolicy, UnitDirectory
from schemas.contracts import canonical_schema
from schemas.database import in_batches
from schemas.tables import Card, Case, Delivery, ReviewDecision
from tasks.alerts.cards import (
    AWAITING_REVIEW,
    CARD_SCHEMA,
    EXISTING_SCHEMA,
    FAILED,
    HOLD_SCHEMA,
    PENDING,
    ROUTE_SCHEMA,
    SENT,
    SUPERSEDED,
    SUPPRESSED,
)
from tasks.alerts.digests import DigestTemplates, state_text
from tasks.alerts.subjects import add_subject_names

APPROVED, HELD = "approved", "held"
Decision = Literal["approved", "held"]
# What a waiting escalation shows: the artifact's and `review list`'s columns, in order, with their headings.
WAITING_COLUMNS = {
    "unit_name": "责任单位",
    "unit_code": "单位编码",
    "subject_id": "编号",
    "clock": "时限",
    "matter": "事项",
    "due_date": "到期日",
    "overdue_workdays": "超期工作日",
    "reason": "督办原因",
    "supervisors": "报送上级",
}
# The card columns (CARD_SCHEMA) a waiting escalation is read with.
_WAITING_CARD_COLUMNS = (
    "clock_id",
    "clock_type",
    "level",
    "due_date",
    "subject_id",
    "case_id",
    "unit_code",
    "matter_code",
    "overdue_workdays",
    "remaining",
    "calendar",
)


@dataclass
class ReviewResult:
    """What one decision did: escalations (clock, level, due date) approved or held, and their deliveries."""

    approved: int = 0
    held: int = 0
    deliveries_released: int = 0
    deliveries_suppressed: int = 0
    superseded: int = 0  # deliveries of older reminders of a decided escalation, never sent

    def summary(self) -> str:
        text = (
            f"{self.approved} escalation(s) approved ({self.deliveries_released} deliveries released to the next "
            f"delivery), {self.held} held ({self.deliveries_suppressed} deliveries suppressed)"
        )
        return text + (f"; {self.superseded} deliveries of earlier reminders dropped" if self.superseded else "")


def read_holds(engine: Engine) -> pl.DataFrame:
    """Standing holds (HOLD_SCHEMA) for card planning: expired ones included, plan_cards compares `until`."""
    query = select(ReviewDecision.clock_id, ReviewDecision.level, ReviewDecision.due_date, ReviewDecision.until).where(
        ReviewDecision.decision == HELD
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=HOLD_SCHEMA, orient="row")


def waiting_escalations(engine: Engine, units: UnitDirectory, templates: DigestTemplates) -> pl.DataFrame:
    """One row per escalation waiting for review (clock, level, due date: its newest card), most overdue first,
    with WAITING_COLUMNS and delivery_ids, older_delivery_ids (earlier reminders of it), card_id, clock_id, case_id."""
    query = (
        select(
            Delivery.id.label("delivery_id"),
            Delivery.recipient_unit,
            Card.card_id,
            *(Card.__table__.c[name] for name in _WAITING_CARD_COLUMNS),
            Case.matter_name,
        )
        .join(Card, Card.card_id == Delivery.card_id)
        .outerjoin(Case, Case.case_id == Card.case_id)
        .where(Delivery.status == AWAITING_REVIEW, Card.status.not_in([SUPERSEDED, SUPPRESSED]))
    )
    schema = {
        "delivery_id": pl.Int64(),
        "recipient_unit": ROUTE_SCHEMA["recipient_unit"],
        "card_id": EXISTING_SCHEMA["card_id"],
        **{name: CARD_SCHEMA[name] for name in _WAITING_CARD_COLUMNS},
        "matter_name": canonical_schema("cases")["matter_name"],
    }
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    deliveries = pl.DataFrame([tuple(row) for row in rows], schema=schema, orient="row")
    identity = ["clock_id", "level", "due_date"]
    newest = pl.col("card_id") == pl.col("card_id").max()  # within each escalation's group
    names = {code: unit.name for code, unit in units.units.items()}
    per_escalation = deliveries.group_by(identity).agg(
        pl.col("delivery_id").filter(newest).alias("delivery_ids"),
        pl.col("delivery_id").filter(~newest).alias("older_delivery_ids"),
        pl.col("recipient_unit").filter(newest).unique().sort().alias("supervisor_codes"),
        *[
            pl.col(name).filter(newest).first()
            for name in schema
            if name not in (*identity, "delivery_id", "recipient_unit")
        ],
    )
    named = add_subject_names(engine, per_escalation)
    return named.with_columns(
        pl.col("unit_code").replace_strict(names, default=pl.col("unit_code")).alias("unit_name"),
        templates.labels.clock_label(named).alias("clock"),
        pl.coalesce("matter_name", "project_name", "matter_code", pl.lit("")).alias("matter"),
        state_text(templates).alias("reason"),
        pl.col("supervisor_codes")
        .list.eval(pl.element().replace_strict(names, default=pl.element()))
        .list.join("、")
        .alias("supervisors"),
    ).sort(["overdue_workdays", "unit_code", "subject_id", "clock_id"], descending=[True, False, False, False])


def unknown_subjects(waiting: pl.DataFrame, subjects: Iterable[str]) -> list[str]:
    """The names among `subjects` that match no waiting escalation (by subject id, case id or clock id)."""
    known = set(waiting["subject_id"]) | set(waiting["case_id"].drop_nulls()) | set(waiting["clock_id"])
    return [name for name in subjects if name not in known]


def select_subjects(waiting: pl.DataFrame, subjects: Sequence[str] | None) -> pl.DataFrame:
    """The waiting escalations of `subjects` (all when None). An id matches its subject, its case or its clock."""
    if subjects is None:
        return waiting
    names = list(subjects)
    return waiting.filter(
        pl.col("subject_id").is_in(names) | pl.col("case_id").is_in(names) | pl.col("clock_id").is_in(names)
    )


def decide(
    engine: Engine,
    chosen: pl.DataFrame,
    decision: Decision,
    *,
    decided_by: str,
    reason: str | None = None,
    until: date | None = None,
    now: datetime | None = None,
) -> ReviewResult:
    """Approve or hold the escalations in `chosen` (rows of waiting_escalations), in one transaction.

    Approved: their supervisors' deliveries become pending (and their card pending again if the owner's copy was
    already settled, so that delivery picks it up). Held: the deliveries are suppressed, a card with nothing else to
    send is suppressed with the reason, and the hold stands for later reminders. Earlier reminders of the same
    escalation that were never reviewed are superseded either way."""
    if decision == HELD and not (reason and reason.strip()):
        raise ValueError("a hold needs a reason")
    moment = (now or datetime.now(TIMEZONE)).astimezone(UTC)
    today = moment.astimezone(TIMEZONE).date()
    if until is not None and until < today:
        raise ValueError(f"hold until {until} is already in the past")
    result = ReviewResult()
    if chosen.height == 0:
        return result
    deliveries = chosen["delivery_ids"].explode().drop_nulls().to_list()
    older = chosen["older_delivery_ids"].explode().drop_nulls().to_list()
    cards = chosen["card_id"].to_list()
    decisions = chosen.select(
        "clock_id",
        "level",
        "due_date",
        "subject_id",
        pl.lit(decision).alias("decision"),
        pl.lit(reason.strip() if reason else None, pl.String).alias("reason"),
        pl.lit(until, pl.Date).alias("until"),
        pl.lit(decided_by[:200]).alias("decided_by"),
        pl.lit(moment).alias("decided_at"),
    ).to_dicts()
    with engine.begin() as connection:
        connection.execute(insert(ReviewDecision), decisions)
        for chunk in in_batches(older):
            result.superseded += connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.status == AWAITING_REVIEW)
                .values(status=SUPERSEDED)
            ).rowcount
        new_status = PENDING if decision == APPROVED else SUPPRESSED
        changed = 0
        for chunk in in_batches(deliveries):
            changed += connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.status == AWAITING_REVIEW)
                .values(status=new_status)
            ).rowcount
        for chunk in in_batches(cards):
            if decision == APPROVED:
                connection.execute(
                    update(Card).where(Card.card_id.in_(chunk), Card.status.in_([SENT, FAILED])).values(status=PENDING)
                )
            else:
                _suppress_idle_cards(connection, chunk, f"review hold: {reason}"[:200])
    if decision == APPROVED:
        result.approved, result.deliveries_released = chosen.height, changed
    else:
        result.held, result.deliveries_suppressed = chosen.height, changed
    return result


def apply_timeout(
    engine: Engine, waiting: pl.DataFrame, policy: ReviewPolicy, *, decided_by: str, now: datetime | None = None
) -> ReviewResult:
    """Nobody answered in time: `on_timeout: send` approves everything waiting, `hold` holds it for today only, so
    that it is proposed again with its next reminder."""
    if policy.on_timeout == "send":
        return decide(engine, waiting, APPROVED, decided_by=decided_by, now=now)
    today = (now or datetime.now(TIMEZONE)).astimezone(TIMEZONE).date()
    return decide(
        engine,
        waiting,
        HELD,
        decided_by=decided_by,
        reason="no review before the timeout (alerting.review.on_timeout: hold)",
        until=today,
        now=now,
    )


def waiting_table(waiting: pl.DataFrame) -> list[dict[str, Any]]:
    """The waiting escalations as rows with Chinese headings, for the artifact and the command line."""
    shown = waiting.with_columns(pl.col("due_date").cast(pl.String)).select(
        pl.col(name).alias(label) for name, label in WAITING_COLUMNS.items()
    )
    return shown.to_dicts()


def _suppress_idle_cards(connection: Any, card_ids: list[int], reason: str) -> None:
    """A held card none of whose deliveries is still to go or gone is suppressed, with the review's reason."""
    active = set(
        connection.execute(
            select(Delivery.card_id).where(
                Delivery.card_id.in_(card_ids), Delivery.status.not_in([SUPPRESSED, SUPERSEDED])
            )
        ).scalars()
    )
    idle = [card_id for card_id in card_ids if card_id not in active]
    if idle:
        connection.execute(
            update(Card).where(Card.card_id.in_(idle)).values(status=SUPPRESSED, suppressed_by=reason)
        )

