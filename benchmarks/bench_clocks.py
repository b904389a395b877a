"""Speed of the deadline engine: the engine alone on N generated clocks, and `permitwatch evaluate` end to end.

    .venv/bin/python benchmarks/bench_clocks.py                      # 1,000,000 clocks, 30% with 1-3 pauses
    .venv/bin/python benchmarks/bench_clocks.py --clocks 200000 --skip-cli

Prints medians of several runs: the engine's wall and CPU time and clocks per second; `evaluate`'s whole-process
time and peak memory on Parquet (and, apart, starting Python and importing the CLI), beside the polars reference run
in the same minutes, alternating; and the anchor, a naive per-row walk over chinese-calendar, on a few hundred clocks.
The polars reference is a fresh Python process that reads the same Parquet files with polars and computes each case's
due date, paused working days and level with polars' own business-day functions over the same holidays, then writes
Parquet: the least a polars program doing this job costs (it cannot count make-up working days, 调休, so some of its
dates are wrong). Targets: the engine alone at >= 10 million case clocks/s; `evaluate` on 1M clocks within 3 s for
the whole process, 1 GB, and at most 3 times the polars reference; the anchor manages about 240 clocks/s.
The machine is shared: every section prints the load average (1, 5, 15 minutes) it ran under.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.clocks.calendar import default_work_calendar  # noqa: E402
from tasks.clocks.engine import CLOCK_COLUMNS, evaluate_clocks  # noqa: E402

EPOCH = date(1970, 1, 1)
FIRST_START = date(2025, 1, 2)
AS_OF = date(2026, 12, 10)
KINDS = np.array(["补正", "专家评审", "现场勘查", "公示"])
MATTERS = np.array(["SXTQ-A001", "SXTQ-A004", "SXTQ-B001", "SXTQ-C004", "SJ-D001", "SJ-D004"])


def generate(count: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(clocks, pauses) for the engine and (cases, suspensions) in canonical columns for `evaluate`.

    Starts spread over 2025-01-02..2026-12-10 (some due in the provisional 2027), 10% calendar-day limits, half of
    them completed, 30% with 1-3 suspensions of which some are still open and a quarter restart the clock.
    """
    rng = np.random.default_rng(seed)
    origin = (FIRST_START - EPOCH).days
    start = origin + rng.integers(0, (AS_OF - FIRST_START).days, count)
    limit = rng.integers(0, 31, count).astype(np.int32)
    calendar_kind = rng.random(count) < 0.1
    completed = np.where(rng.random(count) < 0.5, start + rng.integers(0, 60, count), -1)
    case_ids = pl.Series("case_id", np.char.add("C", np.arange(count).astype("U7")))
    with_pauses = rng.choice(count, int(0.3 * count), replace=False)
    owner = np.repeat(with_pauses, rng.integers(1, 4, len(with_pauses)))
    pause_start = start[owner] + rng.integers(0, 25, len(owner))
    pause_end = pause_start + rng.integers(1, 15, len(owner))
    pause_open = rng.random(len(owner)) < 0.1
    # a pause stays within its case's life: it ends by the completion, if any
    finished = completed[owner] >= 0
    pause_start = np.where(finished, np.minimum(pause_start, completed[owner]), pause_start)
    pause_end = np.where(finished, np.minimum(np.maximum(pause_end, pause_start), completed[owner]), pause_end)
    pause_open &= ~finished
    restart = rng.random(len(owner)) < 0.25

    def dates(days: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
        series = pl.Series(days.astype(np.int32)).cast(pl.Date)
        if missing is None:
            return series
        return pl.select(pl.when(pl.lit(pl.Series(missing)).not_()).then(pl.lit(series))).to_series()

    clocks = pl.DataFrame(
        {
            "clock_id": "case:" + case_ids,
            "clock_type": pl.repeat("case", count, eager=True),
            "subject_id": case_ids,
            "case_id": case_ids,
            "unit_code": pl.repeat("360702SPJ", count, eager=True),
            "matter_code": MATTERS[rng.integers(0, len(MATTERS), count)],
            "region_code": pl.repeat("360702", count, eager=True),
            "start_date": dates(start),
            "limit_days": limit,
            "limit_kind": np.where(calendar_kind, "calendar", "workday"),
            "completed_date": dates(completed, completed < 0),
            "warning_days": np.maximum(1, np.ceil(limit * 0.2)).astype(np.int32),
            "escalate_after": np.full(count, 5, dtype=np.int32),
            "repeat_every": np.full(count, 3, dtype=np.int32),
        }
    ).cast(CLOCK_COLUMNS)  # type: ignore[arg-type]
    pauses = pl.DataFrame(
        {
            "clock_id": clocks["clock_id"].gather(owner),
            "start_date": dates(pause_start),
            "end_date": dates(pause_end, pause_open),
            "restart": restart,
        }
    )
    cases = clocks.select(
        "case_id",
        "matter_code",
        "unit_code",
        pl.col("start_date").alias("accepted_at"),
        pl.col("completed_date").alias("completed_at"),
        "limit_days",
        "limit_kind",
    )
    suspensions = pauses.select(
        pl.col("clock_id").str.strip_prefix("case:").alias("case_id"),
        pl.Series("kind", np.where(restart, "补正", KINDS[1:][rng.integers(0, 3, len(owner))])),
        pl.col("start_date").alias("started_at"),
        pl.col("end_date").alias("ended_at"),
    ).unique(["case_id", "kind", "started_at"], keep="first")
    return clocks, pauses, cases, suspensions


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def bench_engine(clocks: pl.DataFrame, pauses: pl.DataFrame, repeat: int) -> None:
    calendar = default_work_calendar()
    evaluate_clocks(clocks.head(1000), pauses, calendar, AS_OF)  # warm up
    print(f"engine: {clocks.height:,} clocks, {pauses.height:,} pauses, as of {AS_OF}, {repeat} runs ({load()})")
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = evaluate_clocks(clocks, pauses, calendar, AS_OF)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    levels = dict(result.group_by("level").len().iter_rows())
    rate = clocks.height / wall / 1e6
    print(f"  median wall {wall * 1000:.0f} ms → {rate:.1f} M clocks/s (best {min(walls) * 1000:.0f} ms)")
    print(f"  median CPU  {cpu * 1000:.0f} ms (all threads, {os.cpu_count()} cores)")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (data and engine)")
    print(f"  levels: {levels}")
    print(f"  ({load()})")


def bench_anchor(clocks: pl.DataFrame, pauses: pl.DataFrame, count: int, repeat: int) -> None:
    """The naive way: walk each clock day by day, asking chinese-calendar about every day (tests/clock_reference.py;
    a year the package lacks is asked of the provisional calendar)."""
    import chinese_calendar

    from tests.clock_reference import RefClock, RefPause, evaluate_one

    calendar = default_work_calendar()
    last_year = max(chinese_calendar.holidays).year

    def is_workday(day: date) -> bool:
        return chinese_calendar.is_workday(day) if day.year <= last_year else calendar.is_workday(day)

    sample = clocks.head(count)
    grouped: dict[str, list[RefPause]] = {}
    for clock_id, start, end, restart in pauses.filter(pl.col("clock_id").is_in(sample["clock_id"].implode())).rows():
        grouped.setdefault(clock_id, []).append(RefPause(start, end, restart))
    rows = [
        (
            RefClock(
                row["start_date"],
                row["limit_days"],
                row["limit_kind"],
                row["completed_date"],
                row["warning_days"],
                row["escalate_after"],
            ),
            grouped.get(row["clock_id"], []),
        )
        for row in sample.iter_rows(named=True)
    ]
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        for clock, clock_pauses in rows:
            evaluate_one(clock, clock_pauses, AS_OF, is_workday, calendar.is_provisional)
        rates.append(count / (time.perf_counter() - started))
    print(f"anchor, a per-row walk over chinese-calendar: {count} clocks, {repeat} runs ({load()})")
    print(f"  median {statistics.median(rates):,.0f} clocks/s (best {max(rates):,.0f})")


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MB), exit code and output of one child process (its own resource usage: wait4)."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        return wall, usage.ru_maxrss / 1024, child.returncode, output.read()


# The polars reference (see the module docstring): argv is the folder holding the inputs and the as-of date.
POLARS_REFERENCE = """
import sys
from datetime import date
import polars as pl
folder, as_of = sys.argv[1], date.fromisoformat(sys.argv[2])
holidays = pl.read_parquet(f"{folder}/holidays.parquet")["day"].to_list()
cases = pl.read_parquet(f"{folder}/cases.parquet")
paused = (
    pl.read_parquet(f"{folder}/suspensions.parquet")
    .select("case_id", pl.business_day_count("started_at", pl.col("ended_at").fill_null(as_of), holidays=holidays)
            .alias("paused"))
    .group_by("case_id").agg(pl.col("paused").sum())
)
days = pl.col("limit_days") + pl.col("paused").fill_null(0)
due = (
    pl.when(pl.col("limit_kind") == "calendar")
    .then(pl.col("accepted_at") + pl.duration(days=days))
    .otherwise(pl.col("accepted_at").dt.add_business_days(days, holidays=holidays, roll="forward"))
)
result = cases.join(paused, on="case_id", how="left").with_columns(due.alias("due_date")).with_columns(
    pl.when(pl.col("completed_at").is_not_null())
    .then(pl.when(pl.col("completed_at") <= pl.col("due_date")).then(pl.lit("on_time")).otherwise(pl.lit("late")))
    .when(pl.col("due_date") < as_of).then(pl.lit("overdue"))
    .otherwise(pl.lit("running")).alias("level")
)
result.select("case_id", "due_date", "level").write_parquet(f"{folder}/reference.parquet")
"""


def official_holidays(first: date, last: date) -> pl.DataFrame:
    """The weekdays that are not working days in the bundled calendar (a make-up Saturday cannot be said this way)."""
    calendar = default_work_calendar()
    days = pl.date_range(first, last, eager=True)
    return pl.DataFrame({"day": [day for day in days if day.weekday() < 5 and not calendar.is_workday(day)]})


def bench_cli(cases: pl.DataFrame, suspensions: pl.DataFrame, repeat: int, without_bytecode: bool) -> None:
    permitwatch = ROOT / ".venv" / "bin" / "permitwatch"
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        cases.write_parquet(folder / "cases.parquet")
        suspensions.write_parquet(folder / "suspensions.parquet")
        official_holidays(FIRST_START, date(AS_OF.year + 1, 12, 31)).write_parquet(folder / "holidays.parquet")
        reference = [sys.executable, "-c", POLARS_REFERENCE, str(folder), AS_OF.isoformat()]
        command = [
            str(permitwatch),
            "evaluate",
            str(folder / "cases.parquet"),
            "--suspensions",
            str(folder / "suspensions.parquet"),
            "--as-of",
            AS_OF.isoformat(),
            "-o",
            str(folder / "out.parquet"),
        ]
        print(
            f"permitwatch evaluate: {cases.height:,} cases, {suspensions.height:,} suspensions (Parquet), "
            f"{repeat} runs ({load()})"
        )
        imports = [_run([sys.executable, "-c", "import cli.main"])[0] for _ in range(repeat)]
        walls, peaks, references = [], [], []
        for _ in range(repeat):
            wall, peak, code, output = _run(command)
            if code != 0:
                raise SystemExit(f"evaluate failed:\n{output}")
            walls.append(wall)
            peaks.append(peak)
            wall, _, code, output = _run(reference)
            if code != 0:
                raise SystemExit(f"the polars reference failed:\n{output}")
            references.append(wall)
        rows = pl.read_parquet(folder / "out.parquet").height
        # Python looks for cached bytecode under an empty prefix only: every module is compiled from source, as in an
        # install that was not compiled (and where Python may not write its cache).
        with tempfile.TemporaryDirectory() as empty:
            uncompiled = {**os.environ, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
            cold = [_run(command, uncompiled)[0] for _ in range(repeat if without_bytecode else 0)]
    print(
        f"  → {rows:,} rows; median wall {statistics.median(walls):.2f} s for the whole process "
        f"(best {min(walls):.2f} s, worst {max(walls):.2f} s)"
    )
    print(f"  peak RSS {statistics.median(peaks):.0f} MB (largest {max(peaks):.0f} MB)")
    print(
        f"  the polars reference, alternating with it: median {statistics.median(references):.2f} s; evaluate is "
        f"{statistics.median(walls) / statistics.median(references):.1f}x the reference"
    )
    print(f"  starting Python and importing the CLI (`import cli.main`): median {statistics.median(imports):.2f} s")
    if cold:
        print(f"  without compiled bytecode (imports compiled from source): median {statistics.median(cold):.2f} s")
    print(f"  ({load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clocks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="engine runs")
    parser.add_argument("--cli-repeat", type=int, default=5, help="evaluate (and import) runs")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--anchor", type=int, default=300, help="clocks for the per-row walk (0: skip)")
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument(
        "--without-bytecode", action="store_true", help="also time evaluate with every import compiled from source"
    )
    arguments = parser.parse_args()
    clocks, pauses, cases, suspensions = generate(arguments.clocks, arguments.seed)
    bench_engine(clocks, pauses, arguments.repeat)
    if arguments.anchor:
        bench_anchor(clocks, pauses, arguments.anchor, 3)
    if not arguments.skip_cli:
        bench_cli(cases, suspensions, arguments.cli_repeat, arguments.without_bytecode)


if __name__ == "__main__":
    main()
