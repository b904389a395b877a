"""Platform data as it really comes: aliases, 12-digit region codes, limit units, per-source defaults, event rows."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from config.loader import ConfigError
from config.rules import load_rules
from config.sources import EventPairing, Source
from config.units import load_units
from tasks.ingest.events import ENDED_AT, EventColumns, pair_events
from tasks.ingest.load import LoadResult, load_source
from tasks.ingest.platform_codes import KnownCodes

CONFIG = Path(__file__).resolve().parents[1] / "config"
UNIT_GUID = "5B0E6A42-9C1D-4F3E-8A7B-2C9D0E1F3A4B"
MATTER_SSBM = "11360702MB1234567X4000117002000"  # a 31-character 实施编码


def known(units: dict[str, str] | None = None, matters: dict[str, str] | None = None) -> KnownCodes:
    table_units = {"360702spj": "360702SPJ", UNIT_GUID.lower(): "360702SPJ", **(units or {})}
    table_matters = {"sxtq-a001": "SXTQ-A001", MATTER_SSBM.lower(): "SXTQ-A001", **(matters or {})}
    return KnownCodes(units=table_units, matters=table_matters)


def cases_source(path: str, **options: Any) -> Source:
    return Source(name="platform-cases", kind="csv", table="cases", path=path, **options)


def loaded(source: Source, inbox: Path, codes: KnownCodes | None = None) -> LoadResult:
    result = load_source(source, inbox_dir=inbox, codes=codes)
    assert result.error is None, result.error
    assert result.accepted.height + result.rejected.height == result.rows_read
    return result


def reasons(result: LoadResult) -> dict[int, str]:
    return dict(result.rejected.select("line", "reasons").iter_rows())


# ------------------------------------------------------------------------------------------------------ aliases


def write_units(tmp_path: Path, extra: list[dict[str, Any]]) -> Path:
    data = yaml.safe_load((CONFIG / "units.yaml").read_text(encoding="utf-8"))
    data["units"].extend(extra)
    (tmp_path / "units.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return tmp_path


def test_unit_aliases_resolve_to_the_code_ignoring_case(tmp_path: Path) -> None:
    directory = write_units(
        tmp_path, [{"code": "X1", "name": "测试局", "parent": "360700WXB", "aliases": [UNIT_GUID, "测试局"]}]
    )
    units = load_units(directory)
    assert units.aliases[UNIT_GUID.lower()] == "X1"
    assert units.aliases["测试局"] == "X1"
    assert units.aliases["x1"] == "X1"


def test_an_alias_shared_by_two_units_is_a_config_error_naming_both(tmp_path: Path) -> None:
    directory = write_units(
        tmp_path,
        [
            {"code": "X1", "name": "一局", "parent": "360700WXB", "aliases": [UNIT_GUID]},
            {"code": "X2", "name": "二局", "parent": "360700WXB", "aliases": [UNIT_GUID.lower()]},
        ],
    )
    with pytest.raises(ConfigError) as raised:
        load_units(directory)
    assert "alias" in str(raised.value) and "'X1'" in str(raised.value) and "'X2'" in str(raised.value)


def test_an_alias_equal_to_another_units_code_is_a_config_error(tmp_path: Path) -> None:
    directory = write_units(tmp_path, [{"code": "X1", "name": "一局", "parent": "360700WXB", "aliases": ["360700SPJ"]}])
    with pytest.raises(ConfigError, match=r"'X1'.*'360700SPJ'"):
        load_units(directory)


def test_a_blank_alias_is_a_config_error(tmp_path: Path) -> None:
    directory = write_units(tmp_path, [{"code": "X1", "name": "一局", "parent": "360700WXB", "aliases": [" "]}])
    with pytest.raises(ConfigError, match="unit 'X1' has a blank alias"):
        load_units(directory)


def test_matter_aliases_cover_every_version_and_clash_at_load(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIG / "rules.yaml").read_text(encoding="utf-8"))
    versions = [m for m in data["matters"] if m["code"] == "SXTQ-A004"]
    versions[0]["aliases"] = [MATTER_SSBM]
    versions[1]["aliases"] = [MATTER_SSBM]  # the same matter's versions may repeat an alias
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert load_rules(tmp_path).matter_aliases()[MATTER_SSBM.lower()] == "SXTQ-A004"

    other = next(m for m in data["matters"] if m["code"] == "SXTQ-A001")
    other["aliases"] = [MATTER_SSBM]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_rules(tmp_path)
    assert "'SXTQ-A001'" in str(raised.value) and "'SXTQ-A004'" in str(raised.value)


CASES = """case_id,matter_code,unit_code,accepted_at,region_code,limit_days,PROMISETIMEUNIT
C1,{ssbm},{guid},2025-03-03,360702001001,10,1
C2,sxtq-a001,360702SPJ,2025-03-03,360702,10,2
C3,NO-SUCH-MATTER,360702SPJ,2025-03-03,,10,1
C4,SXTQ-A001,NO-SUCH-UNIT,2025-03-03,,10,1
C5,SXTQ-A001,360702SPJ,2025-03-03,,48,3
C6,SXTQ-A001,360702SPJ,2025-03-03,,30,4
C7,SXTQ-A001,360702SPJ,2025-03-03,,2,5
C8,SXTQ-A001,360702SPJ,2025-03-03,,10,
"""
LIMIT_UNITS = {"1": "workday", "2": "calendar", "3": "hours", "4": "minutes", "5": "months"}


def write_cases(inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "cases.csv").write_text(CASES.format(ssbm=MATTER_SSBM, guid=UNIT_GUID.lower()), encoding="utf-8")


def test_platform_cases_resolve_aliases_regions_and_limit_units(tmp_path: Path) -> None:
    write_cases(tmp_path)
    source = cases_source(
        "cases.csv",
        mapping={"PROMISETIMEUNIT": "limit_kind"},
        values={"limit_kind": LIMIT_UNITS},
        defaults={"limit_kind": "workday"},
        unknown_codes="reject",
    )
    result = loaded(source, tmp_path, known())
    accepted = {row["case_id"]: row for row in result.accepted.to_dicts()}
    assert sorted(accepted) == ["C1", "C2", "C8"]
    assert (accepted["C1"]["matter_code"], accepted["C1"]["unit_code"]) == ("SXTQ-A001", "360702SPJ")
    assert accepted["C1"]["region_code"] == "360702"  # the county prefix of a 12-digit 区划代码
    assert accepted["C1"]["limit_kind"] == "workday"
    assert accepted["C2"]["limit_kind"] == "calendar"
    assert accepted["C8"]["limit_kind"] == "workday"  # the per-source default
    assert reasons(result) == {
        4: "matter_code: unknown matter 'NO-SUCH-MATTER' (no code or alias in rules.yaml)",
        5: "unit_code: unknown unit 'NO-SUCH-UNIT' (no code or alias in units.yaml)",
        6: "limit_kind: a limit in hours (小时) is not supported: only 工作日 or 自然日",
        7: "limit_kind: a limit in minutes (分钟) is not supported: only 工作日 or 自然日",
        8: "limit_kind: a limit in months (月) is not supported: only 工作日 or 自然日",
    }


def test_unknown_codes_are_kept_unless_the_source_rejects_them(tmp_path: Path) -> None:
    write_cases(tmp_path)
    source = cases_source("cases.csv", mapping={"PROMISETIMEUNIT": "limit_kind"}, values={"limit_kind": LIMIT_UNITS})
    result = loaded(source, tmp_path, known())
    accepted = dict(result.accepted.select("case_id", "unit_code").iter_rows())
    assert accepted["C4"] == "NO-SUCH-UNIT"
    assert accepted["C1"] == "360702SPJ"
    assert sorted(reasons(result)) == [6, 7, 8]


def test_a_default_fills_a_required_column_the_source_lacks(tmp_path: Path) -> None:
    (tmp_path / "pauses.csv").write_text("case_id,started_at\nC1,2025-03-04\n", encoding="utf-8")
    source = Source(name="p", kind="csv", table="suspensions", path="pauses.csv", defaults={"kind": "挂起"})
    result = loaded(source, tmp_path)
    assert result.accepted["kind"].to_list() == ["挂起"]


def test_defaults_and_events_are_checked_at_load() -> None:
    with pytest.raises(ValueError, match="no column nope"):
        cases_source("c.csv", defaults={"nope": "1"})
    with pytest.raises(ValueError, match="only applies to suspensions"):
        cases_source("c.csv", events={"column": "t", "start": ["10"], "end": ["11"]})
    numbers = Source(name="s", kind="csv", table="suspensions", path="s.csv",
                     events={"column": "t", "start": [10], "end": [11], "single": {20: "延期"}})
    assert numbers.events is not None
    assert (numbers.events.start, numbers.events.end, numbers.events.single) == (("10",), ("11",), {"20": "延期"})
    with pytest.raises(ValueError, match="both start and end"):
        Source(name="s", kind="csv", table="suspensions", path="s.csv",
               events={"column": "t", "start": ["10"], "end": ["10"]})


# ------------------------------------------------------------------------------------------------- event rows

EVENT_HEADER = ["projectguid", "operatetype", "operatedate", "delayworkday", "SN"]
# Lines 2..: the physical lines of a CSV (header = line 1) and the sheet rows of an XLSX; SQL counts records from 1.
EVENTS = [
    ["C1", "10", "2025-03-05 09:00:00", None, "1"],  # C1: a pause 03-05 → 03-10
    ["C1", "11", "2025-03-10 16:00:00", None, "1"],
    ["C1", "20", "2025-03-12 10:00:00", "5", "1"],  # an extension of 5 working days
    ["C2", "11", "2025-03-06 09:00:00", None, "1"],  # an end without a start
    ["C2", "10", "2025-03-07 09:00:00", None, "1"],  # then a start that stays open
    ["C3", "10", "2025-03-05 09:00:00", None, "1"],
    ["C3", "10", "2025-03-06 09:00:00", None, "1"],  # a second start in a row
    ["C3", "11", "2025-03-09 09:00:00", None, "1"],
    ["C4", "11", "2025-03-20 09:00:00", None, "2"],  # per SN: procedure 2 ends after procedure 1 starts …
    ["C4", "10", "2025-03-03 09:00:00", None, "1"],
    ["C4", "10", "2025-03-04 09:00:00", None, "2"],
    ["C4", "11", "2025-03-15 09:00:00", None, "1"],
    ["C5", "99", "2025-03-05 09:00:00", None, "1"],  # not a pause event
    ["C5", "10", "not a time", None, "1"],
]


def events_source(kind: str, path: str | None = None, **options: Any) -> Source:
    location = {"url": f"sqlite:///{path}", "query": "SELECT * FROM audit_project_unusual ORDER BY id"}
    return Source(
        name=f"unusual-{kind}",
        kind=kind,  # type: ignore[arg-type]
        table="suspensions",
        **(location if kind == "sql" else {"path": path}),
        mapping={"projectguid": "case_id", "operatedate": "started_at", "delayworkday": "limit_days"},
        defaults={"kind": "挂起"},
        events={"column": "operatetype", "start": ["10"], "end": ["11"], "single": {"20": "延期"}, "within": ["SN"]},
        **options,
    )


def write_events(tmp_path: Path, kind: str) -> Source:
    if kind == "csv":
        lines = [",".join(EVENT_HEADER)] + [",".join(value or "" for value in row) for row in EVENTS]
        (tmp_path / "events.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return events_source("csv", "events.csv")
    if kind == "xlsx":
        workbook = xlsxwriter.Workbook(tmp_path / "events.xlsx")
        sheet = workbook.add_worksheet()
        for index, row in enumerate([EVENT_HEADER, *EVENTS]):
            sheet.write_row(index, 0, [value if value is not None else "" for value in row])
        workbook.close()
        return events_source("xlsx", "events.xlsx")
    database = tmp_path / "epoint.db"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TABLE audit_project_unusual (id INTEGER PRIMARY KEY, projectguid TEXT, operatetype INTEGER, "
            "operatedate TEXT, delayworkday INTEGER, SN INTEGER)"
        )
        connection.executemany(
            "INSERT INTO audit_project_unusual (projectguid, operatetype, operatedate, delayworkday, SN) "
            "VALUES (?, ?, ?, ?, ?)",
            [(r[0], int(r[1]), r[2], int(r[3]) if r[3] else None, int(r[4])) for r in EVENTS],
        )
    return events_source("sql", str(database))


@pytest.mark.parametrize("kind", ["csv", "xlsx", "sql"])
def test_event_rows_pair_into_suspensions(tmp_path: Path, kind: str) -> None:
    result = loaded(write_events(tmp_path, kind), tmp_path)
    rows = result.accepted.sort("case_id", "started_at").select(
        "case_id", "kind", pl.col("started_at").cast(pl.String), pl.col("ended_at").cast(pl.String), "limit_days"
    )
    assert rows.rows() == [
        ("C1", "挂起", "2025-03-05", "2025-03-10", None),
        ("C1", "延期", "2025-03-12", "2025-03-12", 5),
        ("C2", "挂起", "2025-03-07", None, None),  # open: no end after it
        ("C3", "挂起", "2025-03-05", "2025-03-09", None),
        ("C4", "挂起", "2025-03-03", "2025-03-15", None),  # SN 1
        ("C4", "挂起", "2025-03-04", "2025-03-20", None),  # SN 2
    ]
    shift = 1 if kind == "sql" else 0  # SQL lines are record numbers; files count their header as line 1
    assert reasons(result) == {
        5 - shift: "an end without a start (no pause of this case is open)",
        8 - shift: f"a second start while the pause started at line {7 - shift} is still open",
        14 - shift: "operatetype: event code '99' is none of start (10), end (11), single (20)",
        15 - shift: "operatedate: not a date-time 'not a time' (the event time)",
    }
    # A paired suspension is counted once, at its start line; every event row is either in one or rejected.
    assert result.rows_read == result.accepted.height + result.rejected.height == 10


def test_event_columns_match_headers_in_any_case(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(
        "PROJECTGUID,OPERATETYPE,OPERATEDATE,DELAYWORKDAY,sn\nC1,10,2025-03-05,,1\nC1,11,2025-03-07,,1\n",
        encoding="utf-8",
    )
    result = loaded(events_source("csv", "events.csv"), tmp_path)
    assert result.accepted.select("case_id", pl.col("ended_at").cast(pl.String)).rows() == [("C1", "2025-03-07")]


def test_an_events_source_without_its_event_column_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text("projectguid,operatedate\nC1,2025-03-05\n", encoding="utf-8")
    result = load_source(events_source("csv", "events.csv"), inbox_dir=tmp_path)
    assert result.error is not None
    assert "operatetype (events)" in result.error and "SN (events)" in result.error


# ------------------------------------------------------------------------------- pairing against a reference

def reference_pairs(events: list[tuple[str, str, int]]) -> tuple[set[tuple[int, int | None]], set[int]]:
    """The obvious state machine over (case, code, minute) events in time order per case: (start line, end line or
    None) per suspension (a single event is its own end), and the lines rejected."""
    pairs: set[tuple[int, int | None]] = set()
    rejected: set[int] = set()
    by_case: dict[str, list[tuple[int, str, int]]] = {}
    for line, (case, code, minute) in enumerate(events, start=2):
        by_case.setdefault(case, []).append((minute, code, line))
    for timeline in by_case.values():
        opened: int | None = None
        for _, code, line in sorted(timeline):
            if code == "20":
                pairs.add((line, line))
            elif code == "10" and opened is None:
                opened = line
            elif code == "10":
                rejected.add(line)
            elif opened is not None:
                pairs.add((opened, line))
                opened = None
            else:
                rejected.add(line)
        if opened is not None:
            pairs.add((opened, None))
    return pairs, rejected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B", "C"]), st.sampled_from(["10", "11", "20"])),
        min_size=0,
        max_size=25,
    ),
    st.randoms(use_true_random=False),
)
def test_event_pairing_matches_the_obvious_state_machine(raw: list[tuple[str, str]], rng: Any) -> None:
    minutes = rng.sample(range(10_000), len(raw))  # distinct times: the order within a case is never a tie
    events = [(case, code, minute) for (case, code), minute in zip(raw, minutes, strict=True)]
    frame = pl.DataFrame(
        {
            "projectguid": [case for case, _, _ in events],
            "operatetype": [code for _, code, _ in events],
            "operatedate": [f"{datetime(2025, 3, 1) + timedelta(minutes=m):%Y-%m-%d %H:%M:%S}" for m in minutes],
        },
        schema={"projectguid": pl.String, "operatetype": pl.String, "operatedate": pl.String},
    )
    lines = pl.Series("line", range(2, len(events) + 2), dtype=pl.Int64)
    pairing = EventPairing(column="operatetype", start=("10",), end=("11",), single={"20": "延期"})
    paired = pair_events(frame, lines, pairing, EventColumns(case="projectguid", time="operatedate", kind="kind"), "x")
    line_of_time = {f"{datetime(2025, 3, 1) + timedelta(minutes=m):%Y-%m-%d %H:%M:%S}": line
                    for line, (_, _, m) in enumerate(events, start=2)}
    found = {
        (start, None if end is None else line_of_time[end])
        for start, end in zip(paired.lines.to_list(), paired.frame[ENDED_AT].to_list(), strict=True)
    }
    expected_pairs, expected_rejected = reference_pairs(events)
    assert found == expected_pairs
    assert set(paired.rejected["line"].to_list()) == expected_rejected
    # Every event is used once: a suspension's start, a pair's end, or a reject.
    ends = sum(1 for start, end in found if end is not None and end != start)
    assert paired.frame.height + ends + paired.rejected.height == len(events)


def test_validate_with_a_configured_source_resolves_aliases(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    config = tmp_path / "config"
    shutil.copytree(CONFIG, config, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    write_units(config, [{"code": "X1", "name": "测试局", "parent": "360700WXB", "aliases": [UNIT_GUID]}])
    (config / "sources.yaml").write_text(
        "sources:\n  - {name: platform, kind: csv, table: cases, path: 'c*.csv', unknown_codes: reject}\n",
        encoding="utf-8",
    )
    export = tmp_path / "cases.csv"
    export.write_text(
        f"case_id,matter_code,unit_code,accepted_at\nC1,SXTQ-A001,{UNIT_GUID.lower()},2025-03-03\n"
        "C2,SXTQ-A001,NOPE,2025-03-03\n",
        encoding="utf-8",
    )
    accepted = tmp_path / "ok.csv"
    result = CliRunner().invoke(
        app,
        ["--config", str(config), "validate", str(export), "--kind", "cases", "--source", "platform",
         "--accepted", str(accepted)],
    )
    assert "unknown unit" in " ".join(result.output.split())
    assert pl.read_csv(accepted)["unit_code"].to_list() == ["X1"]
