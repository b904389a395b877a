"""Benchmark: the statistics report over 1,000,000 cases. Target: ≤ 10 s for building and writing one report.

    .venv/bin/python benchmarks/bench_report.py [--cases 1000000] [--repeat 3] [--period week]

Input: `tasks/ingest/sample.py` data (vectorised), checked once through the ingestion code into canonical tables (not
timed). Timed, each repeat: the deadline engine (clocks built, evaluated at the as-of date and at every trend period's
end), the metric views, and the XLSX + HTML + PNG files. Prints the median of each stage and of the total.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from config.bundle import load_config
from config.canonical import TABLES
from config.settings import BUNDLED_CONFIG_DIR
from config.sources import Source
from tasks.clocks.calendar import load_work_calendar
from tasks.ingest.load import load_sources
from tasks.ingest.sample import SampleSpec, generate_sample
from tasks.reports.metrics import MetricInputs, build_views, report_periods
from tasks.reports.report import dimensions_from_config, evaluate_for_report, write_report

TREND_PERIODS = 8


def canonical_tables(cases: int, folder: Path) -> tuple[dict[str, pl.DataFrame], SampleSpec]:
    config = load_config(BUNDLED_CONFIG_DIR)
    calendar = load_work_calendar(config.calendar_files)
    spec = SampleSpec(cases=cases, dirty_fraction=0.0)
    raw = generate_sample(spec, config.rules, config.units, calendar)
    for name, frame in raw.items():
        frame.write_parquet(folder / f"{name}.parquet")
    sources = [Source(name=name, kind="parquet", table=name, path=f"{name}.parquet") for name in TABLES]
    results = load_sources(sources, inbox_dir=folder)
    failed = [result.error for result in results if result.error]
    if failed:
        raise SystemExit(f"sample did not load: {failed}")
    return {result.table: result.accepted for result in results}, spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--period", choices=["week", "month"], default="week")
    arguments = parser.parse_args()

    config = load_config(BUNDLED_CONFIG_DIR)
    calendar = load_work_calendar(config.calendar_files)
    dimensions = dimensions_from_config(config.rules, config.units)
    with tempfile.TemporaryDirectory(prefix="permitwatch-bench-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        tables, spec = canonical_tables(arguments.cases, folder)
        print(
            f"input: {tables['cases'].height:,} cases, {tables['steps'].height:,} steps, "
            f"{tables['pushes'].height:,} pushes (sample + ingestion {time.perf_counter() - started:.1f} s, not timed)"
        )
        as_of = spec.last_date
        timings: dict[str, list[float]] = {"engine": [], "metrics": [], "files": [], "total": []}
        for attempt in range(arguments.repeat):
            t0 = time.perf_counter()
            periods = report_periods(arguments.period, as_of, TREND_PERIODS)
            evaluations, snapshots = evaluate_for_report(tables, config.rules, calendar, periods, as_of)
            t1 = time.perf_counter()
            inputs = MetricInputs(tables, evaluations, snapshots, dimensions, as_of)
            report = build_views(inputs, arguments.period, trend_periods=TREND_PERIODS)
            t2 = time.perf_counter()
            files = write_report(report, folder / f"out-{attempt}", config.templates_dir)
            t3 = time.perf_counter()
            for stage, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                timings[stage].append(seconds)
        overdue = report.views["overdue_cases"].height
        print(
            f"report {report.period.label} as of {as_of}: {overdue:,} open overdue cases listed, "
            f"xlsx {files.xlsx.stat().st_size / 1e6:.1f} MB"
        )
        for stage, values in timings.items():
            print(
                f"{stage:>8}: median {statistics.median(values):6.2f} s  (runs: "
                + ", ".join(f"{value:.2f}" for value in values)
                + ")"
            )
        verdict = "within" if statistics.median(timings["total"]) <= 10 else "OVER"
        print(f"target ≤ 10 s for {arguments.cases:,} cases: {verdict}")


if __name__ == "__main__":
    main()
