"""What if: proposals checked like rules.yaml, the retrospective and prospective comparison on the real engine, the
command (read-only on SQLite and PostgreSQL) and the `what-if` flow."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import date
from functools import cache
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, MetaData, select
from typer.testing import CliRunner

from cli.main import app
from config.bundle import load_config
from config.loader import ConfigError
from config.proposal import load_proposal, merged_rules, retrospective_rules
from config.rules import RuleBook
from config.settings import BUNDLED_CONFIG_DIR
from schemas.contracts import canonical_schema
from schemas.database import ensure_schema
from tasks.clocks.calendar import WorkCalendar, load_work_calendar
from tasks.ingest.load import load_sources
from tasks.ingest.sample import write_sample
from tasks.reports.metrics import TOTAL
from tasks.reports.report import dimensions_from_config
from tasks.reports.simulate import WhatIf, evaluate_known, simulate, window_start
from tasks.reports.simulate_report import markdown_summary, summary_lines, write_what_if
from tasks.store.upsert import store_table
from tests.orchestration_fixtures import AS_OF, artifacts_of, flow_run_id, sample_tables

RONGJIANG = "360792SPJ"
RONGJIANG_75 = """
project_categories:
  - {code: rongjiang_engineering, name: 蓉江新区工程建设项目审批, limit: 75, effective_from: 2022-01-01}
"""


@cache
def bundled() -> tuple[RuleBook, WorkCalendar]:
    config = load_config(BUNDLED_CONFIG_DIR)
    return config.rules, load_work_calendar(config.calendar_files)


def run(tables: dict[str, pl.DataFrame], rules: RuleBook, proposal_text: str, as_of: date, window: str = "12m",
        ) -> WhatIf:
    config = load_config(BUNDLED_CONFIG_DIR)
    proposal = load_proposal(proposal_text, rules)
    dimensions = dimensions_from_config(rules, config.units)
    return simulate(tables, rules, proposal, bundled()[1], dimensions, as_of, window)


@cache
def sample() -> dict[str, pl.DataFrame]:
    """The orchestration tests' sample inbox, read and checked by ingestion: the canonical tables the nightly stores."""
    with tempfile.TemporaryDirectory() as inbox:
        write_sample(sample_tables(), Path(inbox))
        results = load_sources(load_config(BUNDLED_CONFIG_DIR).sources.sources, inbox_dir=Path(inbox))
    return {result.table: result.accepted for result in results}


# -- proposals ----------------------------------------------------------------------------------------------------


def test_a_proposal_names_the_file_entry_and_field_of_each_error(tmp_path: Path) -> None:
    rules = bundled()[0]
    path = tmp_path / "proposed.yaml"
    path.write_text(
        "project_categories:\n"
        "  - {code: rongjiang_engineering, name: 蓉江新区工程建设项目审批, limit: -5, effective_from: 2027-01-01}\n",
        encoding="utf-8",
    )
    message = rf"{path}: entry 'rongjiang_engineering': field 'project_categories.0.limit'"
    with pytest.raises(ConfigError, match=message):
        load_proposal(path, rules)
    path.write_text("matters:\n  - {code: SXTQ-Z999, name: x, mode: city, limit: 5, effective_from: 2027-01-01}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"entry 'SXTQ-Z999': field 'matters.0.code': not among the rules in force"):
        load_proposal(path, rules)
    with pytest.raises(ConfigError, match="holds no rule to change"):
        load_proposal("{}", rules)
    with pytest.raises(ConfigError, match="cannot read"):
        load_proposal(tmp_path / "missing.yaml", rules)


def test_versions_merge_by_effective_date_and_retrospective_applies_the_change_from_the_beginning() -> None:
    rules = bundled()[0]
    proposal = load_proposal(RONGJIANG_75.replace("75, effective_from: 2022", "60, effective_from: 2027"), rules)
    def rongjiang(book: RuleBook) -> list[tuple[str, int]]:
        versions = book.category_versions().filter(pl.col("category") == "rongjiang_engineering")
        return list(zip(versions["effective_from"].cast(pl.String), versions["limit_days"], strict=True))

    assert rongjiang(merged_rules(rules, proposal)) == [("2019-01-01", 106), ("2022-01-01", 75), ("2027-01-01", 60)]
    assert rongjiang(retrospective_rules(rules, proposal)) == [("1900-01-01", 60)]


def test_the_whole_rules_file_as_a_proposal_changes_nothing() -> None:
    rules = bundled()[0]
    proposal = load_proposal(BUNDLED_CONFIG_DIR / "rules.yaml", rules)
    assert merged_rules(rules, proposal) == rules
    assert retrospective_rules(rules, proposal) == rules
    result = run(sample(), rules, str(BUNDLED_CONFIG_DIR / "rules.yaml"), AS_OF)
    assert result.changes == []
    assert result.finished_changed.is_empty() and result.open_changed.is_empty()
    for view in result.retrospective.values():
        assert view["changed"].sum() == 0
        assert view["old_on_time_rate"].to_list() == view["new_on_time_rate"].to_list()
    total = result.retrospective["by_kind"].filter(pl.col("clock_type") == TOTAL)
    assert total["clocks"].item() > 500  # a real comparison, not an empty one
    assert (result.open_levels["before"] == result.open_levels["after"]).all()


def test_window_forms() -> None:
    assert window_start(date(2026, 11, 27), "12m") == date(2025, 11, 28)
    assert window_start(date(2026, 3, 31), "1m") == date(2026, 3, 1)
    assert window_start(date(2026, 11, 27), "90d") == date(2026, 8, 30)
    with pytest.raises(ValueError, match="expected a positive number"):
        window_start(date(2026, 11, 27), "12 months")


# -- the hand-computed fixture: Rongjiang projects across the 106 → 75 boundary ---------------------------------

# As of 2022-06-30, window 12m = 2021-07-01..2022-06-30. Rules in force: 106 working days only; proposal: 75 from
# 2022-01-01. Due dates counted by hand on the 2021/2022 calendars, e.g. 2022-03-01 + 75: March 22, April 21 (4-5 April
# off, Sat 2 and Sun 24 April worked), May 20 (2-4 May off, Sat 7 worked), then 12 working days of June → 06-17.
HAND_AS_OF = date(2022, 6, 30)
#          project accepted      completed     D75           D106
HAND = [
    ("PA", date(2021, 4, 6), date(2021, 8, 16)),   # 2021-07-22   2021-09-03: on time, late under 75
    ("PB", date(2021, 5, 10), date(2021, 8, 20)),  # 2021-08-24   2021-10-12: on time under both
    ("PC", date(2021, 6, 1), date(2021, 11, 10)),  # 2021-09-15   2021-11-03: late under both
    ("PD", date(2021, 1, 4), date(2021, 3, 31)),   # finished before the window
    ("PE", date(2021, 12, 1), None),               # started before 2022: keeps 106 (due 2022-05-07)
    ("PF", date(2022, 1, 4), None),                # 2022-04-24   2022-06-09: escalated either way
    ("PG", date(2022, 3, 1), None),                # 2022-06-17   2022-08-01: warning → escalated
]


def hand_tables() -> dict[str, pl.DataFrame]:
    cases = pl.DataFrame(
        {
            "case_id": [f"C-{code}" for code, _, _ in HAND],
            "matter_code": "SJ-D001",
            "unit_code": RONGJIANG,
            "region_code": "360792",
            "project_code": [code for code, _, _ in HAND],
            "accepted_at": [accepted for _, accepted, _ in HAND],
            "completed_at": [completed for _, _, completed in HAND],
            "limit_days": 200,  # the cases' own limit: their clocks stay on time and unchanged
        }
    )
    projects = pl.DataFrame(
        {
            "project_code": [code for code, _, _ in HAND],
            "category": "rongjiang_engineering",
            "region_code": "360792",
            "lead_unit_code": RONGJIANG,
        }
    )
    return {"cases": cases, "projects": projects}


def only_106() -> RuleBook:
    rules = bundled()[0]
    kept = tuple(c for c in rules.project_categories if not (c.code == "rongjiang_engineering" and c.limit == 75))
    return rules.model_copy(update={"project_categories": kept})


def test_hand_computed_projects_across_the_106_to_75_boundary() -> None:
    result = run(hand_tables(), only_106(), RONGJIANG_75, HAND_AS_OF)

    projects = result.retrospective["by_kind"].filter(pl.col("clock_type") == "project").row(0, named=True)
    assert (projects["clocks"], projects["old_on_time"], projects["new_on_time"]) == (3, 2, 1)
    assert projects["old_on_time_rate"] == pytest.approx(2 / 3) and projects["new_on_time_rate"] == pytest.approx(1 / 3)
    total = result.retrospective["by_kind"].filter(pl.col("clock_type") == TOTAL).row(0, named=True)
    assert (total["clocks"], total["old_on_time"], total["new_on_time"]) == (6, 5, 4)  # + three on-time case clocks
    category = result.retrospective["by_category"].row(0, named=True)
    assert (category["category"], category["clocks"], category["changed"]) == ("rongjiang_engineering", 3, 1)
    assert result.finished_changed.select("clock_id", "due_date", "due_date_after", "level_after").rows() == [
        ("project:PA", date(2021, 9, 3), date(2021, 7, 22), "completed_late")
    ]
    elapsed = result.elapsed.row(0, named=True)
    assert (elapsed["entry"], elapsed["old_limit_p50"], elapsed["new_limit_p50"]) == ("rongjiang_engineering", 106, 75)

    changed = result.open_changed.select("clock_id", "due_date", "due_date_after", "level", "level_after").rows()
    assert changed == [
        ("project:PF", date(2022, 6, 9), date(2022, 4, 24), "escalated", "escalated"),
        ("project:PG", date(2022, 8, 1), date(2022, 6, 17), "warning", "escalated"),
    ]
    levels = {row["level"]: (row["before"], row["after"]) for row in result.open_levels.iter_rows(named=True)}
    assert levels == {"normal": (3, 3), "warning": (1, 0), "overdue": (0, 0), "escalated": (2, 3), "paused": (0, 0),
                      TOTAL: (6, 6)}
    unit = result.open_by_unit.filter(pl.col("unit_code") == RONGJIANG).row(0, named=True)
    assert (unit["open"], unit["changed"], unit["due_earlier"], unit["due_later"], unit["newly_overdue"]) == (
        6, 2, 2, 0, 1)
    text = "\n".join(summary_lines(result))
    assert "on-time rate 83.3% -> 66.7%" in text and "2 change due date or level" in text


def test_a_version_effective_after_the_as_of_date_changes_no_open_clock() -> None:
    late = RONGJIANG_75.replace("2022-01-01", "2022-07-01")
    result = run(hand_tables(), only_106(), late, HAND_AS_OF)
    assert result.open_changed.is_empty()
    assert result.finished_changed["clock_id"].to_list() == ["project:PA"]  # the retrospective still applies it


# -- monotonic: a cut never raises an on-time rate, a raise never lowers one ---------------------------------------

ENTRIES = [("project_categories", c) for c in ("enterprise_investment", "simple_low_risk", "rongjiang_engineering")] + [
    ("matters", m) for m in ("SXTQ-A001", "SXTQ-B001", "SXTQ-C004", "SJ-D001")
]


def proposal_for(rules: RuleBook, section: str, code: str, delta: int) -> str:
    entries = rules.project_categories if section == "project_categories" else rules.matters
    newest = max((e for e in entries if e.code == code), key=lambda e: e.effective_from)
    limit = max(0, newest.limit + delta)
    changed = newest.model_copy(update={"limit": limit, "effective_from": date(2026, 1, 1)})
    if section == "matters":
        steps = [s.model_copy(update={"limit": max(0, s.limit + delta)}) for s in newest.steps]
        changed = changed.model_copy(update={"steps": tuple(steps)})
    import yaml

    return yaml.safe_dump({section: [changed.model_dump(mode="json", exclude_none=True)]}, allow_unicode=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=st.sampled_from(ENTRIES), delta=st.integers(1, 40), cut=st.booleans())
def test_cutting_a_limit_never_raises_an_on_time_rate_and_raising_never_lowers_it(
    entry: tuple[str, str], delta: int, cut: bool
) -> None:
    rules = bundled()[0]
    result = run(sample(), rules, proposal_for(rules, *entry, -delta if cut else delta), AS_OF)
    for name, view in result.retrospective.items():
        worse = view.filter(pl.col("new_on_time") > pl.col("old_on_time")) if cut else view.filter(
            pl.col("new_on_time") < pl.col("old_on_time"))
        assert worse.is_empty(), (name, worse)
    moved = result.open_changed.filter(pl.col("due_date").is_not_null() & pl.col("due_date_after").is_not_null())
    wrong_way = moved.filter(pl.col("due_date_after") > pl.col("due_date")) if cut else moved.filter(
        pl.col("due_date_after") < pl.col("due_date"))
    assert wrong_way.is_empty()


# -- the command: read-only on the database ------------------------------------------------------------------------


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return {
            name: sorted(connection.execute(select(table)).all(), key=repr)
            for name, table in metadata.tables.items()
        }


def test_simulate_command_writes_its_files_and_leaves_the_database_as_it_was(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = ensure_schema(database_url)
    for name, frame in hand_tables().items():
        schema = canonical_schema(name)
        columns = [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in schema.items()]
        store_table(engine, name, frame.select(columns), None)
    before = snapshot(engine)
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(tmp_path / "var"))
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(RONGJIANG_75.replace("75, effective_from: 2022-01-01", "30, effective_from: 2022-01-01"),
                        encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["simulate", "--rules", str(proposed), "--as-of", "2022-06-30", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "75 → 30" in result.output and "clocks open on 2022-06-30" in result.output
    assert snapshot(engine) == before
    engine.dispose()

    book = openpyxl.load_workbook(out / "permitwatch-what-if-2022-06-30.xlsx")
    assert book.sheetnames[0] == "概览" and "回溯：按单位" in book.sheetnames
    header = next(book["回溯：按时限类型"].iter_rows(max_row=1, values_only=True))
    assert header[:4] == ("时限类型", "时限数", "现行按时", "拟调整按时")
    assert book["回溯：按单位"].freeze_panes == "A2"
    html = (out / "permitwatch-what-if-2022-06-30.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "回溯：按单位" in html and "75 → 30" in html
    assert (out / "permitwatch-what-if-2022-06-30-on-time.png").read_bytes().startswith(b"\x89PNG")


def test_simulate_command_refuses_bad_input_with_one_line(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(tmp_path / "var"))
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(RONGJIANG_75.replace("rongjiang_engineering", "rongjiang_engneering"), encoding="utf-8")
    cases = {
        "typo in the code": (["--rules", str(proposed)], "not among the rules in force"),
        "bad window": (["--rules", str(proposed), "--window", "a year"], "--window"),
        "bad date": (["--rules", str(proposed), "--as-of", "2022/06/31"], "not a date"),
    }
    for label, (args, message) in cases.items():
        result = CliRunner().invoke(app, ["simulate", *args])
        assert result.exit_code == 2, label
        assert message in " ".join(result.output.split()), label
        assert "Traceback" not in result.output, label
    proposed.write_text(RONGJIANG_75, encoding="utf-8")
    empty = CliRunner().invoke(app, ["simulate", "--rules", str(proposed)])
    assert empty.exit_code == 2 and "no cases" in empty.output


def test_the_formula_like_and_markdown_outputs_are_safe(tmp_path: Path) -> None:
    result = run(hand_tables(), only_106(), RONGJIANG_75, HAND_AS_OF)
    risky = result.open_changed.with_columns(unit_name=pl.lit("=HYPERLINK(\"http://x\")"))
    files = write_what_if(replace(result, open_changed=risky), tmp_path, BUNDLED_CONFIG_DIR / "templates")
    sheet = openpyxl.load_workbook(files.xlsx)["在办：办结日或状态改变的时限"]
    cells = [cell for cell in sheet["D"][1:]]
    assert all(cell.data_type == "s" and cell.quotePrefix for cell in cells)
    markdown = markdown_summary(result)
    assert "按时办结率" in markdown and "66.7%" in markdown


# -- the flow -------------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_what_if_flow_takes_yaml_text_and_publishes_its_summary(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.what_if import ARTIFACT_KEY, what_if

    engine = ensure_schema(sqlite_url)
    for name, frame in hand_tables().items():
        schema = canonical_schema(name)
        columns = [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in schema.items()]
        store_table(engine, name, frame.select(columns), None)
    before = snapshot(engine)
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERMITWATCH_VAR_DIR", str(tmp_path / "var"))
    proposal = RONGJIANG_75.replace("75, effective_from: 2022-01-01", "30, effective_from: 2022-01-01")

    state = what_if(proposed_rules=proposal, as_of=HAND_AS_OF, return_state=True)

    assert state.is_completed(), state.message
    outcome = state.result()
    assert Path(outcome["xlsx"]).is_file() and Path(outcome["html"]).parent == tmp_path / "var" / "what-if"
    markdown = artifacts_of(flow_run_id(state))[ARTIFACT_KEY].data
    assert "75 → 30" in markdown and "按时办结率" in markdown
    assert snapshot(engine) == before

    bad = what_if(proposed_rules=proposal.replace("limit: 30", "limit: -1"), as_of=HAND_AS_OF, return_state=True)
    assert bad.is_failed() and "project_categories.0.limit" in bad.message
    engine.dispose()


def test_building_only_the_touched_rows_gives_what_building_everything_gives() -> None:
    rules, calendar = bundled()
    text = (
        "project_categories:\n"
        "  - {code: enterprise_investment, name: 企业投资项目, limit: 20, effective_from: 2025-06-01}\n"
        "matters:\n  - {code: SJ-D001, name: 建设工程规划许可, mode: city, limit: 5, effective_from: 2025-06-01,"
        " steps: [{step_no: 1, name: 审查决定, level: city, limit: 5}]}\n"
    )
    proposal = load_proposal(text, rules)
    result = run(sample(), rules, text, AS_OF)
    every = evaluate_known(sample(), merged_rules(rules, proposal), calendar, AS_OF)
    before = evaluate_known(sample(), rules, calendar, AS_OF)
    open_ids = before.filter(pl.col("completed_date").is_null() | (pl.col("completed_date") > AS_OF))
    moved = open_ids.join(every, on="clock_id", suffix="_after").filter(
        (pl.col("level") != pl.col("level_after")) | pl.col("due_date").ne_missing(pl.col("due_date_after"))
    )
    assert set(moved["clock_type"]) >= {"case", "step"}
    assert sorted(result.open_changed["clock_id"]) == sorted(moved["clock_id"])


def test_a_wider_warning_threshold_warns_more_open_clocks_and_leaves_the_past_alone() -> None:
    rules = bundled()[0]
    result = run(sample(), rules, "defaults: {warning_fraction: 0.9}\n", AS_OF)
    assert result.changes == ["defaults warning_fraction: 0.2 → 0.9"]
    assert result.finished_changed.is_empty()
    levels = {row["level"]: (row["before"], row["after"]) for row in result.open_levels.iter_rows(named=True)}
    assert levels["warning"][1] > levels["warning"][0]
    assert set(result.open_changed["level_after"]) == {"warning"}
    assert (result.open_changed["due_date"] == result.open_changed["due_date_after"]).all()
