"""Nightly-run benchmark: the whole `permitwatch run` on a history of N sample cases (six exports), against the floor
of reading every export with polars and hashing each row, measured in the same run.

    .venv/bin/python benchmarks/bench_nightly.py [--cases 250000 1000000] [--repeats 3] [--changed 0.005]
        [--database sqlite|postgresql+psycopg://postgres@127.0.0.1:5432/test] [--ephemeral]

For each size: the first load (one run on an empty database), then `--repeats` unchanged reruns and `--repeats`
reruns with `--changed` of the cases changed (completions of open cases, limits of settled ones), each the next night.
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


def bench_size(cases: int, args: argparse.Namespace, base_env: dict[str, str]) -> dict[str, float]:
    config = load_config(BUNDLED_CONFIG_DIR)
    calendar = load_work_calendar(config.calendar_files)
    rng = np.random.default_rng(cases)
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as folder, bench_database(args.database,
                                                                                        Path(folder)) as url:
        work = Path(folder)
        inbox = work / "inbox"
        spec = SampleSpec(cases=cases, seed=7, last_date=FIRST_NIGHT)
        write_sample(generate_sample(spec, config.rules, config.units, calendar), inbox)
        rows = sum(pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item()
                   for path in inbox.glob("*.csv"))
        env = {
            **base_env,
            "PERMITWATCH_DATABASE_URL": url,
            "PERMITWATCH_INBOX_DIR": str(inbox),
            "PERMITWATCH_OUTBOX_DIR": str(work / "outbox"),
            "PERMITWATCH_VAR_DIR": str(work / "var"),
        }
        floors = [floor_seconds(inbox) for _ in range(3)]
        as_of = FIRST_NIGHT
        first, first_cpu, first_peak, first_line = timed_run(env, as_of)
        print(f"  first load {first:.1f} s, CPU {first_cpu:.1f} s, peak {first_peak:.0f} MB. {first_line}", flush=True)
        unchanged, changed, unchanged_cpu, changed_cpu, peaks = [], [], [], [], []
        for _ in range(args.repeats):
            as_of += timedelta(days=1)
            seconds, cpu, peak, line = timed_run(env, as_of)
            unchanged.append(seconds)
            unchanged_cpu.append(cpu)
            peaks.append(peak)
            print(f"  unchanged rerun {seconds:.1f} s, CPU {cpu:.1f} s, peak {peak:.0f} MB. {line}", flush=True)
        for _ in range(args.repeats):
            as_of += timedelta(days=1)
            change_cases(inbox, args.changed, rng, as_of)
            floors.append(floor_seconds(inbox))
            seconds, cpu, peak, line = timed_run(env, as_of)
            changed.append(seconds)
            changed_cpu.append(cpu)
            peaks.append(peak)
            print(f"  {args.changed:.1%} changed rerun {seconds:.1f} s, CPU {cpu:.1f} s, peak {peak:.0f} MB. {line}",
                  flush=True)
    floor = statistics.median(floors)
    return {
        "cases": cases, "rows": rows, "floor": floor, "first": first, "unchanged": statistics.median(unchanged),
        "changed": statistics.median(changed), "first_peak": first_peak, "peak": max(peaks), "first_cpu": first_cpu,
        "unchanged_cpu": statistics.median(unchanged_cpu), "changed_cpu": statistics.median(changed_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.005)
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--ephemeral", action="store_true", help="no Prefect server: each command starts its own")
    args = parser.parse_args()

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
        print(f"| {row['cases']:,} | {row['rows']:,} | {row['floor']:.2f} s | {row['first']:.1f} s | "
              f"{row['unchanged']:.1f} s | {row['changed']:.1f} s | {row['changed'] / row['floor']:.1f}× | "
              f"{row['first_cpu']:.1f} / {row['unchanged_cpu']:.1f} / {row['changed_cpu']:.1f} | "
              f"{row['first_peak'] / 1024:.2f} / {row['peak'] / 1024:.2f} GB |")


if __name__ == "__main__":
    main()
