"""Freshness and completeness of a night's exports (时效与完整性): the checks that keep a green run honest.

Each source's load is compared with the source's last stored load (from the `runs` ledger, which keeps every
source's row count and content hash): a required source with no file fails the run, an optional one is a warning;
a row count that drops by more than the source's `max_row_drop` is refused as a truncated export; an export whose
content is identical to the last one is stored with a warning that it was not refreshed. Pure functions: the task
in `tasks/pipeline.py` reads the ledger and acts on the verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.sources import Source


@dataclass(frozen=True)
class LastLoad:
    """A source's last stored load, as the run ledger recorded it."""

    run_id: int
    as_of: str
    rows_read: int
    content_hash: str | None


@dataclass(frozen=True)
class Freshness:
    refusal: str | None = None  # nothing from the source may be stored, and the run fails
    warning: str | None = None  # stored, but ops should know


def content_hash(paths: list[Path]) -> str | None:
    """SHA-256 over the files' names-free contents in order (None for no file): the same export gives the same hash
    whatever it is called."""
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def judge(
    source: Source, rows_read: int, files: list[str], export_hash: str | None, last: LastLoad | None
) -> Freshness:
    """The verdict on one source's load tonight against its last stored load."""
    if source.kind != "sql" and not files:
        # A required source without a file has already failed at ingest, naming the source.
        return Freshness(warning=f"{source.name}: no file matches {source.path}; nothing loaded tonight "
                                 "(an optional source)")
    if last is None:
        return Freshness()
    if source.max_row_drop is not None and last.rows_read and rows_read < last.rows_read * (1 - source.max_row_drop):
        drop = 1 - rows_read / last.rows_read
        return Freshness(refusal=(
            f"{rows_read:,} rows read, {drop:.1%} fewer than the {last.rows_read:,} of the last stored load "
            f"(as of {last.as_of}, run {last.run_id}); the limit is {source.max_row_drop:.0%}: a truncated export?"
        ))
    if export_hash is not None and export_hash == last.content_hash:
        return Freshness(warning=f"{source.name}: not refreshed: the export is identical to the last stored load "
                                 f"(as of {last.as_of}, run {last.run_id})")
    return Freshness()


def last_loads(ledger: list[tuple[int, Any, dict[str, Any] | None]]) -> dict[str, LastLoad]:
    """Per source, its newest stored load in `ledger` (run_id, as_of, summary), newest run first."""
    found: dict[str, LastLoad] = {}
    for run_id, as_of, summary in ledger:
        for entry in (summary or {}).get("sources", []):
            name = entry.get("source")
            if name in found or not entry.get("stored"):
                continue
            found[name] = LastLoad(run_id=run_id, as_of=str(as_of), rows_read=int(entry.get("rows_read") or 0),
                                   content_hash=entry.get("content_hash"))
    return found
