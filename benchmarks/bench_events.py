"""Event-pairing benchmark: a suspensions export written as events (Epoint's `audit_project_unusual`: 10 暂停计时,
11 恢复, 20 延期), loaded and paired into suspensions. Target: 1,000,000 event rows in <= 10 s.

    .venv/bin/python benchmarks/bench_events.py [--rows 1000000] [--repeats 3]

The figure printed is the median of the repeats, for the whole load (read, pair, parse, check, split).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.sources import Source
from tasks.ingest.load import load_source


def write_events(path: Path, rows: int, seed: int = 7) -> None:
    """About rows/2.1 cases, each with one pause (start and end, a few left open) and one in ten an extension."""
    rng = np.random.default_rng(seed)
    cases = rows * 10 // 21
    start = np.datetime64(datetime(2026, 1, 5, 9)) + rng.integers(0, 300 * 24, cases).astype("timedelta64[h]")
    end = start + rng.integers(24, 24 * 15, cases).astype("timedelta64[h]")
    ids = np.char.add("EP", np.arange(cases).astype(str))
    open_pause = rng.random(cases) < 0.05
    extended = rng.random(cases) < 0.1
    frames = [
        pl.DataFrame({"projectguid": ids, "operatetype": "10", "operatedate": start, "delayworkday": None}),
        pl.DataFrame({"projectguid": ids[~open_pause], "operatetype": "11", "operatedate": end[~open_pause],
                      "delayworkday": None}),
        pl.DataFrame({"projectguid": ids[extended], "operatetype": "20",
                      "operatedate": end[extended] + np.timedelta64(timedelta(days=1)), "delayworkday": "5"}),
    ]
    events = pl.concat([frame.cast({"delayworkday": pl.String}) for frame in frames]).sample(fraction=1.0, seed=seed)
    events.with_columns(pl.col("operatedate").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        inbox = Path(directory)
        write_events(inbox / "unusual.csv", args.rows)
        source = Source(
            name="epoint-suspensions", kind="csv", table="suspensions", path="unusual.csv",
            mapping={"projectguid": "case_id", "operatedate": "started_at", "delayworkday": "limit_days"},
            defaults={"kind": "挂起"},
            events={"column": "operatetype", "start": ["10"], "end": ["11"], "single": {"20": "延期"}},
        )
        timings = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            result = load_source(source, inbox_dir=inbox)
            timings.append(time.perf_counter() - began)
            assert result.error is None, result.error
        lines = sum(1 for _ in (inbox / "unusual.csv").open(encoding="utf-8")) - 1
        print(f"load average {os.getloadavg()[0]:.2f}; {lines:,} event rows → {result.accepted.height:,} "
              f"suspensions, {result.rejected.height:,} rejected")
        print(f"median {statistics.median(timings):.2f} s over {args.repeats} runs "
              f"({', '.join(f'{t:.2f}' for t in timings)})")


if __name__ == "__main__":
    main()
