"""The card store: cards and their card deliveries as database rows, and every change of their status.

The nightly run stores each run's new cards with their pending deliveries (one per recipient unit, channel and
target) and the supersession of older cards in one transaction (`issue_cards`); nothing is sent then. A delivery
reads the pending rows back (`pending_items`), records apprise's result for each message on every card delivery it
carried (`record_outcome`) and settles the cards whose deliveries are all done (`settle_cards`). Who may send a row
(`sending`, its claim) is `tasks.alerts.claims`; which cards a silence holds back is `tasks.alerts.silences`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import polars as pl
from sqlalchemy import Engine, case, func, insert, select, update

from config.units import UnitDirectory
from schemas.database import in_batches
from schemas.tables import Card, Case, Delivery
from tasks.alerts.cards import (
    AWAITING_REVIEW,
    CARD_KEY,
    EXISTING_SCHEMA,
    FAILED,
    PENDING,
    SENT,
    SUPERSEDED,
    CardPlan,
    card_ids_by_reason,
    is_backfill,
    plan_cards,
)
from tasks.alerts.claims import SENDING, Attempt, held_by
from tasks.alerts.review import read_holds
from tasks.alerts.silences import read_silences

logger = logging.getLogger("permitwatch.alerts")


def read_card_state(engine: Engine, clock_ids: Sequence[str] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(existing cards, silences not removed) as frames for `plan_cards`."""
    columns = [Card.card_id, Card.clock_id, Card.level, Card.due_date, Card.reminder_no, Card.status]
    with engine.connect() as connection:
        if clock_ids is None:
            rows = connection.execute(select(*columns)).all()
        else:
            rows = [
                row
                for chunk in in_batches(list(dict.fromkeys(clock_ids)))
                for row in connection.execute(select(*columns).where(Card.clock_id.in_(chunk))).all()
            ]
    existing = pl.DataFrame([tuple(row) for row in rows], schema=EXISTING_SCHEMA, orient="row")
    return existing, read_silences(engine)


def store_plan(engine: Engine, plan: CardPlan, run_id: int | None = None) -> dict[str, int]:
    """New cards, their pending deliveries and the supersession of older cards, in ONE transaction.

    A backfill plan stores nothing. A concurrent run that stored the same card makes this transaction fail as a
    whole (unique card identity), so nothing is half-stored.
    """
    if not plan.deliverable or (plan.cards.height == 0 and plan.superseded.height == 0):
        return {"cards": 0, "deliveries": 0, "superseded": 0}
    card_rows = plan.cards.with_columns(pl.lit(run_id, pl.Int64).alias("run_id")).to_dicts()
    with engine.begin() as connection:
        card_ids: list[tuple[Any, ...]] = []
        if card_rows:
            returned = connection.execute(
                insert(Card).returning(Card.card_id, sort_by_parameter_order=True), card_rows
            ).all()
            card_ids = [(row[0],) for row in returned]
        delivery_count = 0
        if card_ids and plan.routes.height:
            keyed = plan.cards.select(CARD_KEY).with_columns(
                pl.Series("card_id", [row[0] for row in card_ids], dtype=pl.Int64)
            )
            deliveries = plan.routes.join(keyed, on=list(CARD_KEY)).select(
                "card_id",
                "recipient_unit",
                "channel",
                "target",
                "status",
                pl.lit(0).alias("attempts"),
            )
            if deliveries.height:
                connection.execute(insert(Delivery), deliveries.to_dicts())
            delivery_count = deliveries.height
        for reason, superseded_ids in card_ids_by_reason(plan.superseded, "superseded_by"):
            for chunk in in_batches(superseded_ids):
                connection.execute(
                    update(Card)
                    .where(Card.card_id.in_(chunk), Card.status == PENDING)
                    .values(status=SUPERSEDED, suppressed_by=reason[:200])
                )
        for chunk in in_batches(plan.superseded.get_column("card_id").to_list()):
            connection.execute(
                update(Delivery)
                .where(Delivery.card_id.in_(chunk), Delivery.status.in_([PENDING, AWAITING_REVIEW]))
                .values(status=SUPERSEDED)
            )
    return {"cards": len(card_ids), "deliveries": delivery_count, "superseded": plan.superseded.height}


def issue_cards(
    engine: Engine,
    evaluations: pl.DataFrame,
    units: UnitDirectory,
    *,
    as_of: date,
    run_id: int | None = None,
    deliverable: bool | None = None,
    now: datetime | None = None,
) -> CardPlan:
    """Plan this run's cards against the stored ones and store them (nightly run). A backfill stores nothing.

    `deliverable` defaults to "as_of is yesterday or later" (Asia/Shanghai), so a replay of history alerts nobody.
    """
    if deliverable is None:
        deliverable = not is_backfill(as_of, now)
    existing, silences = read_card_state(engine)
    plan = plan_cards(
        evaluations,
        units,
        as_of=as_of,
        existing=existing,
        silences=silences,
        holds=read_holds(engine) if units.alerting.review is not None else None,
        deliverable=deliverable,
    )
    stored = store_plan(engine, plan, run_id)
    logger.info("cards as of %s: %s; stored %s", as_of, plan.counts, stored)
    return plan


def pending_items(engine: Engine) -> pl.DataFrame:
    """Pending deliveries of pending cards, with the case details the email shows (masked later)."""
    query = (
        select(
            Delivery.id.label("delivery_id"),
            Delivery.card_id,
            Delivery.recipient_unit,
            Delivery.channel,
            Delivery.target,
            Delivery.attempts,
            Card.clock_id,
            Card.level,
            Card.clock_type,
            Card.subject_id,
            Card.case_id,
            Card.unit_code,
            Card.matter_code,
            Card.due_date,
            Card.remaining,
            Card.overdue_workdays,
            Card.calendar,
            Card.as_of,
            Case.matter_name,
            Case.applicant_name,
            Case.applicant_phone,
        )
        .join(Card, Card.card_id == Delivery.card_id)
        .outerjoin(Case, Case.case_id == Card.case_id)
        .where(Delivery.status == PENDING, Card.status == PENDING)
        .order_by(Delivery.id)
    )
    schema = {
        "delivery_id": pl.Int64(),
        "card_id": pl.Int64(),
        "recipient_unit": pl.String(),
        "channel": pl.String(),
        "target": pl.String(),
        "attempts": pl.Int32(),
        "clock_id": pl.String(),
        "level": pl.String(),
        "clock_type": pl.String(),
        "subject_id": pl.String(),
        "case_id": pl.String(),
        "unit_code": pl.String(),
        "matter_code": pl.String(),
        "due_date": pl.Date(),
        "remaining": pl.Int32(),
        "overdue_workdays": pl.Int32(),
        "calendar": pl.String(),
        "as_of": pl.Date(),
        "matter_name": pl.String(),
        "applicant_name": pl.String(),
        "applicant_phone": pl.String(),
    }
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=schema, orient="row")


def drop_unknown_targets(
    engine: Engine, items: pl.DataFrame, units: UnitDirectory, max_attempts: int, now: datetime
) -> pl.DataFrame:
    """Deliveries whose target was removed from units.yaml since the card was issued fail at once (ops are told)."""
    known = units.targets_frame()
    orphans = items.join(known, on=["recipient_unit", "channel", "target"], how="anti")
    if orphans.height == 0:
        return items
    ids = orphans.get_column("delivery_id").to_list()
    with engine.begin() as connection:
        for chunk in in_batches(ids):
            connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk))
                .values(
                    status=FAILED,
                    attempts=max_attempts,
                    sent_at=now,
                    last_error="target no longer configured in units.yaml",
                )
            )
    settle_cards(engine, set(orphans.get_column("card_id").to_list()))
    return items.join(known, on=["recipient_unit", "channel", "target"], how="semi")


@dataclass(frozen=True)
class Outcome:
    """What recording one message's result did to the card deliveries it carried."""

    ok: bool
    error: str | None
    recorded: int  # card deliveries whose result was recorded
    retrying: int  # of them, kept pending for the next delivery
    attempt: int  # the attempt this was, for the target


def record_outcome(
    engine: Engine,
    attempt: Attempt,
    delivery_ids: Sequence[int],
    ok: bool,
    error: str | None,
    stamp: datetime,
    max_attempts: int,
) -> Outcome:
    """apprise's result for one message, on every card delivery it carried (`delivery_ids`), in one transaction."""
    ids = list(delivery_ids)
    if ok:
        mine = held_by(attempt)
        values: dict[str, Any] = {"status": SENT, "last_error": None}
    else:
        mine = (Delivery.status == SENDING) & (Delivery.claimed_by == attempt.attempt_id)
        values = {"status": _retry_or_fail(max_attempts), "last_error": error}
    recorded = 0
    retrying = 0
    attempts = 0
    with engine.begin() as connection:
        for chunk in in_batches(ids):
            recorded += connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), mine)
                .values(attempts=Delivery.attempts + 1, sent_at=stamp, claimed_by=None, **values)
            ).rowcount
            if not ok:
                pending, most = connection.execute(
                    select(func.count().filter(Delivery.status == PENDING), func.max(Delivery.attempts)).where(
                        Delivery.id.in_(chunk)
                    )
                ).one()
                retrying += int(pending or 0)
                attempts = max(attempts, int(most or 0))
    return Outcome(ok, error, recorded, retrying, attempts)


def _retry_or_fail(max_attempts: int) -> Any:
    """SQL: after this failed attempt, the row is failed for good once attempts reach max_attempts."""
    return case((Delivery.attempts + 1 >= max_attempts, FAILED), else_=PENDING)


def settle_cards(engine: Engine, card_ids: Iterable[int]) -> None:
    """A card is sent when all its deliveries are, failed when none is outstanding and one failed."""
    ids = sorted(set(card_ids))
    if not ids:
        return
    with engine.begin() as connection:
        for chunk in in_batches(ids):
            rows = connection.execute(
                select(Delivery.card_id, Delivery.status, func.count())
                .where(Delivery.card_id.in_(chunk))
                .group_by(Delivery.card_id, Delivery.status)
            ).all()
            states: dict[int, set[str]] = {}
            for card_id, status, _count in rows:
                states.setdefault(card_id, set()).add(status)
            for status in (SENT, FAILED):
                settled = [
                    card_id
                    for card_id, seen in states.items()
                    if not seen & {PENDING, SENDING} and (FAILED in seen) == (status == FAILED)
                ]
                if settled:
                    connection.execute(
                        update(Card).where(Card.card_id.in_(settled), Card.status == PENDING).values(status=status)
                    )


def failed_for_good(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Targets whose deliveries were failed for good by this delivery, grouped for the ops report."""
    query = (
        select(
            Delivery.recipient_unit,
            Delivery.channel,
            Delivery.target,
            func.max(Delivery.attempts),
            func.max(Delivery.last_error),
            func.count(),
        )
        .where(Delivery.status == FAILED, Delivery.sent_at == now)
        .group_by(Delivery.recipient_unit, Delivery.channel, Delivery.target)
        .order_by(Delivery.recipient_unit, Delivery.channel)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        {
            "recipient_unit": unit,
            "channel": channel,
            "target": target,
            "attempts": attempts,
            "last_error": error,
            "cards": count,
        }
        for unit, channel, target, attempts, error, count in rows
    ]
