"""Incremental nightly evaluation equals the full one: the same evaluations, cards and run figures, night after night,
on random histories with edits to settled cases, new rows, completions, future-dated rows and a rule change."""

from __future__ import annotations

import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from orchestration_fixtures import AS_OF, make_pipeline, sample_tables
from sqlalchemy import Engine, create_engine, text

from config.bundle import PermitwatchConfig, load_config
from config.canonical import TABLES
from config.settings import BUNDLED_CONFIG_DIR
from config.sources import Source
from flows.nightly import nightly
from schemas.contracts import key_columns
from schemas.database import ensure_schema
from tasks.alerts.card_store import issue_cards
from tasks.artifacts import level_table, overdue_by_unit
from tasks.clocks.builders import build_clocks
from tasks.clocks.calendar import WorkCalendar, load_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tasks.ingest.load import load_source, load_sources
from tasks.ingest.sample import SampleSpec, generate_sample, write_sample
from tasks.store.evaluations import due_date_changes, previous_due_dates, read_evaluations, store_evaluations
from tasks.store.runs import open_run
from tasks.store.settled import plan_evaluation, read_settled_counts, record_settlement, settle_groups, settled_totals
from tasks.store.upsert import read_open_tables, read_tables, store_table, stored_watermark
from tests.conftest import POSTGRES_URL

FIRST_NIGHT = date(2026, 10, 15)
# Nights after the first: ordinary days, a weekend, a jump past the month after which completed clocks settle.
STEPS = (1, 1, 3, 40, 1, 2)
RULE_CHANGE_NIGHT = 5  # from this night on, escalation after 4 overdue working days instead of 5


# ------------------------------------------------------------------------------------------------ databases


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """An incremental and a full database, empty."""
    if request.param == "sqlite":
        engines = (
            ensure_schema(f"sqlite:///{tmp_path / 'incremental.db'}"),
            ensure_schema(f"sqlite:///{tmp_path / 'full.db'}"),
        )
        yield engines
        for engine in engines:
            engine.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("PERMITWATCH_TEST_DATABASE_URL is not set (no PostgreSQL on this machine); .ci/run sets it")
    admin = create_engine(POSTGRES_URL)
    schemas = [f"pw_test_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with admin.begin() as connection:
        for schema in schemas:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    engines = tuple(
        ensure_schema(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}") for schema in schemas
    )
    yield engines  # type: ignore[misc]
    for engine in engines:
        engine.dispose()
    with admin.begin() as connection:
        for schema in schemas:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


# ------------------------------------------------------------------------------------------------ one night


@dataclass(frozen=True)
class Setup:
    config: PermitwatchConfig
    calendar: WorkCalendar


def night(engine: Engine, setup: Setup, tables: dict[str, pl.DataFrame], as_of: date, *, full: bool) -> dict[str, Any]:
    """The nightly stages after ingest, as flows/nightly.py runs them: store, read back, build, evaluate, settle,
    store the evaluations, issue cards. Returns what the run summary is made of."""
    run_id = open_run(engine, "nightly", as_of)
    for table in TABLES:
        store_table(engine, table, tables[table], run_id)
    plan = plan_evaluation(engine, setup.config, setup.calendar, as_of, full=full)
    read_back = read_tables(engine) if plan.full else read_open_tables(engine)
    clock_set = build_clocks(read_back, setup.config.rules)
    evaluations = evaluate_clocks(clock_set.clocks, clock_set.pauses, setup.calendar, as_of)
    earlier = None if plan.full else read_settled_counts(engine)
    settlement = settle_groups(read_back, evaluations, clock_set.rejects, as_of, earlier)
    settled_moved = record_settlement(engine, settlement, plan, as_of, run_id)
    moved = due_date_changes(settlement.evaluations, previous_due_dates(engine, as_of))
    store_evaluations(engine, settlement.evaluations, as_of, run_id)
    cards = issue_cards(engine, settlement.evaluations, setup.config.units, as_of=as_of, run_id=run_id,
                        deliverable=True)
    totals = settled_totals(settlement.evaluations, settlement.earlier)
    return {
        "plan": plan,
        "settled_moved": settled_moved,
        "evaluated": settlement.evaluations.height,
        "figures": {
            "clocks": int(totals["clocks"].sum()),
            "level_table": level_table(totals).to_dicts(),
            "provisional": int(totals.filter(pl.col("calendar") == "provisional")["clocks"].sum()),
            "top_overdue_units": overdue_by_unit(settlement.evaluations).to_dicts(),
            "due_date_changed": moved.height,
            "clock_rejects": clock_set.rejects.sort(pl.all()).to_dicts(),
            "cards": cards.counts,
        },
    }


def stored_state(engine: Engine, as_of: date) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The evaluations stored for `as_of`, every card, and the settled groups with the digests of their final
    evaluations, without run ids and surrogate keys."""
    evaluations = read_evaluations(engine, as_of).drop("run_id").sort("clock_id")
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT clock_id, level, due_date, reminder_no, unit_code, overdue_workdays, remaining, calendar, "
                "as_of, status, suppressed_by FROM cards ORDER BY clock_id, level, due_date, reminder_no"
            )
        ).all()
    cards = pl.DataFrame([tuple(row) for row in rows], orient="row", infer_schema_length=None,
                         schema=["clock_id", "level", "due_date", "reminder_no", "unit_code", "overdue_workdays",
                                 "remaining", "calendar", "as_of", "status", "suppressed_by"])
    with engine.connect() as connection:
        groups = connection.execute(text("SELECT kind, group_id, digest FROM settled_groups ORDER BY kind, group_id"))
        settled = pl.DataFrame([tuple(row) for row in groups], schema=["kind", "group_id", "digest"], orient="row")
    return evaluations, cards, settled


# ------------------------------------------------------------------------------------------------ histories


def first_history(tmp_path: Path, setup: Setup, seed: int) -> dict[str, pl.DataFrame]:
    """A sample history up to the first night, read through the real ingest (1% of case rows spoiled there)."""
    spec = SampleSpec(cases=260, seed=seed, last_date=FIRST_NIGHT + timedelta(days=1), dirty_fraction=0.01)
    inbox = tmp_path / f"inbox-{seed}"
    write_sample(generate_sample(spec, setup.config.rules, setup.config.units, setup.calendar), inbox)
    results = load_sources(setup.config.sources.sources, inbox_dir=inbox)
    return {result.table: result.accepted for result in results}


def next_history(
    tables: dict[str, pl.DataFrame], rng: np.random.Generator, night_no: int, as_of: date
) -> dict[str, pl.DataFrame]:
    """The next night's full export: open cases completed, new cases (some dated after the as-of date), and edits
    to long-settled rows of every table."""
    cases, steps, suspensions = tables["cases"], tables["steps"], tables["suspensions"]
    projects, deferrals, pushes = tables["projects"], tables["deferrals"], tables["pushes"]
    day = pl.duration(days=1)

    # Completions: a third of the open cases, with their open pauses and steps ended first.
    open_ids = cases.filter(pl.col("completed_at").is_null())["case_id"]
    done = pl.Series(rng.choice(open_ids.to_numpy(), len(open_ids) // 3, replace=False), dtype=pl.String)
    suspensions = suspensions.with_columns(
        ended_at=pl.when(pl.col("case_id").is_in(done.implode()) & pl.col("ended_at").is_null())
        .then(pl.min_horizontal(pl.col("started_at") + 2 * day, pl.lit(as_of)))
        .otherwise("ended_at")
    )
    latest = pl.concat([
        suspensions.select("case_id", pl.col("ended_at").alias("day")),
        steps.select("case_id", pl.col("started_at").alias("day")),
        cases.select("case_id", pl.col("accepted_at").alias("day")),
    ]).group_by("case_id").agg(pl.col("day").max().alias("latest"))
    cases = cases.join(latest, on="case_id", how="left").with_columns(
        completed_at=pl.when(pl.col("case_id").is_in(done.implode()))
        .then(pl.max_horizontal("latest", pl.lit(as_of - timedelta(days=1))))
        .otherwise("completed_at")
    ).drop("latest")
    completion = cases.select("case_id", pl.col("completed_at").alias("case_done"))
    steps = steps.join(completion, on="case_id", how="left").with_columns(
        ended_at=pl.when(pl.col("ended_at").is_null() & pl.col("case_id").is_in(done.implode()))
        .then(pl.max_horizontal("started_at", "case_done"))
        .otherwise("ended_at")
    ).drop("case_done")
    deferrals = deferrals.with_columns(
        supplied_at=pl.when(pl.col("case_id").is_in(done.implode()) & pl.col("supplied_at").is_null())
        .then(pl.lit(as_of - timedelta(days=1)))
        .otherwise("supplied_at")
    )

    # New cases copied from old ones: accepted on the as-of date, the day before, or the day after (not known yet).
    templates = cases.sample(8, seed=int(rng.integers(1 << 30)))
    offsets = pl.Series(rng.integers(-1, 2, templates.height), dtype=pl.Int64)
    new_cases = templates.with_columns(
        case_id=pl.format("N{}-{}", pl.lit(night_no), pl.int_range(pl.len())),
        accepted_at=pl.lit(as_of) + pl.duration(days=offsets),
        completed_at=pl.lit(None, pl.Date),
    )
    new_steps = new_cases.head(4).select(
        "case_id", pl.lit(1, pl.Int32).alias("step_no"), pl.lit("受理").alias("step_name"), "unit_code",
        pl.col("accepted_at").alias("started_at"), pl.lit(None, pl.Date).alias("ended_at"),
        pl.lit(None, pl.Int32).alias("limit_days"),
    )
    new_pauses = new_cases.slice(4, 2).select(
        "case_id", pl.lit("专家评审").alias("kind"), pl.col("accepted_at").alias("started_at"),
        pl.lit(None, pl.Date).alias("ended_at"), pl.lit(None, pl.Int32).alias("limit_days"),
        pl.lit("新增").alias("reason"),
    )

    # Edits to old, settled rows: a completion moved, a limit set, a pause added, a case moved to another project
    # (the first, third and fourth are members of a project, whose clock they change too).
    settled = cases.filter(pl.col("completed_at") < pl.lit(as_of - timedelta(days=90)))
    members = settled.filter(pl.col("project_code").is_not_null()).sample(3, seed=int(rng.integers(1 << 30)))
    others = settled.filter(pl.col("project_code").is_null()).sample(3, seed=int(rng.integers(1 << 30)))
    old = pl.concat([members[0:1], others[0:1], members[1:3], others[1:3]])["case_id"]
    # The last member of a project to complete, alone in its last days: a pause then moves the project's due date.
    last_alone = (
        settled.filter(pl.col("project_code").is_not_null())
        .sort("completed_at")
        .group_by("project_code", maintain_order=True)
        .agg(pl.col("case_id").last(), pl.col("accepted_at").last(), pl.col("completed_at").last(),
             pl.col("completed_at").shift(1).last().alias("before"))
        .filter((pl.col("completed_at") - pl.col("before") > pl.duration(days=5))
                & (pl.col("completed_at") - pl.col("accepted_at") > pl.duration(days=5)))
        .sample(1, seed=int(rng.integers(1 << 30)))
    )
    alone_pause = last_alone.select(
        "case_id", pl.lit("专家评审").alias("kind"), (pl.col("completed_at") - 4 * day).alias("started_at"),
        (pl.col("completed_at") - day).alias("ended_at"), pl.lit(None, pl.Int32).alias("limit_days"),
        pl.lit("专家评审").alias("reason"),
    )
    codes = projects["project_code"]
    other_project = codes[int(rng.integers(len(codes)))]
    cases = cases.with_columns(
        completed_at=pl.when(pl.col("case_id") == old[0]).then(pl.col("completed_at") + 3 * day)
        .otherwise("completed_at"),
        limit_days=pl.when(pl.col("case_id") == old[1]).then(pl.lit(2, pl.Int32)).otherwise("limit_days"),
        project_code=pl.when(pl.col("case_id") == old[2]).then(pl.lit(other_project)).otherwise("project_code"),
    )
    added_pause = cases.filter(pl.col("case_id") == old[3]).select(
        "case_id", pl.lit("补正").alias("kind"), (pl.col("accepted_at") + day).alias("started_at"),
        pl.min_horizontal(pl.col("accepted_at") + 4 * day, "completed_at").alias("ended_at"),
        pl.lit(None, pl.Int32).alias("limit_days"), pl.lit("补正材料").alias("reason"),
    )
    steps = steps.with_columns(
        ended_at=pl.when(pl.col("case_id") == old[4]).then(pl.col("ended_at") + 2 * day).otherwise("ended_at")
    )
    categories = projects["category"].unique().sort()
    projects = projects.with_columns(
        category=pl.when(pl.col("project_code") == codes[int(rng.integers(len(codes)))])
        .then(pl.lit(categories[int(rng.integers(len(categories)))]))
        .otherwise("category")
    )
    # A push claimed a day later, another moved to a different case.
    push_ids = pushes["push_id"]
    pushes = pushes.with_columns(
        claimed_at=pl.when(pl.col("push_id") == push_ids[int(rng.integers(len(push_ids)))])
        .then(pl.col("claimed_at") + day).otherwise("claimed_at"),
        case_id=pl.when(pl.col("push_id") == push_ids[int(rng.integers(len(push_ids)))])
        .then(pl.lit(old[5])).otherwise("case_id"),
    )

    def merged(frame: pl.DataFrame, *added: pl.DataFrame, table: str) -> pl.DataFrame:
        combined = pl.concat([frame, *(part.select(frame.columns).cast(frame.schema) for part in added)])
        return combined.unique(key_columns(table), keep="last", maintain_order=True)

    return {
        "cases": merged(cases, new_cases, table="cases"),
        "steps": merged(steps, new_steps, table="steps"),
        "suspensions": merged(suspensions, new_pauses, added_pause, alone_pause, table="suspensions"),
        "projects": projects,
        "deferrals": deferrals,
        "pushes": pushes,
    }


def rules_changed(tmp_path: Path) -> Setup:
    directory = tmp_path / "config-escalate-4"
    shutil.copytree(BUNDLED_CONFIG_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    rules = directory / "rules.yaml"
    content = rules.read_text(encoding="utf-8")
    assert "\ndefaults:" not in content  # the bundled rules keep the built-in thresholds
    rules.write_text(content + "\ndefaults:\n  escalate_after: 4\n", encoding="utf-8")
    config = load_config(directory)
    assert config.rules.defaults.escalate_after == 4
    return Setup(config, load_work_calendar(config.calendar_files))


# ------------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("seed", [3, 17])
def test_incremental_nights_equal_full_nights(
    two_databases: tuple[Engine, Engine], tmp_path: Path, seed: int
) -> None:
    incremental_db, full_db = two_databases
    config = load_config(BUNDLED_CONFIG_DIR)
    setup = Setup(config, load_work_calendar(config.calendar_files))
    rng = np.random.default_rng(seed)
    tables = first_history(tmp_path, setup, seed)
    as_of = FIRST_NIGHT
    modes = []
    for night_no in range(len(STEPS) + 1):
        if night_no:
            as_of += timedelta(days=STEPS[night_no - 1])
            tables = next_history(tables, rng, night_no, as_of)
        if night_no == RULE_CHANGE_NIGHT:
            setup = rules_changed(tmp_path)
        incremental = night(incremental_db, setup, tables, as_of, full=False)
        full = night(full_db, setup, tables, as_of, full=True)
        assert incremental["figures"] == full["figures"], f"night {night_no} ({as_of})"
        incremental_state, full_state = stored_state(incremental_db, as_of), stored_state(full_db, as_of)
        assert incremental_state[0].equals(full_state[0]), f"evaluations differ on night {night_no} ({as_of})"
        assert incremental_state[1].equals(full_state[1]), f"cards differ on night {night_no} ({as_of})"
        assert incremental_state[2].equals(full_state[2]), f"settled groups differ on night {night_no} ({as_of})"
        assert full["settled_moved"] == 0 or night_no == RULE_CHANGE_NIGHT
        modes.append((incremental["plan"].full, incremental["evaluated"], full["evaluated"]))

    # The first night and the rule change evaluate everything; every other night only the unsettled clocks.
    assert [full_path for full_path, _, _ in modes] == [night_no in (0, RULE_CHANGE_NIGHT)
                                                        for night_no in range(len(modes))]
    assert all(evaluated < everything / 2 for full_path, evaluated, everything in modes if not full_path)
    assert modes[-1][2] > 1000


def test_the_plan_names_why_everything_is_evaluated(engine: Engine, tmp_path: Path) -> None:
    config = load_config(BUNDLED_CONFIG_DIR)
    setup = Setup(config, load_work_calendar(config.calendar_files))
    tables = first_history(tmp_path, setup, 5)
    assert "first evaluation" in night(engine, setup, tables, FIRST_NIGHT, full=False)["plan"].reason
    assert not night(engine, setup, tables, FIRST_NIGHT + timedelta(days=1), full=False)["plan"].full
    assert "--full" in night(engine, setup, tables, FIRST_NIGHT + timedelta(days=2), full=True)["plan"].reason
    earlier = night(engine, setup, tables, FIRST_NIGHT + timedelta(days=1), full=False)["plan"]
    assert earlier.full and "as-of date before" in earlier.reason
    changed = night(engine, rules_changed(tmp_path), tables, FIRST_NIGHT + timedelta(days=3), full=False)["plan"]
    assert changed.full and "rules, calendar" in changed.reason


def test_settled_groups_are_the_same_whatever_the_groups_counted_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settled groups' counts and digests are made a slice of groups at a time; the slices change nothing."""
    config = load_config(BUNDLED_CONFIG_DIR)
    calendar = load_work_calendar(config.calendar_files)
    tables = first_history(tmp_path, Setup(config, calendar), 5)
    clock_set = build_clocks(tables, config.rules)
    evaluations = evaluate_clocks(clock_set.clocks, clock_set.pauses, calendar, FIRST_NIGHT)
    at_once = settle_groups(tables, evaluations, clock_set.rejects, FIRST_NIGHT).groups
    monkeypatch.setattr("tasks.store.settled._GROUPS_AT_ONCE", 7)
    in_slices = settle_groups(tables, evaluations, clock_set.rejects, FIRST_NIGHT).groups
    assert at_once.filter(pl.col("kind") == "case").height > 100
    assert at_once["counts"].str.contains(";").any()
    assert in_slices.equals(at_once)


def test_store_unsettles_the_groups_a_change_touches(engine: Engine, tmp_path: Path) -> None:
    """A new or changed row unsettles its case and that case's project (as stored and as written); a push moved to
    another case unsettles both cases; a changed project row its project. An unchanged export unsettles nothing."""
    config = load_config(BUNDLED_CONFIG_DIR)
    setup = Setup(config, load_work_calendar(config.calendar_files))
    tables = first_history(tmp_path, setup, 5)
    night(engine, setup, tables, FIRST_NIGHT, full=False)

    def settled() -> set[tuple[str, str]]:
        with engine.connect() as connection:
            return {tuple(row) for row in connection.execute(text("SELECT kind, group_id FROM settled_groups"))}

    before = settled()
    for table in TABLES:
        store_table(engine, table, tables[table], None)
    assert settled() == before

    cases = tables["cases"]
    member = cases.filter(
        pl.col("project_code").is_not_null()
        & pl.col("case_id").is_in([group for kind, group in before if kind == "case"])
        & pl.col("project_code").is_in([group for kind, group in before if kind == "project"])
    ).row(0, named=True)
    pause = pl.DataFrame(
        {"case_id": [member["case_id"]], "kind": ["公示"], "started_at": [member["accepted_at"]],
         "ended_at": [member["accepted_at"]], "limit_days": [None], "reason": [None]},
        schema=tables["suspensions"].schema,
    )
    store_table(engine, "suspensions", pl.concat([tables["suspensions"], pause]), None)
    assert before - settled() == {("case", member["case_id"]), ("project", member["project_code"])}
    with engine.connect() as connection:
        now_open = {tuple(row) for row in connection.execute(text("SELECT kind, group_id FROM open_groups"))}
    assert before - settled() <= now_open

    pushes = tables["pushes"]
    push = pushes.filter(pl.col("case_id").is_in([group for kind, group in settled() if kind == "case"])).row(
        0, named=True
    )
    target = next(group for kind, group in sorted(settled()) if kind == "case" and group != push["case_id"])
    still = settled()
    moved = pushes.with_columns(
        case_id=pl.when(pl.col("push_id") == push["push_id"]).then(pl.lit(target)).otherwise("case_id")
    )
    store_table(engine, "pushes", moved, None)
    lost = still - settled()
    assert {("case", push["case_id"]), ("case", target)} <= lost
    assert all(kind == "project" or group in (push["case_id"], target) for kind, group in lost)

    project = next(group for kind, group in sorted(settled()) if kind == "project")
    renamed = tables["projects"].with_columns(
        project_name=pl.when(pl.col("project_code") == project).then(pl.lit("改名")).otherwise("project_name")
    )
    still = settled()
    store_table(engine, "projects", renamed, None)
    assert still - settled() == {("project", project)}


@pytest.mark.usefixtures("prefect_harness")
def test_nightly_flow_incremental_and_full_give_the_same_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nights through the flow on two databases, one incremental and one with full=True: the same summary and
    stored evaluations, and the incremental one says what it evaluated and why. The incremental one's second night
    takes its unchanged export rows from the memo of the first (tasks/ingest/memo.py); full=True reads no memo."""
    first = sample_tables()
    cases = first["cases"]
    second = {
        **first,
        "cases": cases.with_columns(
            completed_at=pl.when(pl.col("completed_at").is_null() & (pl.int_range(pl.len()) % 3 == 0))
            .then(pl.lit(str(AS_OF)))
            .otherwise("completed_at")
        ),
    }
    summaries: dict[str, list[dict[str, Any]]] = {"incremental": [], "full": []}
    evaluations: dict[str, pl.DataFrame] = {}
    memos: dict[str, list[dict[str, int]]] = {"incremental": [], "full": []}
    for night_no, (as_of, exports) in enumerate([(AS_OF, first), (AS_OF + timedelta(days=1), second)]):
        for mode in summaries:
            pipeline = make_pipeline(tmp_path / mode, monkeypatch, None)
            write_sample(exports, tmp_path / mode / "inbox")
            state = nightly(as_of=as_of, deliverable=True, full=mode == "full", return_state=True)
            assert state.is_completed(), state.message
            summary = state.result()
            summaries[mode].append(summary)
            engine = pipeline.engine()
            evaluations[mode] = read_evaluations(engine, as_of).drop("run_id").sort("clock_id")
            engine.dispose()
            memos[mode].append({path.name: path.stat().st_mtime_ns
                                for path in (tmp_path / mode / "var" / "memo").glob("*.parquet")})
        incremental, full = (summaries[mode][night_no] for mode in summaries)
        assert {**incremental, "evaluation": None} == {**full, "evaluation": None}, f"night {night_no}"
        assert evaluations["incremental"].equals(evaluations["full"]), f"night {night_no}"
    # One memo per source. The second night read it: an unchanged export (steps) left its memo as it was, a changed
    # one (cases) rewrote it; full=True rewrote every memo.
    assert len(memos["incremental"][0]) == len(first)
    (steps,), (cases_memo,) = ([name for name in memos["incremental"][0] if name.startswith(f"{table}-")]
                               for table in ("steps", "cases"))
    assert memos["incremental"][1][steps] == memos["incremental"][0][steps]
    assert memos["incremental"][1][cases_memo] != memos["incremental"][0][cases_memo]
    assert memos["full"][1][steps] != memos["full"][0][steps]
    assert [summary["evaluation"]["mode"] for summary in summaries["incremental"]] == ["full", "incremental"]
    assert "first evaluation" in summaries["incremental"][0]["evaluation"]["reason"]
    assert summaries["full"][1]["evaluation"]["reason"].endswith("(--full)")
    second_night = summaries["incremental"][1]
    assert second_night["evaluation"]["evaluated_clocks"] < second_night["clocks"] / 2


def test_a_first_load_builds_from_what_it_stored_as_a_full_rerun_does_from_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first load takes every table from the frames it has just stored; the same night again with full=True
    reads all of them back from the database. Both store the same evaluations and count the same clocks."""
    pipeline = make_pipeline(tmp_path, monkeypatch, None)
    write_sample(sample_tables(), tmp_path / "inbox")
    read_back: list[list[str]] = []

    def reading(engine: Engine, tables: Any = TABLES) -> dict[str, pl.DataFrame]:
        read_back.append(list(tables))
        return read_tables(engine, tables)

    monkeypatch.setattr("tasks.pipeline.read_tables", reading)
    results = []
    for full in (False, True):
        state = nightly(as_of=AS_OF, deliverable=False, full=full, return_state=True)
        assert state.is_completed(), state.message
        engine = pipeline.engine()
        results.append((state.result(), read_evaluations(engine, AS_OF).drop("run_id").sort("clock_id")))
        engine.dispose()
    assert read_back == [[], list(TABLES)]
    (first, first_evaluations), (again, again_evaluations) = results
    assert first["evaluation"]["mode"] == again["evaluation"]["mode"] == "full"
    assert first_evaluations.height > 0 and first["clocks"] > 0
    assert first_evaluations.equals(again_evaluations)
    for figure in ("clocks", "level_table", "top_overdue_units", "clock_reconciliation", "provisional_clocks"):
        assert first[figure] == again[figure], figure


def test_a_sql_source_with_a_watermark_is_sent_only_what_changed(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = tmp_path / "platform.db"
    with sqlite3.connect(platform) as connection:
        connection.execute("CREATE TABLE bj (bjbh TEXT, sxbm TEXT, dwbm TEXT, slsj TEXT, bjsj TEXT, gxsj TEXT)")
        connection.executemany(
            "INSERT INTO bj VALUES (?, ?, ?, ?, ?, ?)",
            [("S1", "M", "U", "2026-11-02", None, "2026-11-02 09:00:00"),
             ("S2", "M", "U", "2026-11-03", None, "2026-11-03 10:00:00"),
             ("S3", "M", "U", "2026-11-01", "2026-11-02", "2026-11-02 17:00:00")],
        )
    monkeypatch.setenv("PLATFORM_DB", str(platform))
    source = Source(
        name="platform", kind="sql", table="cases", url="sqlite:///${PLATFORM_DB}", watermark="updated_at",
        query="SELECT bjbh AS case_id, sxbm AS matter_code, dwbm AS unit_code, slsj AS accepted_at, "
        "bjsj AS completed_at, gxsj AS updated_at FROM bj WHERE gxsj >= :watermark",
    )
    engine = ensure_schema(sqlite_url)
    assert stored_watermark(engine, "cases", "updated_at") is None
    first = load_source(source, inbox_dir=tmp_path)
    assert sorted(first.accepted["case_id"]) == ["S1", "S2", "S3"]
    store_table(engine, "cases", first.accepted, None)
    newest = stored_watermark(engine, "cases", "updated_at")
    assert newest == datetime(2026, 11, 3, 10, 0)

    with sqlite3.connect(platform) as connection:
        connection.execute("UPDATE bj SET bjsj = '2026-11-04', gxsj = '2026-11-04 11:00:00' WHERE bjbh = 'S1'")
        connection.execute("INSERT INTO bj VALUES ('S4', 'M', 'U', '2026-11-04', NULL, '2026-11-04 12:00:00')")
    second = load_source(source, inbox_dir=tmp_path, watermark=newest)
    # S2 carries the watermark itself (>=: a row written in the same second is not missed); S3 is not sent again.
    assert sorted(second.accepted["case_id"]) == ["S1", "S2", "S4"]
    stats = store_table(engine, "cases", second.accepted, None)
    assert (stats.inserted, stats.updated, stats.unchanged) == (1, 1, 1)
    assert read_tables(engine, ["cases"])["cases"].height == 4
    engine.dispose()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "csv", "path": "cases.csv", "url": None, "query": None}, "only applies to sql sources"),
        ({"watermark": "status"}, "not a date or datetime column of cases (accepted_at, completed_at, updated_at"),
        ({"query": "SELECT * FROM bj"}, "needs :watermark in its query"),
    ],
)
def test_a_watermark_is_checked_when_the_config_loads(change: dict[str, Any], message: str) -> None:
    entry = {
        "name": "platform", "kind": "sql", "table": "cases", "url": "sqlite:///platform.db",
        "query": "SELECT * FROM bj WHERE gxsj >= :watermark", "watermark": "updated_at",
    }
    with pytest.raises(ValueError, match=re.escape(message)):
        Source(**{**entry, **change})
