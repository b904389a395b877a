"""Frames shaped the way a real load leaves them, for the parsing, contract and ingestion tests."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl


def chunk_lengths(frame: pl.DataFrame) -> dict[str, list[int]]:
    return {name: [len(chunk) for chunk in frame.get_column(name).get_chunks()] for name in frame.columns}


def with_empty_chunk(frame: pl.DataFrame, dropped_line: Mapping[str, object]) -> pl.DataFrame:
    """`frame` as polars leaves a CSV without a final newline once its last line (`dropped_line`) is filtered out:
    the reader gives that line a chunk of its own, and the filter leaves it empty behind the rows kept."""
    read = pl.concat([frame, pl.DataFrame([dict(dropped_line)], schema=frame.schema)], rechunk=False)
    kept = read.filter(pl.Series([True] * frame.height + [False]))
    # The premise of the tests using this (polars merges all-null chunks, so only columns with a dropped value count).
    lengths = chunk_lengths(kept)
    assert all(lengths[name][-1] == 0 for name, value in dropped_line.items() if value is not None), lengths
    return kept
