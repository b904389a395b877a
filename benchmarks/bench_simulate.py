"""Benchmark: `permitwatch simulate` over 1,000,000 cases. Target: ≤ 10 s for the comparison and its files.

    .venv/bin/python benchmarks/bench_simulate.py [--cases 1000000] [--repeat 3]

Input: `tasks/ingest/sample.py` data checked through the ingestion code into canonical tables, as bench_report.py makes
it (not timed). Timed, each repeat: every clock built and evaluated under the rules in force, the kinds of clock the
proposal touches built and evaluated again under the retrospective and the merged rules, the comparison and its
views (`simulate`), then the XLSX + HTML + PNG. The proposal is the README's: Rongjiang engineering projects 75 → 60
working days from 2027-01-01, plus SXTQ-A001 (food business licence) 10 → 8 from 2026-01-01 so that the case and
step clocks, the bulk of the data, are rebuilt too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench_report import canonical_tables

from config.bundle import load_config
from config.proposal import load_proposal
from config.settings import BUNDLED_CONFIG_DIR
from tasks.clocks.calendar import load_work_calendar
from tasks.reports.report import dimensions_from_config
from tasks.reports.simulate import simulate
from tasks.reports.simulate_report import write_what_if

PROPOSAL = """
project_categories:
  - {code: rongjiang_engineering, name: 蓉江新区工程建设项目审批, limit: 60, effective_from: 2027-01-01}
matters:
  - {code: SXTQ-A001, name: 食品经营许可, mode: county_end_to_end, limit: 8, effective_from: 2026-01-01,
     steps: [{step_no: 1, name: 县级受理审核决定, level: county, limit: 8}]}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()

    config = load_config(BUNDLED_CONFIG_DIR)
    calendar = load_work_calendar(config.calendar_files)
    dimensions = dimensions_from_config(config.rules, config.units)
    proposal = load_proposal(PROPOSAL, config.rules)
    with tempfile.TemporaryDirectory(prefix="permitwatch-bench-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        tables, spec = canonical_tables(arguments.cases, folder)
        print(
            f"input: {tables['cases'].height:,} cases, {tables['steps'].height:,} steps, "
            f"{tables['pushes'].height:,} pushes (sample + ingestion {time.perf_counter() - started:.1f} s, "
            "not timed); "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        timings: dict[str, list[float]] = {"simulate": [], "files": [], "total": [], "total cpu": []}
        for attempt in range(arguments.repeat):
            t0, cpu0 = time.perf_counter(), time.process_time()
            result = simulate(tables, config.rules, proposal, calendar, dimensions, spec.last_date)
            t1 = time.perf_counter()
            write_what_if(result, folder / f"out-{attempt}", config.templates_dir)
            t2, cpu2 = time.perf_counter(), time.process_time()
            # CPU seconds (all threads) as well as wall time: on the shared machine the wall time mostly measures
            # how long the process waited for a core.
            for stage, seconds in zip(timings, (t1 - t0, t2 - t1, t2 - t0, cpu2 - cpu0), strict=True):
                timings[stage].append(seconds)
        finished = result.retrospective["by_kind"]["clocks"][-1]
        print(
            f"as of {result.as_of}: {finished:,} finished clocks compared, {result.finished_changed.height:,} judged "
            f"differently; {result.open_levels['before'][-1]:,} open clocks, {result.open_changed.height:,} changed"
        )
        for stage, values in timings.items():
            print(f"{stage:>9}: median {statistics.median(values):6.2f} s  (runs: "
                  + ", ".join(f"{value:.2f}" for value in values) + ")")
        verdict = "within" if statistics.median(timings["total"]) <= 10 else "OVER"
        print(f"target ≤ 10 s for {arguments.cases:,} cases: {verdict}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
