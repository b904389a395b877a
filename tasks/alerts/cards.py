"""Cards (黄牌 warning / 红牌 overdue / 督办 escalated): which alerts a run issues, to whom, and which it suppresses.

Pure functions over polars frames: no database, no network. `plan_cards` takes the run's evaluations, the cards
already issued and the active silences, and returns the new cards, the delivery rows (one per card, recipient unit,
channel and target) and the pending cards the run supersedes. Routing, inhibition and levels come from the
`alerting` section of units.yaml.

Identity: a card is unique per (clock_id, level, due_date, reminder_no). reminder_no is 0 for a warning; for an
overdue or escalated clock it is (overdue_workdays - 1) // repeat_every, so a reminder is due on overdue working day
1, 1 + repeat_every, 1 + 2 * repeat_every, … and a rerun for the same as-of date issues nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from config.loader import ConfigError
from config.settings import yesterday_in_shanghai
from config.units import Inhibition, UnitDirectory

CARD_KEY = ("clock_id", "level", "due_date", "reminder_no")

# Card statuses. pending: deliveries outstanding; sent / failed: every delivery settled; suppressed: a silence
# matched (stored, never sent); superseded: a newer state of the same clock replaced it before it was sent.
PENDING, SENT, FAILED, SUPPRESSED, SUPERSEDED = "pending", "sent", "failed", "suppressed", "superseded"
# A delivery of an escalated card to a supervisor, held for the 督办 review (alerting.review): delivery never picks
# it up; the review makes it pending (approved) or suppressed (held).
AWAITING_REVIEW = "awaiting_review"

CARD_SCHEMA: dict[str, pl.DataType] = {
    "clock_id": pl.String(),
    "level": pl.String(),
    "due_date": pl.Date(),
    "reminder_no": pl.Int32(),
    "clock_type": pl.String(),
    "subject_id": pl.String(),
    "case_id": pl.String(),
    "unit_code": pl.String(),
    "matter_code": pl.String(),
    "overdue_workdays": pl.Int32(),
    "remaining": pl.Int32(),
    "calendar": pl.String(),
    "as_of": pl.Date(),
    "status": pl.String(),
    "suppressed_by": pl.String(),
}
ROUTE_SCHEMA: dict[str, pl.DataType] = {
    "clock_id": pl.String(),
    "level": pl.String(),
    "due_date": pl.Date(),
    "reminder_no": pl.Int32(),
    "recipient_unit": pl.String(),
    "role": pl.String(),
    "channel": pl.String(),
    "target": pl.String(),
    "status": pl.String(),  # the delivery's first status: pending, or awaiting_review / suppressed (督办 review)
}
# Standing review holds (tasks/alerts/review.py): the supervisors' copies of this (clock, level, due date) stay
# suppressed.
HOLD_SCHEMA: dict[str, pl.DataType] = {
    "clock_id": pl.String(),
    "level": pl.String(),
    "due_date": pl.Date(),
    "until": pl.Date(),
}
EXISTING_SCHEMA: dict[str, pl.DataType] = {
    "card_id": pl.Int64(),
    "clock_id": pl.String(),
    "level": pl.String(),
    "due_date": pl.Date(),
    "reminder_no": pl.Int32(),
    "status": pl.String(),
}
SILENCE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "scope": pl.String(),
    "value": pl.String(),
    "until": pl.Date(),
    "reason": pl.String(),
}
SILENCE_SCOPES = {"case": "case_id", "unit": "unit_code", "matter": "matter_code", "clock": "clock_id"}

REQUIRED_EVALUATION_COLUMNS = (
    "clock_id",
    "clock_type",
    "subject_id",
    "unit_code",
    "due_date",
    "remaining",
    "overdue_workdays",
    "level",
    "calendar",
    "repeat_every",
)


@dataclass(frozen=True)
class CardPlan:
    as_of: date
    deliverable: bool
    cards: pl.DataFrame  # new cards, CARD_SCHEMA
    routes: pl.DataFrame  # one row per new pending card x recipient x channel x target, ROUTE_SCHEMA
    superseded: pl.DataFrame  # existing pending cards replaced by this run: card_id, superseded_by

    @property
    def counts(self) -> dict[str, int]:
        by_status = dict(self.cards.group_by("status").len().iter_rows()) if self.cards.height else {}
        return {
            "new": self.cards.height,
            PENDING: by_status.get(PENDING, 0),
            SUPPRESSED: by_status.get(SUPPRESSED, 0),
            "backfill": by_status.get("backfill", 0),
            SUPERSEDED: self.superseded.height,
            "deliveries": self.routes.height,
            AWAITING_REVIEW: self.routes.filter(pl.col("status") == AWAITING_REVIEW).height,
        }


def is_backfill(as_of: date, now: datetime | None = None) -> bool:
    """A run for a date before yesterday (Asia/Shanghai) replays history: it must not alert anyone."""
    return as_of < yesterday_in_shanghai(now)


def empty_existing() -> pl.DataFrame:
    return pl.DataFrame(schema=EXISTING_SCHEMA)


def empty_silences() -> pl.DataFrame:
    return pl.DataFrame(schema=SILENCE_SCHEMA)


def check_units_known(evaluations: pl.DataFrame, units: UnitDirectory) -> None:
    """Every owner unit in the data must be in units.yaml: otherwise nobody can be alerted, so the run stops."""
    present = evaluations.get_column("unit_code").drop_nulls().unique()
    unknown = sorted(set(present.to_list()) - set(units.units))
    if unknown:
        examples = (
            evaluations.filter(pl.col("unit_code").is_in(unknown))
            .group_by("unit_code")
            .agg(pl.col("clock_id").first(), pl.len())
            .sort("unit_code")
        )
        detail = "; ".join(f"{code} ({count} clocks, e.g. {clock})" for code, clock, count in examples.iter_rows())
        raise ConfigError(f"{units.path}: units in the data are not in this file: {detail}")
    missing_owner = evaluations.filter(pl.col("unit_code").is_null())
    if missing_owner.height:
        raise ConfigError(
            f"{missing_owner.height} clocks have no owner unit (e.g. {missing_owner.get_column('clock_id')[0]})"
        )


def plan_cards(
    evaluations: pl.DataFrame,
    units: UnitDirectory,
    *,
    as_of: date,
    existing: pl.DataFrame | None = None,
    silences: pl.DataFrame | None = None,
    holds: pl.DataFrame | None = None,
    deliverable: bool = True,
) -> CardPlan:
    """The cards this run issues. A non-deliverable (backfill) plan lists what it would issue, with status backfill,
    routes nothing and supersedes nothing; it is not meant to be stored.

    With `alerting.review` on, an escalated card's supervisor routes start `awaiting_review`, or `suppressed` when a
    standing review hold (`holds`, HOLD_SCHEMA) covers its clock, level and due date on `as_of`."""
    missing = [column for column in REQUIRED_EVALUATION_COLUMNS if column not in evaluations.columns]
    if missing:
        raise ValueError(f"evaluations frame lacks columns {missing}")
    check_units_known(evaluations, units)
    policy = units.alerting
    existing = empty_existing() if existing is None else existing
    silences = empty_silences() if silences is None else silences

    current = _current_cards(evaluations, policy.levels, as_of)
    new = current.join(existing.select(CARD_KEY), on=list(CARD_KEY), how="anti", nulls_equal=True)

    if not deliverable:
        cards = new.with_columns(pl.lit("backfill").alias("status"), pl.lit(None, pl.String).alias("suppressed_by"))
        return CardPlan(as_of, False, cards.select(CARD_SCHEMA.keys()), _empty(ROUTE_SCHEMA), _empty_superseded())

    cards = _apply_silences(new, silences, as_of).select(CARD_SCHEMA.keys())
    routes = _route(cards.filter(pl.col("status") == PENDING), units)
    if policy.review is not None:
        routes = _hold_for_review(routes, pl.DataFrame(schema=HOLD_SCHEMA) if holds is None else holds, as_of)
    superseded = _superseded(current, existing, evaluations, policy.inhibit)
    return CardPlan(as_of, True, cards, routes, superseded)


def _current_cards(evaluations: pl.DataFrame, levels: tuple[str, ...], as_of: date) -> pl.DataFrame:
    """The card identity each alerting clock is at on `as_of` (one per clock)."""
    optional = {
        name: pl.col(name) if name in evaluations.columns else pl.lit(None, pl.String)
        for name in ("case_id", "matter_code")
    }
    repeat = pl.col("repeat_every").cast(pl.Int32)
    overdue = pl.col("overdue_workdays").cast(pl.Int32)
    reminder = (
        pl.when(pl.col("level") == "warning")
        .then(0)
        .when(repeat.is_null() | (repeat <= 0))
        .then(0)
        .otherwise(((overdue - 1).clip(lower_bound=0)) // repeat)
        .cast(pl.Int32)
    )
    return evaluations.filter(pl.col("level").is_in(list(levels)) & pl.col("due_date").is_not_null()).select(
        pl.col("clock_id"),
        pl.col("level"),
        pl.col("due_date"),
        reminder.alias("reminder_no"),
        pl.col("clock_type"),
        pl.col("subject_id"),
        optional["case_id"].cast(pl.String).alias("case_id"),
        pl.col("unit_code"),
        optional["matter_code"].cast(pl.String).alias("matter_code"),
        overdue.fill_null(0).alias("overdue_workdays"),
        pl.col("remaining").cast(pl.Int32),
        pl.col("calendar"),
        pl.lit(as_of, pl.Date).alias("as_of"),
    )


def match_silences(cards: pl.DataFrame, silences: pl.DataFrame, on: date) -> pl.DataFrame:
    """(clock_id, suppressed_by) for each card a silence active on `on` (until >= on) matches; the oldest silence
    is named. `cards` needs clock_id, case_id, unit_code and matter_code."""
    active = silences.filter(pl.col("until") >= on)
    fields = [pl.col(name) for name in ("id", "scope", "value", "until", "reason")]
    label = pl.format("silence {} {}={} until {}: {}", *fields).str.slice(0, 200)
    matches = [
        cards.select("clock_id", pl.col(column).alias("silenced_value"))
        .join(
            active.filter(pl.col("scope") == scope).select(
                pl.col("value").alias("silenced_value"), label.alias("suppressed_by"), pl.col("id")
            ),
            on="silenced_value",
        )
        .select("clock_id", "id", "suppressed_by")
        for scope, column in SILENCE_SCOPES.items()
    ]
    return pl.concat(matches).sort("id").unique("clock_id", keep="first", maintain_order=True).drop("id")


def card_ids_by_reason(frame: pl.DataFrame, column: str) -> list[tuple[str, list[int]]]:
    """Card ids grouped by their reason (the silence or newer card that replaced them), so that one UPDATE covers
    many cards."""
    grouped = frame.group_by(column, maintain_order=True).agg(pl.col("card_id").unique())
    return [(reason, card_ids) for reason, card_ids in grouped.iter_rows()]


def _apply_silences(cards: pl.DataFrame, silences: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Silenced cards are kept, with status suppressed and the silence that matched."""
    return cards.join(match_silences(cards, silences, as_of), on="clock_id", how="left").with_columns(
        pl.when(pl.col("suppressed_by").is_null()).then(pl.lit(PENDING)).otherwise(pl.lit(SUPPRESSED)).alias("status")
    )


def _route(cards: pl.DataFrame, units: UnitDirectory) -> pl.DataFrame:
    """Recipients (owner and supervisors per level, redirected to a parent when a unit has no contacts) x targets."""
    recipients = cards.select(*CARD_KEY, "unit_code").join(units.routing_frame(), on=["unit_code", "level"])
    return (
        recipients.join(units.targets_frame(), on="recipient_unit")
        .with_columns(pl.lit(PENDING).alias("status"))
        .select(ROUTE_SCHEMA.keys())
    )


def _hold_for_review(routes: pl.DataFrame, holds: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Escalations bound for supervisors wait for the 督办 review, unless a standing hold already covers them."""
    held = (
        holds.filter(pl.col("until").is_null() | (pl.col("until") >= as_of))
        .select("clock_id", "level", "due_date", pl.lit(True).alias("held"))
        .unique(["clock_id", "level", "due_date"])
    )
    for_review = (pl.col("level") == "escalated") & (pl.col("role") == "supervisor")
    return (
        routes.join(held, on=["clock_id", "level", "due_date"], how="left", nulls_equal=True)
        .with_columns(
            pl.when(for_review & pl.col("held").fill_null(False))
            .then(pl.lit(SUPPRESSED))
            .when(for_review)
            .then(pl.lit(AWAITING_REVIEW))
            .otherwise(pl.col("status"))
            .alias("status")
        )
        .select(ROUTE_SCHEMA.keys())
    )


def _superseded(
    current: pl.DataFrame, existing: pl.DataFrame, evaluations: pl.DataFrame, inhibit: tuple[Inhibition, ...]
) -> pl.DataFrame:
    """Existing pending cards of evaluated clocks that no longer describe the clock's state.

    Only the card matching the clock's current (level, due date, reminder) may stay pending: an older reminder, a card
    for a moved due date, a warning for a clock completed before delivery, and — the configured inhibition — an
    overdue card once the clock is escalated are superseded before they are sent.
    """
    pending = existing.filter(pl.col("status") == PENDING)
    if pending.height == 0:
        return _empty_superseded()
    evaluated = evaluations.select("clock_id", pl.col("level").alias("current_level")).unique("clock_id")
    candidates = pending.join(evaluated, on="clock_id").join(
        current.select(CARD_KEY), on=list(CARD_KEY), how="anti", nulls_equal=True
    )
    inhibitors = {(rule.source, rule.target) for rule in inhibit}
    reason = pl.format("superseded: clock is now {}", pl.col("current_level"))
    if inhibitors:
        inhibited = pl.any_horizontal(
            [(pl.col("current_level") == source) & (pl.col("level") == target) for source, target in inhibitors]
        )
        reason = pl.when(inhibited).then(pl.format("inhibited by {}", pl.col("current_level"))).otherwise(reason)
    return candidates.select(pl.col("card_id"), reason.alias("superseded_by"))


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _empty_superseded() -> pl.DataFrame:
    return pl.DataFrame(schema={"card_id": pl.Int64(), "superseded_by": pl.String()})
