"""After next year's notice is imported, the next run uses it: provisional marks go, due dates that moved are counted,
and a card re-fires only for a clock whose due date actually moved."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from config.rules import load_rules
from config.settings import BUNDLED_CONFIG_DIR
from config.units import load_units
from tasks.alerts.cards import CARD_KEY, plan_cards
from tasks.clocks.builders import build_clocks
from tasks.clocks.calendar import default_work_calendar, load_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tasks.clocks.holiday_notice import read_notice
from tasks.store.evaluations import due_date_changes

NOTICE_2027 = Path(__file__).resolve().parent / "fixtures" / "notices" / "invented-2027.txt"
AS_OF = date(2026, 12, 31)


def _cases() -> pl.DataFrame:
    # 45 working days from these starts ends in February 2027, around the (invented) Spring Festival holiday;
    # the 10-day and 3-day ones end before New Year's Day 2027 and cannot move.
    rows = [
        ("GZ-A", "2026-12-01", 45),
        ("GZ-B", "2026-12-10", 45),
        ("GZ-C", "2026-12-15", 10),
        ("GZ-D", "2026-12-28", 3),
    ]
    return pl.DataFrame(
        {
            "case_id": [r[0] for r in rows],
            "matter_code": ["SXTQ-B004"] * len(rows),
            "unit_code": ["360702SPJ"] * len(rows),
            "accepted_at": pl.Series([r[1] for r in rows]).str.to_date(),
            "limit_days": pl.Series([r[2] for r in rows], dtype=pl.Int32),
            "limit_kind": ["workday"] * len(rows),
        }
    )


def _evaluate(calendar_files: list) -> pl.DataFrame:  # type: ignore[type-arg]
    clock_set = build_clocks({"cases": _cases()}, load_rules(BUNDLED_CONFIG_DIR))
    calendar = load_work_calendar(calendar_files) if calendar_files else default_work_calendar()
    return evaluate_clocks(clock_set.clocks, clock_set.pauses, calendar, AS_OF)


def test_import_turns_provisional_clocks_official_and_moves_only_affected_due_dates() -> None:
    before = _evaluate([])
    after = _evaluate([read_notice(NOTICE_2027).calendar])

    by_case = before.join(after, on="clock_id", suffix="_after").sort("clock_id")
    provisional_before = set(by_case.filter(pl.col("calendar") == "provisional")["clock_id"])
    # Only clocks whose computation reaches into 2027 are provisional; the short ones end in 2026.
    assert provisional_before == {"case:GZ-A", "case:GZ-B"}
    assert set(after["calendar"]) == {"official"}

    moved = due_date_changes(after, before.select("clock_id", "due_date", "calendar"))
    # The notice's Spring Festival (2027-02-05..12, make-up Saturday 02-20) differs from the estimate: GZ-B, which
    # runs through it, moves from 02-18 to 02-20; GZ-A is due on 02-03, before the festival, and stays.
    assert set(moved["clock_id"]) == {"case:GZ-B"}
    assert moved.row(0, named=True)["due_date"] == date(2027, 2, 20)


def test_cards_refire_only_where_the_due_date_moved() -> None:
    units = load_units(BUNDLED_CONFIG_DIR)
    # On GZ-A's due day every clock alerts: GZ-A and GZ-B warn, GZ-C and GZ-D are escalated.
    as_of = date(2027, 2, 3)
    clock_set = build_clocks({"cases": _cases()}, load_rules(BUNDLED_CONFIG_DIR))
    provisional = evaluate_clocks(clock_set.clocks, clock_set.pauses, default_work_calendar(), as_of)
    official = evaluate_clocks(
        clock_set.clocks, clock_set.pauses, load_work_calendar([read_notice(NOTICE_2027).calendar]), as_of
    )
    first = plan_cards(provisional, units, as_of=as_of)
    assert set(first.cards["clock_id"]) == {"case:GZ-A", "case:GZ-B", "case:GZ-C", "case:GZ-D"}
    sent = first.cards.select(CARD_KEY).with_columns(
        pl.int_range(1, first.cards.height + 1, dtype=pl.Int64).alias("card_id"), pl.lit("sent").alias("status")
    )

    second = plan_cards(official, units, as_of=as_of, existing=sent)

    assert second.cards.select("clock_id", "level", "due_date").rows() == [("case:GZ-B", "warning", date(2027, 2, 20))]
    assert set(second.cards["calendar"]) == {"official"}
