"""The two ready source files, end to end against SQLite databases laid out like the platforms: the 电子监察中间库
(`config/examples/sources-ea-jc.yaml`) and Epoint (`config/examples/sources-epoint.yaml`).

Each loads with no reject but those planted on purpose, gives the same clocks as the same data written as canonical
CSV, and finds exactly the platform due dates that were seeded wrong, each with its cause."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from orchestration_fixtures import make_pipeline, table_data
from platform_fixtures import AS_OF, PlatformFixture, build_ea_jc, build_epoint
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import Artifact
from typer.testing import CliRunner

from cli.main import app
from config.bundle import PermitwatchConfig, load_config
from config.settings import BUNDLED_CONFIG_DIR
from config.sources import Source
from tasks.artifacts import PLATFORM_KEY
from tasks.clocks.builders import build_clocks
from tasks.clocks.calendar import load_work_calendar
from tasks.clocks.engine import evaluate_clocks
from tasks.clocks.platform_check import pausing_suspensions, platform_disagreements
from tasks.ingest.load import LoadResult, load_sources
from tasks.ingest.platform_codes import KnownCodes

EXAMPLES = BUNDLED_CONFIG_DIR / "examples"
PLATFORMS: dict[str, tuple[str, str, Callable[[Path, str | None], PlatformFixture]]] = {
    "ea-jc": ("sources-ea-jc.yaml", "EA_JC_URL", build_ea_jc),
    "epoint": ("sources-epoint.yaml", "EPOINT_URL", build_epoint),
}
CLOCK_FIELDS = ["clock_id", "unit_code", "matter_code", "region_code", "start_date", "limit_days", "limit_kind",
                "completed_date", "due_date", "elapsed", "remaining", "overdue_workdays", "level"]


def use_platform(
    name: str, root: Path, monkeypatch: pytest.MonkeyPatch, url: str | None = None
) -> tuple[PlatformFixture, PermitwatchConfig]:
    """The fixture database (SQLite, or at `url`), and its config directory with sources.yaml pointed at the
    platform's ready file."""
    file, variable, build = PLATFORMS[name]
    fixture = build(root, url)
    shutil.copy(EXAMPLES / file, fixture.config_dir / "sources.yaml")
    monkeypatch.setenv(variable, fixture.url)
    return fixture, load_config(fixture.config_dir)


def by_table(results: list[LoadResult]) -> dict[str, LoadResult]:
    for result in results:
        assert result.error is None, result.error
        assert result.accepted.height + result.rejected.height == result.rows_read
    return {result.table: result for result in results}


def evaluations_of(tables: dict[str, pl.DataFrame], config: PermitwatchConfig) -> pl.DataFrame:
    """Every clock of the tables (case, step, claim, special procedure), evaluated as of AS_OF; none refused."""
    clock_set = build_clocks(tables, config.rules)
    assert clock_set.rejects.is_empty(), clock_set.rejects
    calendar = load_work_calendar(config.calendar_files)
    known = clock_set.known_at(AS_OF, calendar)  # as every evaluation: extensions (延期) counted
    return evaluate_clocks(known.clocks, known.pauses, calendar, AS_OF)


@pytest.fixture(params=sorted(PLATFORMS))
def platform(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    fixture, config = use_platform(request.param, tmp_path, monkeypatch)
    return loaded_platform(request.param, fixture, config, tmp_path)


def loaded_platform(name: str, fixture: PlatformFixture, config: PermitwatchConfig, tmp_path: Path) -> dict[str, Any]:
    loaded = by_table(load_sources(config.sources.sources, inbox_dir=tmp_path, codes=KnownCodes.of(config)))
    canonical_sources = [
        Source(name=f"canonical-{path.stem}", kind="csv", table=path.stem, path=str(path))  # type: ignore[arg-type]
        for path in sorted(fixture.canonical_dir.glob("*.csv"))
    ]
    canonical = by_table(load_sources(canonical_sources, inbox_dir=tmp_path))
    return {"name": name, "fixture": fixture, "config": config, "loaded": loaded, "canonical": canonical}


def test_a_platform_loads_with_no_reject_but_those_planted(platform: dict[str, Any]) -> None:
    loaded: dict[str, LoadResult] = platform["loaded"]
    fixture: PlatformFixture = platform["fixture"]
    assert loaded["cases"].accepted.height >= 300
    rejects = {table: sorted(result.rejected["reasons"].to_list()) for table, result in loaded.items()}
    expected = {table: sorted(fixture.bad_rows.get(table, [])) for table in loaded}
    assert rejects == expected
    assert all(result.rejected.is_empty() for result in platform["canonical"].values())


def test_a_platform_gives_the_same_clocks_as_canonical_csv(platform: dict[str, Any]) -> None:
    config: PermitwatchConfig = platform["config"]
    loaded = {table: result.accepted for table, result in platform["loaded"].items()}
    canonical = {table: result.accepted for table, result in platform["canonical"].items()}
    from_platform = evaluations_of(loaded, config)
    from_csv = evaluations_of(canonical, config)
    assert from_platform.height == from_csv.height
    kinds = dict(from_platform.group_by("clock_type").len().iter_rows())
    assert kinds["case"] >= 300 and kinds["step"] >= 300
    # Epoint's procedures (挂起, and 延期, an extension) have no limit of their own: no special-procedure clock.
    assert ("special" in kinds) == (platform["name"] != "epoint")
    assert ("claim" in kinds) == (platform["name"] == "epoint")  # the 中间库 has no 审管互动 table
    assert from_platform.select(CLOCK_FIELDS).sort("clock_id").equals(from_csv.select(CLOCK_FIELDS).sort("clock_id"))
    assert from_platform["level"].n_unique() >= 5  # open, paused, late and completed clocks are all compared
    for table in ("suspensions", "pushes"):
        if table in canonical:
            columns = [c for c in canonical[table].columns if c != "reason"]
            assert loaded[table].select(columns).sort(columns).equals(canonical[table].select(columns).sort(columns))


def test_the_platform_due_dates_seeded_wrong_are_found_with_their_cause(platform: dict[str, Any]) -> None:
    config: PermitwatchConfig = platform["config"]
    fixture: PlatformFixture = platform["fixture"]
    cases = platform["loaded"]["cases"].accepted
    tables = {table: result.accepted for table, result in platform["loaded"].items()}
    evaluations = evaluations_of(tables, config)
    calendar = load_work_calendar(config.calendar_files)
    pauses = pausing_suspensions(tables["suspensions"], config.rules)
    found = platform_disagreements(cases, evaluations, pauses, calendar, AS_OF)
    assert dict(found.select("case_id", "likely_cause").iter_rows()) == fixture.seeded
    assert len(fixture.seeded) == 12
    assert cases.filter(pl.col("platform_due_date") == date(1753, 1, 1)).height >= 3


@pytest.mark.usefixtures("prefect_harness")
def test_the_nightly_run_counts_and_lists_the_disagreements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make_pipeline(tmp_path, monkeypatch, None)
    fixture, _ = use_platform("epoint", tmp_path / "epoint", monkeypatch)
    monkeypatch.setenv("PERMITWATCH_CONFIG_DIR", str(fixture.config_dir))
    result = CliRunner().invoke(app, ["run", "--as-of", AS_OF.isoformat()])
    assert result.exit_code == 0, result.output
    seeded = len(fixture.seeded)
    assert f"Platform due dates that differ from ours (open cases): {seeded}" in " ".join(result.output.split())
    summary = pipeline.scalar("SELECT summary FROM runs WHERE flow = 'nightly'")
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert summary["platform_due_date_disagreements"] == seeded == 12
    assert summary["platform_due_date_causes"] == dict(Counter(fixture.seeded.values()))
    rows = table_data(latest_artifact(PLATFORM_KEY))
    assert {row["case_id"]: row["likely_cause"] for row in rows} == fixture.seeded
    assert all({"due_date", "platform_due_date", "difference_workdays"} <= set(row) for row in rows)


def latest_artifact(key: str) -> Artifact:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(found, key=lambda artifact: artifact.created or 0)


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_the_same_files_read_a_postgresql_platform(
    name: str, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture, config = use_platform(name, tmp_path, monkeypatch, url=postgres_url)
    platform = loaded_platform(name, fixture, config, tmp_path)
    test_a_platform_loads_with_no_reject_but_those_planted(platform)
    test_a_platform_gives_the_same_clocks_as_canonical_csv(platform)
    test_the_platform_due_dates_seeded_wrong_are_found_with_their_cause(platform)
