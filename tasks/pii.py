"""Masking of applicant PII (applicant_name, applicant_phone) for logs, Prefect artifacts, SMS and email.

Names keep the first and last character (张*三; a two-character name keeps the first: 李*). Phone numbers keep the first
three and last four digits (138****0000); shorter numbers keep only the last two digits.

`mask_name` and `mask_phone` take either a polars expression (vectorised: `mask_name(pl.col("applicant_name"))`) or a
single value (`mask_name("张小三")`); both forms agree on every input.
"""

from __future__ import annotations

from typing import overload

import polars as pl

_MASK = "*"
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
