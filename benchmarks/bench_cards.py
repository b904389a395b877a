"""Cards and digests for 100,000 open clocks across 2,000 units, without network or database. Target: <= 5 s.

Every clock is in an alerting level (the worst case: 50% warning, 30% overdue, 20% escalated), each unit has an
email and an SMS contact, and escalations also go to the unit's supervisor. Prints the median of several runs.

    .venv/bin/python benchmarks/bench_cards.py [--clocks 100000] [--units 2000] [--repeat 5] [--store]

--store also times, once, storing the cards and deliveries in a fresh SQLite database (one transaction) and a full
delivery to the local outbox folder (one file per unit and channel) — outside the 5 s target, for information.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from config.bundle import load_config
from config.settings import BUNDLED_CONFIG_DIR, TIMEZONE
from config.units import UnitDirectory, load_units
from schemas.database import ensure_schema
from tasks.alerts.card_store import store_plan
from tasks.alerts.cards import CARD_KEY, plan_cards
from tasks.alerts.delivery import deliver_pending
from tasks.alerts.digests import DigestTemplates, build_digests

AS_OF = date(2026, 3, 4)


def synthetic_units(directory: Path, count: int) -> UnitDirectory:
    """A config directory (bundled rules and sources, synthetic units.yaml) and its units."""
    contacts = [{"url": "outbox://email", "tag": "email"}, {"url": "outbox://sms", "tag": "sms"}]
    supervisors = max(1, count // 10)
    units = [{"code": "TOP", "name": "领导小组办公室", "contacts": contacts}]
    units.append({"code": "OPS", "name": "运维值班", "parent": "TOP", "tags": ["ops"], "contacts": contacts})
    units += [
        {
            "code": f"SUP{n:04d}",
            "name": f"第{n}区人民政府",
            "parent": "TOP",
            "tags": ["supervisor"],
            "contacts": contacts,
        }
        for n in range(supervisors)
    ]
    units += [
        {"code": f"U{n:05d}", "name": f"第{n}审批局", "parent": f"SUP{n % supervisors:04d}", "contacts": contacts}
        for n in range(count - len(units))
    ]
    for name in ("rules.yaml", "sources.yaml"):
        shutil.copyfile(BUNDLED_CONFIG_DIR / name, directory / name)
    (directory / "units.yaml").write_text(yaml.safe_dump({"units": units}, allow_unicode=True), encoding="utf-8")
    return load_units(directory)


def synthetic_evaluations(units: UnitDirectory, count: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    codes = np.array([code for code in units.units if code.startswith("U")])
    levels = rng.choice(["warning", "overdue", "escalated"], size=count, p=[0.5, 0.3, 0.2])
    overdue = np.where(levels == "warning", 0, np.where(levels == "overdue", rng.integers(1, 5, count), 0))
    overdue = np.where(levels == "escalated", rng.integers(5, 40, count), overdue)
    remaining = np.where(levels == "warning", rng.integers(0, 4, count), -overdue)
    case_ids = [f"GZ2026{n:08d}" for n in range(count)]
    return pl.DataFrame(
        {
            "clock_id": [f"case:{case_id}" for case_id in case_ids],
            "clock_type": "case",
            "subject_id": case_ids,
            "case_id": case_ids,
            "unit_code": rng.choice(codes, size=count),
            "matter_code": rng.choice(["SXTQ-A001", "SXTQ-B001", "SJ-D001"], size=count),
            "due_date": [AS_OF - timedelta(days=int(days)) for days in rng.integers(-3, 60, count)],
            "remaining": remaining.astype(np.int32),
            "overdue_workdays": overdue.astype(np.int32),
            "level": levels,
            "calendar": rng.choice(["official", "provisional"], size=count, p=[0.95, 0.05]),
            "repeat_every": np.full(count, 3, dtype=np.int32),
            "applicant_name": rng.choice(["张小三", "李四", "欧阳娜娜"], size=count),
            "applicant_phone": rng.choice(["13812345678", "13987654321"], size=count),
        }
    )


def run_once(evaluations: pl.DataFrame, units: UnitDirectory, templates: DigestTemplates) -> dict[str, float]:
    started = time.perf_counter()
    plan = plan_cards(evaluations, units, as_of=AS_OF)
    planned = time.perf_counter()
    details = evaluations.select("clock_id", "applicant_name", "applicant_phone")
    items = plan.routes.join(plan.cards, on=list(CARD_KEY)).join(details, on="clock_id")
    digests = build_digests(items, units, templates, as_of=AS_OF)
    finished = time.perf_counter()
    return {
        "cards": planned - started,
        "digests": finished - planned,
        "total": finished - started,
        "card_count": plan.cards.height,
        "deliveries": plan.routes.height,
        "messages": len(digests),
    }


def store_and_deliver(folder: Path, evaluations: pl.DataFrame, units: UnitDirectory) -> None:
    engine = ensure_schema(f"sqlite:///{folder / 'bench.db'}")
    plan = plan_cards(evaluations, units, as_of=AS_OF)
    started = time.perf_counter()
    stored = store_plan(engine, plan)
    store_seconds = time.perf_counter() - started
    config = load_config(folder)
    started = time.perf_counter()
    report = deliver_pending(engine, config, datetime(2026, 3, 5, 9, 0, tzinfo=TIMEZONE), folder / "outbox", force=True)
    deliver_seconds = time.perf_counter() - started
    print(
        f"  store    {store_seconds:6.2f} s  ({stored['cards']:,} cards, {stored['deliveries']:,} deliveries, SQLite)"
    )
    print(f"  deliver  {deliver_seconds:6.2f} s  ({report.messages_sent:,} messages to the outbox folder)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clocks", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", action="store_true", help="also time storing (SQLite) and delivering (outbox)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        units = synthetic_units(Path(folder), args.units)
        templates = DigestTemplates(BUNDLED_CONFIG_DIR / "templates")
        evaluations = synthetic_evaluations(units, args.clocks)
        runs = [run_once(evaluations, units, templates) for _ in range(args.repeat)]
        print_runs(args.clocks, len(units), runs)
        if args.store:
            store_and_deliver(Path(folder), evaluations, units)


def print_runs(clocks: int, unit_count: int, runs: list[dict[str, float]]) -> None:
    first = runs[0]
    print(
        f"{clocks:,} clocks, {unit_count:,} units -> {first['card_count']:,.0f} cards, "
        f"{first['deliveries']:,.0f} deliveries, {first['messages']:,.0f} messages"
    )
    for phase in ("cards", "digests", "total"):
        print(
            f"  {phase:8s} median {statistics.median(run[phase] for run in runs):6.2f} s  "
            f"(min {min(run[phase] for run in runs):.2f}, max {max(run[phase] for run in runs):.2f}, "
            f"{len(runs)} runs)"
        )
    median_total = statistics.median(run["total"] for run in runs)
    print(f"target <= 5 s: {'met' if median_total <= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
