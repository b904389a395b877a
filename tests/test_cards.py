"""tasks/alerts/cards.py: which cards a run issues, to whom, which it suppresses or supersedes. Pure: frames in, frames
out."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from config.loader import ConfigError
from config.settings import BUNDLED_CONFIG_DIR, TIMEZONE
from config.units import UnitDirectory, load_units
from tasks.alerts.cards import CARD_KEY, EXISTING_SCHEMA, SILENCE_SCHEMA, is_backfill, plan_cards

AS_OF = date(2026, 3, 4)
DUE = date(2026, 2, 26)


@pytest.fixture(scope="module")
def units() -> UnitDirectory:
    return load_units(BUNDLED_CONFIG_DIR)


def clock(
    case_id: str,
    level: str,
    *,
    unit: str = "360702SPJ",
    overdue: int = 0,
    remaining: int | None = 1,
    due: date | None = DUE,
    matter: str = "SXTQ-A001",
    repeat_every: int | None = 3,
    calendar: str = "official",
) -> dict[str, Any]:
    return {
        "clock_id": f"case:{case_id}",
        "clock_type": "case",
        "subject_id": case_id,
        "case_id": case_id,
        "unit_code": unit,
        "matter_code": matter,
        "due_date": due,
        "remaining": remaining,
        "overdue_workdays": overdue,
        "level": level,
        "calendar": calendar,
        "repeat_every": repeat_every,
    }


SCHEMA = {
    "clock_id": pl.String,
    "clock_type": pl.String,
    "subject_id": pl.String,
    "case_id": pl.String,
    "unit_code": pl.String,
    "matter_code": pl.String,
    "due_date": pl.Date,
    "remaining": pl.Int32,
    "overdue_workdays": pl.Int32,
    "level": pl.String,
    "calendar": pl.String,
    "repeat_every": pl.Int32,
}


def frame(*clocks: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(clocks), schema=SCHEMA)


def stored(plan: Any, status: str = "pending", first_id: int = 1) -> pl.DataFrame:
    """The plan's cards as they would read back from the cards table."""
    cards = plan.cards.select(CARD_KEY).with_columns(
        pl.int_range(first_id, first_id + plan.cards.height, dtype=pl.Int64).alias("card_id"),
        pl.lit(status).alias("status"),
    )
    return cards.select(EXISTING_SCHEMA.keys())


def silences(*rows: tuple[int, str, str, date, str]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SILENCE_SCHEMA, orient="row")


def test_only_warning_overdue_and_escalated_clocks_make_cards(units: UnitDirectory) -> None:
    evaluations = frame(
        clock("C1", "normal", remaining=9),
        clock("C2", "warning"),
        clock("C3", "overdue", overdue=2, remaining=-2),
        clock("C4", "escalated", overdue=6, remaining=-6),
        clock("C5", "paused", due=None),
        clock("C6", "completed_on_time"),
        clock("C7", "completed_late", overdue=3),
    )
    plan = plan_cards(evaluations, units, as_of=AS_OF)
    assert sorted(plan.cards["subject_id"]) == ["C2", "C3", "C4"]
    assert set(plan.cards["status"]) == {"pending"}
    assert set(plan.cards["as_of"]) == {AS_OF}


def test_a_rerun_for_the_same_as_of_date_issues_nothing_new(units: UnitDirectory) -> None:
    evaluations = frame(clock("C2", "warning"), clock("C3", "overdue", overdue=2, remaining=-2))
    first = plan_cards(evaluations, units, as_of=AS_OF)
    again = plan_cards(evaluations, units, as_of=AS_OF, existing=stored(first))
    assert first.cards.height == 2
    assert again.cards.height == 0 and again.routes.height == 0 and again.superseded.height == 0


def test_an_overdue_clock_is_reminded_every_repeat_every_working_days(units: UnitDirectory) -> None:
    existing = pl.DataFrame(schema=EXISTING_SCHEMA)
    issued_on = []
    for overdue in range(1, 11):
        plan = plan_cards(
            frame(clock("C3", "overdue", overdue=overdue, remaining=-overdue)), units, as_of=AS_OF, existing=existing
        )
        if plan.cards.height:
            issued_on.append((overdue, plan.cards["reminder_no"][0]))
            existing = pl.concat([existing, stored(plan, "sent", first_id=existing.height + 1)])
    assert issued_on == [(1, 0), (4, 1), (7, 2), (10, 3)]


def test_without_repeat_every_an_overdue_clock_gets_one_card(units: UnitDirectory) -> None:
    plans = [
        plan_cards(frame(clock("C3", "overdue", overdue=n, repeat_every=None)), units, as_of=AS_OF) for n in (1, 9)
    ]
    assert [plan.cards["reminder_no"][0] for plan in plans] == [0, 0]


def test_a_moved_due_date_fires_a_new_card(units: UnitDirectory) -> None:
    first = plan_cards(frame(clock("C2", "warning")), units, as_of=AS_OF)
    moved = plan_cards(frame(clock("C2", "warning", due=date(2026, 3, 9))), units, as_of=AS_OF, existing=stored(first))
    assert moved.cards["due_date"].to_list() == [date(2026, 3, 9)]
    assert moved.superseded.rows() == [(1, "superseded: clock is now warning")]


def test_an_escalation_goes_to_the_owner_and_its_supervisor(units: UnitDirectory) -> None:
    plan = plan_cards(
        frame(clock("C4", "escalated", overdue=6), clock("C2", "warning", unit="360700SCJ")), units, as_of=AS_OF
    )
    recipients = plan.routes.select("clock_id", "recipient_unit", "role", "channel").rows()
    assert sorted(recipients) == sorted(
        [
            ("case:C4", "360702SPJ", "owner", "email"),
            ("case:C4", "360702SPJ", "owner", "sms"),
            ("case:C4", "360702ZF", "supervisor", "email"),  # the county government has email only
            ("case:C2", "360700SCJ", "owner", "email"),
            ("case:C2", "360700SCJ", "owner", "sms"),
        ]
    )


def test_escalated_supersedes_the_pending_overdue_card_of_the_same_clock(units: UnitDirectory) -> None:
    overdue = plan_cards(
        frame(clock("C4", "overdue", overdue=4), clock("C5", "overdue", overdue=4)), units, as_of=AS_OF
    )
    existing = stored(overdue).with_columns(
        pl.when(pl.col("clock_id") == "case:C5").then(pl.lit("sent")).otherwise(pl.col("status")).alias("status")
    )
    escalated = plan_cards(
        frame(clock("C4", "escalated", overdue=5), clock("C5", "escalated", overdue=5)),
        units,
        as_of=AS_OF,
        existing=existing,
    )
    assert escalated.superseded.rows() == [(1, "inhibited by escalated")]  # C5's overdue card was already sent
    assert sorted(escalated.cards["subject_id"]) == ["C4", "C5"]


def test_a_pending_card_of_a_clock_completed_before_delivery_is_superseded(units: UnitDirectory) -> None:
    first = plan_cards(frame(clock("C2", "warning")), units, as_of=AS_OF)
    later = plan_cards(frame(clock("C2", "completed_on_time")), units, as_of=AS_OF, existing=stored(first))
    assert later.cards.height == 0
    assert later.superseded.rows() == [(1, "superseded: clock is now completed_on_time")]


def test_clocks_absent_from_the_evaluations_keep_their_pending_cards(units: UnitDirectory) -> None:
    first = plan_cards(frame(clock("C2", "warning")), units, as_of=AS_OF)
    other = plan_cards(frame(clock("C9", "warning")), units, as_of=AS_OF, existing=stored(first))
    assert other.superseded.height == 0


@pytest.mark.parametrize(
    ("scope", "value"),
    [("case", "C3"), ("unit", "360703SPJ"), ("matter", "SXTQ-B001"), ("clock", "case:C3")],
)
def test_a_silence_stores_the_card_as_suppressed_and_routes_nothing(
    units: UnitDirectory, scope: str, value: str
) -> None:
    evaluations = frame(
        clock("C2", "warning"),
        clock("C3", "overdue", unit="360703SPJ", matter="SXTQ-B001", overdue=2),
    )
    plan = plan_cards(evaluations, units, as_of=AS_OF, silences=silences((7, scope, value, date(2026, 3, 4), "核查中")))
    cards = {row["subject_id"]: row for row in plan.cards.iter_rows(named=True)}
    assert cards["C3"]["status"] == "suppressed"
    assert cards["C3"]["suppressed_by"] == f"silence 7 {scope}={value} until 2026-03-04: 核查中"
    assert cards["C2"]["status"] == "pending" and cards["C2"]["suppressed_by"] is None
    assert set(plan.routes["clock_id"]) == {"case:C2"}
    assert plan.counts["suppressed"] == 1


def test_an_expired_silence_suppresses_nothing(units: UnitDirectory) -> None:
    plan = plan_cards(
        frame(clock("C2", "warning")), units, as_of=AS_OF, silences=silences((1, "case", "C2", date(2026, 3, 3), "x"))
    )
    assert plan.cards["status"].to_list() == ["pending"]


def test_a_backfill_plan_is_not_deliverable(units: UnitDirectory) -> None:
    first = plan_cards(frame(clock("C2", "warning")), units, as_of=AS_OF)
    backfill = plan_cards(
        frame(clock("C2", "overdue", overdue=1)),
        units,
        as_of=date(2025, 1, 2),
        existing=stored(first),
        deliverable=False,
    )
    assert backfill.cards["status"].to_list() == ["backfill"]
    assert backfill.routes.height == 0 and backfill.superseded.height == 0
    assert not backfill.deliverable


def test_is_backfill_compares_with_yesterday_in_shanghai() -> None:
    now = datetime(2026, 3, 5, 1, 30, tzinfo=TIMEZONE)
    assert not is_backfill(date(2026, 3, 4), now)
    assert is_backfill(date(2026, 3, 3), now)


def test_a_unit_unknown_to_units_yaml_stops_the_run_naming_it(units: UnitDirectory) -> None:
    evaluations = frame(clock("C2", "warning"), clock("C8", "normal", unit="369999XYZ"))
    with pytest.raises(ConfigError, match=r"units\.yaml: units in the data are not in this file: 369999XYZ \(1 clocks"):
        plan_cards(evaluations, units, as_of=AS_OF)


def test_evaluations_missing_a_column_are_refused(units: UnitDirectory) -> None:
    with pytest.raises(ValueError, match="repeat_every"):
        plan_cards(frame(clock("C2", "warning")).drop("repeat_every"), units, as_of=AS_OF)


def test_levels_routes_and_inhibition_are_configuration(tmp_path: Path) -> None:
    contacts = [{"url": "outbox://email", "tag": "email"}]
    document = {
        "alerting": {
            "levels": ["overdue", "escalated"],
            "routes": {"overdue": {"supervisors": 1}, "escalated": {"owner": False, "supervisors": 2}},
            "inhibit": [],
        },
        "units": [
            {"code": "TOP", "name": "顶层", "contacts": contacts},
            {"code": "OPS", "name": "运维", "parent": "TOP", "tags": ["ops"], "contacts": contacts},
            {"code": "MID", "name": "中层", "parent": "TOP", "contacts": contacts},
            {"code": "LOW", "name": "基层", "parent": "MID", "contacts": []},
        ],
    }
    (tmp_path / "units.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    custom = load_units(tmp_path)
    evaluations = frame(
        clock("C1", "warning", unit="LOW"), clock("C2", "overdue", unit="LOW"), clock("C3", "escalated", unit="LOW")
    )
    plan = plan_cards(evaluations, custom, as_of=AS_OF)
    assert sorted(plan.cards["subject_id"]) == ["C2", "C3"]
    routes = sorted(plan.routes.select("clock_id", "recipient_unit", "role").rows())
    # LOW has no contacts: MID stands in for it; escalations skip the owner and go two supervisors up
    assert routes == [("case:C2", "MID", "owner"), ("case:C3", "MID", "supervisor"), ("case:C3", "TOP", "supervisor")]
    overdue_first = plan_cards(frame(clock("C2", "overdue", unit="LOW")), custom, as_of=AS_OF)
    escalated = plan_cards(
        frame(clock("C2", "escalated", unit="LOW", overdue=6)), custom, as_of=AS_OF, existing=stored(overdue_first)
    )
    assert escalated.superseded["superseded_by"].to_list() == ["superseded: clock is now escalated"]


def test_with_review_on_escalations_wait_for_review_only_on_their_way_to_supervisors(tmp_path: Path) -> None:
    document = yaml.safe_load((BUNDLED_CONFIG_DIR / "units.yaml").read_text(encoding="utf-8"))
    document.setdefault("alerting", {})["review"] = {"on_timeout": "hold"}
    (tmp_path / "units.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    reviewed = load_units(tmp_path)
    evaluations = frame(clock("C1", "overdue", overdue=2), clock("C2", "escalated", overdue=6))

    plan = plan_cards(evaluations, reviewed, as_of=AS_OF)

    statuses = sorted(set(plan.routes.select("clock_id", "role", "status").rows()))
    assert statuses == [("case:C1", "owner", "pending"), ("case:C2", "owner", "pending"),
                        ("case:C2", "supervisor", "awaiting_review")]
    without_review = plan_cards(evaluations, load_units(BUNDLED_CONFIG_DIR), as_of=AS_OF)
    assert set(without_review.routes["status"]) == {"pending"}


def test_a_standing_review_hold_suppresses_the_same_escalation_until_its_due_date_changes_or_it_expires(
    tmp_path: Path,
) -> None:
    from tasks.alerts.cards import HOLD_SCHEMA

    document = yaml.safe_load((BUNDLED_CONFIG_DIR / "units.yaml").read_text(encoding="utf-8"))
    document.setdefault("alerting", {})["review"] = {"on_timeout": "send"}
    (tmp_path / "units.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    reviewed = load_units(tmp_path)
    holds = pl.DataFrame(
        [
            ("case:C1", "escalated", DUE, None),
            ("case:C2", "escalated", DUE, AS_OF),
            ("case:C3", "escalated", DUE, date(2026, 3, 1)),
        ],
        schema=HOLD_SCHEMA,
        orient="row",
    )
    evaluations = frame(
        clock("C1", "escalated", overdue=9),  # a later reminder of the held escalation: still held
        clock("C2", "escalated", overdue=6, due=date(2026, 2, 20)),  # its due date moved: proposed again
        clock("C3", "escalated", overdue=6),  # the hold ended before the as-of date: proposed again
    )

    plan = plan_cards(evaluations, reviewed, as_of=AS_OF, holds=holds)

    supervisor = dict(plan.routes.filter(pl.col("role") == "supervisor").select("clock_id", "status").unique().rows())
    assert supervisor == {"case:C1": "suppressed", "case:C2": "awaiting_review", "case:C3": "awaiting_review"}
    assert set(plan.routes.filter(pl.col("role") == "owner")["status"]) == {"pending"}


def test_a_review_without_a_timeout_policy_is_refused_at_load(tmp_path: Path) -> None:
    document = yaml.safe_load((BUNDLED_CONFIG_DIR / "units.yaml").read_text(encoding="utf-8"))
    document.setdefault("alerting", {})["review"] = {"timeout_minutes": 30}
    (tmp_path / "units.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="on_timeout"):
        load_units(tmp_path)
    document.setdefault("alerting", {})["review"] = {"on_timeout": "later"}
    (tmp_path / "units.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="on_timeout"):
        load_units(tmp_path)
