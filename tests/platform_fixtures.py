"""Databases (SQLite, or PostgreSQL at a given URL) laid out like the platforms' own: the 电子监察中间库 (`EA_JC_*`)
and Epoint's tables.

One set of cases is written twice: into the platform's tables, with the platform's spellings (unit GUIDs and
统一社会信用代码, 31-character 实施编码, 12-digit region codes, PROMISETIMEUNIT codes, pauses as start and end event
rows, extensions as 延期 events, a running step's end time equal to its start), and as canonical CSV files. Loading
either must give the same clocks.

Each platform also carries its own due date (`promisedate` / `promiseenddate`): ours for most open cases, and wrong on
purpose for a few, one group per likely cause (`PlatformFixture.seeded`). A few rows are bad on purpose, each with the
reason it must be rejected for (`PlatformFixture.bad_rows`).
"""

from __future__ import annotations

import random
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from sqlalchemy import create_engine, text

from config.bundle import load_config
from config.settings import BUNDLED_CONFIG_DIR
from tasks.clocks.builders import build_clocks
from tasks.clocks.calendar import WorkCalendar, load_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tasks.clocks.platform_check import MISSING_HOLIDAY, MISSING_MAKEUP_DAY, PAUSE_ENDS_TWICE, SENTINEL

AS_OF = date(2026, 11, 20)
FIRST_ACCEPTANCE = date(2026, 1, 5)
LAST_ACCEPTANCE = date(2026, 11, 10)
PLATFORM_SENTINEL = "1753-01-01 00:00:00"
EA_JC_KINDS = {1: "补正", 2: "听证", 3: "公示", 4: "核实", 5: "挂起"}  # EA_JC_STEP_SPECIALNODE.NODERESULT
EPOINT_PAUSE_KIND = "挂起"  # the default kind of an audit_project_unusual 10/11 pair
EXTENSION_KIND = "延期"
SEEDED_PER_CAUSE = 3
SUPERVISOR = "360700SCJ"  # the city market regulator supervises every pushed matter here


def unit_guid(code: str) -> str:
    """The unit's Epoint ouguid: a GUID, upper case as Epoint writes it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ou:{code}")).upper()


def credit_code(code: str) -> str:
    """An 18-character 统一社会信用代码 standing for the unit in the 中间库's ACCEPTDEPTID."""
    digits = "".join(str(ord(ch) % 10) for ch in code)
    return f"11{digits:0<15}"[:17] + "X"


def implementation_code(code: str) -> str:
    """The matter's 31-character 实施编码 (ITEMNO / item_id)."""
    digits = "".join(str(ord(ch) % 10) for ch in code)
    return f"113607000{digits:0<22}"[:31]


def alias_config(directory: Path) -> Path:
    """A copy of the bundled config whose units and matters carry the platforms' codes as aliases."""
    shutil.copytree(BUNDLED_CONFIG_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    units = yaml.safe_load((directory / "units.yaml").read_text(encoding="utf-8"))
    for unit in units["units"]:
        unit["aliases"] = [unit_guid(unit["code"]), credit_code(unit["code"])]
    (directory / "units.yaml").write_text(yaml.safe_dump(units, allow_unicode=True), encoding="utf-8")
    rules = yaml.safe_load((directory / "rules.yaml").read_text(encoding="utf-8"))
    for matter in rules["matters"]:
        matter["aliases"] = [implementation_code(matter["code"])]
    (directory / "rules.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    return directory


@dataclass
class PlatformFixture:
    url: str  # SQLAlchemy URL of the platform's database
    config_dir: Path  # the bundled config plus aliases
    canonical_dir: Path  # the same cases as canonical CSV: cases.csv, steps.csv, suspensions.csv, pushes.csv
    seeded: dict[str, str] = field(default_factory=dict)  # case_id → the cause its wrong platform due date has
    bad_rows: dict[str, list[str]] = field(default_factory=dict)  # table → reasons the bad rows must be rejected for


@dataclass
class _Case:
    case_id: str
    matter: str
    unit: str
    region: str
    accepted: datetime
    limit: int
    kind: str  # workday | calendar
    completed: datetime | None = None
    pauses: list[tuple[str, datetime, datetime | None, int | None]] = field(default_factory=list)  # kind, S, E, days
    steps: list[tuple[str, str, datetime, datetime | None]] = field(default_factory=list)  # name, unit, start, end
    claimed: datetime | None = None
    platform_due: str | None = None


def _moment(rng: random.Random, day: date) -> datetime:
    return datetime(day.year, day.month, day.day, rng.randint(8, 17), rng.choice((0, 15, 30, 45)), 0)


def _cases(rng: random.Random, count: int, prefix: str, units: list[tuple[str, str]],
           matters: dict[str, list[tuple[str, str | None]]], pause_kinds: list[str], extensions: bool,
           calendar_share: float) -> list[_Case]:
    """`matters`: code → its steps as (name, the step's own unit or None for the case's unit)."""
    span = (LAST_ACCEPTANCE - FIRST_ACCEPTANCE).days
    cases = []
    for index in range(count):
        unit, region = rng.choice(units)
        accepted = _moment(rng, FIRST_ACCEPTANCE + timedelta(days=rng.randint(0, span)))
        case = _Case(
            case_id=f"{prefix}{index:05d}",
            matter=rng.choice(sorted(matters)),
            unit=unit,
            region=region,
            accepted=accepted,
            limit=rng.choice((0, 3, 5, 10, 10, 15, 20, 20)),
            kind="calendar" if rng.random() < calendar_share else "workday",
        )
        cursor = accepted
        if rng.random() < 0.35:  # one or two pauses, one after the other
            for _ in range(rng.choice((1, 1, 2))):
                start = cursor + timedelta(days=rng.randint(1, 6), hours=1)
                end = start + timedelta(days=rng.randint(1, 12), hours=2)
                if end.date() > AS_OF or rng.random() < 0.08:
                    if start.date() <= AS_OF:
                        case.pauses.append((rng.choice(pause_kinds), start, None, None))
                    cursor = None  # type: ignore[assignment]
                    break
                case.pauses.append((rng.choice(pause_kinds), start, end, None))
                cursor = end
        if cursor is not None and extensions and rng.random() < 0.1:
            granted = cursor + timedelta(days=rng.randint(1, 3))
            if granted.date() <= AS_OF:
                case.pauses.append((EXTENSION_KIND, granted, granted, rng.choice((5, 10))))
                cursor = granted
        if cursor is not None and rng.random() < 0.55:
            completed = cursor + timedelta(days=rng.randint(1, 30), hours=1)
            if completed.date() <= AS_OF:
                case.completed = completed
        # The matter's steps (环节) one after the other over the case's life; an open case is at its first step.
        steps = matters[case.matter]
        if case.completed is None:
            steps = steps[:1]
        bounds = [accepted + (case.completed - accepted) * i / len(steps) for i in range(len(steps) + 1)] if (
            case.completed and steps) else [accepted, None]
        for n, (name, step_unit) in enumerate(steps):
            case.steps.append((name, step_unit or unit, bounds[n], bounds[n + 1]))
        if case.completed is not None and rng.random() < 0.6:
            case.claimed = case.completed + timedelta(days=rng.randint(1, 8))
            if case.claimed.date() > AS_OF:
                case.claimed = None
        cases.append(case)
    return cases


def _text(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None


def _day(moment: datetime | None) -> str | None:
    return moment.date().isoformat() if moment else None


def _canonical(cases: list[_Case], directory: Path, *, pushes: bool) -> dict[str, pl.DataFrame]:
    directory.mkdir(parents=True, exist_ok=True)
    tables = {
        "cases": pl.DataFrame(
            [
                {"case_id": c.case_id, "matter_code": c.matter, "unit_code": c.unit, "region_code": c.region,
                 "accepted_at": _day(c.accepted), "completed_at": _day(c.completed), "limit_days": str(c.limit),
                 "limit_kind": c.kind}
                for c in cases
            ]
        ),
        "steps": pl.DataFrame(
            [
                {"case_id": c.case_id, "step_no": str(n), "step_name": name, "unit_code": unit,
                 "started_at": _day(start), "ended_at": _day(end)}
                for c in cases
                for n, (name, unit, start, end) in enumerate(c.steps, start=1)
            ]
        ),
        "suspensions": pl.DataFrame(
            [
                {"case_id": c.case_id, "kind": kind, "started_at": _day(start), "ended_at": _day(end),
                 "limit_days": None if days is None else str(days)}
                for c in cases
                for kind, start, end, days in c.pauses
            ],
            schema={name: pl.String for name in ("case_id", "kind", "started_at", "ended_at", "limit_days")},
        ),
    }
    if pushes:
        tables["pushes"] = pl.DataFrame(
            [
                {"push_id": c.case_id, "case_id": c.case_id, "supervisor_unit_code": SUPERVISOR,
                 "pushed_at": _day(c.completed), "claimed_at": _day(c.claimed)}
                for c in cases
                if c.completed is not None and _pushed(c)
            ]
        )
    for name, frame in tables.items():
        frame.write_csv(directory / f"{name}.csv")
    return tables


def _pushed(case: _Case) -> bool:
    return case.matter in PUSHED_MATTERS


PUSHED_MATTERS = frozenset({"SXTQ-A001", "SXTQ-A002", "SXTQ-A006"})  # marked is_hz = 1 in audit_task_jn


def _seed_platform_due_dates(
    cases: list[_Case], tables: dict[str, pl.DataFrame], config_dir: Path, calendar: WorkCalendar
) -> dict[str, str]:
    """Every case's platform due date: ours for open cases except a few per cause, which are wrong on purpose."""
    config = load_config(config_dir)
    frames = {
        name: frame.with_columns(
            pl.col(column).str.to_date() for column in frame.columns if column.endswith("_at")
        ).with_columns(pl.col(column).cast(pl.Int32) for column in ("limit_days", "step_no") if column in frame.columns)
        for name, frame in tables.items()
    }
    known = build_clocks(frames, config.rules, clock_types={"case"}).known_at(AS_OF, calendar)  # extensions counted
    evaluated = evaluate_clocks(known.clocks, known.pauses, calendar, AS_OF)
    ours = {row["case_id"]: (row["due_date"], row["level"]) for row in evaluated.iter_rows(named=True)}
    seeded: dict[str, str] = {}
    wanted = dict.fromkeys((SENTINEL, PAUSE_ENDS_TWICE, MISSING_MAKEUP_DAY, MISSING_HOLIDAY), SEEDED_PER_CAUSE)
    for case in cases:
        due, level = ours.get(case.case_id, (None, None))
        if due is None or level not in ("normal", "warning", "overdue", "escalated"):
            # Completed or paused: the platform's date is not compared; one completed case is even wrong.
            case.platform_due = _text(case.accepted + timedelta(days=40))
            continue
        accepted = case.accepted.date()
        ended = [p for p in case.pauses if p[2] is not None and p[0] != EXTENSION_KIND]
        start_workdays = sum(calendar.is_workday(p[1].date()) for p in ended)
        window = calendar.days(accepted + timedelta(days=1), due)
        weekend = window["date"].dt.weekday() >= 6
        makeup = int((window["is_workday"] & weekend).sum())
        holidays = int((~window["is_workday"] & ~weekend).sum())
        plain = not case.pauses and case.kind == "workday"
        platform = due
        if wanted[SENTINEL]:
            cause: str | None = SENTINEL
        elif wanted[PAUSE_ENDS_TWICE] and start_workdays and len(ended) == len(case.pauses):
            cause, platform = PAUSE_ENDS_TWICE, calendar.add_workdays(due, start_workdays)
        elif wanted[MISSING_MAKEUP_DAY] and plain and makeup:
            cause, platform = MISSING_MAKEUP_DAY, calendar.add_workdays(due, 1)
        elif wanted[MISSING_HOLIDAY] and plain and holidays:
            cause, platform = MISSING_HOLIDAY, calendar.add_workdays(due, -1)
        else:
            cause = None
        if cause is None:
            case.platform_due = f"{due.isoformat()} 00:00:00"
            continue
        wanted[cause] -= 1
        seeded[case.case_id] = cause
        case.platform_due = PLATFORM_SENTINEL if cause == SENTINEL else f"{platform.isoformat()} 00:00:00"
    assert not any(wanted.values()), f"not enough cases to seed every cause: {wanted}"
    return seeded


def _setup(root: Path, url: str | None, seed: int, count: int, prefix: str, pause_kinds: list[str],
           extensions: bool, pushes: bool, calendar_share: float) -> tuple[list[_Case], PlatformFixture]:
    config_dir = alias_config(root / "config")
    config = load_config(config_dir)
    units = sorted(
        (code, unit.region) for code, unit in config.units.units.items()
        if unit.region and unit.region != "360700" and not unit.tags
    )
    versions = sorted(config.rules.matters, key=lambda matter: matter.effective_from)
    matters = {matter.code: [(step.name, step.unit) for step in matter.steps] for matter in versions}
    rng = random.Random(seed)
    cases = _cases(rng, count, prefix, units, matters, pause_kinds, extensions, calendar_share)
    fixture = PlatformFixture(url=url or f"sqlite:///{root / f'{prefix.lower()}.db'}", config_dir=config_dir,
                              canonical_dir=root / "canonical")
    tables = _canonical(cases, fixture.canonical_dir, pushes=pushes)
    calendar = load_work_calendar(config.calendar_files)
    fixture.seeded = _seed_platform_due_dates(cases, tables, config_dir, calendar)
    return cases, fixture


def _write(url: str, ddl: list[str], rows: dict[str, list[dict[str, Any]]]) -> None:
    """The platform's tables, created with plain DDL (unquoted names, as the platforms' own scripts) and filled."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in ddl:
                connection.execute(text(statement))
            for table, records in rows.items():
                if records:
                    columns = list(records[0])
                    values = ", ".join(f":{column}" for column in columns)
                    connection.execute(text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"), records)
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------------- 电子监察中间库

EA_JC_DDL = [
    "CREATE TABLE EA_JC_STEP_BASICINFO (ORGBUSNO VARCHAR(64) PRIMARY KEY, PROJID VARCHAR(64), ITEMNO VARCHAR(40), "
    "SUBITEMNO VARCHAR(40), ITEMNAME VARCHAR(200), ACCEPTDEPTID VARCHAR(40), ACCEPTDEPTNAME VARCHAR(200), "
    "REGION_ID VARCHAR(12), APPROVALTYPE INTEGER, PROMISETIMELIMIT INTEGER, PROMISETIMEUNIT INTEGER, "
    "TIMELIMIT INTEGER, TIMEUNIT VARCHAR(1), OCCURTIME TIMESTAMP, APPLICANT VARCHAR(100), "
    "APPLICANTMOBILE VARCHAR(20))",
    "CREATE TABLE EA_JC_STEP_PROC (ORGBUSNO VARCHAR(64), SN INTEGER, NODENAME VARCHAR(100), NODECODE VARCHAR(40), "
    "NODETYPE INTEGER, PROCUNIT VARCHAR(40), PROCUNITNAME VARCHAR(200), NODESTARTTIME TIMESTAMP, "
    "NODEENDTIME TIMESTAMP, TIMELIMIT INTEGER, PROMISETIMEUNIT INTEGER, NODERESULT INTEGER, promisedate TIMESTAMP)",
    "CREATE TABLE EA_JC_STEP_SPECIALNODE (ORGBUSNO VARCHAR(64), SN INTEGER, NODENAME VARCHAR(100), "
    "NODESTARTTIME TIMESTAMP, NODEENDTIME TIMESTAMP, NODERESULT INTEGER)",
    "CREATE TABLE EA_JC_STEP_DONE (ORGBUSNO VARCHAR(64), OCCURTIME TIMESTAMP, DONERESULT INTEGER)",
]
EA_JC_UNITS = {"workday": 1, "calendar": 2}
EA_JC_RESULT = {kind: code for code, kind in EA_JC_KINDS.items()}


def build_ea_jc(root: Path, url: str | None = None, count: int = 300, seed: int = 18) -> PlatformFixture:
    """The 中间库 fixture (in SQLite under `root`, or at `url`): `count` cases plus two whose limit is in hours and
    minutes (rejected on purpose)."""
    cases, fixture = _setup(root, url, seed, count, "EAJC", list(EA_JC_KINDS.values()), extensions=False, pushes=False,
                            calendar_share=0.15)
    unit_names = {code: unit.name for code, unit in load_config(fixture.config_dir).units.units.items()}
    basic, proc, special, done = [], [], [], []
    for case in cases:
        basic.append({
            "ORGBUSNO": case.case_id, "PROJID": f"P{case.case_id}", "ITEMNO": implementation_code(case.matter),
            "SUBITEMNO": None, "ITEMNAME": case.matter, "ACCEPTDEPTID": credit_code(case.unit),
            "ACCEPTDEPTNAME": unit_names[case.unit], "REGION_ID": f"{case.region}100000", "APPROVALTYPE": 2,
            "PROMISETIMELIMIT": case.limit, "PROMISETIMEUNIT": EA_JC_UNITS[case.kind], "TIMELIMIT": case.limit,
            "TIMEUNIT": "g" if case.kind == "workday" else "z", "OCCURTIME": _text(case.accepted),
            "APPLICANT": "张三丰", "APPLICANTMOBILE": "13800001234",
        })
        for n, (name, unit, start, end) in enumerate(case.steps, start=1):
            proc.append({
                "ORGBUSNO": case.case_id, "SN": n, "NODENAME": name, "NODECODE": f"N{n}",
                "NODETYPE": 1 if n == 1 else (3 if end else 2), "PROCUNIT": credit_code(unit),
                "PROCUNITNAME": unit_names[unit], "NODESTARTTIME": _text(start),
                # The spec: a step with no end yet carries its start time as its end time.
                "NODEENDTIME": _text(end or start), "TIMELIMIT": None, "PROMISETIMEUNIT": 1,
                "NODERESULT": 4 if n == 1 else 1, "promisedate": case.platform_due if n == 1 else None,
            })
        for n, (kind, start, end, _) in enumerate(case.pauses, start=1):
            special.append({"ORGBUSNO": case.case_id, "SN": n, "NODENAME": kind, "NODESTARTTIME": _text(start),
                            "NODEENDTIME": _text(end), "NODERESULT": EA_JC_RESULT[kind]})
        if case.completed:
            done.append({"ORGBUSNO": case.case_id, "OCCURTIME": _text(case.completed), "DONERESULT": 0})
    for index, unit_of_limit in enumerate((3, 4)):  # limits in hours and minutes: rejected, never guessed
        basic.append({**basic[0], "ORGBUSNO": f"EAJC-HOURS-{index}", "PROMISETIMELIMIT": 48,
                      "PROMISETIMEUNIT": unit_of_limit})
    fixture.bad_rows = {
        "cases": [
            "limit_kind: a limit in hours (小时) is not supported: only 工作日 or 自然日",
            "limit_kind: a limit in minutes (分钟) is not supported: only 工作日 or 自然日",
        ]
    }
    _write(fixture.url, EA_JC_DDL, {"EA_JC_STEP_BASICINFO": basic, "EA_JC_STEP_PROC": proc,
                                         "EA_JC_STEP_SPECIALNODE": special, "EA_JC_STEP_DONE": done})
    return fixture


# ------------------------------------------------------------------------------------------------------- Epoint

EPOINT_DDL = [
    "CREATE TABLE frame_ou (ouguid VARCHAR(50) PRIMARY KEY, oucode VARCHAR(50), ouname VARCHAR(200))",
    "CREATE TABLE audit_task (rowguid VARCHAR(50) PRIMARY KEY, task_id VARCHAR(50), item_id VARCHAR(50), "
    "taskname VARCHAR(200))",
    "CREATE TABLE audit_project (rowguid VARCHAR(50) PRIMARY KEY, flowsn VARCHAR(64), task_id VARCHAR(50), "
    "ouguid VARCHAR(50), ouname VARCHAR(200), areacode VARCHAR(12), acceptuserdate TIMESTAMP, banjiedate TIMESTAMP, "
    "promise_day INTEGER, promiseenddate TIMESTAMP, status INTEGER, is_pause INTEGER, banjieresult INTEGER, "
    "operatedate TIMESTAMP, pviguid VARCHAR(50), applyername VARCHAR(100), contactmobile VARCHAR(20))",
    "CREATE TABLE audit_project_unusual (rowguid VARCHAR(50) PRIMARY KEY, projectguid VARCHAR(50), "
    "operatetype INTEGER, operatedate TIMESTAMP, pausereason VARCHAR(50), note VARCHAR(200), delayworkday INTEGER)",
    "CREATE TABLE workflow_workitem (workitemguid VARCHAR(50) PRIMARY KEY, pviguid VARCHAR(50), "
    "activityname VARCHAR(100), ouguid VARCHAR(50), createdate TIMESTAMP, enddate TIMESTAMP)",
    "CREATE TABLE audit_task_jn (rowguid VARCHAR(50) PRIMARY KEY, task_id VARCHAR(50), is_hz INTEGER, "
    "jg_ouguid VARCHAR(50), jg_ouname VARCHAR(200))",
    "CREATE TABLE audit_task_jn_renling (rowguid VARCHAR(50) PRIMARY KEY, projectguid VARCHAR(50), "
    "renlingdate TIMESTAMP)",
]


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ":".join(parts)))


def build_epoint(root: Path, url: str | None = None, count: int = 300, seed: int = 19) -> PlatformFixture:
    """The Epoint fixture (in SQLite under `root`, or at `url`): `count` cases, their pause events and extensions,
    steps and 审管互动 pushes, plus a case of an unknown unit and a stray 恢复 event (rejected on purpose)."""
    # promise_day has no unit: every Epoint limit is in working days.
    cases, fixture = _setup(root, url, seed, count, "EP", [EPOINT_PAUSE_KIND], extensions=True, pushes=True,
                            calendar_share=0.0)
    config = load_config(fixture.config_dir)
    units = config.units.units
    # frame_ou.oucode is the permitwatch code for some units and a 统一社会信用代码 (an alias) for others.
    ous = [
        {"ouguid": unit_guid(code), "oucode": code if index % 2 else credit_code(code), "ouname": unit.name}
        for index, (code, unit) in enumerate(sorted(units.items()))
    ]
    ous.append({"ouguid": unit_guid("NOWHERE"), "oucode": "NO-SUCH-UNIT", "ouname": "未配置的单位"})
    matters = sorted({matter.code for matter in config.rules.matters})
    tasks = [{"rowguid": _guid("task-version", code), "task_id": _guid("task", code),
              "item_id": implementation_code(code), "taskname": code} for code in matters]
    task_of = {task["taskname"]: task for task in tasks}
    jn = [{"rowguid": _guid("jn", code), "task_id": task_of[code]["task_id"], "is_hz": 1,
           "jg_ouguid": unit_guid(SUPERVISOR), "jg_ouname": units[SUPERVISOR].name}
          for code in sorted(PUSHED_MATTERS)]
    projects, unusual, items, claims = [], [], [], []
    for case in cases:
        guid = _guid("project", case.case_id)
        projects.append({
            "rowguid": guid, "flowsn": case.case_id, "task_id": task_of[case.matter]["rowguid"],
            "ouguid": unit_guid(case.unit), "ouname": units[case.unit].name, "areacode": f"{case.region}001000",
            "acceptuserdate": _text(case.accepted), "banjiedate": _text(case.completed), "promise_day": case.limit,
            "promiseenddate": case.platform_due, "status": 90 if case.completed else 30,
            "is_pause": int(any(end is None for _, _, end, _ in case.pauses)),
            "banjieresult": 40 if case.completed else None, "operatedate": _text(case.completed or case.accepted),
            "pviguid": _guid("pvi", case.case_id), "applyername": "李四", "contactmobile": "13900005678",
        })
        for n, (kind, start, end, days) in enumerate(case.pauses):
            if kind == EXTENSION_KIND:
                unusual.append({"rowguid": _guid("u", case.case_id, str(n), "20"), "projectguid": guid,
                                "operatetype": 20, "operatedate": _text(start), "pausereason": None,
                                "note": "延长审批", "delayworkday": days})
                continue
            unusual.append({"rowguid": _guid("u", case.case_id, str(n), "10"), "projectguid": guid,
                            "operatetype": 10, "operatedate": _text(start), "pausereason": "01", "note": None,
                            "delayworkday": None})
            if end is not None:
                unusual.append({"rowguid": _guid("u", case.case_id, str(n), "11"), "projectguid": guid,
                                "operatetype": 11, "operatedate": _text(end), "pausereason": None, "note": None,
                                "delayworkday": None})
        for n, (name, unit, start, end) in enumerate(case.steps):
            items.append({"workitemguid": _guid("w", case.case_id, str(n)), "pviguid": _guid("pvi", case.case_id),
                          "activityname": name, "ouguid": unit_guid(unit), "createdate": _text(start),
                          "enddate": _text(end)})
        if case.claimed is not None and _pushed(case):
            claims.append({"rowguid": _guid("r", case.case_id), "projectguid": guid,
                           "renlingdate": _text(case.claimed)})
    # Bad on purpose: a case handled by a unit units.yaml does not know, and a 恢复 with no 暂停计时 before it.
    stray = {**projects[0], "rowguid": _guid("project", "EP-UNKNOWN"), "flowsn": "EP-UNKNOWN",
             "ouguid": unit_guid("NOWHERE"), "status": 30, "banjiedate": None, "banjieresult": None,
             "pviguid": _guid("pvi", "EP-UNKNOWN")}
    projects.append(stray)
    unusual.append({"rowguid": _guid("u", "stray"), "projectguid": projects[1]["rowguid"], "operatetype": 11,
                    "operatedate": projects[1]["acceptuserdate"], "pausereason": None, "note": None,
                    "delayworkday": None})
    fixture.bad_rows = {
        "cases": ["unit_code: unknown unit 'NO-SUCH-UNIT' (no code or alias in units.yaml)"],
        "suspensions": ["an end without a start (no pause of this case is open)"],
    }
    _write(fixture.url, EPOINT_DDL, {
        "frame_ou": ous, "audit_task": tasks, "audit_project": projects, "audit_project_unusual": unusual,
        "workflow_workitem": items, "audit_task_jn": jn, "audit_task_jn_renling": claims,
    })
    return fixture
