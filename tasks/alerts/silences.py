"""Silences (静默): holding back one case's, unit's, matter's or clock's cards until a date, inclusive.

Ops add, list and lift silences (`permitwatch silence …`); a silence is never deleted, only marked removed. The
nightly run reads them so that `plan_cards` stores matched cards as `suppressed`; a delivery reads them again, so a
silence added after the cards were issued still holds them back.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
from sqlalchemy import Engine, insert, select, update

from config.settings import TIMEZONE
from schemas.database import in_batches
from schemas.tables import Card, Delivery, Silence
from tasks.alerts.cards import PENDING, SILENCE_SCHEMA, SILENCE_SCOPES, SUPPRESSED, card_ids_by_reason, match_silences


def add_silence(engine: Engine, scope: str, value: str, until: date, reason: str, now: datetime | None = None) -> int:
    if scope not in SILENCE_SCOPES:
        raise ValueError(f"silence scope must be one of {sorted(SILENCE_SCOPES)}, not {scope!r}")
    if not value.strip() or not reason.strip():
        raise ValueError("a silence needs a value and a reason")
    created = now or datetime.now(TIMEZONE)
    if until < created.astimezone(TIMEZONE).date():
        raise ValueError(f"silence until {until} is already in the past")
    with engine.begin() as connection:
        result = connection.execute(
            insert(Silence).values(
                scope=scope,
                value=value.strip(),
                until=until,
                reason=reason.strip(),
                created_at=created.astimezone(UTC),
                removed=False,
            )
        )
        return int(result.inserted_primary_key[0])


def list_silences(engine: Engine, *, include_removed: bool = False) -> pl.DataFrame:
    query = select(
        Silence.id, Silence.scope, Silence.value, Silence.until, Silence.reason, Silence.created_at, Silence.removed
    ).order_by(Silence.id)
    if not include_removed:
        query = query.where(Silence.removed.is_(False))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    schema = {**SILENCE_SCHEMA, "created_at": pl.Datetime(time_zone="UTC"), "removed": pl.Boolean()}
    # SQLite hands back stored UTC times without an offset; PostgreSQL with one.
    normalised = [(*row[:5], row[5] if row[5].tzinfo else row[5].replace(tzinfo=UTC), row[6]) for row in rows]
    return pl.DataFrame(normalised, schema=schema, orient="row")


def remove_silence(engine: Engine, silence_id: int) -> bool:
    """Lift a silence (kept, marked removed). False when there is no such active silence."""
    with engine.begin() as connection:
        result = connection.execute(
            update(Silence).where(Silence.id == silence_id, Silence.removed.is_(False)).values(removed=True)
        )
        return result.rowcount == 1


def read_silences(engine: Engine) -> pl.DataFrame:
    """Silences not removed (expired ones included: `plan_cards` compares `until` with the as-of date)."""
    query = select(Silence.id, Silence.scope, Silence.value, Silence.until, Silence.reason).where(
        Silence.removed.is_(False)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=SILENCE_SCHEMA, orient="row")


def suppress_silenced(engine: Engine, items: pl.DataFrame, now: datetime) -> tuple[pl.DataFrame, int]:
    """A silence added after the cards were issued still holds them back: they become suppressed, not sent.
    Returns the items left to send and the number of cards suppressed."""
    if items.height == 0:
        return items, 0
    silences = read_silences(engine)
    if silences.height == 0:
        return items, 0
    cards = items.select("card_id", "clock_id", "case_id", "unit_code", "matter_code").unique("card_id")
    matched = cards.join(match_silences(cards, silences, now.astimezone(TIMEZONE).date()), on="clock_id")
    if matched.height == 0:
        return items, 0
    with engine.begin() as connection:
        for reason, card_ids in card_ids_by_reason(matched, "suppressed_by"):
            for chunk in in_batches(card_ids):
                connection.execute(
                    update(Card).where(Card.card_id.in_(chunk)).values(status=SUPPRESSED, suppressed_by=reason)
                )
        for chunk in in_batches(matched.get_column("card_id").to_list()):
            connection.execute(
                update(Delivery)
                .where(Delivery.card_id.in_(chunk), Delivery.status == PENDING)
                .values(status=SUPPRESSED)
            )
    return items.filter(~pl.col("card_id").is_in(matched.get_column("card_id").to_list())), matched.height
