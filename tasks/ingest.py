"""Load one source into its canonical table: read, map headers, parse, check the contract, split accepted/rejected.

Nothing is lost: for every file, accepted + rejected = rows read (a record is a non-blank line or sheet row), and
the load raises if that ever fails to hold. A schema-level failure (unreadable file, undecodable encoding, missing
required column, failing query) fails the whole source with a message naming the file; the caller loads the other
sources. A source whose reject fraction exceeds `max_reject_fraction` is `over_threshold`: nothing from it is stored.

Line numbers are physical: for CSV and JSONL the line in the file (the header is line 1), for XLSX the sheet row
(header row 1), for Parquet and SQL the 1-based record number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from sqlalchemy import create_engine, text

from config.sources import CANONICAL_COLUMNS, TABLES, Source
from schemas.contracts import duplicate_violations, empty_frame, pause_violations, violations
from tasks.parsing import ColumnKind, fold_width, parse_columns

# (what, done, total): a stage description and how far it got; the CLI draws rich bars, flows write an artifact.
ProgressCallback = Callable[[str, int, int], None]

REJECTED_SCHEMA = {"source": pl.String, "table": pl.String, "line": pl.Int64, "raw": pl.String, "reasons": pl.String}
_FILE_REJECTS_SCHEMA = {"source": pl.String, "line": pl.Int64, "raw": pl.String, "reasons": pl.String}
CASE_REFERENCE_SCHEMA = {"case_id": pl.String, "accepted_at": pl.Date, "completed_at": pl.Date}

_UTF8_BOM = b"\xef\xbb\xbf"
# Canonical values of 时限类型; the contract rejects anything else.
LIMIT_KIND_VALUES = {
    "工作日": "workday",
    "workday": "workday",
    "working day": "workday",
    "自然日": "calendar",
    "日历日": "calendar",
    "calendar": "calendar",
    "calendar day": "calendar",
}


class SourceError(Exception):
    """A schema-level failure: the source cannot be read as a whole. The message names the file."""


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
    max_reject_fraction: float = 0.2
    file_counts: list[FileCount] = field(default_factory=list)

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
        }


@dataclass
class _RawTable:
    """One file as read: source headers, values as stored (strings for text formats), one physical line per row."""

    label: str
    frame: pl.DataFrame
    lines: pl.Series
    structural: pl.DataFrame  # records rejected before any column is read (wrong field count, broken JSON)


# ---------------------------------------------------------------------------------------------------------- reading


def decode(data: bytes, encoding: str, label: str) -> tuple[str, str]:
    """Bytes to (text, encoding used). `auto` tries UTF-8 (a BOM is dropped), then GB18030; a failure names the line."""
    if encoding == "auto":
        if data.startswith(_UTF8_BOM):
            return _decode_with(data[len(_UTF8_BOM) :], "utf-8", label), "utf-8-sig"
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return _decode_with(data, "gb18030", label, tried="UTF-8 or GB18030"), "gb18030"
    return _decode_with(data, encoding, label).removeprefix("\ufeff"), encoding


def _decode_with(data: bytes, encoding: str, label: str, tried: str | None = None) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 4].hex(" ")
        raise SourceError(
            f"{label}: cannot decode as {tried or encoding}: invalid bytes {bad} at line {line}; "
            "set `encoding` on the source"
        ) from None


def _read_bytes(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{label}: cannot read: {exc.strerror}") from None


def _read_csv(source: Source, path: Path, label: str) -> _RawTable:
    data = _read_bytes(path, label)
    content, used = decode(data, source.encoding, label)
    if not content.strip():
        raise SourceError(f"{label}: the file is empty (no header line)")
    # polars reads UTF-8 only: reuse the bytes when they are UTF-8 already, else hand over the decoded text.
    utf8 = data.removeprefix(_UTF8_BOM) if used in ("utf-8", "utf-8-sig") else content.encode("utf-8")
    lines = pl.Series("text", [content]).str.split("\n").explode().str.strip_suffix("\r")
    if content.endswith("\n"):
        lines = lines.head(lines.len() - 1)
    if (lines.str.count_matches('"', literal=True) % 2 == 0).all():
        table = _read_csv_by_lines(source, utf8, lines, label)
        if table is not None:
            return table
    return _read_csv_with_python(source, content, label)


def _field_counts(lines: pl.Series, separator: str) -> pl.Series:
    """Fields per line, not counting separators inside quotes (lines hold no embedded newlines here)."""
    unquoted = lines.str.replace_all(r'"(?:[^"]|"")*"', "") if lines.str.contains('"', literal=True).any() else lines
    return unquoted.str.count_matches(separator, literal=True) + 1


def _read_csv_by_lines(source: Source, utf8: bytes, lines: pl.Series, label: str) -> _RawTable | None:
    """The fast path: no quoted newlines, so row i of polars' reading is physical line i + 2."""
    counts = _field_counts(lines, source.separator)
    header_fields = counts[0]
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
    if frame.height != lines.len() - 1:
        return None
    body = pl.DataFrame({"text": lines.slice(1), "fields": counts.slice(1)}).with_row_index("row")
    blank = pl.col("text").str.strip_chars() == ""
    ragged = ~blank & (pl.col("fields") != header_fields)
    flags = body.select(blank.alias("blank"), ragged.alias("ragged"))
    keep = ~(flags["blank"] | flags["ragged"])
    line_numbers = pl.int_range(2, lines.len() + 1, dtype=pl.Int64, eager=True)
    structural = _ragged_rejects(
        body.filter(ragged), frame.columns, header_fields, source.separator, label, first_line=2
    )
    return _RawTable(
        label=label,
        frame=frame.filter(keep),
        lines=line_numbers.filter(keep).alias("line"),
        structural=structural,
    )


def _ragged_rejects(
    body: pl.DataFrame, headers: list[str], header_fields: int, separator: str, label: str, first_line: int
) -> pl.DataFrame:
    """A line whose field count differs from the header (a truncated or shifted record): rejected whole."""
    rejects = []
    for row, line_text, fields in body.select("row", "text", "fields").iter_rows():
        values = next(csv.reader([line_text], delimiter=separator), [])
        reason = f"line has {fields} fields, the header has {header_fields} (truncated or shifted record)"
        rejects.append((row + first_line, _json(_zip_headers(headers, values)), reason))
    return _file_rejects(label, rejects)


def _file_rejects(label: str, rejects: Sequence[tuple[int, str, str]]) -> pl.DataFrame:
    """Records rejected while reading (line, raw JSON, reason), before any column is parsed."""
    return pl.DataFrame(
        {
            "source": [label] * len(rejects),
            "line": [line for line, _, _ in rejects],
            "raw": [raw for _, raw, _ in rejects],
            "reasons": [reason for _, _, reason in rejects],
        },
        schema=_FILE_REJECTS_SCHEMA,
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


def _read_sql(source: Source) -> _RawTable:
    label = source.name
    url = source.resolved_url()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            frame = pl.read_database(text(source.query or ""), connection)
    except Exception as exc:  # driver errors vary by database; the URL (which may hold a secret) is not repeated
        raise SourceError(f"source '{label}': query failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return _without_blank_rows(label, frame, pl.int_range(1, frame.height + 1, dtype=pl.Int64, eager=True))


def read_raw(source: Source, path: Path | None, label: str) -> _RawTable:
    if source.kind == "sql":
        return _read_sql(source)
    assert path is not None
    if source.kind == "csv":
        return _read_csv(source, path, label)
    if source.kind == "xlsx":
        return _read_xlsx(source, path, label)
    if source.kind == "parquet":
        return _read_parquet(path, label)
    return _read_jsonl(source, path, label)


# ---------------------------------------------------------------------------------------------------------- mapping


def _header_key(header: str) -> str:
    """Headers compare width-folded, trimmed, case-insensitive, without BOM or zero-width characters."""
    folded = pl.select(fold_width(pl.lit(header))).item()
    return folded.replace("\ufeff", "").replace("\u200b", "").strip().lower()


def map_headers(source: Source, headers: Sequence[str], label: str) -> dict[str, str]:
    """Source header → canonical column; a required column that is missing fails the source."""
    lookup = {_header_key(header): canonical for header, canonical in source.header_map().items()}
    mapped: dict[str, str] = {}
    taken: dict[str, str] = {}
    for header in headers:
        canonical = lookup.get(_header_key(header))
        if canonical is None:
            continue
        if canonical in taken:
            raise SourceError(f"{label}: columns '{taken[canonical]}' and '{header}' both map to {canonical}")
        taken[canonical] = header
        mapped[header] = canonical
    required = [column for column in CANONICAL_COLUMNS[source.table] if column.required]
    missing = [column for column in required if column.name not in taken]
    if missing:
        names = ", ".join(f"{c.name} ({c.headers[0]})" if c.headers else c.name for c in missing)
        raise SourceError(
            f"{label}: missing required column(s) {names} for table {source.table}; "
            f"headers found: {', '.join(headers) or 'none'}; add a `mapping` to the source"
        )
    return mapped


def _canonical_frame(source: Source, raw: _RawTable) -> pl.DataFrame:
    mapped = map_headers(source, raw.frame.columns, raw.label)
    by_canonical = {canonical: header for header, canonical in mapped.items()}
    return raw.frame.select(
        pl.col(by_canonical[column.name]).alias(column.name)
        if column.name in by_canonical
        else pl.lit(None, pl.String).alias(column.name)
        for column in CANONICAL_COLUMNS[source.table]
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


def _check_file(source: Source, raw: _RawTable) -> _CheckedFile:
    columns = CANONICAL_COLUMNS[source.table]
    parsed = parse_columns(
        _canonical_frame(source, raw), {c.name: ColumnKind(c.kind) for c in columns}, source.date_formats
    )
    canonical = _apply_value_maps(source, parsed.frame).cast(empty_frame(source.table).schema)
    contract = violations(source.table, canonical)
    # A value that could not be parsed is already reported; the contract's "missing" for it would repeat it.
    unparsed = parsed.problems.select("row", "column")
    contract = contract.join(unparsed, on=["row", "column"], how="anti", nulls_equal=False)
    # Reasons of a row read in column order; rules over several columns come last.
    position = pl.col("column").replace_strict(
        [c.name for c in columns], list(range(len(columns))), default=len(columns), return_dtype=pl.Int32
    )
    reasons = (
        pl.concat([parsed.problems.select("row", "column", "reason"), contract.select("row", "column", "reason")])
        .sort(pl.col("row"), position.fill_null(len(columns)), maintain_order=True)
        .select("row", "reason")
    )
    return _CheckedFile(raw=raw, canonical=canonical, reasons=reasons)


def load_source(
    source: Source,
    *,
    inbox_dir: Path,
    case_reference: pl.DataFrame | None = None,
    progress: ProgressCallback | None = None,
) -> LoadResult:
    """Read, check and split one source. `case_reference` (case_id, accepted_at, completed_at) lets suspensions be
    checked against their case's life; without it that check is skipped."""
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
                raise SourceError(f"source '{source.name}': no file matches {source.path} in {inbox_dir}")
            targets = [(path, _label(path, inbox_dir)) for path in paths]
        result.files = [label for _, label in targets]
        checked = []
        for done, (path, label) in enumerate(targets):
            if progress:
                progress(f"{source.name}: reading {label}", done, len(targets))
            checked.append(_check_file(source, read_raw(source, path, label)))
        if progress:
            progress(f"{source.name}: checked", len(targets), len(targets))
    except SourceError as exc:
        result.error = str(exc)
        return result
    _split(source, checked, case_reference, result)
    return result


def _label(path: Path, inbox_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(inbox_dir.resolve()))
    except ValueError:
        return str(path)


def _split(
    source: Source, checked: list[_CheckedFile], case_reference: pl.DataFrame | None, result: LoadResult
) -> None:
    """Cross-row checks over the whole load, then accepted/rejected, then the count invariant per file."""
    if not checked:
        return
    many_files = len(checked) > 1
    staged = pl.concat(
        [
            item.canonical.with_columns(
                pl.lit(index, pl.UInt32).alias("__file"),
                item.raw.lines.alias("__line"),
                pl.int_range(0, item.canonical.height, dtype=pl.UInt32).alias("__row"),
            )
            for index, item in enumerate(checked)
        ]
    )
    bad = pl.concat(
        [
            item.reasons.select(pl.lit(index, pl.UInt32).alias("__file"), pl.col("row").alias("__row"), "reason")
            for index, item in enumerate(checked)
        ]
    )
    clean = staged.join(bad.select("__file", "__row").unique(), on=["__file", "__row"], how="anti")
    bad = pl.concat([bad, _cross_row_reasons(source, clean, case_reference, checked, many_files)])
    reasons = bad.group_by("__file", "__row", maintain_order=True).agg(pl.col("reason").unique(maintain_order=True))
    reasons = reasons.with_columns(pl.col("reason").list.join("; ").alias("reasons")).drop("reason")
    marked = staged.join(reasons, on=["__file", "__row"], how="left", maintain_order="left")
    canonical_names = [column.name for column in CANONICAL_COLUMNS[source.table]]
    result.accepted = marked.filter(pl.col("reasons").is_null()).select(canonical_names)
    rejected_parts = []
    for index, item in enumerate(checked):
        rows = marked.filter((pl.col("__file") == index) & pl.col("reasons").is_not_null()).select(
            "__row", "__line", "reasons"
        )
        rejected_parts.append(_rejected_rows(item.raw, rows))
        rejected_parts.append(item.raw.structural)
    result.rejected = (
        pl.concat(rejected_parts).with_columns(pl.lit(source.table).alias("table")).select(list(REJECTED_SCHEMA))
    ).cast(REJECTED_SCHEMA)
    accepted_per_file = marked.filter(pl.col("reasons").is_null()).group_by("__file").len()
    accepted_counts = dict(accepted_per_file.iter_rows())
    for index, item in enumerate(checked):
        read = item.raw.frame.height + item.raw.structural.height
        accepted = accepted_counts.get(index, 0)
        rejected = result.rejected.filter(pl.col("source") == item.raw.label).height
        if accepted + rejected != read:
            raise LoadInvariantError(f"{item.raw.label}: accepted {accepted} + rejected {rejected} != rows read {read}")
        result.file_counts.append(FileCount(item.raw.label, read, accepted, rejected))
    result.rows_read = sum(count.rows_read for count in result.file_counts)


def _cross_row_reasons(
    source: Source,
    clean: pl.DataFrame,
    case_reference: pl.DataFrame | None,
    checked: list[_CheckedFile],
    many_files: bool,
) -> pl.DataFrame:
    """Reasons that need other rows: a pause outside its case's life, then duplicate keys among the rows left."""
    found = []
    if source.table == "suspensions" and case_reference is not None and clean.height:
        outside = pause_violations(clean, case_reference)
        positions = clean.select("__file", "__row").with_row_index("row")
        found.append(outside.join(positions, on="row").select("__file", "__row", "reason"))
        clean = clean.join(found[-1].select("__file", "__row").unique(), on=["__file", "__row"], how="anti")
    if clean.height:
        names = [item.raw.label for item in checked]
        labels = (
            pl.format("line {} of {}", pl.col("__line"), pl.col("__file").replace_strict(range(len(names)), names))
            if many_files
            else pl.format("line {}", pl.col("__line"))
        )
        order = clean.select(pl.col("__file").cast(pl.Int64) * (1 << 32) + pl.col("__line")).to_series()
        duplicates = duplicate_violations(source.table, clean, order, clean.select(labels).to_series())
        positions = clean.select("__file", "__row").with_row_index("row")
        found.append(duplicates.join(positions, on="row").select("__file", "__row", "reason"))
    if not found:
        return pl.DataFrame(schema={"__file": pl.UInt32, "__row": pl.UInt32, "reason": pl.String})
    return pl.concat(found).cast({"__file": pl.UInt32, "__row": pl.UInt32, "reason": pl.String})


def _rejected_rows(raw: _RawTable, rows: pl.DataFrame) -> pl.DataFrame:
    """source, line, raw (the row's original values as JSON, by source header), reasons."""
    if rows.height == 0:
        return pl.DataFrame(schema=_FILE_REJECTS_SCHEMA)
    originals = raw.frame.with_row_index("__row").join(rows, on="__row", how="inner", maintain_order="right")
    as_text = pl.struct(pl.col(name).cast(pl.String) for name in raw.frame.columns).struct.json_encode()
    return originals.select(
        pl.lit(raw.label).alias("source"),
        pl.col("__line").cast(pl.Int64).alias("line"),
        as_text.alias("raw"),
        pl.col("reasons"),
    )


def load_sources(
    sources: Iterable[Source],
    *,
    inbox_dir: Path,
    stored_cases: pl.DataFrame | None = None,
    progress: ProgressCallback | None = None,
) -> list[LoadResult]:
    """Load every source, cases first, so that suspensions are checked against the cases of this load (taking
    precedence) and those already stored (`stored_cases`: case_id, accepted_at, completed_at)."""
    ordered = sorted(sources, key=lambda source: TABLES.index(source.table))
    results: list[LoadResult] = []
    for source in ordered:
        reference = None
        if source.table == "suspensions":
            reference = case_reference([r.accepted for r in results if r.table == "cases" and r.storable], stored_cases)
        results.append(load_source(source, inbox_dir=inbox_dir, case_reference=reference, progress=progress))
    return results


def case_reference(loaded: Sequence[pl.DataFrame], stored: pl.DataFrame | None) -> pl.DataFrame:
    """case_id, accepted_at, completed_at: this load's cases first, then the stored ones."""
    frames = [frame.select(list(CASE_REFERENCE_SCHEMA)) for frame in loaded]
    if stored is not None:
        frames.append(stored.select(list(CASE_REFERENCE_SCHEMA)))
    if not frames:
        return pl.DataFrame(schema=CASE_REFERENCE_SCHEMA)
    return pl.concat(frames).unique("case_id", keep="first", maintain_order=True)
