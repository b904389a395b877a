"""Deterministic sample data shaped like Ganzhou's exports.

It has the 20 county-level units, city bureaus, the 市县同权 matters in their three modes, construction projects
(45 / 18 / 75 working days …), 特别程序 suspensions, 容缺后补 deferrals and 审管互动 pushes. Any size: all is drawn
as numpy arrays and polars expressions, with no loop per case.

A small, configurable fraction of rows is made wrong the way real exports are wrong (a completion before acceptance,
a five-digit region code, a blank id, a re-exported duplicate, an unknown matter, a 2023/1/20 9:05 style date), so a
demo run shows the quarantine at work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from config.rules import Matter, RuleBook
from config.units import UnitDirectory
from tasks.clocks.calendar import WorkCalendar

CITY_REGION = "360700"
DEFAULT_FIRST_DATE = date(2025, 1, 2)
# Matters that belong to construction projects (规划、环评、核准、施工许可、审图、联合验收).
PROJECT_MATTERS = ("SXTQ-B002", "SXTQ-B003", "SXTQ-B004", "SXTQ-B006", "SJ-D001", "SJ-D002", "SJ-D003")
PROJECT_CATEGORY_WEIGHTS = {
    "enterprise_investment": 0.45,
    "simple_low_risk": 0.25,
    "government_investment": 0.15,
    "rongjiang_engineering": 0.15,
}
RONGJIANG_REGION = "360792"  # 赣州蓉江新区
SUSPENSION_WEIGHTS = {
    "补正": 0.25, "专家评审": 0.2, "现场勘查": 0.2, "公示": 0.15, "检验检测": 0.1, "听证": 0.05, "招标拍卖": 0.05,
}
PROJECT_KINDS = ["厂房建设项目", "住宅小区项目", "道路改造工程", "物流仓储项目", "学校建设工程", "电子信息产业园"]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余于杜叶程钟汪赖")
GIVEN_CHARS = list("伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华玉兰建国志红文斌辉鹏飞婷雪梅琳晨宇浩然欣怡子轩")
SUPERVISED_BY = "360700SCJ"  # 审管互动: default supervising department when a matter names no city unit


@dataclass(frozen=True)
class SampleSpec:
    cases: int = 4000
    seed: int = 7
    first_date: date = DEFAULT_FIRST_DATE
    last_date: date = date(2026, 11, 24)
    dirty_fraction: float = 0.01


def generate_sample(
    spec: SampleSpec, rules: RuleBook, units: UnitDirectory, calendar: WorkCalendar
) -> dict[str, pl.DataFrame]:
    """The six canonical tables, as text columns exactly as an export would carry them."""
    rng = np.random.default_rng(spec.seed)
    days = _WorkdayAxis(calendar, spec.first_date, spec.last_date)
    matters = _latest_matters(rules)
    counties = sorted(
        code for code, unit in units.units.items()
        if unit.region and unit.region != CITY_REGION and "supervisor" not in unit.tags and not unit.tags
    )
    if not counties:
        raise ValueError(f"{units.path}: no county-level handling units to draw sample cases from")
    county_region = {code: units[code].region for code in counties}

    n_projects = max(1, spec.cases // 25)
    cases_per_project = rng.integers(3, 6, n_projects)
    project_case_count = min(int(cases_per_project.sum()), spec.cases // 2)
    cases_per_project = _trim_to_total(cases_per_project, project_case_count)
    regular_count = spec.cases - project_case_count

    place_names = {code: units[code].name.removesuffix("行政审批局") for code in counties}
    projects = _projects(rng, n_projects, counties, county_region, place_names, days, rules)
    if projects.height < n_projects:
        # Random project codes collide now and then in a large sample (7 of 160,000 at 4 M cases); the cases meant
        # for the dropped projects become regular cases. No draw is added, so smaller samples stay as they were.
        n_projects = projects.height
        cases_per_project = cases_per_project[:n_projects]
        project_case_count = int(cases_per_project.sum())
        regular_count = spec.cases - project_case_count
    project_of_case = np.repeat(np.arange(n_projects), cases_per_project)

    general_matters = np.arange(len(matters))
    project_matters = np.array([i for i, m in enumerate(matters) if m.code in PROJECT_MATTERS] or general_matters)

    county_weights = rng.dirichlet(np.full(len(counties), 3.0))
    regular_county = rng.choice(len(counties), regular_count, p=county_weights)
    regular_matter = rng.choice(general_matters, regular_count)
    regular_accept = days.random_workdays(rng, regular_count)

    project_county = np.array([counties.index(c) for c in projects["lead_unit_code"].to_list()])[project_of_case]
    project_matter = rng.choice(project_matters, project_case_count)
    project_start = days.position_of(projects["__start"].to_numpy())[project_of_case]
    project_accept = np.minimum(project_start + rng.integers(0, 25, project_case_count), days.last_position)

    county_idx = np.concatenate([regular_county, project_county])
    matter = np.concatenate([regular_matter, project_matter])
    accept_pos = np.concatenate([regular_accept, project_accept])
    project_code = pl.concat(
        [pl.Series([None] * regular_count, dtype=pl.String), projects["project_code"][project_of_case]]
    )
    return _assemble(rng, spec, days, matters, counties, county_region, county_idx, matter, accept_pos, project_code,
                     projects, rules)


def write_sample(tables: dict[str, pl.DataFrame], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in tables.items():
        path = out_dir / f"{name}.csv"
        frame.write_csv(path)
        written[name] = path
    return written


# -- the working-day axis ---------------------------------------------------------------------------------------


class _WorkdayAxis:
    """Working days between two dates as positions 0..n-1, so that "k working days later" is an array addition."""

    def __init__(self, calendar: WorkCalendar, first: date, last: date) -> None:
        table = calendar.days(first, last + timedelta(days=400))
        self.dates = table.filter(pl.col("is_workday"))["date"].to_numpy()
        self.last_position = int(np.searchsorted(self.dates, np.datetime64(last), side="right")) - 1
        self.last_date = np.datetime64(last)

    def random_workdays(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.integers(0, self.last_position + 1, count)

    def position_of(self, dates: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.dates, dates.astype("datetime64[D]"))

    def clip(self, positions: np.ndarray) -> np.ndarray:
        return np.clip(positions, 0, len(self.dates) - 1)

    def date_at(self, positions: np.ndarray) -> np.ndarray:
        return self.dates[self.clip(positions)]


# -- the tables -------------------------------------------------------------------------------------------------


def _latest_matters(rules: RuleBook) -> list[Matter]:
    latest: dict[str, Matter] = {}
    for matter in sorted(rules.matters, key=lambda m: m.effective_from):
        latest[matter.code] = matter
    return list(latest.values())


def _trim_to_total(counts: np.ndarray, total: int) -> np.ndarray:
    cumulative = np.minimum(np.cumsum(counts), total)
    return np.diff(cumulative, prepend=0)


def _projects(
    rng: np.random.Generator,
    count: int,
    counties: list[str],
    county_region: dict[str, str],
    place_names: dict[str, str],
    days: _WorkdayAxis,
    rules: RuleBook,
) -> pl.DataFrame:
    known = {c.code for c in rules.project_categories}
    categories = [c for c in PROJECT_CATEGORY_WEIGHTS if c in known] or sorted(known)
    weights = np.array([PROJECT_CATEGORY_WEIGHTS.get(c, 1.0) for c in categories])
    category = rng.choice(categories, count, p=weights / weights.sum())
    rongjiang_unit = next((c for c in counties if county_region[c] == RONGJIANG_REGION), counties[0])
    lead = np.where(category == "rongjiang_engineering", rongjiang_unit, rng.choice(counties, count))
    region = np.array([county_region[c] for c in lead])
    start = days.date_at(days.random_workdays(rng, count))
    yymm = pl.Series(start).dt.strftime("%y%m").to_numpy()
    industry = rng.choice(["04", "47", "48", "70"], count)
    serial = rng.integers(0, 1_000_000, count)
    code = [f"{p}-{r}-{i}-01-{s:06d}" for p, r, i, s in zip(yymm, region, industry, serial, strict=True)]
    kind = rng.choice(PROJECT_KINDS, count)
    name = [f"{place_names[unit]}{kind_name}" for unit, kind_name in zip(lead, kind, strict=True)]
    return pl.DataFrame(
        {
            "project_code": code,
            "project_name": name,
            "category": category,
            "region_code": region,
            "lead_unit_code": lead,
            "__start": start,
        }
    ).unique("project_code", keep="first", maintain_order=True)


def _assemble(
    rng: np.random.Generator,
    spec: SampleSpec,
    days: _WorkdayAxis,
    matters: list[Matter],
    counties: list[str],
    county_region: dict[str, str],
    county_idx: np.ndarray,
    matter: np.ndarray,
    accept_pos: np.ndarray,
    project_code: pl.Series,
    projects: pl.DataFrame,
    rules: RuleBook,
) -> dict[str, pl.DataFrame]:
    n = len(matter)
    catalog = _matter_catalog(matters)[matter]
    limit = catalog["limit"].to_numpy()
    county_unit = pl.Series("county_unit", counties)[county_idx]
    county_region_code = pl.Series([county_region[c] for c in counties])[county_idx]
    city_handles = catalog["mode"].is_in(["county_forward_city_handle", "city"])

    # How long each case takes: most within the limit, about one in eight late, a few stuck open.
    late = rng.random(n) < 0.12
    used = np.where(late, limit + rng.integers(1, 13, n), np.floor(rng.random(n) * (limit + 1)).astype(int))

    suspended = (rng.random(n) < 0.12) & (limit >= 3)
    kind_weights = np.array(list(SUSPENSION_WEIGHTS.values()))
    kind = pl.Series(list(SUSPENSION_WEIGHTS))[rng.choice(len(kind_weights), n, p=kind_weights / kind_weights.sum())]
    restart = kind.is_in([k.kind for k in rules.suspension_kinds if k.effect == "restart"]).to_numpy()
    pause_start_pos = accept_pos + 1 + np.floor(rng.random(n) * np.maximum(limit // 2, 1)).astype(int)
    pause_start = days.date_at(pause_start_pos)
    pause_end = pause_start + rng.integers(3, 21, n).astype("timedelta64[D]")
    resume_pos = days.position_of(pause_end)

    complete_pos = np.where(
        suspended & (pause_start_pos <= accept_pos + used),
        np.where(restart, resume_pos + used, accept_pos + used + (resume_pos - pause_start_pos)),
        accept_pos + used,
    )
    # A few recent cases sit untouched: the overdue and 督办 cases of the last weeks.
    stuck = (rng.random(n) < 0.03) & (accept_pos > days.last_position - 60)
    completed = (complete_pos <= days.last_position) & ~stuck
    completed_date = days.date_at(complete_pos)
    pause_open = suspended & (pause_end > days.last_date) & ~completed
    accepted_date = days.date_at(accept_pos)
    promised = rng.random(n) < 0.15
    promised_limit = np.maximum(np.round(limit * rng.uniform(0.5, 1.0, n)), 0).astype(np.int32)
    updated = np.where(completed, completed_date, np.minimum(days.date_at(accept_pos + 3), days.last_date))

    case_ids = _concat(
        pl.lit("GZ"),
        pl.Series(accepted_date).dt.year().cast(pl.String),
        pl.Series(rng.permutation(n)).cast(pl.String).str.zfill(7),
    ).alias("case_id")
    cases = pl.DataFrame(
        {
            "case_id": case_ids,
            "matter_code": catalog["code"],
            "matter_name": catalog["name"],
            "unit_code": _choose(city_handles, catalog["city_unit"], county_unit),
            "region_code": _choose(catalog["mode"] == "city", pl.Series([CITY_REGION]), county_region_code),
            "project_code": project_code,
            "accepted_at": _with_office_time(rng, accepted_date),
            "completed_at": _where(completed, _with_office_time(rng, completed_date)),
            "limit_days": _where(promised, promised_limit),
            "limit_kind": _where(promised, pl.Series(["工作日"] * n)),
            "status": _choose(pl.Series(completed), pl.Series(["已办结"]), _choose(pl.Series(pause_open),
                              pl.Series(["挂起"]), pl.Series(["在办"]))),
            "updated_at": _with_office_time(rng, updated),
            "applicant_name": _names(rng, n),
            "applicant_phone": _phones(rng, n),
        }
    )

    steps = _steps(
        rng, case_ids, catalog, county_unit, accepted_date, completed_date, completed, used, days, accept_pos
    )
    suspensions = pl.DataFrame(
        {
            "case_id": case_ids,
            "kind": kind,
            "started_at": pl.Series(pause_start),
            "ended_at": _where(~pause_open, pause_end),
            "limit_days": pl.Series([None] * n, dtype=pl.Int32),
            "reason": _choose(pl.Series(restart), pl.Series(["申请材料需补正"]), pl.Series(["依法启动特别程序"])),
        }
    ).filter(pl.Series(suspended & (pause_start <= np.where(completed, completed_date, days.last_date))))

    supply_pos = accept_pos + rng.integers(1, 15, n)
    supplied = (supply_pos <= days.last_position) & (rng.random(n) < 0.93)
    deferrals = pl.DataFrame(
        {
            "case_id": case_ids,
            "due_days": _where(rng.random(n) < 0.5, np.full(n, 10, dtype=np.int32)),
            "due_date": pl.Series([None] * n, dtype=pl.Date),
            "supplied_at": _where(supplied, days.date_at(supply_pos)),
        }
    ).filter(pl.Series(rng.random(n) < 0.08))

    claim_pos = complete_pos + rng.geometric(0.45, n) - 1
    claimed = (claim_pos <= days.last_position) & ((rng.random(n) < 0.94) | (complete_pos < days.last_position - 40))
    pushes = pl.DataFrame(
        {
            "push_id": _concat(pl.lit("TS"), case_ids.str.slice(2)),
            "case_id": case_ids,
            "supervisor_unit_code": catalog["city_unit"].replace("360700SPJ", SUPERVISED_BY),
            "pushed_at": pl.Series(completed_date),
            "claimed_at": _where(claimed, days.date_at(claim_pos)),
        }
    ).filter(pl.Series(completed & (rng.random(n) < 0.9)))

    cases = _make_dirty(rng, _as_export_text(cases), spec.dirty_fraction)
    return {
        "cases": cases,
        "steps": steps,
        "suspensions": suspensions,
        "projects": projects.drop("__start"),
        "deferrals": deferrals,
        "pushes": pushes,
    }


def _matter_catalog(matters: list[Matter]) -> pl.DataFrame:
    """One row per matter; indexing it by an array of matter positions gives the per-case attributes."""
    return pl.DataFrame(
        {
            "code": [m.code for m in matters],
            "name": [m.name for m in matters],
            "limit": [m.limit for m in matters],
            "mode": [m.mode for m in matters],
            "city_unit": [_city_unit(m) for m in matters],
            "two_step": [len(m.steps) >= 2 for m in matters],
            "first_step_name": [m.steps[0].name if m.steps else "办理" for m in matters],
            "last_step_name": [m.steps[-1].name if m.steps else "办理" for m in matters],
        }
    )


def _city_unit(matter: Matter) -> str:
    return next((step.unit for step in matter.steps if step.level == "city" and step.unit), "360700SPJ")


def _steps(
    rng: np.random.Generator,
    case_ids: pl.Series,
    catalog: pl.DataFrame,
    county_unit: pl.Series,
    accepted_date: np.ndarray,
    completed_date: np.ndarray,
    completed: np.ndarray,
    used: np.ndarray,
    days: _WorkdayAxis,
    accept_pos: np.ndarray,
) -> pl.DataFrame:
    """One row per 环节: the county part and, for the two city modes, the city part that follows it."""
    n = len(case_ids)
    two_step = catalog["two_step"].to_numpy()
    city_only = (catalog["mode"] == "city") | (catalog["mode"] == "county_forward_city_handle") & ~catalog["two_step"]
    handover_pos = accept_pos + np.floor(used * rng.uniform(0.3, 0.7, n)).astype(int)
    handed_over = two_step & (handover_pos <= days.last_position)
    handover = days.date_at(handover_pos)
    case_end = _where(completed, completed_date)
    no_limit = pl.Series([None] * n, dtype=pl.Int32)
    first = pl.DataFrame(
        {
            "case_id": case_ids,
            "step_no": pl.Series([1] * n, dtype=pl.Int32),
            "step_name": catalog["first_step_name"],
            "unit_code": _choose(city_only, catalog["city_unit"], county_unit),
            "started_at": pl.Series(accepted_date),
            "ended_at": _choose(pl.Series(two_step), _where(handed_over, handover), case_end),
            "limit_days": no_limit,
        }
    )
    second = pl.DataFrame(
        {
            "case_id": case_ids,
            "step_no": pl.Series([2] * n, dtype=pl.Int32),
            "step_name": catalog["last_step_name"],
            "unit_code": catalog["city_unit"],
            "started_at": pl.Series(handover),
            "ended_at": case_end,
            "limit_days": no_limit,
        }
    ).filter(pl.Series(handed_over))
    return pl.concat([first, second]).sort("case_id", "step_no")


def _where(mask: np.ndarray, values: np.ndarray | pl.Series) -> pl.Series:
    """`values` where `mask` holds, null elsewhere."""
    return pl.select(pl.when(pl.Series(mask)).then(pl.Series(values))).to_series()


def _choose(mask: pl.Series, if_true: pl.Series, if_false: pl.Series) -> pl.Series:
    return pl.select(pl.when(mask).then(if_true).otherwise(if_false)).to_series()


def _with_office_time(rng: np.random.Generator, dates: np.ndarray) -> pl.Series:
    minutes = rng.integers(8 * 60 + 30, 17 * 60 + 30, len(dates))
    return pl.Series(dates.astype("datetime64[us]") + (minutes * 60_000_000).astype("timedelta64[us]"))


def _as_export_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S"),
        pl.col(pl.Date).dt.strftime("%Y-%m-%d"),
        pl.col(pl.Int32, pl.Int64).cast(pl.String),
    )


def _concat(*parts: pl.Series | pl.Expr) -> pl.Series:
    return pl.select(pl.concat_str(*parts)).to_series()


def _names(rng: np.random.Generator, n: int) -> pl.Series:
    surname = pl.Series(rng.choice(SURNAMES, n))
    first = pl.Series(rng.choice(GIVEN_CHARS, n))
    second = pl.Series(np.where(rng.random(n) < 0.6, rng.choice(GIVEN_CHARS, n), ""))
    return _concat(surname, first, second)


def _phones(rng: np.random.Generator, n: int) -> pl.Series:
    prefix = pl.Series(rng.choice(["135", "138", "139", "150", "158", "177", "186", "189", "199"], n))
    rest = pl.Series(rng.integers(0, 100_000_000, n)).cast(pl.String).str.zfill(8)
    return _concat(prefix, rest)


def _make_dirty(rng: np.random.Generator, cases: pl.DataFrame, fraction: float) -> pl.DataFrame:
    """Spoil a few rows the way real exports are spoiled; the quarantine must catch each of them."""
    count = round(cases.height * fraction)
    if count == 0:
        return cases
    rows = rng.choice(cases.height, count, replace=False)
    flaw = rng.integers(0, 5, count)
    spoiled = cases[rows].with_columns(flaw=pl.Series(flaw))
    spoiled = spoiled.with_columns(
        completed_at=pl.when(pl.col("flaw") == 0).then(pl.lit("2024-01-02 09:00:00")).otherwise("completed_at"),
        region_code=pl.when(pl.col("flaw") == 1).then(pl.col("region_code").str.slice(0, 5)).otherwise("region_code"),
        case_id=pl.when(pl.col("flaw") == 2).then(pl.lit("")).otherwise("case_id"),
        matter_code=pl.when(pl.col("flaw") == 3).then(pl.lit("XX-9999")).otherwise("matter_code"),
        limit_days=pl.when(pl.col("flaw") == 3).then(None).otherwise("limit_days"),
        accepted_at=pl.when(pl.col("flaw") == 4)
        .then(pl.col("accepted_at").str.to_datetime("%Y-%m-%d %H:%M:%S").dt.strftime("%Y/%-m/%-d %-H:%M"))
        .otherwise("accepted_at"),
    ).drop("flaw")
    duplicates = cases[rng.choice(cases.height, max(1, count // 4), replace=False)].with_columns(
        updated_at=pl.lit("2025-01-01 08:00:00"), status=pl.lit("在办")
    )
    spoiled_mask = np.zeros(cases.height, dtype=bool)
    spoiled_mask[rows] = True
    kept = cases.filter(pl.Series(~spoiled_mask))
    return pl.concat([kept, spoiled, duplicates]).sort("accepted_at")
