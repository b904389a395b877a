"""The one parser for messy export values: text, codes, dates, datetimes and integers, vectorised in polars.

Every parse reports the non-empty values it could not read (`ParseResult.problems`), so callers turn them into rejects
instead of silent nulls. Dates come in every spelling real exports use: ISO date/datetime, `2023/1/20 9:05`,
`2023年1月20日`, `20230120`, Excel serial numbers. An aware datetime is converted to Asia/Shanghai before its date
is taken; a naive one is read as Shanghai wall time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import polars as pl

from schemas.messages import message

SHANGHAI = "Asia/Shanghai"

# Full-width ASCII (U+FF01..U+FF5E) and the ideographic space fold to their half-width forms, as NFKC would.
_FULL_WIDTH = [chr(code) for code in range(0xFF01, 0xFF5F)] + ["\u3000"]
_HALF_WIDTH = [chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)] + [" "]
_WIDTH_FOLD = str.maketrans(dict(zip(_FULL_WIDTH, _HALF_WIDTH, strict=True)))

_WIDE_OR_ODD_SPACE = "[\uff01-\uff5e\u3000\u00a0]"
# Spellings of "no value" seen in exports. Applied to codes, numbers and dates only: in free text "无" is a real answer.
NULL_TOKENS = ("", "-", "--", "/", "null", "NULL", "Null", "None", "none", "nan", "NaN", "N/A", "n/a", "#N/A", "无")

# Excel serial day 0 is 1899-12-30 (the 1900 leap-year bug makes that the right epoch for every serial after Feb 1900).
_EXCEL_EPOCH = date(1899, 12, 30)
# A date outside this window is a misread (a serial taken for a year, a two-digit year), not a real approval date.
EARLIEST_DATE = date(1990, 1, 1)
LATEST_DATE = date(2100, 12, 31)
_SERIAL_MIN = (EARLIEST_DATE - _EXCEL_EPOCH).days
_SERIAL_MAX = (LATEST_DATE - _EXCEL_EPOCH).days

# After canonicalisation a date-time string looks like `2023-1-20`, `2023-1-20 9:05`, `2023-01-20 09:05:07.5+08:00`.
_NAIVE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S%.f", "%Y%m%d", "%Y%m%d%H%M%S")
_AWARE_FORMATS = ("%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M%#z")
_AWARE_SUFFIX = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"
# Tried first, as written, on the whole column: the spellings of machine exports. Everything else is normalised.
_FAST_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
_SERIAL_TEXT = r"^\d{1,6}(?:\.\d+)?$"
_INTEGER_TEXT = r"^[+-]?\d+(?:\.0*)?$"


class ColumnKind(StrEnum):
    TEXT = "text"  # free text: trimmed, ideographic spaces folded
    CODE = "code"  # ids and codes: width-folded, trimmed, `360702.0` from spreadsheets back to `360702`
    DATE = "date"  # pl.Date, Shanghai calendar day
    DATETIME = "datetime"  # pl.Datetime (naive, Shanghai wall time)
    INTEGER = "integer"  # pl.Int32


@dataclass(frozen=True)
class ParseResult:
    """`frame` with parsed columns; `problems`: one row per unreadable non-empty value (row = 0-based position)."""

    frame: pl.DataFrame
    problems: pl.DataFrame

    def failed_rows(self) -> pl.Series:
        """Boolean mask over `frame`: True where at least one value could not be read."""
        rows = self.problems.get_column("row").unique()
        return pl.int_range(0, self.frame.height, dtype=pl.UInt32, eager=True).is_in(rows.implode())

    def reasons_by_row(self) -> pl.DataFrame:
        """row, reasons (every problem of the row, '; '-joined, in column order)."""
        return self.problems.group_by("row", maintain_order=True).agg(pl.col("reason").str.join("; "))


PROBLEM_SCHEMA = {"row": pl.UInt32, "column": pl.String, "value": pl.String, "reason": pl.String}


def fold_width(expr: pl.Expr) -> pl.Expr:
    """Full-width digits, letters, punctuation and spaces to half-width (１２３ → 123, （ → ()."""
    # Not str.normalize("NFKC"): it folds these characters the same way but rewrites others that codes, names and
    # headers hold as written (① → 1, Ⅱ → II, ㎡ → m2, ² → 2, … → ..., half-width katakana), so stored codes and
    # accepted aliases would change.
    return expr.str.replace_many(_FULL_WIDTH, _HALF_WIDTH)


def header_key(header: str) -> str:
    """The form in which export headers are compared, by the nightly load, the PII masking of rejected rows and
    `permitwatch evaluate` alike: width-folded (as fold_width), trimmed, case-insensitive, without BOM or zero-width
    characters."""
    return header.translate(_WIDTH_FOLD).replace("\ufeff", "").replace("\u200b", "").strip().lower()


def normalize_text(expr: pl.Expr) -> pl.Expr:
    """Free text: fold the ideographic space and non-breaking space, trim; an empty string becomes null."""
    cleaned = expr.str.replace_many(["\u3000", "\u00a0"], [" ", " "]).str.strip_chars()
    return pl.when(cleaned.str.len_bytes() == 0).then(None).otherwise(cleaned)


def normalize_value(expr: pl.Expr) -> pl.Expr:
    """Codes, numbers and dates: width-folded, trimmed, with every NULL_TOKENS spelling as null."""
    cleaned = fold_width(expr).str.replace_all("\u00a0", " ", literal=True).str.strip_chars()
    return pl.when(cleaned.is_in(list(NULL_TOKENS))).then(None).otherwise(cleaned)


def clean_values(values: pl.Series) -> pl.Series:
    """`normalize_value` for a whole string column, skipping the steps it does not need (most columns need none)."""
    text = values
    if text.str.contains(_WIDE_OR_ODD_SPACE).any():
        text = text.to_frame().select(fold_width(pl.first()).str.replace_all("\u00a0", " ", literal=True)).to_series()
    if text.str.contains(r"^\s|\s$").any():
        text = text.str.strip_chars()
    if text.is_in(list(NULL_TOKENS)).any():
        text = text.to_frame().select(pl.when(~pl.first().is_in(list(NULL_TOKENS))).then(pl.first())).to_series()
    return text.alias(values.name)


def clean_text(values: pl.Series) -> pl.Series:
    """`normalize_text` for a whole string column, skipping the steps it does not need."""
    text = values
    if text.str.contains("[\u3000\u00a0]").any():
        text = text.str.replace_many(["\u3000", "\u00a0"], [" ", " "])
    if text.str.contains(r"^\s|\s$").any():
        text = text.str.strip_chars()
    if (text.str.len_bytes() == 0).any():
        text = text.to_frame().select(pl.when(pl.first().str.len_bytes() > 0).then(pl.first())).to_series()
    return text.alias(values.name)


def _canonical_datetime_text(text: pl.Expr) -> pl.Expr:
    """`2023/1/20 9:05`, `2023.1.20`, `2023年1月20日 9时5分`, `2023-01-20T09:05Z` → `2023-1-20 9:05[...]`."""
    return (
        text.str.replace(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?:\s*日)?", "${1}-${2}-${3}")
        .str.replace(r"^(\d{4}-\d{1,2}-\d{1,2})(?:\s*T\s*|\s+)", "${1} ")
        .str.replace(r"(\d{1,2})\s*[时点:]\s*(\d{1,2})\s*分?(?:\s*(\d{1,2})\s*秒)?$", "${1}:${2}:${3}")
        .str.replace(r":$", "")
        .str.replace(r"\s+(" + _AWARE_SUFFIX[:-1] + r")$", "${1}")
    )


def _text_datetimes(values: pl.Series, extra_formats: Sequence[str]) -> pl.Series:
    """Clean ISO values are read in one pass; the rest (a few, usually) go through `_messy_datetimes`."""
    parsed = values.str.to_datetime(_FAST_FORMATS[0], time_unit="us", strict=False, exact=True, cache=False)
    leftover = (parsed.is_null() & values.is_not_null()).arg_true()
    for fmt in _FAST_FORMATS[1:]:
        # Only the values still unread: a failed parse costs as much as a good one, and most values read at once.
        if leftover.len():
            unread = values.gather(leftover)
            parsed = parsed.scatter(leftover, unread.str.to_datetime(fmt, time_unit="us", strict=False, exact=True,
                                                                     cache=False))
            leftover = (parsed.is_null() & values.is_not_null()).arg_true()
    if leftover.len():
        parsed = parsed.scatter(leftover, _messy_datetimes(values.gather(leftover), extra_formats))
    return parsed.alias(values.name)


def _messy_datetimes(values: pl.Series, extra_formats: Sequence[str]) -> pl.Series:
    """Parse each distinct string once (exports repeat dates heavily), then map the results back onto the rows."""
    distinct = values.drop_nulls().unique()
    text, canonical = pl.col("text"), pl.col("canonical")
    aware = canonical.str.contains(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?" + _AWARE_SUFFIX)
    candidates: list[pl.Expr] = [
        pl.when(aware).then(
            canonical.str.strptime(pl.Datetime("us", SHANGHAI), fmt, strict=False).dt.replace_time_zone(None)
        )
        for fmt in _AWARE_FORMATS
    ]
    candidates += [
        pl.when(~aware).then(canonical.str.strptime(pl.Datetime("us"), fmt, strict=False, exact=True))
        for fmt in _NAIVE_FORMATS
    ]
    # Extra formats are read as written (not canonicalised); with %z the instant is converted to Shanghai time.
    candidates += [
        text.str.strptime(pl.Datetime("us", SHANGHAI), fmt, strict=False, exact=True).dt.replace_time_zone(None)
        for fmt in extra_formats
    ]
    serial = pl.when(text.str.contains(_SERIAL_TEXT)).then(text.cast(pl.Float64, strict=False))
    candidates.append(_datetime_from_serial(serial))
    table = (
        pl.DataFrame({"value": distinct})
        .lazy()
        .with_columns(normalize_value(pl.col("value")).alias("text"))
        .with_columns(_canonical_datetime_text(text).alias("canonical"))
        .select("value", pl.coalesce(candidates).alias("parsed"))
        .collect()
    )
    return values.replace_strict(table["value"], table["parsed"], default=None, return_dtype=pl.Datetime("us"))


def _datetime_from_serial(serial: pl.Expr) -> pl.Expr:
    """An Excel serial number (days since 1899-12-30, the fraction is the time of day) as a naive datetime."""
    in_range = (serial >= _SERIAL_MIN) & (serial < _SERIAL_MAX + 1)
    micros = (serial * 86_400_000_000).round(0).cast(pl.Int64, strict=False)
    epoch = pl.lit(_EXCEL_EPOCH).cast(pl.Datetime("us"))
    return pl.when(in_range).then(epoch + pl.duration(microseconds=micros))


def _local_datetime_from_number(number: pl.Expr) -> pl.Expr:
    """A number in a date column: 20230120 (yyyymmdd) or an Excel serial."""
    as_text = number.cast(pl.Int64, strict=False).cast(pl.String)
    yyyymmdd = pl.when((number >= 10_000_101) & (number <= 99_991_231) & (number.round(0) == number)).then(
        as_text.str.strptime(pl.Datetime("us"), "%Y%m%d", strict=False)
    )
    return pl.coalesce(yyyymmdd, _datetime_from_serial(number.cast(pl.Float64)))


def local_datetimes(values: pl.Series, extra_formats: Sequence[str] = ()) -> pl.Series:
    """Naive Shanghai wall-time datetimes from a series of any dtype; unreadable values become null."""
    dtype = values.dtype
    if dtype == pl.String:
        return _text_datetimes(values, extra_formats)
    source = pl.col(values.name)
    if isinstance(dtype, pl.Datetime):
        expr = source.dt.cast_time_unit("us")
        if dtype.time_zone is not None:
            expr = source.dt.convert_time_zone(SHANGHAI).dt.replace_time_zone(None).dt.cast_time_unit("us")
    elif dtype == pl.Date:
        expr = source.cast(pl.Datetime("us"))
    elif dtype.is_numeric():
        expr = _local_datetime_from_number(source)
    else:
        return _text_datetimes(values.cast(pl.String, strict=False), extra_formats)
    return values.to_frame().select(expr).to_series()


def dates(values: pl.Series, extra_formats: Sequence[str] = ()) -> pl.Series:
    """pl.Date (Shanghai calendar day) from a series of any dtype; unreadable or implausible values become null."""
    return _parse_series(ColumnKind.DATE, values, extra_formats)[0]


def integer_expression(column: str, dtype: pl.DataType) -> pl.Expr:
    source = pl.col(column)
    if dtype.is_integer():
        return source.cast(pl.Int32, strict=False)
    if dtype.is_float():
        return pl.when(source.round(0) == source).then(source.cast(pl.Int32, strict=False))
    text = normalize_value(source.cast(pl.String, strict=False))
    whole = text.str.replace(r"\.0*$", "")
    return pl.when(text.str.contains(_INTEGER_TEXT)).then(whole.cast(pl.Int32, strict=False))


def code_expression(column: str, dtype: pl.DataType) -> pl.Expr:
    source = pl.col(column)
    if dtype.is_integer():
        return source.cast(pl.String)
    if dtype.is_float():
        # A spreadsheet stored the code as a number: 360702.0 means "360702".
        return pl.when(source.round(0) == source).then(source.cast(pl.Int64, strict=False).cast(pl.String))
    text = normalize_value(source.cast(pl.String, strict=False))
    return text.str.replace(r"^(\d+)\.0+$", "${1}")


def text_expression(column: str, dtype: pl.DataType) -> pl.Expr:
    return normalize_text(pl.col(column).cast(pl.String, strict=False))


def _as_text(values: pl.Series) -> pl.Series:
    return values if values.dtype == pl.String else values.cast(pl.String, strict=False)


def _present(values: pl.Series) -> pl.Series:
    """A value that is there to be read (null, blank and NULL_TOKENS are absent, not failures)."""
    if values.dtype == pl.String:
        return clean_values(values).is_not_null()
    if values.dtype.is_float():
        return values.is_not_null() & values.is_not_nan()
    return values.is_not_null()


def _parse_series(kind: ColumnKind, values: pl.Series, extra_formats: Sequence[str]) -> tuple[pl.Series, pl.Series]:
    """(parsed values, the intermediate datetimes for date kinds, else the parsed values again)."""
    if kind in (ColumnKind.DATE, ColumnKind.DATETIME):
        moments = local_datetimes(values, extra_formats)
        if kind is ColumnKind.DATETIME:
            return moments, moments
        day = pl.col(values.name).dt.date()
        window = pl.when(day.is_between(EARLIEST_DATE, LATEST_DATE)).then(day)
        return moments.to_frame().select(window).to_series(), moments
    if kind is ColumnKind.INTEGER and values.dtype == pl.String:
        # Plain digits (nearly every value) cast directly; the rest are normalised first.
        parsed = values.cast(pl.Int32, strict=False)
        leftover = (parsed.is_null() & values.is_not_null()).arg_true()
        if leftover.len():
            subset = values.gather(leftover).to_frame()
            parsed = parsed.scatter(leftover, subset.select(integer_expression(values.name, pl.String)).to_series())
        return parsed, parsed
    if kind is ColumnKind.CODE and values.dtype == pl.String:
        text = clean_values(values)
        if text.str.contains(".", literal=True).any():  # a spreadsheet's 360702.0
            text = text.str.replace(r"^(\d+)\.0+$", "${1}")
        return text, text
    if kind is ColumnKind.TEXT and values.dtype == pl.String:
        text = clean_text(values)
        return text, text
    expression = {
        ColumnKind.INTEGER: integer_expression,
        ColumnKind.CODE: code_expression,
        ColumnKind.TEXT: text_expression,
    }[kind](values.name, values.dtype)
    parsed = values.to_frame().select(expression).to_series()
    return parsed, parsed


def _problems(kind: ColumnKind, column: str, values: pl.Series, parsed: pl.Series, moments: pl.Series) -> pl.DataFrame:
    """One row per value that is present but did not parse: row, column, value, reason."""
    candidates = (parsed.is_null() & values.is_not_null()).arg_true()
    if candidates.len() == 0:
        return pl.DataFrame(schema=PROBLEM_SCHEMA)
    subset = pl.DataFrame(
        {
            "row": candidates.cast(pl.UInt32),
            "value": _as_text(values.gather(candidates)),
            "present": _present(values.gather(candidates)),
            "readable": moments.gather(candidates).is_not_null(),
        }
    ).filter("present")
    if kind is ColumnKind.DATE:
        # The condition picks a literal; the message is built once over the whole column, outside the condition.
        what = (
            pl.when(pl.col("readable"))
            .then(pl.lit(f"date outside {EARLIEST_DATE}..{LATEST_DATE}"))
            .otherwise(pl.lit("not a date"))
        )
    else:
        what = pl.lit(
            {
                ColumnKind.DATETIME: "not a date-time",
                ColumnKind.INTEGER: "not a whole number",
                ColumnKind.CODE: "not a code",
                ColumnKind.TEXT: "not text",
            }[kind]
        )
    reason = message(f"{column}: ", what, " '", pl.col("value"), "'")
    return subset.select("row", pl.lit(column).alias("column"), "value", reason.alias("reason")).cast(PROBLEM_SCHEMA)


def parse_columns(
    frame: pl.DataFrame, kinds: Mapping[str, ColumnKind], extra_formats: Iterable[str] = ()
) -> ParseResult:
    """Parse the named columns in place (others untouched) and collect every unreadable non-empty value."""
    formats = tuple(extra_formats)
    missing = [column for column in kinds if column not in frame.schema]
    if missing:
        raise KeyError(f"columns not in frame: {', '.join(missing)}")
    parsed_columns = []
    problems = []
    for column, kind in kinds.items():
        values = frame.get_column(column)
        parsed, moments = _parse_series(kind, values, formats)
        parsed_columns.append(parsed.alias(column))
        problems.append(_problems(kind, column, values, parsed, moments))
    found = pl.concat(problems).sort("row", maintain_order=True) if problems else pl.DataFrame(schema=PROBLEM_SCHEMA)
    return ParseResult(frame=frame.with_columns(parsed_columns), problems=found)


def parse_dates(frame: pl.DataFrame, columns: Iterable[str], extra_formats: Iterable[str] = ()) -> ParseResult:
    """The date columns of `frame` as pl.Date; `problems` lists every non-empty value that is not a date."""
    return parse_columns(frame, dict.fromkeys(columns, ColumnKind.DATE), extra_formats)
