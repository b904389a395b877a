"""Ingestion benchmark: a 1,000,000-row cases export (UTF-8 and GB18030) validated and stored into SQLite and
PostgreSQL, then loaded again with no changes. Targets: first load <= 15 s, unchanged rerun <= 8 s, peak memory
<= 2 GB.

    .venv/bin/python benchmarks/bench_ingest.py [--rows 1000000] [--repeats 3]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each measurement runs in a fresh child process (so its peak RSS is its own) on a fresh database; the figures printed
are medians over the repeats. PostgreSQL is skipped when no URL is given and PERMITWATCH_TEST_DATABASE_URL is unset.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import BUNDLED_CONFIG_DIR
from config.units import load_units

HEADERS = {
    "case_id": "办件编号",
    "matter_code": "事项编码",
    "matter_name": "事项名称",
    "unit_code": "承办单位编码",
    "unit_name": "承办单位",
    "region_code": "行政区划代码",
    "accepted_at": "受理时间",
    "completed_at": "办结时间",
    "limit_days": "承诺时限",
    "limit_kind": "时限类型",
    "status": "办件状态",
    "updated_at": "更新时间",
    "applicant_name": "申请人",
    "applicant_phone": "联系电话",
}
# The 20 county-level units' regions, as config/units.yaml lists them.
REGIONS = sorted(
    {unit.region for unit in load_units(BUNDLED_CONFIG_DIR).units.values() if unit.region and unit.region != "360700"}
)
MATTERS = {
    "SXTQ-A001": "食品经营许可",
    "SXTQ-A002": "药品零售企业许可",
    "SXTQ-B001": "特种设备使用登记",
    "SXTQ-B006": "建筑工程施工许可",
    "SXTQ-C004": "医疗机构执业登记",
    "SJ-D001": "建设工程规划许可",
}


def generate_cases(rows: int, seed: int = 1) -> pl.DataFrame:
    """A cases export with Chinese headers, drawn as arrays: datetimes to the second, a tenth of them written
    `2023/1/20 9:05` style, a third still open, ~0.5% broken rows (bad dates, short region codes)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T08:30:00")
    accepted = start + rng.integers(0, 3 * 365 * 86_400, rows).astype("timedelta64[s]")
    completed = accepted + rng.integers(0, 40 * 86_400, rows).astype("timedelta64[s]")
    matter_codes = np.array(list(MATTERS))
    matter = rng.integers(0, len(matter_codes), rows)
    region = np.array(REGIONS)[rng.integers(0, len(REGIONS), rows)]
    frame = pl.DataFrame(
        {
            "case_id": pl.Series(np.arange(rows)).cast(pl.String).str.zfill(9),
            "matter_code": matter_codes[matter],
            "matter_name": np.array(list(MATTERS.values()))[matter],
            "region_code": region,
            "accepted_at": pl.Series(accepted.astype("datetime64[us]")),
            "completed_at": pl.Series(completed.astype("datetime64[us]")),
            "limit_days": rng.integers(1, 46, rows),
            "open": rng.random(rows) < 0.33,
            "slashed": rng.random(rows) < 0.10,
            "broken": rng.integers(0, 200, rows),
            "phone": rng.integers(0, 100_000_000, rows),
        }
    )
    accepted_text = (
        pl.when(pl.col("slashed"))
        .then(pl.col("accepted_at").dt.strftime("%Y/%-m/%-d %-H:%M"))
        .otherwise(pl.col("accepted_at").dt.strftime("%Y-%m-%d %H:%M:%S"))
    )
    return frame.select(
        ("GZ" + pl.col("case_id")).alias("case_id"),
        "matter_code",
        "matter_name",
        (pl.col("region_code") + "SPJ").alias("unit_code"),
        pl.lit("行政审批局").alias("unit_name"),
        pl.when(pl.col("broken") == 0)
        .then(pl.col("region_code").str.slice(0, 5))
        .otherwise("region_code")
        .alias("region_code"),
        pl.when(pl.col("broken") == 1).then(pl.lit("2023-02-30")).otherwise(accepted_text).alias("accepted_at"),
        pl.when(pl.col("open"))
        .then(None)
        .otherwise(pl.col("completed_at").dt.strftime("%Y-%m-%d"))
        .alias("completed_at"),
        pl.col("limit_days").cast(pl.String),
        pl.lit("工作日").alias("limit_kind"),
        pl.when(pl.col("open")).then(pl.lit("在办")).otherwise(pl.lit("办结")).alias("status"),
        pl.col("completed_at").dt.strftime("%Y-%m-%d %H:%M:%S").alias("updated_at"),
        pl.lit("张三").alias("applicant_name"),
        ("138" + pl.col("phone").cast(pl.String).str.zfill(8)).alias("applicant_phone"),
    ).rename(HEADERS)


def write_export(frame: pl.DataFrame, path: Path, encoding: str) -> None:
    text = frame.write_csv()
    path.write_bytes(text.encode(encoding))


def child(args: argparse.Namespace) -> None:
    """One measurement: a first load and then an unchanged rerun into a fresh database."""
    from config.sources import Source
    from schemas.database import ensure_schema
    from tasks.ingest.load import load_source
    from tasks.store.upsert import store_rejects, store_table

    source = Source(name="bench", kind="csv", table="cases", path=args.file)
    engine = ensure_schema(args.url)
    timings = {}
    for phase in ("first", "rerun"):
        began = time.perf_counter()
        result = load_source(source, inbox_dir=Path(args.file).parent)
        loaded = time.perf_counter()
        assert result.error is None and not result.over_threshold, result.summary()
        store_rejects(engine, result.rejected, None)
        stats = store_table(engine, "cases", result.accepted, None)
        done = time.perf_counter()
        timings[phase] = {
            "total": done - began,
            "load": loaded - began,
            "store": done - loaded,
            "read": result.rows_read,
            "accepted": result.accepted.height,
            "rejected": result.rejected.height,
            "written": stats.written,
        }
        del result  # the nightly run holds one load at a time
    engine.dispose()
    timings["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(timings))


def fresh_postgres_schema(url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    schema = f"pw_bench_{uuid.uuid4().hex[:8]}"
    with create_engine(url).begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    return schema, f"{url}{separator}options=-csearch_path%3D{schema}"


def drop_postgres_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    with create_engine(url).begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def measure(file: Path, backend: str, postgres: str | None, workdir: Path) -> dict:
    schema = None
    if backend == "sqlite":
        database = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{database}"
    else:
        assert postgres
        schema, url = fresh_postgres_schema(postgres)
    try:
        output = subprocess.run(
            [sys.executable, __file__, "--child", "--file", str(file), "--url", url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        if schema and postgres:
            drop_postgres_schema(postgres, schema)
        if backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("PERMITWATCH_TEST_DATABASE_URL"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    backends = ["sqlite", *(["postgres"] if args.postgres else [])]
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        workdir = Path(tmp)
        began = time.perf_counter()
        frame = generate_cases(args.rows)
        files = {}
        for encoding in ("utf-8", "gb18030"):
            files[encoding] = workdir / f"cases-{encoding}.csv"
            write_export(frame, files[encoding], encoding)
        sizes = ", ".join(f"{e} {p.stat().st_size / 1e6:.0f} MB" for e, p in files.items())
        print(f"{args.rows:,} rows generated in {time.perf_counter() - began:.1f} s ({sizes}); {date.today()}")
        print(
            f"{'encoding':<9} {'backend':<9} {'first load':>11} {'(read+check':>12} {'store)':>7} "
            f"{'rerun':>7} {'peak RSS':>9}  rows read/accepted/rejected"
        )
        for encoding, path in files.items():
            for backend in backends:
                runs = [measure(path, backend, args.postgres, workdir) for _ in range(args.repeats)]
                first = statistics.median(run["first"]["total"] for run in runs)
                load = statistics.median(run["first"]["load"] for run in runs)
                store = statistics.median(run["first"]["store"] for run in runs)
                rerun = statistics.median(run["rerun"]["total"] for run in runs)
                peak = statistics.median(run["peak_rss_mb"] for run in runs)
                counts = runs[0]["first"]
                assert all(run["rerun"]["written"] == 0 for run in runs), "an unchanged rerun wrote rows"
                print(
                    f"{encoding:<9} {backend:<9} {first:>9.2f} s {load:>10.2f} s {store:>6.2f} s "
                    f"{rerun:>5.2f} s {peak:>6.0f} MB  {counts['read']:,}/{counts['accepted']:,}/"
                    f"{counts['rejected']:,}"
                )


if __name__ == "__main__":
    main()
