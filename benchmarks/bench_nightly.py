"""Nightly-run benchmark: the whole `permitwatch run` on a history of N sample cases (six exports), against the floor
of reading every export with polars and hashing each row, measured in the same run.

    .venv/bin/python benchmarks/bench_nightly.py [--cases 250000 1000000] [--repeats 3] [--changed 0.005]
        [--batches 1] [--database sqlite|postgresql+psycopg://postgres@127.0.0.1:5432/test] [--ephemeral]

For each size: the first load (one run on an empty database), then `--repeats` unchanged reruns and `--repeats`
reruns with `--changed` of the cases changed (completions of open cases, limits of settled ones), each the next night.
With `--batches K` above 1 the history is built over K nights instead of one first load, as a city's history grows:
the cases are cut by acceptance time into K batches of equal counts, oldest first, and night k's exports are full
snapshots of batches 1..k (a case's steps, suspensions, deferrals and pushes go with it, a project with its earliest
case, a project without cases with the first batch), so that a history too large for one first load in one process
can be measured; the reruns follow on the whole history.
Every run is a fresh `permitwatch run` process, timed whole (Prefect start included) with its CPU time (user + system)
and peak RSS. By default a real Prefect server is started for the benchmark (`--ephemeral`: each command starts its
own). Figures are medians; the load average is printed, since the machine is shared and CPU time moves less with it
than the wall clock.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.bundle import load_config  # noqa: E402
from config.settings import BUNDLED_CONFIG_DIR  # noqa: E402
from tasks.clocks.calendar import load_work_calendar  # noqa: E402
from tasks.ingest.sample import SampleSpec, generate_sample, write_sample  # noqa: E402

FIRST_NIGHT = date(2026, 11, 2)
PERMITWATCH = str(ROOT / ".venv" / "bin" / "permitwatch")
PREFECT = str(ROOT / ".venv" / "bin" / "prefect")


def floor_seconds(inbox: Path) -> float:
    """Read every export with polars and hash each row: the least a run must do to see what changed."""
    started = time.perf_counter()
    for path in sorted(inbox.glob("*.csv")):
        pl.read_csv(path, infer_schema=False).hash_rows()
    return time.perf_counter() - started


def timed_run(env: dict[str, str], as_of: date, *extra: str) -> tuple[float, float, float, str]:
    """(seconds, CPU seconds (user + system), peak MB, the evaluation line) of one `permitwatch run` process."""
    command = ["/usr/bin/time", "-f", "%e %U %S %M", PERMITWATCH, "run", "--as-of", as_of.isoformat(), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, env={**env, "COLUMNS": "250"}, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: a source over its reject limit still evaluates everything else
        raise SystemExit(f"permitwatch run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    _, user, system, peak_kib = done.stderr.strip().splitlines()[-1].split()
    evaluation = next((line for line in done.stdout.splitlines() if line.startswith("Evaluation:")), "")
    return seconds, float(user) + float(system), int(peak_kib) / 1024, evaluation


def change_cases(inbox: Path, fraction: float, rng: np.random.Generator, as_of: date) -> None:
    """Change `fraction` of the cases in cases.csv: half complete an open case, half set a limit on a closed one."""
    path = inbox / "cases.csv"
    cases = pl.read_csv(path, infer_schema=False)
    count = max(2, int(cases.height * fraction))
    rows = pl.Series(rng.choice(cases.height, count, replace=False))
    is_open = cases["completed_at"].is_null()
    chosen = pl.Series(np.zeros(cases.height, dtype=bool)).scatter(rows, True)
    cases = cases.with_columns(
        completed_at=pl.when(chosen & is_open).then(pl.lit(as_of.isoformat())).otherwise("completed_at"),
        limit_days=pl.when(chosen & ~is_open).then(pl.lit(str(int(rng.integers(5, 30))))).otherwise("limit_days"),
    )
    cases.write_csv(path)


def batch_of_rows(tables: dict[str, pl.DataFrame], batches: int) -> dict[str, pl.Series]:
    """The batch (0 = oldest) of every row of every table: the cases by acceptance time in `batches` equal counts,
    each other row with its case, a project with its earliest case (the first batch if it has none)."""
    accepted = pl.coalesce(
        pl.col("accepted_at").str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False),
        pl.col("accepted_at").str.to_datetime("%Y/%m/%d %H:%M", strict=False),  # the spoiled 2023/1/20 9:05 style
    )
    cases = (
        tables["cases"].select("case_id", "project_code", accepted=accepted).with_row_index("row")
        .sort("accepted", "case_id")
        .with_columns(batch=(pl.int_range(pl.len(), dtype=pl.UInt64) * batches // pl.len()).cast(pl.UInt16))
        .sort("row")
    )
    # A re-exported duplicate goes with the case's earliest row; rows with a blank id each keep their own batch.
    named = cases.filter(pl.col("case_id").str.len_chars() > 0).group_by("case_id").agg(pl.col("batch").min())
    case_batch = cases.join(named, on="case_id", how="left", suffix="_of_case", maintain_order="left").select(
        pl.coalesce("batch_of_case", "batch")
    ).to_series()
    # Steps, suspensions, … of a case whose id was blanked in the export have no case row to follow: they go by
    # the date of the case's first step (its acceptance day) against the times at which the batches start.
    starts = cases.sort("accepted", "case_id")["accepted"].gather([cases.height * k // batches
                                                                   for k in range(1, batches)])
    unnamed = tables["steps"].filter(pl.col("step_no") == 1).join(named, on="case_id", how="anti")
    of_case = pl.concat([named, unnamed.select(
        "case_id", batch=starts.search_sorted(unnamed["started_at"].cast(pl.Datetime("us")), side="right")
        .cast(pl.UInt16),
    )])
    project = cases.with_columns(batch=case_batch).group_by("project_code").agg(pl.col("batch").min()).drop_nulls()
    keys = {name: frame["case_id"] for name, frame in tables.items() if name not in ("cases", "projects")}
    return {
        "cases": case_batch,
        "projects": tables["projects"]["project_code"].replace_strict(project["project_code"], project["batch"],
                                                                      default=0, return_dtype=pl.UInt16),
        **{name: case_id.replace_strict(of_case["case_id"], of_case["batch"], default=0, return_dtype=pl.UInt16)
           for name, case_id in keys.items()},
    }


def write_history(tables: dict[str, pl.DataFrame], batches: int, inbox: Path) -> Iterator[int]:
    """Write each building night's exports into `inbox` with the sample's own writer, yielding the night's number of
    case rows once they are ready: night k holds batches 1..k in full; the last night is the whole sample, written as
    a single first load is."""
    batch = batch_of_rows(tables, batches) if batches > 1 else {}
    for night in range(batches - 1):
        for name, frame in tables.items():
            write_sample({name: frame.filter(batch[name] <= night)}, inbox)
        yield int((batch["cases"] <= night).sum())
    write_sample(tables, inbox)
    cases = tables["cases"].height
    # The last night's run and the reruns after it need no copy of the sample in this process.
    tables.clear()
    batch.clear()
    yield cases


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = free_port()
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(3)
                return server
        time.sleep(0.5)
    server.terminate()
    raise SystemExit("the Prefect server did not start within 180 s")


@contextmanager
def bench_database(choice: str, work: Path) -> Iterator[str]:
    """The database URL for one size: a file under `work`, or a PostgreSQL schema dropped afterwards."""
    if choice == "sqlite":
        yield f"sqlite:///{work / 'permitwatch.db'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"pw_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(choice)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in choice else "?"
    try:
        yield f"{choice}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def bench_size(cases: int, args: argparse.Namespace, base_env: dict[str, str]) -> dict[str, Any]:
    config = load_config(BUNDLED_CONFIG_DIR)
    calendar = load_work_calendar(config.calendar_files)
    rng = np.random.default_rng(cases)
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as folder, bench_database(args.database,
                                                                                        Path(folder)) as url:
        work = Path(folder)
        inbox = work / "inbox"
        spec = SampleSpec(cases=cases, seed=7, last_date=FIRST_NIGHT)
        env = {
            **base_env,
            "PERMITWATCH_DATABASE_URL": url,
            "PERMITWATCH_INBOX_DIR": str(inbox),
            "PERMITWATCH_OUTBOX_DIR": str(work / "outbox"),
            "PERMITWATCH_VAR_DIR": str(work / "var"),
        }
        first, first_cpu, first_peaks = [], [], []
        as_of = FIRST_NIGHT
        nights = write_history(generate_sample(spec, config.rules, config.units, calendar), args.batches, inbox)
        for night, case_rows in enumerate(nights, start=1):
            if night == args.batches:
                rows = sum(pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item()
                           for path in inbox.glob("*.csv"))
                floors = [floor_seconds(inbox) for _ in range(3)]
            seconds, cpu, peak, line = timed_run(env, as_of)
            first.append(seconds)
            first_cpu.append(cpu)
            first_peaks.append(peak)
            label = "first load" if args.batches == 1 else f"night {night} of {args.batches} ({case_rows:,} case rows)"
            print(f"  {label} {seconds:.1f} s, CPU {cpu:.1f} s, peak {peak:.0f} MB. {line}", flush=True)
            as_of += timedelta(days=1)
        unchanged, changed, unchanged_cpu, changed_cpu, peaks = [], [], [], [], []
        for _ in range(args.repeats):
            seconds, cpu, peak, line = timed_run(env, as_of)
            unchanged.append(seconds)
            unchanged_cpu.append(cpu)
            peaks.append(peak)
            print(f"  unchanged rerun {seconds:.1f} s, CPU {cpu:.1f} s, peak {peak:.0f} MB. {line}", flush=True)
            as_of += timedelta(days=1)
        for _ in range(args.repeats):
            change_cases(inbox, args.changed, rng, as_of)
            floors.append(floor_seconds(inbox))
            seconds, cpu, peak, line = timed_run(env, as_of)
            changed.append(seconds)
            changed_cpu.append(cpu)
            peaks.append(peak)
            print(f"  {args.changed:.1%} changed rerun {seconds:.1f} s, CPU {cpu:.1f} s, peak {peak:.0f} MB. {line}",
                  flush=True)
            as_of += timedelta(days=1)
    floor = statistics.median(floors)
    return {
        "cases": cases, "rows": rows, "floor": floor, "first": first, "unchanged": statistics.median(unchanged),
        "changed": statistics.median(changed), "first_peak": max(first_peaks), "peak": max(peaks),
        "first_cpu": first_cpu, "unchanged_cpu": statistics.median(unchanged_cpu),
        "changed_cpu": statistics.median(changed_cpu),
    }


def building_cells(seconds: list[float], cpu: list[float]) -> tuple[str, str]:
    """The first-load cell and the first CPU figure: one first load, or each building night in turn."""
    if len(seconds) == 1:
        return f"{seconds[0]:.1f} s", f"{cpu[0]:.1f}"
    return (f"{len(seconds)} nights: {' / '.join(f'{s:.1f}' for s in seconds)} s",
            f"({' + '.join(f'{c:.1f}' for c in cpu)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.005)
    parser.add_argument("--batches", type=int, default=1,
                        help="build the history over this many nights, oldest cases first (1: one first load)")
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--ephemeral", action="store_true", help="no Prefect server: each command starts its own")
    args = parser.parse_args()
    if not 1 <= args.batches <= min(args.cases):
        parser.error("--batches must be between 1 and the smallest --cases")
    last_night = FIRST_NIGHT + timedelta(days=args.batches + 2 * args.repeats - 1)
    if last_night >= date.today():
        parser.error(f"the last night would be {last_night}: `permitwatch run --as-of` takes yesterday at the latest")

    base_env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    server = None
    with tempfile.TemporaryDirectory(prefix="bench-prefect-") as prefect_home:
        base_env["PREFECT_HOME"] = prefect_home
        if not args.ephemeral:
            server = start_server(base_env)
        try:
            results = []
            for cases in args.cases:
                print(f"{cases:,} cases (load average {os.getloadavg()[0]:.1f})", flush=True)
                results.append(bench_size(cases, args, base_env))
        finally:
            if server is not None:
                server.terminate()
                server.wait()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; Prefect: {'ephemeral' if args.ephemeral else 'server'};"
          f" database: {args.database.split('://')[0]}; medians of {args.repeats}")
    print("| cases | export rows | floor (read + hash) | first load | unchanged rerun | "
          f"{args.changed:.1%} changed rerun | changed / floor | CPU s, first / unchanged / changed | "
          "peak, first load / reruns |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        first, first_cpu = building_cells(row["first"], row["first_cpu"])
        print(f"| {row['cases']:,} | {row['rows']:,} | {row['floor']:.2f} s | {first} | "
              f"{row['unchanged']:.1f} s | {row['changed']:.1f} s | {row['changed'] / row['floor']:.1f}× | "
              f"{first_cpu} / {row['unchanged_cpu']:.1f} / {row['changed_cpu']:.1f} | "
              f"{row['first_peak'] / 1024:.2f} / {row['peak'] / 1024:.2f} GB |")


if __name__ == "__main__":
    main()
