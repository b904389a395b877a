"""Masking of applicant PII (applicant_name, applicant_phone) for logs, Prefect artifacts, SMS, email and the rejected
rows a command prints or writes (their original values, keyed by source header).

Names keep the first and last character (张*三; a two-character name keeps the first: 李*). Phone numbers keep the first
three and last four digits (138****0000); shorter numbers keep only the last two digits.

`mask_name` and `mask_phone` take either a polars expression (vectorised: `mask_name(pl.col("applicant_name"))`) or a
single value (`mask_name("张小三")`); both forms agree on every input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import overload

import polars as pl

from config.canonical import CANONICAL_COLUMNS
from config.sources import Source
from tasks.ingest.parsing import header_key

_MASK = "*"
SHIFTED = "_extra"  # the loader's key for the surplus values of a record with more fields than its header
_DIGITS = frozenset("0123456789")
# Stripped around values: spaces, tabs, line breaks, the no-break and the full-width (全角) space.
_SPACE = " \t\r\n\xa0\u3000"


@overload
def mask_name(name: pl.Expr) -> pl.Expr: ...
@overload
def mask_name(name: str | None) -> str | None: ...
def mask_name(name: pl.Expr | str | None) -> pl.Expr | str | None:
    if isinstance(name, pl.Expr):
        return _mask_name_expr(name)
    if name is None:
        return None
    stripped = name.strip(_SPACE)
    if len(stripped) <= 1:
        return _MASK if stripped else stripped
    if len(stripped) == 2:
        return stripped[0] + _MASK
    return stripped[0] + _MASK * (len(stripped) - 2) + stripped[-1]


@overload
def mask_phone(phone: pl.Expr) -> pl.Expr: ...
@overload
def mask_phone(phone: str | None) -> str | None: ...
def mask_phone(phone: pl.Expr | str | None) -> pl.Expr | str | None:
    if isinstance(phone, pl.Expr):
        return _mask_phone_expr(phone)
    if phone is None:
        return None
    digits = "".join(character for character in phone if character in _DIGITS)
    if not digits:
        return _MASK * len(phone.strip(_SPACE)) if phone.strip(_SPACE) else ""
    if len(digits) >= 11:
        return digits[:3] + _MASK * (len(digits) - 7) + digits[-4:]
    if len(digits) > 2:
        return _MASK * (len(digits) - 2) + digits[-2:]
    return _MASK * len(digits)


def _mask_name_expr(raw: pl.Expr) -> pl.Expr:
    value = raw.str.strip_chars(_SPACE)
    length = value.str.len_chars()
    return (
        pl.when(length == 0)
        .then(pl.lit(""))
        .when(length == 1)
        .then(pl.lit(_MASK))
        .when(length == 2)
        .then(value.str.head(1) + _MASK)
        .otherwise(value.str.head(1) + pl.lit(_MASK).repeat_by(length - 2).list.join("") + value.str.tail(1))
    )


def _mask_phone_expr(raw: pl.Expr) -> pl.Expr:
    digits = raw.str.replace_all(r"[^0-9]", "")
    count = digits.str.len_chars()
    stars = pl.lit(_MASK)
    blank = raw.str.strip_chars(_SPACE).str.len_chars()
    return (
        pl.when(count == 0)
        .then(stars.repeat_by(blank).list.join(""))
        .when(count >= 11)
        .then(digits.str.head(3) + stars.repeat_by(count - 7).list.join("") + digits.str.tail(4))
        .when(count > 2)
        .then(stars.repeat_by(count - 2).list.join("") + digits.str.tail(2))
        .otherwise(stars.repeat_by(count).list.join(""))
    )


def mask_pii(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with applicant_name and applicant_phone masked (when present): safe to log or publish."""
    masks = []
    if "applicant_name" in frame.columns:
        masks.append(mask_name(pl.col("applicant_name")).alias("applicant_name"))
    if "applicant_phone" in frame.columns:
        masks.append(mask_phone(pl.col("applicant_phone")).alias("applicant_phone"))
    return frame.with_columns(masks) if masks else frame


PII_MASKS: dict[str, Callable[[str | None], str | None]] = {"applicant_name": mask_name, "applicant_phone": mask_phone}


def pii_headers(source: Source | None) -> dict[str, str]:
    """Source header (normalised) -> PII column, for the headers of `source` that hold an applicant's name or phone.
    Without the source's config, the canonical names and the default Chinese headers."""
    if source is not None:
        mapping = source.header_map()
    else:
        mapping = {header: column.name for column in CANONICAL_COLUMNS["cases"]
                   for header in (column.name, *column.headers)}
    return {header_key(header): column for header, column in mapping.items() if column in PII_MASKS}


def masked_raw(raw: str | None, pii: dict[str, str]) -> str:
    """A rejected row's raw values with the applicant's name and phone masked.

    A record with surplus fields (a separator inside an unquoted value) has its values shifted right of the split, so
    every value from the first PII column on, and the surplus, is masked whole: a phone may sit under any later
    header. Text that is not a JSON object is not shown at all."""
    if not raw:
        return ""
    try:
        values = json.loads(raw)
    except json.JSONDecodeError:
        return "(not shown: unparsed record)"
    if not isinstance(values, dict):
        return "(not shown: unparsed record)"
    keys = list(values)
    pii_positions = [index for index, key in enumerate(keys) if header_key(key) in pii]
    if SHIFTED in values and pii_positions:
        for key in keys[pii_positions[0]:]:
            values[key] = "***"
    else:
        for index in pii_positions:
            key = keys[index]
            value = values[key]
            values[key] = PII_MASKS[pii[header_key(key)]](value if isinstance(value, str) or value is None
                                                             else str(value))
    return json.dumps(values, ensure_ascii=False)
