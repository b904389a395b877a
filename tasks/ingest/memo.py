"""The memo of per-row checking (逐行校验备忘): what checking gave for each raw export row last night, so that a
nightly rerun parses and checks only the rows that are new or changed, and an unchanged row costs only reading and
hashing.

Why it is safe. It is a cache of a pure function, never a second source of truth:

- Everything the load does to one row before the cross-row checks (tasks/ingest/load.py `_check_file`: parse its
  values, apply the source's defaults and value maps, resolve unit and matter aliases, check the contract, look for
  control characters) depends only on that row's raw values and on what the memo's fingerprint covers: the source
  definition, the known codes (aliases of units.yaml and rules.yaml), the code of the modules doing it
  (`MEMO_MODULES`) and the polars and pandera versions. The database plays no part.
- A row is keyed by a 64-bit hash of its raw values in the mapped columns, in canonical column order, seeded with the
  file's layout (which header feeds which column, and its type), so the same values under another header or type are
  another key. A new or changed row is taken for a known one only if its hash equals a memo row's by chance: with
  3.6 M rows in the memo, about 2 in 10^13 per changed row.
- A text column whose canonical value equals its raw value in every row kept (most ids, codes and names) is not
  stored: a known row takes it from tonight's raw row, which is the same by the hash. This keeps one copy of those
  strings in memory, not two.
- Only rows with no per-row reason are kept. A rejected row, and any row holding a control character in any column,
  is checked again in full, with all its reasons.
- A memo whose fingerprint differs, or that cannot be read or does not have the expected columns, is ignored: every
  row is checked, never an error. The checks that need other rows (duplicate keys, a pause within its case's life)
  always run afterwards on the whole canonical frame, memo or not.

Where: one Parquet file per source in `<var dir>/memo/` (the nightly run only; `validate`, `evaluate` and
`run --full` do not read it, and `--full` rewrites it). It holds canonical rows, applicant names and phones included,
like the database: the folder is created 0700 and each file 0600, written to a temporary file and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandera
import polars as pl

from config.canonical import CANONICAL_COLUMNS
from config.sources import Source
from schemas.contracts import canonical_schema
from tasks.code_version import add_module_sources
from tasks.ingest.platform_codes import KnownCodes
from tasks.run_log import run_logger

# The code a row's checking result depends on (and this module's, which decides what a key is).
MEMO_MODULES = (
    "tasks.ingest.load",
    "tasks.ingest.parsing",
    "tasks.ingest.platform_codes",
    "tasks.ingest.memo",
    "schemas.contracts",
    "schemas.messages",
    "config.canonical",
    "config.sources",
)
HASH_COLUMN = "__raw_hash"
FINGERPRINT_KEY = "permitwatch_memo_fingerprint"
RAW_COLUMNS_KEY = "permitwatch_memo_raw_columns"
_log = logging.getLogger(__name__)


def memo_fingerprint(source: Source, codes: KnownCodes | None) -> str:
    """A digest of everything besides a row's raw values that decides what checking the row gives."""
    digest = hashlib.sha256()
    digest.update(source.model_dump_json().encode())
    known = None if codes is None else {"units": codes.units, "matters": codes.matters}
    digest.update(json.dumps(known, sort_keys=True, ensure_ascii=False).encode())
    digest.update(f"polars {pl.__version__} pandera {pandera.__version__}".encode())
    add_module_sources(digest, MEMO_MODULES)
    return digest.hexdigest()


def memo_path(directory: Path, source_name: str) -> Path:
    """A source's memo file: its name made safe for a file name, plus a digest so that two names never share one."""
    safe = re.sub(r"[^\w.-]", "_", source_name)[:60]
    return directory / f"{safe}-{hashlib.sha256(source_name.encode()).hexdigest()[:8]}.parquet"


def raw_hashes(frame: pl.DataFrame, mapped: dict[str, str], table: str) -> pl.Series:
    """One u64 per row over the raw values of the mapped columns, in canonical column order, seeded with the layout."""
    by_canonical = {canonical: header for header, canonical in mapped.items()}
    headers = [by_canonical[column.name] for column in CANONICAL_COLUMNS[table] if column.name in by_canonical]
    layout = json.dumps([[mapped[header], header, str(frame.schema[header])] for header in headers],
                        ensure_ascii=False)
    seed = int.from_bytes(hashlib.sha256(layout.encode()).digest()[:8], "big")
    if not headers:  # every column from the source's defaults: all rows alike
        return pl.repeat(seed, frame.height, dtype=pl.UInt64, eager=True).alias(HASH_COLUMN)
    return frame.select(headers).hash_rows(seed=seed).alias(HASH_COLUMN)


@dataclass
class _Seen:
    """One file of tonight's load: its row hashes, its canonical frame and which rows had no per-row reason."""

    hashes: pl.Series
    canonical: pl.DataFrame
    clean: pl.Series
    as_raw: set[str]  # canonical columns equal to their raw column in every clean row


@dataclass
class RowMemo:
    """One source's memo during one load of `files` files: the rows last night's memo knows, and tonight's rows for
    the next one. It is read at the first look-up (after the first file, so that reading the export and the memo do
    not hold their buffers at once) and let go after the last file's rows are assembled.

    `reuse=False` (`run --full`) reads nothing, so every row is checked, and the memo is written afresh."""

    path: Path
    fingerprint: str
    table: str
    files: int  # still to be looked up
    unread: bool = True  # False: nothing to read (`reuse=False`), or read already
    known: pl.DataFrame | None = None  # the canonical columns as last written, but those in `as_raw`
    as_raw: tuple[str, ...] = ()  # canonical columns the memo takes from tonight's raw row
    _index: pl.DataFrame | None = None  # HASH_COLUMN, __memo_row: the first memo row of each hash
    _size: int = 0  # distinct hashes in the memo read
    _seen: list[_Seen] = field(default_factory=list)
    _hit: list[pl.Series] = field(default_factory=list)  # memo rows used tonight

    @classmethod
    def open(cls, directory: Path, source: Source, codes: KnownCodes | None, *, files: int,
             reuse: bool = True) -> RowMemo:
        return cls(memo_path(directory, source.name), memo_fingerprint(source, codes), source.table, files, reuse)

    def _read(self) -> None:
        """The memo if it is readable, carries this load's fingerprint and has the expected columns; else nothing."""
        self.unread = False
        try:
            metadata = pl.read_parquet_metadata(self.path)
            if metadata.get(FINGERPRINT_KEY) != self.fingerprint:
                return
            as_raw = tuple(json.loads(metadata.get(RAW_COLUMNS_KEY, "[]")))
            expected = {HASH_COLUMN: pl.UInt64(), **_stored_schema(self.table, as_raw)}
            frame = pl.read_parquet(self.path, columns=list(expected))
        except FileNotFoundError:
            return
        except (OSError, ValueError, pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
            run_logger(_log).warning("%s: memo ignored, every row is checked: %s", self.path, exc)
            return
        if frame.schema != pl.Schema(expected):
            return
        self.as_raw = as_raw
        self._index = (
            frame.select(HASH_COLUMN)
            .with_row_index("__memo_row")
            .unique(HASH_COLUMN, keep="first", maintain_order=True)
        )
        self._size = self._index.height
        self.known = frame.drop(HASH_COLUMN)

    def lookup(self, hashes: pl.Series) -> pl.Series:
        """For each row, the memo row holding its canonical values (UInt32), or null when the memo does not know it."""
        if self.unread:
            self._read()
        self.files -= 1
        if self._index is None:
            return pl.Series("__memo_row", [None] * hashes.len(), dtype=pl.UInt32)
        found = (
            hashes.to_frame()
            .join(self._index, on=HASH_COLUMN, how="left", maintain_order="left")
            .get_column("__memo_row")
        )
        if self.files == 0:
            self._index = None
        return found

    def assemble(
        self, known_rows: pl.Series, checked: pl.DataFrame, raw: pl.DataFrame, mapped: dict[str, str]
    ) -> pl.DataFrame | None:
        """The canonical frame in row order: known rows from the memo (`known_rows`, null where unknown) and from
        their raw row (`raw`, `mapped`: header → column) for the columns in `as_raw`, the others from `checked`,
        which holds the unknown rows in their order. None when this file's headers cannot supply those columns (the
        caller then checks every row)."""
        assert self.known is not None
        by_canonical = {column: header for header, column in mapped.items()}
        if any(column not in by_canonical for column in self.as_raw):
            return None
        unknown = known_rows.is_null()
        rank = unknown.cum_sum().cast(pl.UInt32) - 1
        # Where each row's value is in (memo or raw rows) followed by `checked`.
        from_memo = pl.select(pl.when(unknown).then(rank + self.known.height).otherwise(known_rows)).to_series()
        own_row = pl.int_range(raw.height, dtype=pl.UInt32)
        from_raw = pl.select(pl.when(unknown).then(rank + raw.height).otherwise(own_row)).to_series()
        self._hit.append(known_rows.drop_nulls())
        # Gathering text shares the source's string buffers: columns from the raw rows cost no second copy.
        return pl.DataFrame([
            pl.concat([raw.get_column(by_canonical[name]), checked.get_column(name)], rechunk=False)
            .gather(from_raw).alias(name)
            if name in self.as_raw
            else pl.concat([self.known.get_column(name), checked.get_column(name)], rechunk=False).gather(from_memo)
            for name in checked.columns
        ])

    def remember(
        self, hashes: pl.Series, canonical: pl.DataFrame, reason_rows: pl.Series, raw: pl.DataFrame,
        mapped: dict[str, str]
    ) -> None:
        """Tonight's rows of one file: the ones without a per-row reason go into the next memo, and which text
        columns equal their raw column there."""
        clean = pl.Series([True] * canonical.height, dtype=pl.Boolean).scatter(reason_rows, False)
        as_raw = {
            column
            for header, column in mapped.items()
            if raw.schema[header] == pl.String and canonical.schema[column] == pl.String
            and bool((canonical.get_column(column).eq_missing(raw.get_column(header)) | ~clean).all())
        }
        self._seen.append(_Seen(hashes, canonical, clean, as_raw))
        if self.files == 0:
            self.known = None  # the last file: let the memo go before the cross-row checks need memory

    def _unchanged(self) -> bool:
        """Whether tonight's memo would hold exactly last night's rows: every memo row was used and every clean row
        came from the memo (a row checked in full had a reason)."""
        if not self._hit:
            return False
        used = pl.concat(self._hit).n_unique()
        fresh = sum(item.clean.sum() for item in self._seen) - sum(hit.len() for hit in self._hit)
        return used == self._size and fresh == 0

    def save(self) -> bool:
        """Write the memo for the next load, unless it would hold the same rows; False when it could not be written
        (a warning: the next load then checks every row, as without a memo)."""
        unchanged = self._unchanged()
        seen, self._seen, self._hit = self._seen, [], []
        self.known, self._index = None, None
        if unchanged or not seen:
            return True
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{self.path.stem}-", suffix=".tmp", dir=self.path.parent)
            os.close(handle)  # mkstemp made it 0600; the writer writes into it, keeping the mode
            try:
                self._write(seen, temporary)
                os.replace(temporary, self.path)
            finally:
                Path(temporary).unlink(missing_ok=True)
        except OSError as exc:
            run_logger(_log).warning("%s: memo not written, the next load checks every row: %s", self.path, exc)
            return False
        return True

    def _write(self, seen: list[_Seen], path: str) -> None:
        """The clean rows, streamed from the frames as they are (adding a column copies nothing)."""
        as_raw = sorted(set.intersection(*(item.as_raw for item in seen)))
        rows = pl.concat(
            [item.canonical.with_columns(item.hashes, item.clean.alias("__clean")).lazy() for item in seen],
            rechunk=False,
        ).filter("__clean").select(HASH_COLUMN, *_stored_schema(self.table, as_raw))
        metadata = {FINGERPRINT_KEY: self.fingerprint, RAW_COLUMNS_KEY: json.dumps(as_raw)}
        rows.sink_parquet(path, metadata=metadata, compression="lz4", engine="streaming")


def _stored_schema(table: str, as_raw: Sequence[str]) -> dict[str, pl.DataType]:
    """The canonical columns a memo stores: all but those taken from the raw rows."""
    return {name: dtype for name, dtype in canonical_schema(table).items() if name not in as_raw}
