"""Case clocks straight from export files, with no database: what `permitwatch evaluate` and `explain --cases` compute.

The files are loaded exactly as the nightly run loads them (tasks/ingest/load.py: the configured source whose glob
takes the file in, else the default definition; strict decoding; the contracts, duplicates resolved by the newest
`updated_at`; unit and matter codes through the config's aliases), so a file gives the same accepted cases and due
dates here as there. Every reject names its file and line, as the nightly run's do: the load's own, the clock
builder's refusals (tasks/clocks/reconcile.py) and the cases accepted after the as-of date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from config.bundle import PermitwatchConfig
from config.rules import RuleBook
from config.sources import Source
from tasks.clocks.builders import build_clocks
from tasks.clocks.calendar import WorkCalendar
from tasks.clocks.engine import evaluate_clocks
from tasks.clocks.reconcile import clock_rejects
from tasks.ingest.load import REJECTED_SCHEMA, LoadResult, SourceError, load_files, rejected_values, sources_for_files
from tasks.ingest.platform_codes import KnownCodes
from tasks.pii import masked_raw, pii_headers

EVALUATION_COLUMNS = ["case_id", "due_date", "elapsed", "remaining", "overdue_workdays", "level", "calendar"]


@dataclass(frozen=True)
class LoadedFiles:
    """The case (and suspension) files as loaded: one LoadResult per file, beside the source it was read through."""

    sources: list[Source]
    loads: list[LoadResult]

    @property
    def tables(self) -> dict[str, pl.DataFrame]:
        """The accepted rows of each table, canonical."""
        return {load.table: load.accepted for load in self.loads}

    def source_of(self, load: LoadResult) -> Source:
        return next(s for s in self.sources if (s.name, s.table) == (load.source, load.table))

    def rejects(self, case_id: str | None = None) -> pl.DataFrame:
        """Every row the load rejected, or only the rows of `case_id` (REJECTED_SCHEMA), with the applicant's name and
        phone masked in `raw`."""
        parts = [pl.DataFrame(schema=REJECTED_SCHEMA)]
        for load in self.loads:
            source = self.source_of(load)
            rejected = load.rejected
            if case_id is not None and rejected.height:
                rejected = rejected.filter((rejected_values(load, source, "case_id") == case_id).fill_null(False))
            pii = pii_headers(source)
            masked = pl.Series("raw", [masked_raw(raw, pii) for raw in rejected["raw"].to_list()], dtype=pl.String)
            parts.append(rejected.with_columns(masked))
        return pl.concat(parts)


def load_case_files(cases: Path, suspensions: Path | None, config: PermitwatchConfig) -> LoadedFiles:
    """Load a cases file (and a suspensions file) as the nightly run would. Raises SourceError when a file cannot be
    read as a whole (missing, undecodable, a required column absent) and ConfigError for a suffix no reader knows."""
    files = {"cases": cases} if suspensions is None else {"cases": cases, "suspensions": suspensions}
    sources = sources_for_files(files, config.sources.sources)
    loads = load_files(sources, codes=KnownCodes.of(config))
    for load in loads:
        if load.error is not None:
            raise SourceError(load.error, transient=load.error_transient)
    return LoadedFiles(sources, loads)


@dataclass(frozen=True)
class FileEvaluation:
    evaluations: pl.DataFrame  # EVALUATION_COLUMNS, one row per case clock that exists at the as-of date
    rejects: pl.DataFrame  # REJECTED_SCHEMA: the load's, the clock builder's and the cases not yet accepted


def evaluate_case_files(loaded: LoadedFiles, rules: RuleBook, calendar: WorkCalendar, as_of: date) -> FileEvaluation:
    """Each accepted case's clock evaluated at the end of `as_of`, as known then (extensions counted), as the nightly
    run evaluates it; every row that gives no evaluation is a reject with its file, line and reason."""
    clock_set = build_clocks(loaded.tables, rules, clock_types={"case"})
    known = clock_set.known_at(as_of, calendar)
    pauses = known.pauses.filter(pl.col("clock_id").str.starts_with("case:"))
    evaluations = evaluate_clocks(known.clocks, pauses, calendar, as_of).select(EVALUATION_COLUMNS)
    rejects = pl.concat(
        [
            loaded.rejects(),
            clock_rejects(clock_set.rejects, loaded.loads),
            _accepted_after(clock_set.clocks, loaded.loads, as_of),
        ]
    )
    return FileEvaluation(evaluations, rejects.sort(["source", "line"], nulls_last=True, maintain_order=True))


def _accepted_after(clocks: pl.DataFrame, loads: list[LoadResult], as_of: date) -> pl.DataFrame:
    """The cases accepted after the as-of date, as rejects naming their file and line: on that day they do not exist
    yet, so an evaluation as of it says nothing about them."""
    later = clocks.filter(pl.col("start_date") > as_of).select("case_id", "start_date")
    origins = [load.accepted.select("case_id").hstack(load.accepted_origin) for load in loads if load.table == "cases"]
    if later.is_empty() or not origins:
        return pl.DataFrame(schema=REJECTED_SCHEMA)
    return (
        later.join(pl.concat(origins).unique("case_id", keep="last"), on="case_id", how="left", maintain_order="left")
        .select(
            "source",
            pl.lit("cases").alias("table"),
            "line",
            pl.struct(pl.col("case_id").alias("key"), "case_id").struct.json_encode().alias("raw"),
            pl.format(f"accepted_at {{}} is after the as-of date {as_of}", "start_date").alias("reasons"),
        )
        .cast(REJECTED_SCHEMA)
    )


def case_reasons(loaded: LoadedFiles, refused: pl.DataFrame, case_id: str) -> list[str]:
    """Why rows of `case_id` give no clock, each as "cases.csv line 6: reason": the load's rejects of its rows and
    the clock builder's refusals among `refused` (a ClockSet's rejects)."""
    mine = pl.concat(
        [loaded.rejects(case_id), clock_rejects(refused.filter(pl.col("case_id") == case_id), loaded.loads)]
    )
    return [
        f"{source}{'' if line is None else f' line {line}'}: {reasons}"
        for source, line, reasons in mine.select("source", "line", "reasons").iter_rows()
    ]
