"""A small, hand-checked data set for the report: canonical tables plus the clock evaluations they lead to.

As of Wednesday 2026-03-11, the week report covers 03-09..03-11 and the previous week 03-02..03-08. The evaluations
are written out by hand (what the deadline engine says for these clocks) so that each metric can be worked out on
paper; tests/test_report.py runs the real engine on the same tables.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from tasks.clocks.engine import CLOCK_COLUMNS, EVALUATION_COLUMNS
from tasks.reports.metrics import Dimensions

AS_OF = date(2026, 3, 11)
# 投资项目代码 (national project codes): P1 an enterprise investment project, P2 a simple low-risk one.
P1 = "2301-360703-04-01-100001"
P2 = "2402-360702-04-01-200002"
PREVIOUS_END = date(2026, 3, 8)

CASE_SCHEMA = {
    "case_id": pl.String,
    "matter_code": pl.String,
    "matter_name": pl.String,
    "unit_code": pl.String,
    "unit_name": pl.String,
    "region_code": pl.String,
    "project_code": pl.String,
    "accepted_at": pl.Date,
    "completed_at": pl.Date,
    "limit_days": pl.Int32,
    "limit_kind": pl.String,
    "status": pl.String,
    "updated_at": pl.Datetime,
    "applicant_name": pl.String,
    "applicant_phone": pl.String,
}

EVALUATION_SCHEMA = {**CLOCK_COLUMNS, **EVALUATION_COLUMNS}


def d(text: str) -> date:
    return date.fromisoformat(f"2026-{text}")


# case_id, matter, unit, region, project, accepted, completed, applicant
_CASES = [
    ("C1", "SXTQ-A001", "360702SPJ", "360702", P2, "03-02", "03-09", "张小三", "13812345678"),
    ("C2", "SXTQ-A001", "360702SPJ", "360702", None, "02-20", "03-10", "李四", "13900001111"),
    ("C3", "SXTQ-B001", "360703SPJ", "360703", P1, "03-03", "03-11", "郑十一", "13700002222"),
    ("C4", "SXTQ-B001", "360703SPJ", "360703", P1, "02-10", None, "王五", None),
    ("C5", "SJ-D001", "360700SPJ", None, None, "03-09", None, "赵六", None),
    ("C6", "SXTQ-A001", "360702SPJ", "360702", P2, "02-25", "03-04", "钱七", None),
    ("C7", "SXTQ-A001", "360702SPJ", "360702", None, "02-16", None, "孙八", None),
    ("C8", "SXTQ-B001", "360703SPJ", "360703", None, "03-10", None, "周九", None),
    ("C9", "SXTQ-C004", "360700SPJ", "360700", None, "02-02", "03-09", "吴十", None),
]


def tables() -> dict[str, pl.DataFrame]:
    cases = pl.DataFrame(
        [
            {
                "case_id": case_id,
                "matter_code": matter,
                "matter_name": None,
                "unit_code": unit,
                "unit_name": None,
                "region_code": region,
                "project_code": project,
                "accepted_at": d(accepted),
                "completed_at": d(completed) if completed else None,
                "limit_days": None,
                "limit_kind": None,
                "status": None,
                "updated_at": None,
                "applicant_name": name,
                "applicant_phone": phone,
            }
            for case_id, matter, unit, region, project, accepted, completed, name, phone in _CASES
        ],
        schema=CASE_SCHEMA,
    )
    steps = pl.DataFrame(
        [
            ("C1", 1, "县级受理审核决定", "360702SPJ", d("03-02"), d("03-09"), None),
            ("C2", 1, "县级受理审核决定", "360702SPJ", d("02-20"), d("03-10"), None),
            ("C3", 1, "县级受理审核", "360703SPJ", d("03-03"), d("03-09"), None),
            ("C3", 2, "市级审批", "360700SCJ", d("03-09"), d("03-11"), None),
            ("C4", 1, "县级受理审核", "360703SPJ", d("02-10"), None, None),
        ],
        schema={
            "case_id": pl.String,
            "step_no": pl.Int32,
            "step_name": pl.String,
            "unit_code": pl.String,
            "started_at": pl.Date,
            "ended_at": pl.Date,
            "limit_days": pl.Int32,
        },
        orient="row",
    )
    suspensions = pl.DataFrame(
        [("C8", "专家评审", d("03-11"), None, None, "专家评审")],
        schema={
            "case_id": pl.String,
            "kind": pl.String,
            "started_at": pl.Date,
            "ended_at": pl.Date,
            "limit_days": pl.Int32,
            "reason": pl.String,
        },
        orient="row",
    )
    projects = pl.DataFrame(
        [
            (P1, "赣州某厂房", "enterprise_investment", "360703", "360703SPJ"),
            (P2, "章贡某仓库", "simple_low_risk", "360702", "360702SPJ"),
        ],
        schema={
            "project_code": pl.String,
            "project_name": pl.String,
            "category": pl.String,
            "region_code": pl.String,
            "lead_unit_code": pl.String,
        },
        orient="row",
    )
    deferrals = pl.DataFrame(
        [
            ("C3", None, d("03-10"), d("03-09")),
            ("C8", None, d("03-24"), None),
            ("C2", None, d("03-05"), d("03-06")),
            ("C7", None, d("03-11"), None),
        ],
        schema={"case_id": pl.String, "due_days": pl.Int32, "due_date": pl.Date, "supplied_at": pl.Date},
        orient="row",
    )
    pushes = pl.DataFrame(
        [
            ("PU1", "C6", "360700SCJ", d("03-05"), d("03-06")),
            ("PU2", "C1", "360700SCJ", d("03-09"), d("03-10")),
            ("PU3", "C2", "360700ZJJ", d("03-10"), None),
            ("PU4", "C1", "360700ZJJ", d("03-09"), d("03-11")),
            ("PU5", "C3", "360700SCJ", d("03-11"), None),
            ("PU6", "C3", "360700ZJJ", d("03-10"), d("03-11")),
        ],
        schema={
            "push_id": pl.String,
            "case_id": pl.String,
            "supervisor_unit_code": pl.String,
            "pushed_at": pl.Date,
            "claimed_at": pl.Date,
        },
        orient="row",
    )
    return {
        "cases": cases,
        "steps": steps,
        "suspensions": suspensions,
        "projects": projects,
        "deferrals": deferrals,
        "pushes": pushes,
    }


_EVALUATION_FIELDS = (
    "clock_id",
    "clock_type",
    "subject_id",
    "case_id",
    "unit_code",
    "matter_code",
    "region_code",
    "start_date",
    "limit_days",
    "limit_kind",
    "completed_date",
    "warning_days",
    "due_date",
    "elapsed",
    "overdue_workdays",
    "level",
)
_DATE_FIELDS = ("start_date", "completed_date", "due_date")

# What the deadline engine says for these tables as of 2026-03-11 (tests/test_report.py checks that it still does).
# Spring Festival 2026 (02-15..02-23 off, Saturday 02-14 and 02-28 worked) is why C4 was due 02-27.
# Columns: _EVALUATION_FIELDS (completed = completed_date, warning = warning_days, overdue = overdue_workdays).
# fmt: off
_CURRENT = [
    ("case:C1", "case", "C1", "C1", "360702SPJ", "SXTQ-A001", "360702",
     "03-02", 10, "workday", "03-09", 2, "03-16", 5, 0, "completed_on_time"),
    ("case:C2", "case", "C2", "C2", "360702SPJ", "SXTQ-A001", "360702",
     "02-20", 10, "workday", "03-10", 2, "03-06", 12, 2, "completed_late"),
    ("case:C3", "case", "C3", "C3", "360703SPJ", "SXTQ-B001", "360703",
     "03-03", 8, "workday", "03-11", 2, "03-13", 6, 0, "completed_on_time"),
    ("case:C4", "case", "C4", "C4", "360703SPJ", "SXTQ-B001", "360703",
     "02-10", 8, "workday", None, 2, "02-27", 17, 9, "escalated"),
    ("case:C5", "case", "C5", "C5", "360700SPJ", "SJ-D001", None,
     "03-09", 15, "workday", None, 3, "03-30", 2, 0, "normal"),
    ("case:C6", "case", "C6", "C6", "360702SPJ", "SXTQ-A001", "360702",
     "02-25", 10, "workday", "03-04", 2, "03-10", 6, 0, "completed_on_time"),
    ("case:C7", "case", "C7", "C7", "360702SPJ", "SXTQ-A001", "360702",
     "02-16", 10, "workday", None, 2, "03-06", 13, 3, "overdue"),
    ("case:C8", "case", "C8", "C8", "360703SPJ", "SXTQ-B001", "360703",
     "03-10", 8, "workday", None, 2, None, 1, 0, "paused"),
    ("case:C9", "case", "C9", "C9", "360700SPJ", "SXTQ-C004", "360700",
     "02-02", 30, "calendar", "03-09", 6, "03-04", 35, 3, "completed_late"),
    ("step:C1:1", "step", "C1", "C1", "360702SPJ", "SXTQ-A001", "360702",
     "03-02", 10, "workday", "03-09", 2, "03-16", 5, 0, "completed_on_time"),
    ("step:C2:1", "step", "C2", "C2", "360702SPJ", "SXTQ-A001", "360702",
     "02-20", 10, "workday", "03-10", 2, "03-06", 12, 2, "completed_late"),
    ("step:C3:1", "step", "C3", "C3", "360703SPJ", "SXTQ-B001", "360703",
     "03-03", 5, "workday", "03-09", 1, "03-10", 4, 0, "completed_on_time"),
    ("step:C3:2", "step", "C3", "C3", "360700SCJ", "SXTQ-B001", "360703",
     "03-09", 3, "workday", "03-11", 1, "03-12", 2, 0, "completed_on_time"),
    ("step:C4:1", "step", "C4", "C4", "360703SPJ", "SXTQ-B001", "360703",
     "02-10", 5, "workday", None, 1, "02-24", 17, 12, "escalated"),
    ("project:2402-360702-04-01-200002", "project", "2402-360702-04-01-200002", None, "360702SPJ", None, "360702",
     "02-25", 18, "workday", "03-09", 4, "03-20", 9, 0, "completed_on_time"),
    ("project:2301-360703-04-01-100001", "project", "2301-360703-04-01-100001", None, "360703SPJ", None, "360703",
     "02-10", 45, "workday", None, 9, "04-21", 17, 0, "normal"),
    ("deferral:C3", "deferral", "C3", "C3", "360703SPJ", "SXTQ-B001", "360703",
     "03-03", 7, "calendar", "03-09", 2, "03-10", 6, 0, "completed_on_time"),
    ("deferral:C8", "deferral", "C8", "C8", "360703SPJ", "SXTQ-B001", "360703",
     "03-10", 14, "calendar", None, 3, "03-24", 1, 0, "normal"),
    ("deferral:C2", "deferral", "C2", "C2", "360702SPJ", "SXTQ-A001", "360702",
     "02-20", 13, "calendar", "03-06", 3, "03-05", 14, 1, "completed_late"),
    ("deferral:C7", "deferral", "C7", "C7", "360702SPJ", "SXTQ-A001", "360702",
     "02-16", 23, "calendar", None, 5, "03-11", 23, 0, "warning"),
    ("claim:PU1", "claim", "PU1", "C6", "360700SCJ", "SXTQ-A001", "360702",
     "03-05", 3, "workday", "03-06", 1, "03-10", 1, 0, "completed_on_time"),
    ("claim:PU2", "claim", "PU2", "C1", "360700SCJ", "SXTQ-A001", "360702",
     "03-09", 3, "workday", "03-10", 1, "03-12", 1, 0, "completed_on_time"),
    ("claim:PU3", "claim", "PU3", "C2", "360700ZJJ", "SXTQ-A001", "360702",
     "03-10", 3, "workday", None, 1, "03-13", 1, 0, "normal"),
    ("claim:PU4", "claim", "PU4", "C1", "360700ZJJ", "SXTQ-A001", "360702",
     "03-09", 3, "workday", "03-11", 1, "03-12", 2, 0, "completed_on_time"),
    ("claim:PU5", "claim", "PU5", "C3", "360700SCJ", "SXTQ-B001", "360703",
     "03-11", 3, "workday", None, 1, "03-16", 0, 0, "normal"),
    ("claim:PU6", "claim", "PU6", "C3", "360700ZJJ", "SXTQ-B001", "360703",
     "03-10", 3, "workday", "03-11", 1, "03-13", 1, 0, "completed_on_time"),
    ("special:C8:专家评审:2026-03-11", "special", "C8", "C8", "360703SPJ", "SXTQ-B001", "360703",
     "03-11", 20, "workday", None, 4, "04-09", 0, 0, "normal"),
]
# fmt: on

# The case clocks open at the end of Sunday 2026-03-08, evaluated on that day.
# fmt: off
_PREVIOUS = [
    ("case:C1", "case", "C1", "C1", "360702SPJ", "SXTQ-A001", "360702",
     "03-02", 10, "workday", "03-09", 2, "03-16", 4, 0, "normal"),
    ("case:C2", "case", "C2", "C2", "360702SPJ", "SXTQ-A001", "360702",
     "02-20", 10, "workday", "03-10", 2, "03-06", 10, 0, "overdue"),
    ("case:C3", "case", "C3", "C3", "360703SPJ", "SXTQ-B001", "360703",
     "03-03", 8, "workday", "03-11", 2, "03-13", 3, 0, "normal"),
    ("case:C4", "case", "C4", "C4", "360703SPJ", "SXTQ-B001", "360703",
     "02-10", 8, "workday", None, 2, "02-27", 14, 6, "escalated"),
    ("case:C7", "case", "C7", "C7", "360702SPJ", "SXTQ-A001", "360702",
     "02-16", 10, "workday", None, 2, "03-06", 10, 0, "overdue"),
    ("case:C9", "case", "C9", "C9", "360700SPJ", "SXTQ-C004", "360700",
     "02-02", 30, "calendar", "03-09", 6, "03-04", 34, 2, "overdue"),
]
# fmt: on


def _evaluations(rows: list[tuple[object, ...]]) -> pl.DataFrame:
    records = []
    for row in rows:
        record = dict(zip(_EVALUATION_FIELDS, row, strict=True))
        for name in _DATE_FIELDS:
            record[name] = d(str(record[name])) if record[name] is not None else None
        limit, elapsed = record["limit_days"], record["elapsed"]
        assert isinstance(limit, int) and isinstance(elapsed, int)
        record.update(escalate_after=5, repeat_every=3, remaining=limit - elapsed, calendar="official")
        records.append(record)
    return pl.DataFrame(records, schema=EVALUATION_SCHEMA)


def evaluations() -> pl.DataFrame:
    """Every clock as of 2026-03-11, plus `workdays_used`: C9 is a 30-calendar-day clock that used 21 working days."""
    workdays = pl.when(pl.col("clock_id") == "case:C9").then(21).otherwise(pl.col("elapsed"))
    return _evaluations(_CURRENT).with_columns(workdays_used=workdays.cast(pl.Int32))


def previous_snapshot() -> pl.DataFrame:
    """Case clocks open at the end of 2026-03-08, as the engine evaluates them on that day."""
    return _evaluations(_PREVIOUS).with_columns(as_of=pl.lit(PREVIOUS_END))


def snapshots() -> pl.DataFrame:
    current = evaluations().filter(pl.col("clock_type") == "case").drop("workdays_used")
    return pl.concat([previous_snapshot(), current.with_columns(as_of=pl.lit(AS_OF))])


def dimensions() -> Dimensions:
    return Dimensions(
        units=pl.DataFrame(
            {
                "unit_code": ["360700SPJ", "360702SPJ", "360703SPJ", "360700SCJ", "360700ZJJ"],
                "unit_name": [
                    "赣州市行政审批局",
                    "章贡区行政审批局",
                    "南康区行政审批局",
                    "赣州市市场监督管理局",
                    "赣州市住房和城乡建设局",
                ],
                "unit_region": ["360700", "360702", "360703", "360700", "360700"],
            }
        ),
        regions=pl.DataFrame(
            {"region_code": ["360700", "360702", "360703"], "region_name": ["市本级", "章贡区", "南康区"]}
        ),
        matters=pl.DataFrame(
            {
                "matter_code": ["SXTQ-A001", "SXTQ-B001", "SXTQ-C004", "SJ-D001"],
                "matter_name": ["食品经营许可", "特种设备使用登记", "医疗机构执业登记", "建设工程规划许可"],
                "mode": ["county_end_to_end", "county_review_city_approve", "county_forward_city_handle", "city"],
            }
        ),
        categories=pl.DataFrame(
            {
                "category": ["enterprise_investment", "simple_low_risk"],
                "category_name": ["企业投资项目", "社会投资简易低风险项目"],
            }
        ),
    )
