"""Load one source into its canonical table: read, map headers, parse, check the contract, split accepted/rejected.

Nothing is lost: for every file, accepted + rejected = rows read (a record is a non-blank line or sheet row), and
the load raises if that ever fails to hold. A schema-level failure (unreadable file, undecodable encoding, missing
required column, failing query) fails the whole source with a message naming the file; the caller loads the other
sources. A source whose reject fraction exceeds `max_reject_fraction` is `over_threshold`: nothing from it is stored.

`file_source`, `sources_for_files` and `load_files` load given files (the command line's `evaluate`, `explain
--cases`, `validate`, `report --data`) through this same path, with a configured source's definition (the one named,
or the one whose glob takes the file in), so a file gives the same accepted rows and rejects there as in the nightly
run.

Line numbers are physical: for CSV and JSONL the line in the file (the header is line 1), for XLSX the sheet row
(header row 1), for Parquet and SQL the 1-based record number.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from config.canonical import CANONICAL_COLUMNS, PII_COLUMNS, TABLES
from config.loader import ConfigError
from config.sources import Encoding, Source, adhoc_source
from schemas.contracts import (
    LIMIT_KIND_SPELLINGS,
    UNSUPPORTED_LIMIT_UNITS,
    duplicate_violations,
    empty_frame,
    key_columns,
    pause_violations,
    violations,
)
from tasks.ingest.events import FILE_REJECTS_SCHEMA, EventColumns, pair_events
from tasks.ingest.freshness import content_hash
from tasks.ingest.memo import RowMemo, raw_hashes
from tasks.ingest.parsing import ColumnKind, header_key, parse_columns
from tasks.ingest.platform_codes import KnownCodes, keep_platform_sentinel, resolve_codes, unsupported_limit_units

# (what, done, total): a stage description and how far it got; the CLI draws rich bars, flows write an artifact.
ProgressCallback = Callable[[str, int, int], None]

REJECTED_SCHEMA = {"source": pl.String, "table": pl.String, "line": pl.Int64, "raw": pl.String, "reasons": pl.String}
ORIGIN_SCHEMA = {"source": pl.String, "line": pl.Int64}
CASE_REFERENCE_SCHEMA = {"case_id": pl.String, "accepted_at": pl.Date, "completed_at": pl.Date}

# C0 control characters other than tab and newline (a CR counts unless it ends a CRLF line break): a NUL or a form
# feed in a text field is a corrupt export, and PostgreSQL cannot store a NUL at all.
_CONTROL_CHARACTER = r"[\x00-\x08\x0b-\x1f]"

_UTF8_BOM = b"\xef\xbb\xbf"
_DECODE_CHUNK = 1 << 24
# Bytes of whole lines scanned at once: blocks whose masks and counts stay in cache scan 3x faster than 4 MB ones.
_LINE_BLOCK = 1 << 18
_NEWLINE, _CARRIAGE_RETURN, _QUOTE = ord("\n"), ord("\r"), ord('"')
# Canonical values of 时限类型; the contract rejects anything else.
LIMIT_KIND_VALUES = {
    **LIMIT_KIND_SPELLINGS,
    **{unit: unit for unit in UNSUPPORTED_LIMIT_UNITS},
    **{chinese: unit for unit, chinese in UNSUPPORTED_LIMIT_UNITS.items()},
}


class SourceError(Exception):
    """A schema-level failure: the source cannot be read as a whole. The message names the file.

    `transient` when it may clear up by itself (no file yet, a share or database briefly away): the nightly run
    retries those. An empty file, an undecodable encoding or a missing column is the same a minute later."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class LoadInvariantError(RuntimeError):
    """accepted + rejected != rows read for a file: a bug, never bad input."""


@dataclass(frozen=True)
class FileCount:
    file: str
    rows_read: int
    accepted: int
    rejected: int


@dataclass
class LoadResult:
    source: str
    table: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    accepted: pl.DataFrame = field(default_factory=pl.DataFrame)
    rejected: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REJECTED_SCHEMA))
    error: str | None = None
    error_transient: bool = False  # the error may clear up on a retry (see SourceError)
    content_hash: str | None = None  # of the files read (tasks.ingest.freshness): an unchanged export is not fresh
    # source (file), line of each accepted row, in `accepted` order: where a row the clock builder refuses came from.
    accepted_origin: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ORIGIN_SCHEMA))
    max_reject_fraction: float = 0.2
    file_counts: list[FileCount] = field(default_factory=list)
    # Source headers holding PII (applicant name, phone) in `rejected.raw`: mask these keys wherever raw is shown.
    pii_headers: tuple[str, ...] = ()

    @property
    def reject_fraction(self) -> float:
        return self.rejected.height / self.rows_read if self.rows_read else 0.0

    @property
    def over_threshold(self) -> bool:
        return self.reject_fraction > self.max_reject_fraction

    @property
    def storable(self) -> bool:
        """True when the accepted rows may be stored: no schema-level error and not over the reject threshold."""
        return self.error is None and not self.over_threshold

    def top_reasons(self, limit: int = 10) -> pl.DataFrame:
        """reason, count, example: the most common kinds of reason among the rejected rows (a kind is the reason
        with its quoted value, line numbers and dates generalised)."""
        kind = (
            pl.col("example")
            .str.replace_all(r"'[^']*'", "'…'")
            .str.replace_all(r"\bline \d+( of \S+)?", "line N")
            .str.replace_all(r"\d{4}-\d{2}-\d{2}", "YYYY-MM-DD")
            .str.replace_all(r"has \d+ fields", "has N fields")
        )
        return (
            self.rejected.select(pl.col("reasons").str.split("; ").alias("example"))
            .explode("example")
            .with_columns(kind.alias("reason"))
            .group_by("reason")
            .agg(pl.len().alias("count"), pl.col("example").first())
            .sort(["count", "reason"], descending=[True, False])
            .head(limit)
        )

    def summary(self) -> dict[str, object]:
        return {
            "source": self.source,
            "table": self.table,
            "files": self.files,
            "rows_read": self.rows_read,
            "accepted": self.accepted.height,
            "rejected": self.rejected.height,
            "reject_fraction": round(self.reject_fraction, 4),
            "over_threshold": self.over_threshold,
            "error": self.error,
            "content_hash": self.content_hash,
        }


@dataclass
class _RawTable:
    """One file as read: source headers, values as stored (strings for text formats), one physical line per row."""

    label: str
    frame: pl.DataFrame
    lines: pl.Series
    structural: pl.DataFrame  # records rejected before any column is read (wrong field count, broken JSON)
    # False when the file's bytes show no control character at all, so its values need no scan for one.
    may_hold_controls: bool = True


# ---------------------------------------------------------------------------------------------------------- reading


def decode(data: bytes, encoding: str, label: str) -> tuple[str, str]:
    """Bytes to (text, encoding used). `auto` tries UTF-8 (a BOM is dropped), then GB18030; a failure names the line."""
    utf8, used = to_utf8(data, encoding, label)
    return utf8.decode("utf-8"), used


def to_utf8(data: bytes, encoding: str, label: str) -> tuple[bytes, str]:
    """The file as UTF-8 bytes without a BOM, and the encoding it was in. `auto` tries UTF-8 (with or without BOM),
    then GB18030. Decoding runs in chunks, so a large export is never held as one Python string."""
    if encoding == "auto":
        if data.startswith(_UTF8_BOM):
            body = data[len(_UTF8_BOM) :]
            _transcode(body, "utf-8", label, keep=False)
            return body, "utf-8-sig"
        try:
            _transcode(data, "utf-8", label, keep=False)
        except SourceError:
            return _transcode(data, "gb18030", label, keep=True, tried="UTF-8 or GB18030"), "gb18030"
        return data, "utf-8"
    if encoding in ("utf-8", "utf-8-sig"):
        body = data.removeprefix(_UTF8_BOM)
        _transcode(body, "utf-8", label, keep=False)
        return body, encoding
    return _transcode(data, encoding, label, keep=True).removeprefix(_UTF8_BOM), encoding


def _transcode(data: bytes, encoding: str, label: str, *, keep: bool, tried: str | None = None) -> bytes:
    """Decode `data` chunk by chunk (raising a SourceError naming the line); with `keep`, return it as UTF-8."""
    decoder = codecs.getincrementaldecoder(encoding)()
    view = memoryview(data)
    parts: list[bytes] = []
    for offset in range(0, max(len(data), 1), _DECODE_CHUNK):
        chunk = view[offset : offset + _DECODE_CHUNK]
        try:
            text_chunk = decoder.decode(chunk, final=offset + _DECODE_CHUNK >= len(data))
        except UnicodeDecodeError as exc:
            position = max(offset + exc.start - len(decoder.getstate()[0]), 0)
            line = data.count(b"\n", 0, position) + 1
            bad = data[position : position + 4].hex(" ")
            raise SourceError(
                f"{label}: cannot decode as {tried or encoding.upper()}: invalid bytes {bad} at line {line}; "
                "set `encoding` on the source"
            ) from None
        if keep:
            parts.append(text_chunk.encode("utf-8"))
    return b"".join(parts) if keep else data


def _read_bytes(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{label}: cannot read: {exc.strerror}", transient=True) from None


def _read_csv(source: Source, path: Path, label: str) -> _RawTable:
    utf8, _ = to_utf8(_read_bytes(path, label), source.encoding, label)
    if not utf8 or utf8.isspace():  # a check that stops at the first character, not a copy of the file
        raise SourceError(f"{label}: the file is empty (no header line)")
    table = _read_csv_by_lines(source, utf8, label) or _read_csv_with_python(source, utf8.decode("utf-8"), label)
    table.may_hold_controls = _holds_controls(utf8)
    return table


def _holds_controls(data: bytes) -> bool:
    """Whether the bytes hold a C0 control other than tab, line feed and the CR of a CRLF: a count over the bytes (in
    chunks, to keep memory flat), much cheaper than scanning every value of a clean million-row export."""
    raw = np.frombuffer(data, dtype=np.uint8)
    low = sum(int(np.count_nonzero(raw[start : start + _DECODE_CHUNK] < 0x20))
              for start in range(0, len(raw), _DECODE_CHUNK))
    line_feeds = data.count(b"\n")
    if low == line_feeds:  # the usual export: no tab, no CR, nothing else below 0x20
        return False
    carriage_returns = data.count(b"\r")
    return low != line_feeds + carriage_returns + data.count(b"\t") or carriage_returns != data.count(b"\r\n")


@dataclass(frozen=True)
class _Lines:
    """Where each physical line of a UTF-8 file starts and ends (without its CR LF), and how many fields it has."""

    starts: np.ndarray
    ends: np.ndarray
    fields: np.ndarray

    def text(self, data: bytes, index: int) -> str:
        return data[self.starts[index] : self.ends[index]].decode("utf-8")


def _line_structure(data: bytes, separator: str) -> _Lines | None:
    """Lines and field counts from byte positions (numpy, no per-line Python). None when a quoted field spans lines
    (an odd number of quotes on some line): then only a real CSV parser knows where records end. The file is
    scanned in blocks of whole lines, so the masks and counts it needs stay a few MB however large the export."""
    raw = np.frombuffer(data, dtype=np.uint8)
    with_quotes = b'"' in data
    ends, fields, quotes = [], [], []
    start = 0
    while start < len(raw):
        stop = _block_end(data, start)
        block = raw[start:stop]
        local_ends = np.flatnonzero(block == _NEWLINE)
        if stop == len(raw) and not data.endswith(b"\n"):
            local_ends = np.append(local_ends, len(block))
        ends.append(local_ends + start)
        fields.append(_per_line(block == ord(separator), local_ends) + 1)
        if with_quotes:
            quotes.append(_per_line(block == _QUOTE, local_ends))
        start = stop
    line_ends = np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], line_ends + 1))[: len(line_ends)]
    has_cr = (line_ends > starts) & (raw[np.maximum(line_ends - 1, 0)] == _CARRIAGE_RETURN)
    line_ends = line_ends - has_cr
    field_counts = np.concatenate(fields) if fields else np.zeros(0, dtype=np.int64)
    if with_quotes:
        quote_counts = np.concatenate(quotes)
        if (quote_counts % 2).any():
            return None
        quoted = np.flatnonzero(quote_counts)
        # Separators inside quotes do not count; only lines holding quotes need the exact (regex) count.
        texts = pl.Series([data[starts[i] : line_ends[i]].decode("utf-8") for i in quoted], dtype=pl.String)
        unquoted = texts.str.replace_all(r'"(?:[^"]|"")*"', "")
        field_counts[quoted] = (unquoted.str.count_matches(separator, literal=True) + 1).to_numpy()
    return _Lines(starts=starts, ends=line_ends, fields=field_counts)


def _block_end(data: bytes, start: int) -> int:
    """The end of the block of whole lines from `start`: just past the last line feed within _LINE_BLOCK bytes (or
    past the first one after, for a line longer than that), or the end of the data."""
    stop = start + _LINE_BLOCK
    if stop >= len(data):
        return len(data)
    cut = data.rfind(b"\n", start, stop)
    if cut < 0:
        cut = data.find(b"\n", stop)
    return len(data) if cut < 0 else cut + 1


def _per_line(mask: np.ndarray, line_ends: np.ndarray) -> np.ndarray:
    """How many of `mask`'s positions fall in each line of a block (lines ending at `line_ends`, the first starting
    at 0): differences of the running count at each line's end."""
    running = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
    return np.diff(running[line_ends], prepend=0)


def _read_csv_by_lines(source: Source, utf8: bytes, label: str) -> _RawTable | None:
    """The fast path: no quoted newlines, so row i of polars' reading is physical line i + 2."""
    lines = _line_structure(utf8, source.separator)
    if lines is None:
        return None
    try:
        frame = pl.read_csv(
            utf8,
            separator=source.separator,
            infer_schema=False,
            truncate_ragged_lines=True,
            quote_char='"',
            raise_if_empty=True,
        )
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise SourceError(f"{label}: not a readable CSV file: {exc}") from None
    if frame.height != len(lines.ends) - 1:
        return None
    header_fields = int(lines.fields[0])
    body_fields = lines.fields[1:]
    body_lengths = lines.ends[1:] - lines.starts[1:]
    blank = body_lengths == 0
    if header_fields > 1:
        # A line of spaces only is blank too (checked on the few one-field lines of a many-field file).
        short = np.flatnonzero(~blank & (body_fields == 1))
        blank[short] = [not lines.text(utf8, i + 1).strip() for i in short]
    ragged = np.flatnonzero(~blank & (body_fields != header_fields))
    keep = ~blank
    keep[ragged] = False
    line_numbers = pl.int_range(2, len(lines.ends) + 1, dtype=pl.Int64, eager=True).alias("line")
    rejects = []
    for index in ragged:
        values = next(csv.reader([lines.text(utf8, index + 1)], delimiter=source.separator), [])
        reason = f"line has {body_fields[index]} fields, the header has {header_fields} (truncated or shifted record)"
        rejects.append((int(index) + 2, _json(_zip_headers(frame.columns, values)), reason))
    if keep.all():
        return _RawTable(label, frame, line_numbers, _file_rejects(label, rejects))
    mask = pl.Series(keep)
    return _RawTable(label, frame.filter(mask), line_numbers.filter(mask), _file_rejects(label, rejects))


def _file_rejects(label: str, rejects: Sequence[tuple[int, str, str]]) -> pl.DataFrame:
    """Records rejected while reading (line, raw JSON, reason), before any column is parsed."""
    return pl.DataFrame(
        {
            "source": [label] * len(rejects),
            "line": [line for line, _, _ in rejects],
            "raw": [raw for _, raw, _ in rejects],
            "reasons": [reason for _, _, reason in rejects],
        },
        schema=FILE_REJECTS_SCHEMA,
    )


def _zip_headers(headers: Sequence[str], values: Sequence[str]) -> dict[str, str]:
    raw = dict(zip(headers, values, strict=False))
    if len(values) > len(headers):
        raw["_extra"] = _json(list(values[len(headers) :]))
    return raw


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _read_csv_with_python(source: Source, content: str, label: str) -> _RawTable:
    """The exact path for quoted newlines or an unterminated quote: Python's csv module, which knows line numbers."""
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=source.separator)
    try:
        headers = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise SourceError(f"{label}: no readable header line: {exc}") from None
    columns: list[list[str]] = [[] for _ in headers]
    lines: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    previous_end = reader.line_num
    try:
        for values in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not values or all(not value.strip() for value in values):
                continue
            if len(values) != len(headers):
                raw = _json(_zip_headers(headers, values))
                reason = f"record has {len(values)} fields, the header has {len(headers)} (truncated or shifted record)"
                rejected.append((start, raw, reason))
                continue
            for column, value in zip(columns, values, strict=True):
                column.append(value)
            lines.append(start)
    except csv.Error as exc:
        raise SourceError(f"{label}: not a readable CSV file at line {reader.line_num}: {exc}") from None
    frame = pl.DataFrame(
        {header: pl.Series(values, dtype=pl.String) for header, values in zip(_unique(headers), columns, strict=True)}
    )
    # polars reads an empty field as null; the exact path matches it.
    frame = frame.with_columns(pl.when(pl.col(name) != "").then(pl.col(name)).alias(name) for name in frame.columns)
    return _RawTable(
        label=label,
        frame=frame,
        lines=pl.Series("line", lines, dtype=pl.Int64),
        structural=_file_rejects(label, rejected),
    )


def _unique(headers: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for header in headers:
        count = seen.get(header, 0)
        names.append(header if count == 0 else f"{header}_duplicated_{count - 1}")
        seen[header] = count + 1
    return names


def _read_xlsx(source: Source, path: Path, label: str) -> _RawTable:
    import fastexcel

    try:
        workbook = fastexcel.read_excel(path)
        sheet = workbook.load_sheet(source.sheet if source.sheet is not None else 0, dtypes="string")
        frame = sheet.to_polars()
    except Exception as exc:  # fastexcel raises its own error types for corrupt files and unknown sheets
        raise SourceError(f"{label}: not a readable XLSX sheet: {exc}") from None
    lines = pl.int_range(2, frame.height + 2, dtype=pl.Int64, eager=True).alias("line")
    return _without_blank_rows(label, frame, lines)


def _without_blank_rows(label: str, frame: pl.DataFrame, lines: pl.Series) -> _RawTable:
    if frame.width == 0:
        raise SourceError(f"{label}: no columns (no header row)")
    filled = pl.any_horizontal(
        pl.col(name).cast(pl.String, strict=False).str.strip_chars().fill_null("") != "" for name in frame.columns
    )
    keep = frame.select(filled).to_series()
    return _RawTable(
        label=label,
        frame=frame.filter(keep),
        lines=lines.filter(keep),
        structural=_file_rejects(label, []),
    )


def _read_parquet(path: Path, label: str) -> _RawTable:
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.ComputeError) as exc:
        raise SourceError(f"{label}: not a readable Parquet file: {exc}") from None
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    if nested:
        raise SourceError(f"{label}: column(s) {', '.join(nested)} hold lists or structs, not single values")
    return _without_blank_rows(label, frame, pl.int_range(1, frame.height + 1, dtype=pl.Int64, eager=True))


def _read_jsonl(source: Source, path: Path, label: str) -> _RawTable:
    data = _read_bytes(path, label)
    records: list[dict[str, str | None]] = []
    lines: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    for number, line_text in enumerate(decode(data, source.encoding, label)[0].splitlines(), start=1):
        if not line_text.strip():
            continue
        try:
            value = json.loads(line_text)
        except json.JSONDecodeError as exc:
            rejected.append((number, _json({"_line": line_text}), f"not valid JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict):
            rejected.append((number, _json({"_line": line_text}), "not a JSON object"))
            continue
        records.append({key: _json_text(item) for key, item in value.items()})
        lines.append(number)
    headers = list(dict.fromkeys(key for record in records for key in record))
    frame = pl.DataFrame(
        {header: pl.Series([record.get(header) for record in records], dtype=pl.String) for header in headers}
    )
    return _RawTable(
        label=label,
        frame=frame,
        lines=pl.Series("line", lines, dtype=pl.Int64),
        structural=_file_rejects(label, rejected),
    )


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _json(value)


WATERMARK_FLOOR = datetime(1900, 1, 1)  # the :watermark of a first load: before anything a platform holds


def _read_sql(source: Source, watermark: datetime | None = None) -> _RawTable:
    """The query's rows; a source with a watermark gets `watermark` (None: nothing stored yet, so the earliest
    time) as the bound parameter :watermark."""
    # SQLAlchemy is imported here, not with the module: reading files (`permitwatch evaluate`) needs none of it.
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import InterfaceError, OperationalError

    label = source.name
    url = source.resolved_url()
    engine = create_engine(url)
    parameters = {"watermark": watermark or WATERMARK_FLOOR} if source.watermark else {}
    try:
        with engine.connect() as connection:
            frame = pl.read_database(
                text(source.query or ""), connection, execute_options={"parameters": parameters}
            )
    except Exception as exc:  # driver errors vary by database; the URL (which may hold a secret) is not repeated
        raise SourceError(
            f"source '{label}': query failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            # A database that is down, restarting, busy or out of reach: the query may work a minute later.
            transient=isinstance(exc, (OperationalError, InterfaceError, OSError)),
        ) from None
    finally:
        engine.dispose()
    return _without_blank_rows(label, frame, pl.int_range(1, frame.height + 1, dtype=pl.Int64, eager=True))


def read_raw(source: Source, path: Path | None, label: str, watermark: datetime | None = None) -> _RawTable:
    if source.kind == "sql":
        return _read_sql(source, watermark)
    assert path is not None
    if source.kind == "csv":
        return _read_csv(source, path, label)
    if source.kind == "xlsx":
        return _read_xlsx(source, path, label)
    if source.kind == "parquet":
        return _read_parquet(path, label)
    return _read_jsonl(source, path, label)


# ---------------------------------------------------------------------------------------------------------- mapping


def map_headers(source: Source, headers: Sequence[str], label: str) -> dict[str, str]:
    """Source header → canonical column; a required column that is missing fails the source."""
    lookup = {header_key(header): canonical for header, canonical in source.header_map().items()}
    mapped: dict[str, str] = {}
    taken: dict[str, str] = {}
    for header in headers:
        canonical = lookup.get(header_key(header))
        if canonical is None:
            continue
        if canonical in taken:
            raise SourceError(f"{label}: columns '{taken[canonical]}' and '{header}' both map to {canonical}")
        taken[canonical] = header
        mapped[header] = canonical
    required = [column for column in CANONICAL_COLUMNS[source.table] if column.required]
    missing = [column for column in required if column.name not in taken and column.name not in source.defaults]
    if missing:
        names = ", ".join(f"{c.name} ({c.headers[0]})" if c.headers else c.name for c in missing)
        if not mapped or any(_looks_like_data(header) for header in headers):
            # Never echoed: a first line of data holds an applicant's name and phone.
            found = f"line 1 looks like data, not a header line ({len(headers)} fields, not shown)"
        else:
            found = f"headers found: {', '.join(headers) or 'none'}"
        raise SourceError(
            f"{label}: missing required column(s) {names} for table {source.table}; {found}; "
            "add the header line to the export or a `mapping` to the source"
        )
    return mapped


def _looks_like_data(header: str) -> bool:
    """A header cell that reads like a value: a run of 5+ digits (an id, a phone, a date such as 20260105) or a
    date with separators."""
    return bool(re.search(r"\d{5}|\d{4}[-/.年]\d{1,2}", header))


def _canonical_frame(source: Source, raw: _RawTable, mapped: dict[str, str]) -> pl.DataFrame:
    by_canonical = {canonical: header for header, canonical in mapped.items()}
    frame = raw.frame.select(
        pl.col(by_canonical[column.name]).alias(column.name)
        if column.name in by_canonical
        else pl.lit(None, pl.String).alias(column.name)
        for column in CANONICAL_COLUMNS[source.table]
    )
    if not source.defaults:
        return frame
    # A per-source default fills the values the source leaves empty (a platform with no 时限类型 column).
    blank = {name: pl.col(name).cast(pl.String).str.strip_chars().fill_null("") == "" for name in source.defaults}
    return frame.with_columns(
        pl.when(blank[name]).then(pl.lit(value)).otherwise(pl.col(name).cast(pl.String)).alias(name)
        for name, value in source.defaults.items()
    )


def _apply_value_maps(source: Source, frame: pl.DataFrame) -> pl.DataFrame:
    maps: dict[str, dict[str, str]] = {column: dict(values) for column, values in source.values.items()}
    if source.table == "cases":
        maps["limit_kind"] = {**LIMIT_KIND_VALUES, **maps.get("limit_kind", {})}
    return frame.with_columns(pl.col(column).replace(mapping) for column, mapping in maps.items())


# ------------------------------------------------------------------------------------------------------- validation


@dataclass
class _CheckedFile:
    raw: _RawTable
    canonical: pl.DataFrame  # canonical dtypes, one row per raw row
    reasons: pl.DataFrame  # row, reason (parse problems and contract violations)
    mapped: dict[str, str]  # source header -> canonical column


def _check_file(source: Source, raw: _RawTable, codes: KnownCodes | None = None) -> _CheckedFile:
    columns = CANONICAL_COLUMNS[source.table]
    mapped = map_headers(source, raw.frame.columns, raw.label)
    unparsed_frame = _canonical_frame(source, raw, mapped)
    parsed = parse_columns(unparsed_frame, {c.name: ColumnKind(c.kind) for c in columns}, source.date_formats)
    frame, problems = keep_platform_sentinel(unparsed_frame, parsed.frame, parsed.problems)
    canonical = _apply_value_maps(source, frame).cast(empty_frame(source.table).schema)
    canonical, resolved = resolve_codes(source, canonical, codes)
    limit_units = unsupported_limit_units(source.table, canonical)
    problems = pl.concat([problems.select("row", "column", "reason"), resolved, limit_units])
    contract = violations(source.table, canonical)
    # A value that could not be parsed or resolved is already reported; the contract's reason would repeat it.
    contract = contract.join(problems.select("row", "column"), on=["row", "column"], how="anti", nulls_equal=False)
    # Reasons of a row read in column order; rules over several columns come last.
    position = pl.col("column").replace_strict(
        [c.name for c in columns], list(range(len(columns))), default=len(columns), return_dtype=pl.Int32
    )
    found = pl.concat(
        [
            _control_characters(raw.frame, mapped) if raw.may_hold_controls else pl.DataFrame(schema=_CONTROL_SCHEMA),
            problems,
            contract.select("row", "column", "reason"),
        ]
    )
    reasons = (
        found.with_columns(_without_pii_value(pl.col("reason")))
        .sort(pl.col("row"), position.fill_null(len(columns)), maintain_order=True)
        .select("row", "reason")
    )
    return _CheckedFile(raw=raw, canonical=canonical, reasons=reasons, mapped=mapped)


def _without_pii_value(reason: pl.Expr) -> pl.Expr:
    """A reason about an applicant's name or phone names the column and the problem, never the value."""
    return (
        pl.when(pl.col("column").is_in(list(PII_COLUMNS)))
        .then(reason.str.replace(r" '.*'$", ""))
        .otherwise(reason)
        .alias("reason")
    )


_CONTROL_SCHEMA = {"row": pl.UInt32, "column": pl.String, "reason": pl.String}


def _control_characters(frame: pl.DataFrame, mapped: dict[str, str]) -> pl.DataFrame:
    """row, column, reason for every text value holding a control character (the first one's code is named)."""
    found = [pl.DataFrame(schema=_CONTROL_SCHEMA)]
    texts = [header for header in frame.columns if frame.schema[header] == pl.String]
    if not texts:
        return found[0]
    # One pass over every text column at once (polars spreads it over the cores) finds the few rows worth a closer
    # look; the CR of a CRLF line end matches here too and is let through below.
    suspect = frame.select(
        pl.any_horizontal(pl.col(header).str.contains(_CONTROL_CHARACTER).fill_null(False) for header in texts)
    ).to_series().arg_true()
    if suspect.len() == 0:
        return found[0]
    closer = frame.select(texts).gather(suspect)
    for header in texts:
        values = closer.get_column(header).str.replace_all("\r\n", "\n", literal=True)
        positions = values.str.contains(_CONTROL_CHARACTER).fill_null(False).arg_true()
        if positions.len() == 0:
            continue
        rows = suspect.gather(positions)
        code = values.gather(positions).str.extract(f"({_CONTROL_CHARACTER})").str.encode("hex").str.to_uppercase()
        found.append(
            pl.DataFrame(
                {
                    "row": rows.cast(pl.UInt32),
                    "column": pl.Series([mapped.get(header)] * rows.len(), dtype=pl.String),
                    "reason": f"{mapped.get(header, header)}: control character U+00" + code,
                }
            )
        )
    return pl.concat(found)


def load_source(
    source: Source,
    *,
    inbox_dir: Path,
    case_reference: pl.DataFrame | None = None,
    progress: ProgressCallback | None = None,
    codes: KnownCodes | None = None,
    watermark: datetime | None = None,
    memo_dir: Path | None = None,
    reuse_memo: bool = True,
) -> LoadResult:
    """Read, check and split one source. `case_reference` (case_id, accepted_at, completed_at) lets suspensions be
    checked against their case's life; without it that check is skipped. `codes` resolves unit and matter aliases
    (and, with `unknown_codes: reject`, rejects codes nobody knows); without it codes are loaded as given.
    `watermark`: the newest stored value of a sql source's watermark column (tasks.store.upsert.stored_watermark).
    `memo_dir` (the nightly run's): rows checked identically before take their canonical values from the source's
    memo there (tasks/ingest/memo.py), and the memo is written for the next load; `reuse_memo=False` checks every row
    but still writes it. The result is the same with or without a memo."""
    result = LoadResult(
        source=source.name,
        table=source.table,
        accepted=empty_frame(source.table),
        max_reject_fraction=source.max_reject_fraction,
    )
    try:
        targets: list[tuple[Path | None, str]]
        if source.kind == "sql":
            targets = [(None, source.name)]
        else:
            paths = source.files(inbox_dir)
            if not paths and source.required:
                raise SourceError(f"source '{source.name}': no file matches {source.path} in {inbox_dir}",
                                  transient=True)  # an export may still be on its way
            targets = [(path, _label(path, inbox_dir)) for path in paths]
        result.files = [label for _, label in targets]
        result.content_hash = content_hash([path for path, _ in targets if path is not None])
        memo = None if memo_dir is None else RowMemo.open(memo_dir, source, codes, files=len(targets),
                                                            reuse=reuse_memo)
        checked = []
        steps = 2 * len(targets) + 1  # read and check each file, then the cross-row checks
        for index, (path, label) in enumerate(targets):
            _report(progress, f"{source.name}: reading {label}", 2 * index, steps)
            raw = read_raw(source, path, label, watermark)
            if source.events is not None:
                raw = _paired(source, raw)
            _report(progress, f"{source.name}: checking {label}", 2 * index + 1, steps)
            if memo is None:
                checked.append(_check_file(source, raw, codes))
            else:
                checked.append(_check_with_memo(source, raw, codes, memo))
            del raw  # `checked` holds the only reference, which _split lets go of
    except SourceError as exc:
        result.error = str(exc)
        result.error_transient = exc.transient
        return result
    if memo is not None:
        memo.save()
    result.pii_headers = tuple(
        sorted({header for item in checked for header, column in item.mapped.items() if column in PII_COLUMNS})
    )
    _report(progress, f"{source.name}: duplicates and splitting", 2 * len(targets), steps)
    _split(source, checked, case_reference, result)
    _report(progress, f"{source.name}: done", steps, steps)
    return result


def _check_with_memo(source: Source, raw: _RawTable, codes: KnownCodes | None, memo: RowMemo) -> _CheckedFile:
    """`_check_file` for the rows the memo does not know; the others take their canonical values from it. The result
    equals `_check_file` over the whole file (tasks/ingest/memo.py says why)."""
    mapped = map_headers(source, raw.frame.columns, raw.label)
    hashes = raw_hashes(raw.frame, mapped, source.table)
    known = memo.lookup(hashes)
    if raw.may_hold_controls and known.null_count() < known.len():
        # A control character in any column, mapped or not, is a reason: such a row is checked in full.
        flagged = _control_characters(raw.frame, mapped).get_column("row")
        known = known.scatter(flagged, None) if flagged.len() else known
    unknown = known.is_null().arg_true()
    checked = None
    if unknown.len() < raw.frame.height:
        part = _check_file(source, replace(raw, frame=raw.frame[unknown], lines=raw.lines.gather(unknown)), codes)
        canonical = memo.assemble(known, part.canonical, raw.frame, mapped)
        if canonical is not None:
            # Rows keep their order (unknown rows are ascending), so the reasons stay sorted as `_check_file` sorts.
            reasons = part.reasons.with_columns(unknown.gather(part.reasons.get_column("row")).alias("row"))
            checked = _CheckedFile(raw=raw, canonical=canonical, reasons=reasons, mapped=mapped)
    if checked is None:
        checked = _check_file(source, raw, codes)
    memo.remember(hashes, checked.canonical, checked.reasons.get_column("row"), raw.frame, mapped)
    return checked


def _paired(source: Source, raw: _RawTable) -> _RawTable:
    """An events source's rows paired into suspensions (tasks/ingest/events.py); unpaired rows join the structural
    rejects."""
    assert source.events is not None
    lookup = {header_key(header): canonical for header, canonical in source.header_map().items()}
    by_canonical: dict[str, str] = {}
    ended = []
    for header in raw.frame.columns:
        canonical = lookup.get(header_key(header))
        if canonical == "ended_at":
            ended.append(header)
        elif canonical is not None:
            by_canonical.setdefault(canonical, header)
    needed = {"case_id": "the case", "started_at": "the event time"}
    absent = [f"{name} ({what})" for name, what in needed.items() if name not in by_canonical]
    # Event columns compare like headers: Oracle, for one, returns OPERATETYPE for `operatetype`.
    headers = {header_key(header): header for header in raw.frame.columns}
    wanted = [source.events.column, *source.events.within]
    absent += [f"{name} (events)" for name in wanted if header_key(name) not in headers]
    if absent:
        raise SourceError(
            f"{raw.label}: missing column(s) {', '.join(absent)} for an events source; "
            f"headers found: {', '.join(raw.frame.columns) or 'none'}"
        )
    columns = EventColumns(
        case=by_canonical["case_id"],
        time=by_canonical["started_at"],
        kind=by_canonical.get("kind", "kind"),
        ended=ended,
    )
    found = [headers[header_key(name)] for name in wanted]
    pairing = source.events.model_copy(update={"column": found[0], "within": tuple(found[1:])})
    paired = pair_events(raw.frame, raw.lines, pairing, columns, raw.label)
    return replace(
        raw,
        frame=paired.frame,
        lines=paired.lines,
        structural=pl.concat([raw.structural, paired.rejected]).sort("line"),
    )


def _report(progress: ProgressCallback | None, what: str, done: int, total: int) -> None:
    if progress is not None:
        progress(what, done, total)


def _label(path: Path, inbox_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(inbox_dir.resolve()))
    except ValueError:
        return str(path)


_POSITION_SCHEMA = {"__file": pl.UInt32, "__row": pl.UInt32, "reason": pl.String}


def _split(
    source: Source, checked: list[_CheckedFile], case_reference: pl.DataFrame | None, result: LoadResult
) -> None:
    """Cross-row checks over the whole load, then accepted/rejected, then the count invariant per file.

    Rows are addressed by (file, row) and selected with boolean masks: the wide canonical frames are filtered once,
    never joined, so a million-row load stays within memory. `checked` is emptied once the raw rows are done with,
    since the caller holds no other reference to them."""
    if not checked:
        return
    bad = pl.concat(
        [
            item.reasons.select(pl.lit(index, pl.UInt32).alias("__file"), pl.col("row").alias("__row"), "reason")
            for index, item in enumerate(checked)
        ]
    ).cast(_POSITION_SCHEMA)
    bad = pl.concat([bad, _cross_row_reasons(source, checked, _masks(checked, bad), case_reference)])
    reasons = bad.group_by("__file", "__row").agg(pl.col("reason").unique(maintain_order=True).str.join("; "))
    masks = _masks(checked, reasons)
    rejected_parts = []
    for index, (item, mask) in enumerate(zip(checked, masks, strict=True)):
        rows = (
            reasons.filter(pl.col("__file") == index).sort("__row").select("__row", pl.col("reason").alias("reasons"))
        )
        rejected_parts.append(_rejected_rows(item.raw, rows))
        rejected_parts.append(item.raw.structural)
        read = item.raw.frame.height + item.raw.structural.height
        accepted = int(mask.sum())
        rejected = rows.height + item.raw.structural.height
        if accepted + rejected != read:
            raise LoadInvariantError(f"{item.raw.label}: accepted {accepted} + rejected {rejected} != rows read {read}")
        result.file_counts.append(FileCount(item.raw.label, read, accepted, rejected))
    result.rejected = (
        pl.concat(rejected_parts).with_columns(pl.lit(source.table).alias("table")).select(list(REJECTED_SCHEMA))
    ).cast(REJECTED_SCHEMA)
    result.rows_read = sum(count.rows_read for count in result.file_counts)
    result.accepted_origin = pl.concat(
        [
            item.raw.lines.filter(pl.Series(mask)).to_frame("line").select(pl.lit(item.raw.label).alias("source"),
                                                                           "line")
            for item, mask in zip(checked, masks, strict=True)
        ]
    ).cast(ORIGIN_SCHEMA)
    # The raw rows are done with: let them go (the caller holds no other reference). The accepted rows are then
    # copied out column by column, each canonical column let go once copied, so that a million-row file is never
    # held twice over.
    canonical = [item.canonical for item in checked]
    checked.clear()
    keep = [pl.Series(mask) for mask in masks]
    result.accepted = pl.DataFrame([
        pl.concat([frame.drop_in_place(name).filter(mask) for frame, mask in zip(canonical, keep, strict=True)])
        for name in canonical[0].columns
    ])


def _masks(checked: list[_CheckedFile], bad: pl.DataFrame) -> list[np.ndarray]:
    """Per file, True for the rows with no reason in `bad` (__file, __row)."""
    masks = []
    for index, item in enumerate(checked):
        mask = np.ones(item.canonical.height, dtype=bool)
        mask[bad.filter(pl.col("__file") == index)["__row"].to_numpy()] = False
        masks.append(mask)
    return masks


def _cross_row_reasons(
    source: Source, checked: list[_CheckedFile], clean: list[np.ndarray], case_reference: pl.DataFrame | None
) -> pl.DataFrame:
    """Reasons that need other rows, among the rows left clean: a pause outside its case's life, then duplicate keys.

    They work on a narrow frame (the columns they need plus file, row and line), never on the full rows."""
    needed = list(dict.fromkeys([*key_columns(source.table), "updated_at", "case_id", "started_at", "ended_at"]))
    columns = [name for name in needed if name in checked[0].canonical.columns]
    probe = pl.concat(
        [
            item.canonical.select(columns)
            .with_columns(
                pl.lit(index, pl.UInt32).alias("__file"),
                pl.int_range(0, item.canonical.height, dtype=pl.UInt32).alias("__row"),
                item.raw.lines.alias("__line"),
            )
            .filter(pl.Series(mask))
            for index, (item, mask) in enumerate(zip(checked, clean, strict=True))
        ]
    )
    found = [pl.DataFrame(schema=_POSITION_SCHEMA)]
    if source.table == "suspensions" and case_reference is not None and probe.height:
        outside = pause_violations(probe, case_reference)
        positions = probe.select("__file", "__row").with_row_index("row")
        found.append(outside.join(positions, on="row").select("__file", "__row", "reason").cast(_POSITION_SCHEMA))
        probe = probe.join(found[-1].select("__file", "__row").unique(), on=["__file", "__row"], how="anti")
    if probe.height:
        names = [item.raw.label for item in checked] if len(checked) > 1 else []
        duplicates = duplicate_violations(source.table, probe, probe["__line"], probe["__file"], names)
        positions = probe.select("__file", "__row").with_row_index("row")
        found.append(duplicates.join(positions, on="row").select("__file", "__row", "reason").cast(_POSITION_SCHEMA))
    return pl.concat(found)


def _rejected_rows(raw: _RawTable, rows: pl.DataFrame) -> pl.DataFrame:
    """source, line, raw (the row's original values as JSON, by source header), reasons; `rows`: __row, reasons."""
    if rows.height == 0:
        return pl.DataFrame(schema=FILE_REJECTS_SCHEMA)
    positions = rows["__row"]
    as_text = pl.struct(pl.col(name).cast(pl.String) for name in raw.frame.columns).struct.json_encode()
    return raw.frame[positions].select(
        pl.lit(raw.label).alias("source"),
        pl.lit(raw.lines.gather(positions)).cast(pl.Int64).alias("line"),
        as_text.alias("raw"),
        pl.lit(rows["reasons"]).alias("reasons"),
    )


def load_sources(
    sources: Iterable[Source],
    *,
    inbox_dir: Path,
    stored_cases: pl.DataFrame | None = None,
    progress: ProgressCallback | None = None,
    codes: KnownCodes | None = None,
) -> list[LoadResult]:
    """Load every source, cases first, so that suspensions are checked against the cases of this load (taking
    precedence) and those already stored (`stored_cases`: case_id, accepted_at, completed_at)."""
    ordered = sorted(sources, key=lambda source: TABLES.index(source.table))
    results: list[LoadResult] = []
    for source in ordered:
        reference = None
        if source.table == "suspensions":
            reference = case_reference([r.accepted for r in results if r.table == "cases" and r.storable], stored_cases)
        results.append(
            load_source(source, inbox_dir=inbox_dir, case_reference=reference, progress=progress, codes=codes)
        )
    return results


def case_reference(loaded: Sequence[pl.DataFrame], stored: pl.DataFrame | None) -> pl.DataFrame:
    """case_id, accepted_at, completed_at: this load's cases first, then the stored ones."""
    frames = [frame.select(list(CASE_REFERENCE_SCHEMA)) for frame in loaded]
    if stored is not None:
        frames.append(stored.select(list(CASE_REFERENCE_SCHEMA)))
    if not frames:
        return pl.DataFrame(schema=CASE_REFERENCE_SCHEMA)
    return pl.concat(frames).unique("case_id", keep="first", maintain_order=True)


# -------------------------------------------------------------------------------------------- single files, no inbox


def file_source(path: Path, table: str, template: Source | None = None, encoding: Encoding = "auto") -> Source:
    """A source that reads just the file at `path` into `table`: the default definition (its kind from the suffix),
    or `template`'s (a configured source: mapping, value maps, defaults, date formats, encoding, code checks) pointed
    at this file. `encoding` other than auto wins over the template's. Raises ConfigError for a suffix no reader
    knows or a template that fills another table."""
    base = adhoc_source(path, table, encoding=encoding).model_copy(update={"required": True})
    if template is None:
        return base
    if template.table != table:
        raise ConfigError(f"source '{template.name}' fills {template.table}, not {table}")
    overrides: dict[str, object] = {
        "name": base.name, "kind": base.kind, "path": base.path, "url": None, "query": None, "required": True
    }
    if template.kind != "xlsx" or base.kind != "xlsx":
        overrides["sheet"] = None
    if encoding != "auto":
        overrides["encoding"] = encoding
    return template.model_copy(update=overrides)


def configured_source(path: Path, table: str, sources: Iterable[Source]) -> Source | None:
    """The configured file source of `table` whose glob takes in `path`, its folder standing for the inbox: the
    definition the nightly run reads this file with. None when no source's glob matches it."""
    target = path.resolve()
    for source in sources:
        if source.table != table or source.kind == "sql":
            continue
        if target in (found.resolve() for found in source.files(path.parent)):
            return source
    return None


def sources_for_files(files: Mapping[str, Path], configured: Iterable[Source] = ()) -> list[Source]:
    """One source per file (`files`: table -> path), each read as the nightly run would read it: through the
    configured source whose glob matches it, else the default definition."""
    known = list(configured)
    return [file_source(path, table, configured_source(path, table, known)) for table, path in files.items()]


def load_files(
    sources: Sequence[Source], *, codes: KnownCodes | None = None, progress: ProgressCallback | None = None
) -> list[LoadResult]:
    """The files of `sources` (from sources_for_files) loaded with no database, as the nightly run loads them:
    cases first, suspensions checked against the cases' lives, codes resolved through `codes`. Rejects name each file
    relative to the folder the files share."""
    folders = [Path(source.path or ".").parent for source in sources]
    shared = Path(os.path.commonpath(folders)) if folders else Path()
    return load_sources(sources, inbox_dir=shared, progress=progress, codes=codes)


def rejected_values(result: LoadResult, source: Source, column: str) -> pl.Series:
    """The canonical `column` (parsed as at ingestion) of each rejected row of `result`, in `rejected` order, read
    from the row's original values through the source's headers; null where the row has none (an unparsed record)."""
    headers = {header_key(header) for header, canonical in source.header_map().items() if canonical == column}
    values: list[str | None] = []
    for raw in result.rejected["raw"].to_list():
        record: dict[str, object] = json.loads(raw) if raw else {}  # the loader writes every raw as an object
        found = [value for key, value in record.items() if header_key(key) in headers]
        values.append(_json_text(found[0]) if found else None)
    kind = next(ColumnKind(c.kind) for c in CANONICAL_COLUMNS[source.table] if c.name == column)
    raw_values = pl.DataFrame({column: pl.Series(values, dtype=pl.String)})
    return parse_columns(raw_values, {column: kind}, source.date_formats).frame[column]
