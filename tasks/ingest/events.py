"""Suspensions written as events (事件行): one row per pause start or end, paired into one suspension per pause.

Platforms log a pause as two operations: Epoint's `audit_project_unusual` has `operatetype` 10 暂停计时 and 11 恢复,
the 中间库 variant of `EA_JC_STEP_SPECIALNODE` has `specialnodetype` 0 and 1. A source declares its event codes
(`config.sources.EventPairing`); here the rows of one file are paired in time order per case (and per the `within`
columns, e.g. `SN`):

- a start followed by an end is one suspension: the start's row, with the end's time as `ended_at`;
- a start with no end after it is an open pause (`ended_at` empty);
- an end with no open start, a second start while a pause is open, an unknown event code, or a row without a case
  or a readable time is rejected with its line and reason;
- a one-row event (`single`, e.g. 20 延期) is a suspension of its configured kind that starts and ends on its day.

A paired suspension keeps the line of its start row; its end row is part of it and not counted again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from config.sources import EventPairing
from schemas.messages import message
from tasks.ingest.parsing import code_expression, local_datetimes

ENDED_AT = "ended_at"  # the column the paired frame gives the end time (a canonical name, so it maps itself)
# The rejects of one file, before they are tied to a table (tasks/ingest/load.py reads them so too).
FILE_REJECTS_SCHEMA = {"source": pl.String, "line": pl.Int64, "raw": pl.String, "reasons": pl.String}


@dataclass(frozen=True)
class PairedEvents:
    frame: pl.DataFrame  # one row per suspension: the start row's source columns plus ENDED_AT (and the kind column)
    lines: pl.Series  # the physical line of each suspension's start row
    rejected: pl.DataFrame  # source, line, raw, reasons (FILE_REJECTS_SCHEMA)


@dataclass(frozen=True)
class EventColumns:
    """The source headers pairing reads: the case key, the event time, and where the kind goes."""

    case: str
    time: str
    kind: str  # the header mapped to `kind`, or "kind" when the source has none (filled from defaults)
    ended: Sequence[str] = ()  # headers that would also map to ended_at: dropped, the end event gives it


def pair_events(
    frame: pl.DataFrame, lines: pl.Series, pairing: EventPairing, columns: EventColumns, label: str
) -> PairedEvents:
    """Pair the event rows of one file (see the module docstring)."""
    frame = frame.drop(*columns.ended, strict=False)
    if columns.kind not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias(columns.kind))
    elif frame.schema[columns.kind] != pl.String:
        frame = frame.with_columns(pl.col(columns.kind).cast(pl.String))
    keys = [f"__key{i}" for i in range(1 + len(pairing.within))]
    probe = _probe(frame, lines, pairing, columns, keys)
    valid = probe.filter(pl.col("__problem").is_null())
    # Singles change no pause; every other event leaves the case's pause open exactly when it is a start (a rejected
    # second start leaves the first one open, a rejected end leaves none open). So, in time order per group:
    # a start is rejected when the event before it is a start, an end when the event before it is not.
    sequence = (
        valid.filter(pl.col("__role") != "single")
        .sort([*keys, "__time", "__line"])
        .with_columns(pl.col("__role").shift(1).over(keys).fill_null("").alias("__before"))
        .with_columns(
            # The row of the start that opened the pause in force: a start after a non-start opens one.
            pl.when((pl.col("__role") == "start") & (pl.col("__before") != "start"))
            .then(pl.col("__row"))
            .forward_fill()
            .over(keys)
            .alias("__opened"),
            pl.col("__role").last().over(keys).alias("__last_role"),
        )
    )
    opened_line = sequence.select(pl.col("__row").alias("__opened"), pl.col("__line").alias("__opened_line"))
    sequence = sequence.join(opened_line, on="__opened", how="left")
    rejected = sequence.select(
        "__row",
        pl.when((pl.col("__role") == "start") & (pl.col("__before") == "start"))
        .then(message("a second start while the pause started at line ", pl.col("__opened_line"), " is still open"))
        .when((pl.col("__role") == "end") & (pl.col("__before") != "start"))
        .then(pl.lit("an end without a start (no pause of this case is open)"))
        .alias("__problem"),
    ).filter(pl.col("__problem").is_not_null())
    closed = sequence.filter((pl.col("__role") == "end") & (pl.col("__before") == "start")).select(
        pl.col("__opened").alias("__start"), pl.col("__row").alias("__end"), pl.lit(None, pl.String).alias("__kind")
    )
    # A group whose last event is a start ends with a pause still open: the latest pause it opened.
    still_open = (
        sequence.filter(
            (pl.col("__role") == "start") & (pl.col("__before") != "start") & (pl.col("__last_role") == "start")
        )
        .filter(pl.col("__row") == pl.col("__opened").last().over(keys))
        .select(
            pl.col("__row").alias("__start"),
            pl.lit(None, pl.UInt32).alias("__end"),
            pl.lit(None, pl.String).alias("__kind"),
        )
    )
    singles = valid.filter(pl.col("__role") == "single").select(
        pl.col("__row").alias("__start"),
        pl.col("__row").alias("__end"),
        pl.col("__code").replace_strict(pairing.single, return_dtype=pl.String).alias("__kind"),
    )
    # In the order of their start rows, as the file has them.
    pauses = pl.concat([closed, still_open, singles]).sort("__start")
    problems = pl.concat([probe.filter(pl.col("__problem").is_not_null()).select("__row", "__problem"), rejected])
    return PairedEvents(
        frame=_paired_frame(frame, pauses, columns),
        lines=lines.gather(pauses["__start"]),
        rejected=_rejected(frame, lines, problems.sort("__row"), label),
    )


def _probe(
    frame: pl.DataFrame, lines: pl.Series, pairing: EventPairing, columns: EventColumns, keys: list[str]
) -> pl.DataFrame:
    """Per event row: its group keys, event code and role, time, line, and the problem that stops it pairing."""
    role_of = {**dict.fromkeys(pairing.start, "start"), **dict.fromkeys(pairing.end, "end")}
    role_of.update(dict.fromkeys(pairing.single, "single"))
    known = ", ".join(
        f"{name} ({', '.join(codes)})"
        for name, codes in (("start", pairing.start), ("end", pairing.end), ("single", tuple(pairing.single)))
        if codes
    )
    times = frame.get_column(columns.time)
    probe = frame.select(
        code_expression(pairing.column, frame.schema[pairing.column]).alias("__code"),
        *(
            code_expression(name, frame.schema[name]).alias(key)
            for key, name in zip(keys, [columns.case, *pairing.within], strict=True)
        ),
        times.cast(pl.String).alias("__time_text"),
    ).with_columns(
        pl.col("__code").replace_strict(role_of, default=None, return_dtype=pl.String).alias("__role"),
        local_datetimes(times).alias("__time"),
        lines.alias("__line"),
        pl.int_range(0, frame.height, dtype=pl.UInt32).alias("__row"),
    )
    problem = (
        pl.when(pl.col(keys[0]).is_null())
        .then(pl.lit("case_id: missing"))
        .when(pl.col("__code").is_null())
        .then(pl.lit(f"{pairing.column}: missing (the event code)"))
        .when(pl.col("__role").is_null())
        .then(message(f"{pairing.column}: event code '", pl.col("__code"), f"' is none of {known}"))
        .when(pl.col("__time").is_null())
        .then(
            message(f"{columns.time}: not a date-time '", pl.col("__time_text").fill_null(""), "' (the event time)")
        )
    )
    return probe.with_columns(problem.alias("__problem"))


def _paired_frame(frame: pl.DataFrame, pauses: pl.DataFrame, columns: EventColumns) -> pl.DataFrame:
    """The start rows, with the end row's time and a single event's kind."""
    paired = frame[pauses["__start"]]
    ended = frame.get_column(columns.time).gather(pauses["__end"])
    return paired.with_columns(
        ended.alias(ENDED_AT),
        pl.lit(pauses["__kind"]).fill_null(pl.col(columns.kind)).alias(columns.kind),
    )


def _rejected(frame: pl.DataFrame, lines: pl.Series, problems: pl.DataFrame, label: str) -> pl.DataFrame:
    """source, line, raw (the event row's values as JSON), reasons; `problems`: __row, __problem."""
    if problems.is_empty():
        return pl.DataFrame(schema=FILE_REJECTS_SCHEMA)
    rows = problems["__row"]
    as_text = pl.struct(pl.col(name).cast(pl.String) for name in frame.columns).struct.json_encode()
    return frame[rows].select(
        pl.lit(label).alias("source"),
        pl.lit(lines.gather(rows)).cast(pl.Int64).alias("line"),
        as_text.alias("raw"),
        pl.lit(problems["__problem"]).alias("reasons"),
    )
