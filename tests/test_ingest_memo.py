"""The memo of per-row checking (tasks/ingest/memo.py) changes no result: a load that takes rows from it equals a
load that checks every row, after any edit to the exports; a changed source definition or alias table, or a memo
that cannot be read, makes the load check every row again."""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from config.bundle import PermitwatchConfig, load_config
from config.settings import BUNDLED_CONFIG_DIR
from config.sources import Source
from tasks.clocks.calendar import load_work_calendar
from tasks.ingest import load
from tasks.ingest.load import LoadResult, case_reference, load_source
from tasks.ingest.memo import FINGERPRINT_KEY, memo_path
from tasks.ingest.platform_codes import KnownCodes
from tasks.ingest.sample import SampleSpec, generate_sample, write_sample

LAST_DATE = date(2026, 11, 20)


@pytest.fixture(scope="module")
def config() -> PermitwatchConfig:
    return load_config(BUNDLED_CONFIG_DIR)


@pytest.fixture
def checked_rows(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of rows each call of the per-row check was given."""
    counts: list[int] = []
    check = load._check_file

    def counting(source: Source, raw: load._RawTable, codes: KnownCodes | None = None) -> load._CheckedFile:
        counts.append(raw.frame.height)
        return check(source, raw, codes)

    monkeypatch.setattr(load, "_check_file", counting)
    yield counts


def write_exports(config: PermitwatchConfig, inbox: Path, seed: int) -> None:
    spec = SampleSpec(cases=400, seed=seed, last_date=LAST_DATE, dirty_fraction=0.03)
    write_sample(generate_sample(spec, config.rules, config.units, load_work_calendar(config.calendar_files)), inbox)


def load_all(
    config: PermitwatchConfig, inbox: Path, memo_dir: Path | None, codes: KnownCodes | None = None, **options: object
) -> dict[str, LoadResult]:
    """Every bundled source, cases first, suspensions checked against this load's cases."""
    results: dict[str, LoadResult] = {}
    for source in sorted(config.sources.sources, key=lambda entry: entry.table != "cases"):
        reference = case_reference([results["cases"].accepted], None) if source.table == "suspensions" else None
        results[source.name] = load_source(source, inbox_dir=inbox, case_reference=reference, codes=codes,
                                           memo_dir=memo_dir, **options)  # type: ignore[arg-type]
    return results


def assert_same(with_memo: dict[str, LoadResult], without: dict[str, LoadResult]) -> None:
    assert with_memo.keys() == without.keys()
    for name, expected in without.items():
        got = with_memo[name]
        assert got.error is None and expected.error is None, (got.error, expected.error)
        assert got.accepted.equals(expected.accepted), name
        assert got.accepted_origin.equals(expected.accepted_origin), name
        assert got.rejected.equals(expected.rejected), name
        assert got.file_counts == expected.file_counts, name
        assert got.rows_read == expected.rows_read, name
        assert got.pii_headers == expected.pii_headers, name


def edit_csv(path: Path, change: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    path.write_text(change(pl.read_csv(path, infer_schema=False)).write_csv(), encoding="utf-8")


def messy_night(inbox: Path, rng: np.random.Generator) -> None:
    """The next night's exports, spoiled and edited the way real ones are: values changed (also to messy but readable
    spellings), rows made bad, rows fixed, duplicates, control characters in a mapped and an unmapped column, new
    rows, and every file's lines shuffled."""

    def cases(frame: pl.DataFrame) -> pl.DataFrame:
        n = frame.height
        pick = [pl.Series(rng.choice(n, n // 20, replace=False)) for _ in range(6)]
        at = [pl.int_range(pl.len()).is_in(rows.implode()) for rows in pick]
        frame = frame.with_columns(
            limit_days=pl.when(at[0]).then(pl.lit("７")).otherwise("limit_days"),
            completed_at=pl.when(at[1]).then(pl.lit("2026年11月3日 9时05分")).otherwise("completed_at"),
            accepted_at=pl.when(at[2]).then(pl.lit("not a date")).otherwise("accepted_at"),
            region_code=pl.when(at[3]).then(pl.lit("36070")).otherwise(
                pl.when(pl.col("region_code").str.len_chars() == 5).then(pl.lit("360702")).otherwise("region_code")
            ),
            applicant_name=pl.when(at[4]).then(pl.lit("张\x00三")).otherwise("applicant_name"),
            备注=pl.when(at[5]).then(pl.lit("\x0c")).otherwise(pl.lit("")),
        )
        duplicates = frame.sample(10, seed=int(rng.integers(1 << 30))).with_columns(
            updated_at=pl.lit("2026-11-19 08:00:00")
        )
        added = frame.sample(5, seed=int(rng.integers(1 << 30))).with_columns(
            case_id=pl.format("NEW{}", pl.int_range(pl.len()))
        )
        return pl.concat([frame, duplicates, added])

    edit_csv(inbox / "cases.csv", cases)
    edit_csv(inbox / "steps.csv", lambda frame: frame.with_columns(
        limit_days=pl.when(pl.int_range(pl.len()) % 17 == 0).then(pl.lit("x")).otherwise("limit_days")
    ))
    edit_csv(inbox / "suspensions.csv", lambda frame: pl.concat([frame, frame.head(3)]))
    for path in sorted(inbox.glob("*.csv")):
        edit_csv(path, lambda frame: frame.sample(fraction=1.0, shuffle=True, seed=int(rng.integers(1 << 30))))


@pytest.mark.parametrize("seed", [5, 23])
def test_a_load_from_the_memo_equals_a_load_that_checks_every_row(
    config: PermitwatchConfig, tmp_path: Path, checked_rows: list[int], seed: int
) -> None:
    inbox, memo_dir = tmp_path / "inbox", tmp_path / "memo"
    write_exports(config, inbox, seed)
    codes = KnownCodes.of(config)
    first = load_all(config, inbox, memo_dir, codes)
    assert_same(first, load_all(config, inbox, None, codes))
    rows_read = sum(result.rows_read for result in first.values())

    checked_rows.clear()
    assert_same(load_all(config, inbox, memo_dir, codes), first)
    rejected = sum(result.rejected.height for result in first.values())
    assert sum(checked_rows) <= rejected, "an unchanged export checks only its rejected rows again"

    messy_night(inbox, np.random.default_rng(seed))
    checked_rows.clear()
    with_memo = load_all(config, inbox, memo_dir, codes)
    checked_with_memo = sum(checked_rows)
    without = load_all(config, inbox, None, codes)
    assert_same(with_memo, without)
    assert with_memo["cases"].rejected["reasons"].str.contains("备注: control character U+000C", literal=True).sum() > 0
    assert checked_with_memo < rows_read / 2

    # The memo written after the messy night serves the night after it too.
    checked_rows.clear()
    assert_same(load_all(config, inbox, memo_dir, codes), without)


def test_each_file_and_layout_of_a_source_is_keyed_apart(config: PermitwatchConfig, tmp_path: Path) -> None:
    """Two files of one source, one with its columns renamed and reordered: the same values under other headers
    give the same result as a load without memo."""
    inbox, memo_dir = tmp_path / "inbox", tmp_path / "memo"
    write_exports(config, inbox, 9)
    cases = pl.read_csv(inbox / "cases.csv", infer_schema=False)
    (inbox / "cases.csv").unlink()
    cases.head(200).write_csv(inbox / "cases-a.csv")
    renamed = {"case_id": "办件编号", "accepted_at": "受理时间", "limit_days": "承诺时限"}
    other = cases.slice(150).rename(renamed)
    other.select(reversed(other.columns)).write_csv(inbox / "cases-b.csv")
    source = config.sources.get("cases")
    first = load_source(source, inbox_dir=inbox, memo_dir=memo_dir)
    second = load_source(source, inbox_dir=inbox, memo_dir=memo_dir)
    expected = load_source(source, inbox_dir=inbox)
    assert_same({"cases": first}, {"cases": expected})
    assert_same({"cases": second}, {"cases": expected})
    assert any("duplicate of line" in reasons for reasons in expected.rejected["reasons"])


def test_a_changed_source_definition_or_alias_table_makes_the_memo_ignored(
    config: PermitwatchConfig, tmp_path: Path, checked_rows: list[int]
) -> None:
    inbox, memo_dir = tmp_path / "inbox", tmp_path / "memo"
    write_exports(config, inbox, 31)
    source = config.sources.get("cases")
    codes = KnownCodes.of(config)
    load_source(source, inbox_dir=inbox, codes=codes, memo_dir=memo_dir)
    rows = pl.read_csv(inbox / "cases.csv", infer_schema=False)
    unit = rows["unit_code"][0]

    checked_rows.clear()
    load_source(source, inbox_dir=inbox, codes=codes, memo_dir=memo_dir)
    assert sum(checked_rows) < rows.height / 10

    # A value map: rows whose raw values did not change now have other canonical values.
    mapped = source.model_copy(update={"values": {"unit_code": {unit: "360799SPJ"}}})
    checked_rows.clear()
    result = load_source(mapped, inbox_dir=inbox, codes=codes, memo_dir=memo_dir)
    assert checked_rows == [rows.height]
    assert_same({"cases": result}, {"cases": load_source(mapped, inbox_dir=inbox, codes=codes)})
    assert "360799SPJ" in result.accepted["unit_code"].to_list()

    # A new unit alias: the same.
    aliased = KnownCodes(units={**codes.units, unit.lower(): "360703SPJ"}, matters=codes.matters)
    checked_rows.clear()
    result = load_source(mapped, inbox_dir=inbox, codes=aliased, memo_dir=memo_dir)
    assert checked_rows == [rows.height]
    assert_same({"cases": result}, {"cases": load_source(mapped, inbox_dir=inbox, codes=aliased)})

    # `run --full` reads no memo but writes it: the next load takes its rows from it again.
    checked_rows.clear()
    load_source(mapped, inbox_dir=inbox, codes=aliased, memo_dir=memo_dir, reuse_memo=False)
    load_source(mapped, inbox_dir=inbox, codes=aliased, memo_dir=memo_dir)
    assert checked_rows[0] == rows.height and checked_rows[1] < rows.height / 10


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "foreign"])
def test_a_memo_that_cannot_be_used_is_ignored(
    config: PermitwatchConfig, tmp_path: Path, checked_rows: list[int], damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, memo_dir = tmp_path / "inbox", tmp_path / "memo"
    write_exports(config, inbox, 41)
    source = config.sources.get("cases")
    expected = load_source(source, inbox_dir=inbox)
    load_source(source, inbox_dir=inbox, memo_dir=memo_dir)
    path = memo_path(memo_dir, source.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(memo_dir.stat().st_mode) == 0o700
    fingerprint = pl.read_parquet_metadata(path)[FINGERPRINT_KEY]
    if damage == "garbage":
        path.write_bytes(b"PAR1" + bytes(range(256)) * 8)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # the right fingerprint on a frame of other columns
        pl.DataFrame({"x": [1]}).write_parquet(path, metadata={FINGERPRINT_KEY: fingerprint})

    checked_rows.clear()
    with caplog.at_level(logging.WARNING, logger="tasks.ingest.memo"):
        result = load_source(source, inbox_dir=inbox, memo_dir=memo_dir)
    assert f"{path}: memo ignored, every row is checked" in caplog.text  # outside a flow run; in one, the run's log
    assert checked_rows == [expected.rows_read]
    assert_same({"cases": result}, {"cases": expected})
    # Rewritten whole: the next load uses it.
    checked_rows.clear()
    assert_same({"cases": load_source(source, inbox_dir=inbox, memo_dir=memo_dir)}, {"cases": expected})
    assert sum(checked_rows) <= expected.rejected.height
