"""The platform's own due dates checked against ours: the differences and their likely causes."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from config.rules import load_rules
from config.settings import BUNDLED_CONFIG_DIR as CONFIG
from tasks.clocks.calendar import default_work_calendar
from tasks.clocks.platform_check import (
    MISSING_HOLIDAY,
    MISSING_MAKEUP_DAY,
    PAUSE_ENDS_TWICE,
    SENTINEL,
    UNEXPLAINED,
    cause_counts,
    likely_cause,
    pausing_suspensions,
    platform_disagreements,
)

SENTINEL_DATE = date(1753, 1, 1)
AS_OF = date(2025, 3, 24)


@pytest.mark.parametrize(
    ("platform", "difference", "pause_starts", "makeup", "holidays", "cause"),
    [
        (SENTINEL_DATE, None, 0, 0, 0, SENTINEL),
        (SENTINEL_DATE, 3, 3, 3, 3, SENTINEL),  # the sentinel wins over everything
        (date(2025, 3, 12), 2, 2, 0, 0, PAUSE_ENDS_TWICE),
        (date(2025, 3, 12), 2, 2, 5, 0, PAUSE_ENDS_TWICE),  # the exact pause count is the better explanation
        (date(2025, 3, 12), 1, 2, 1, 0, MISSING_MAKEUP_DAY),
        (date(2025, 3, 12), 2, 0, 1, 0, UNEXPLAINED),  # more days than make-up days to explain them
        (date(2025, 3, 12), -2, 0, 0, 6, MISSING_HOLIDAY),
        (date(2025, 3, 12), -2, 2, 5, 1, UNEXPLAINED),
        (date(2025, 3, 12), -1, 1, 1, 0, UNEXPLAINED),  # pauses and make-up days only make a platform later
    ],
)
def test_likely_cause(
    platform: date, difference: int | None, pause_starts: int, makeup: int, holidays: int, cause: str
) -> None:
    features = pl.DataFrame(
        {
            "platform_due_date": [platform],
            "difference_workdays": [difference],
            "pause_start_workdays": [pause_starts],
            "makeup_days": [makeup],
            "holidays": [holidays],
        },
        schema_overrides={"difference_workdays": pl.Int32},
    )
    assert features.select(likely_cause()).item() == cause


def evaluation(case_id: str, due: date | None, level: str = "normal") -> dict[str, object]:
    return {"clock_id": f"case:{case_id}", "clock_type": "case", "case_id": case_id, "unit_code": "U",
            "matter_code": "M", "due_date": due, "level": level}


def test_disagreements_are_counted_in_working_days_with_their_cause() -> None:
    cases = pl.DataFrame(
        [
            # 2025-10-11 (Sat) is a 调休 working day: a platform without it is two working days later.
            ("MAKEUP", date(2025, 9, 20), date(2025, 10, 13)),
            # 2025-10-01..08 is the National Day holiday: a platform that works 10-03 is a working day early.
            ("HOLIDAY", date(2025, 9, 20), date(2025, 10, 3)),
            ("SENTINEL", date(2025, 9, 20), SENTINEL_DATE),
            # A pause from Wed 03-05 to 03-10: counting both ends adds 03-05.
            ("PAUSE", date(2025, 3, 3), date(2025, 3, 24)),
            ("FAR", date(2025, 3, 3), date(2025, 4, 30)),
            ("AGREES", date(2025, 3, 3), date(2025, 3, 21)),
            ("DONE", date(2025, 3, 3), date(2025, 3, 28)),
            ("PAUSED", date(2025, 3, 3), date(2025, 3, 28)),
            ("NO-PLATFORM", date(2025, 3, 3), None),
        ],
        schema={"case_id": pl.String, "accepted_at": pl.Date, "platform_due_date": pl.Date},
        orient="row",
    )
    evaluations = pl.DataFrame(
        [
            evaluation("MAKEUP", date(2025, 10, 10)),
            evaluation("HOLIDAY", date(2025, 10, 9), "warning"),
            evaluation("SENTINEL", date(2025, 10, 9), "overdue"),
            evaluation("PAUSE", date(2025, 3, 21), "escalated"),
            evaluation("FAR", date(2025, 3, 21)),
            evaluation("AGREES", date(2025, 3, 21)),
            evaluation("DONE", date(2025, 3, 21), "completed_on_time"),
            evaluation("PAUSED", None, "paused"),
            evaluation("NO-PLATFORM", date(2025, 3, 21)),
        ]
    )
    suspensions = pl.DataFrame(
        {
            "case_id": ["PAUSE", "FAR", "PAUSE", "FAR"],
            "kind": ["听证", "公示", "公示", "延期"],
            # FAR's pause starts on a Saturday and its extension pauses nothing; PAUSE's second pause ends after the
            # as-of date, so it is not known yet.
            "started_at": [date(2025, 3, 5), date(2025, 3, 8), date(2025, 3, 19), date(2025, 3, 12)],
            "ended_at": [date(2025, 3, 10), date(2025, 3, 10), date(2025, 3, 25), date(2025, 3, 12)],
        }
    )
    pauses = pausing_suspensions(suspensions, load_rules(CONFIG))
    assert pauses.height == 3
    found = platform_disagreements(cases, evaluations, pauses, default_work_calendar(), AS_OF)
    rows = {row["case_id"]: (row["difference_workdays"], row["likely_cause"]) for row in found.to_dicts()}
    assert rows == {
        "MAKEUP": (2, MISSING_MAKEUP_DAY),
        "HOLIDAY": (-1, MISSING_HOLIDAY),
        "SENTINEL": (None, SENTINEL),
        "PAUSE": (1, PAUSE_ENDS_TWICE),
        "FAR": (28, UNEXPLAINED),  # 2025-04-27 (Sun) is a 调休 working day
    }


def test_cause_counts_most_common_first() -> None:
    frame = pl.DataFrame({"likely_cause": [SENTINEL, UNEXPLAINED, SENTINEL, MISSING_HOLIDAY, UNEXPLAINED, SENTINEL]})
    assert list(cause_counts(frame).items()) == [(SENTINEL, 3), (UNEXPLAINED, 2), (MISSING_HOLIDAY, 1)]
    assert cause_counts(frame.clear()) == {}


def test_no_platform_column_means_nothing_to_check() -> None:
    cases = pl.DataFrame({"case_id": ["A"], "accepted_at": [date(2025, 3, 3)]})
    evaluations = pl.DataFrame([evaluation("A", date(2025, 3, 21))])
    pauses = pl.DataFrame(schema={"case_id": pl.String, "started_at": pl.Date, "ended_at": pl.Date})
    assert platform_disagreements(cases, evaluations, pauses, default_work_calendar(), AS_OF).is_empty()
