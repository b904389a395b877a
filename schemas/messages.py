"""Reasons and labels built from literal text and column values (`message`), for contracts and ingestion alike."""

from __future__ import annotations

import polars as pl


def message(*parts: str | pl.Expr) -> pl.Expr:
    """A reason or label from literal text and column values (any dtype, written as text); null where a value is null.

    Ingestion builds its messages here, with concat_str and never pl.format: polars 2.1's pl.format panics
    (`assertion failed: i < self.len()`) on short columns (two to four rows, as seen) that hold an empty chunk, and
    such columns are ordinary here: polars reads the last line of a CSV without a final newline as a chunk of its own,
    a filter that drops that line leaves the chunk empty, and pandera's failure cases are pieces of such columns.
    """
    return pl.concat_str([pl.lit(part) if isinstance(part, str) else part for part in parts])
