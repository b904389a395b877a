"""A small, hand-checked data set for the report: canonical tables plus the clock evaluations they lead to.

As of Wednesday 2026-03-11, the week report covers 03-09..03-11 and the previous week 03-02..03-08. The evaluations
are written out by hand (what the deadline engine says for these clocks) so that each metric can be worked out on
paper; tests/test_report.py runs the real engine on the same tables.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from tasks.metrics import Dimensions

AS_OF = date(2026, 3, 11)
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

EVALUATION_SCHEMA = {
    "clock_id": pl.String,
    "clock_type": pl.String,
    "subject_id": pl.String,
    "case_id": pl.String,
    "unit_code": pl.String,
    "matter_code": pl.String,
    "region_code": pl.String,
    "start_date": pl.Date,
    "limit_days": pl.Int32,
    "limit_kind": pl.String,
    "completed_date": pl.Date,
    "warning_days": pl.Int32,
    "escalate_after": pl.Int32,
    "repeat_every": pl.Int32,
    "due_date": pl.Date,
    "elapsed": pl.Int32,
    "remaining": pl.Int32,
    "overdue_workdays": pl.Int32,
    "level": pl.String,
    "calendar": pl.String,
}


def d(text: str) -> date:
    return date.fromisoformat(f"2026-{text}")


# case_id, matter, unit, region, project, accepted, completed, applicant
_CASES = [
    ("C1", "SXTQ-A001", "360702SPJ", "360702", "P2", "03-02", "03-09", "张小三", "13812345678"),
    ("C2", "SXTQ-A001", "360702SPJ", "360702", None, "02-20", "03-10", "李四", "13900001111"),
    ("C3", "SXTQ-B001", "360703SPJ", "360703", "P1", "03-03", "03-11", "郑十一", "13700002222"),
    ("C4", "SXTQ-B001", "360703SPJ", "360703", "P1", "02-10", None, "王五", None),
    ("C5", "SJ-D001", "360700SPJ", None, None, "03-09", None, "赵六", None),
    ("C6", "SXTQ-A001", "360702SPJ", "360702", "P2", "02-25", "03-04", "钱七", None),
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
            ("P1", "赣州某厂房", "enterprise_investment", "360703", "360703SPJ"),
            ("P2", "章贡某仓库", "simple_low_risk", "360702", "360702SPJ"),
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


def _evaluation(
    clock_id: str,
    clock_type: str,
    subject: str,
    case_id: str | None,
    unit: str,
    start: str,
    limit: int,
    completed: str | None,
    due: str | None,
    elapsed: int,
    overdue: int,
    level: str,
    *,
    matter: str | None = None,
    kind: str = "workday",
) -> dict[str, object]:
    return {
        "clock_id": clock_id,
        "clock_type": clock_type,
        "subject_id": subject,
        "case_id": case_id,
        "unit_code": unit,
        "matter_code": matter,
        "region_code": None,
        "start_date": d(start),
        "limit_days": limit,
        "limit_kind": kind,
        "completed_date": d(completed) if completed else None,
        "warning_days": 2,
        "escalate_after": 5,
        "repeat_every": 3,
        "due_date": d(due) if due else None,
        "elapsed": elapsed,
        "remaining": limit - elapsed,
        "overdue_workdays": overdue,
        "level": level,
        "calendar": "official",
    }


def evaluations() -> pl.DataFrame:
    """Every clock as of 2026-03-11, plus `workdays_used` (C9 is a 30-calendar-day clock that used 22 working days)."""
    e = _evaluation
    rows = [
        e(
            "case:C1",
            "case",
            "C1",
            "C1",
            "360702SPJ",
            "03-02",
            10,
            "03-09",
            "03-16",
            5,
            0,
            "completed_on_time",
            matter="SXTQ-A001",
        ),
        e(
            "case:C2",
            "case",
            "C2",
            "C2",
            "360702SPJ",
            "02-20",
            10,
            "03-10",
            "03-06",
            12,
            2,
            "completed_late",
            matter="SXTQ-A001",
        ),
        e(
            "case:C3",
            "case",
            "C3",
            "C3",
            "360703SPJ",
            "03-03",
            8,
            "03-11",
            "03-13",
            6,
            0,
            "completed_on_time",
            matter="SXTQ-B001",
        ),
        e(
            "case:C4",
            "case",
            "C4",
            "C4",
            "360703SPJ",
            "02-10",
            8,
            None,
            "02-24",
            20,
            12,
            "escalated",
            matter="SXTQ-B001",
        ),
        e("case:C5", "case", "C5", "C5", "360700SPJ", "03-09", 15, None, "03-30", 2, 0, "normal", matter="SJ-D001"),
        e(
            "case:C6",
            "case",
            "C6",
            "C6",
            "360702SPJ",
            "02-25",
            10,
            "03-04",
            "03-11",
            5,
            0,
            "completed_on_time",
            matter="SXTQ-A001",
        ),
        e("case:C7", "case", "C7", "C7", "360702SPJ", "02-16", 10, None, "03-06", 13, 3, "overdue", matter="SXTQ-A001"),
        e("case:C8", "case", "C8", "C8", "360703SPJ", "03-10", 8, None, None, 1, 0, "paused", matter="SXTQ-B001"),
        e(
            "case:C9",
            "case",
            "C9",
            "C9",
            "360700SPJ",
            "02-02",
            30,
            "03-09",
            "03-04",
            35,
            3,
            "completed_late",
            matter="SXTQ-C004",
            kind="calendar",
        ),
        e("step:C1:1", "step", "C1:1", "C1", "360702SPJ", "03-02", 10, "03-09", "03-16", 5, 0, "completed_on_time"),
        e("step:C2:1", "step", "C2:1", "C2", "360702SPJ", "02-20", 10, "03-10", "03-06", 12, 2, "completed_late"),
        e("step:C3:1", "step", "C3:1", "C3", "360703SPJ", "03-03", 5, "03-09", "03-10", 4, 0, "completed_on_time"),
        e("step:C3:2", "step", "C3:2", "C3", "360700SCJ", "03-09", 3, "03-11", "03-12", 2, 0, "completed_on_time"),
        e("step:C4:1", "step", "C4:1", "C4", "360703SPJ", "02-10", 5, None, "02-17", 20, 17, "escalated"),
        e("project:P1", "project", "P1", None, "360703SPJ", "02-10", 45, None, "04-15", 20, 0, "normal"),
        e("project:P2", "project", "P2", None, "360702SPJ", "02-25", 18, "03-09", "03-20", 9, 0, "completed_on_time"),
        e("deferral:C3", "deferral", "C3", "C3", "360703SPJ", "03-03", 5, "03-09", "03-10", 4, 0, "completed_on_time"),
        e("deferral:C8", "deferral", "C8", "C8", "360703SPJ", "03-10", 10, None, "03-24", 1, 0, "normal"),
        e("deferral:C2", "deferral", "C2", "C2", "360702SPJ", "02-20", 10, "03-06", "03-05", 11, 1, "completed_late"),
        e("deferral:C7", "deferral", "C7", "C7", "360702SPJ", "02-16", 17, None, "03-11", 17, 0, "warning"),
        e("claim:PU1", "claim", "PU1", "C6", "360700SCJ", "03-05", 3, "03-06", "03-10", 1, 0, "completed_on_time"),
        e("claim:PU2", "claim", "PU2", "C1", "360700SCJ", "03-09", 3, "03-10", "03-12", 1, 0, "completed_on_time"),
        e("claim:PU3", "claim", "PU3", "C2", "360700ZJJ", "03-10", 3, None, "03-13", 1, 0, "normal"),
        e("claim:PU4", "claim", "PU4", "C1", "360700ZJJ", "03-09", 3, "03-11", "03-12", 2, 0, "completed_on_time"),
        e("claim:PU5", "claim", "PU5", "C3", "360700SCJ", "03-11", 3, None, "03-16", 0, 0, "normal"),
        e("claim:PU6", "claim", "PU6", "C3", "360700ZJJ", "03-10", 3, "03-11", "03-13", 1, 0, "completed_on_time"),
    ]
    frame = pl.DataFrame(rows, schema=EVALUATION_SCHEMA)
    workdays = pl.when(pl.col("clock_id") == "case:C9").then(22).otherwise(pl.col("elapsed"))
    return frame.with_columns(workdays_used=workdays.cast(pl.Int32))


def previous_snapshot() -> pl.DataFrame:
    """Case clocks open at the end of 2026-03-08, as the engine evaluates them on that day."""
    e = _evaluation
    rows = [
        e("case:C1", "case", "C1", "C1", "360702SPJ", "03-02", 10, "03-09", "03-16", 4, 0, "normal"),
        e("case:C2", "case", "C2", "C2", "360702SPJ", "02-20", 10, "03-10", "03-06", 10, 0, "overdue"),
        e("case:C3", "case", "C3", "C3", "360703SPJ", "03-03", 8, "03-11", "03-13", 3, 0, "normal"),
        e("case:C4", "case", "C4", "C4", "360703SPJ", "02-10", 8, None, "02-24", 17, 9, "escalated"),
        e("case:C7", "case", "C7", "C7", "360702SPJ", "02-16", 10, None, "03-06", 10, 0, "overdue"),
        e("case:C9", "case", "C9", "C9", "360700SPJ", "02-02", 30, "03-09", "03-04", 34, 2, "overdue", kind="calendar"),
    ]
    return pl.DataFrame(rows, schema=EVALUATION_SCHEMA).with_columns(as_of=pl.lit(PREVIOUS_END))


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
