"""The one date/number/code parser: every spelling real exports use, and every unreadable value reported."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_fixtures import with_empty_chunk

from schemas.messages import message
from tasks.ingest.parsing import (
    ColumnKind,
    dates,
    fold_width,
    header_key,
    local_datetimes,
    parse_columns,
    parse_dates,
)

JAN_20 = date(2023, 1, 20)


@pytest.mark.parametrize(
    "text",
    [
        "2023-01-20",
        "2023-1-20",
        "2023/1/20 9:05",
        "2023/01/20 09:05:07",
        "2023.1.20",
        "2023年1月20日",
        "2023年1月20日 9时5分",
        "20230120",
        "20230120093000",
        "2023-01-20 09:05:07.123",
        "2023-01-20T09:05:00",
        "44946",
        "44946.75",
        " 2023-01-20 ",
        "２０２３－０１－２０",
        "2023-01-20T09:05:00+08:00",
    ],
)
def test_every_domain_spelling_is_the_same_day(text: str) -> None:
    result = parse_dates(pl.DataFrame({"d": [text]}), ["d"])
    assert result.frame["d"].to_list() == [JAN_20]
    assert result.problems.height == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-01-19T20:00:00Z", date(2023, 1, 20)),  # 04:00 next morning in Shanghai
        ("2023-01-19T15:59:59Z", date(2023, 1, 19)),  # 23:59:59 in Shanghai
        ("2023-01-20 23:30:00-05:00", date(2023, 1, 21)),
        ("2023-01-20T01:00:00+09:00", date(2023, 1, 20)),  # 00:00 in Shanghai
    ],
)
def test_aware_datetimes_take_the_shanghai_date(text: str, expected: date) -> None:
    assert dates(pl.Series("d", [text])).to_list() == [expected]


def test_typed_columns_are_read_too() -> None:
    utc = pl.Series("d", [datetime(2023, 1, 19, 16, 30)]).dt.replace_time_zone("UTC")
    assert dates(utc).to_list() == [date(2023, 1, 20)]
    naive = pl.Series("d", [datetime(2023, 1, 20, 23, 59)])
    assert dates(naive).to_list() == [JAN_20]
    numbers = pl.Series("d", [44946.0, 44946.99, 20230120.0, None])
    assert dates(numbers).to_list() == [JAN_20, JAN_20, JAN_20, None]
    assert dates(pl.Series("d", [20230120, 44946])).to_list() == [JAN_20, JAN_20]


def test_excel_serials_count_from_1899_12_30() -> None:
    serials = [32874, 45000, 46387]  # 1990-01-01, 2023-03-15, 2026-12-31
    expected = [date(1899, 12, 30) + timedelta(days=n) for n in serials]
    assert expected == [date(1990, 1, 1), date(2023, 3, 15), date(2026, 12, 31)]
    assert dates(pl.Series("d", [str(n) for n in serials])).to_list() == expected


def test_datetime_kind_keeps_wall_time_in_shanghai() -> None:
    values = pl.Series("d", ["2023/1/20 9:05", "2023-01-20T01:05:00Z", "44946.5"])
    assert local_datetimes(values).to_list() == [
        datetime(2023, 1, 20, 9, 5),
        datetime(2023, 1, 20, 9, 5),
        datetime(2023, 1, 20, 12, 0),
    ]


def test_unreadable_values_are_reported_not_silently_null() -> None:
    frame = pl.DataFrame(
        {
            "d": ["2023-02-30", "garbage", "", None, "-", "1900-01-01", "2023-01-20 25:00", "2023-01-20"],
            "n": ["x", "7.5", "", None, "无", "１５", "15.0", "3"],
        }
    )
    result = parse_columns(frame, {"d": ColumnKind.DATE, "n": ColumnKind.INTEGER})
    problems = {(row, column): reason for row, column, _, reason in result.problems.iter_rows()}
    assert problems == {
        (0, "d"): "d: not a date '2023-02-30'",
        (1, "d"): "d: not a date 'garbage'",
        (5, "d"): "d: date outside 1990-01-01..2100-12-31 '1900-01-01'",
        (6, "d"): "d: not a date '2023-01-20 25:00'",
        (0, "n"): "n: not a whole number 'x'",
        (1, "n"): "n: not a whole number '7.5'",
    }
    assert result.frame["n"].to_list() == [None, None, None, None, None, 15, 15, 3]
    assert result.frame["n"].dtype == pl.Int32
    assert result.failed_rows().to_list() == [True, True, False, False, False, True, True, False]
    assert result.reasons_by_row().filter(pl.col("row") == 0)["reason"].item() == (
        "d: not a date '2023-02-30'; n: not a whole number 'x'"
    )


def test_messages_write_any_value_as_text_and_survive_empty_chunks() -> None:
    # Two one-line files of a load, each ending in an empty chunk (a dropped last line): pl.format panicked here.
    first = pl.DataFrame({"code": ["A"], "day": [JAN_20], "line": [3]})
    second = pl.DataFrame({"code": ["B"], "day": [date(2023, 1, 21)], "line": [4]})
    both = pl.concat(
        [
            with_empty_chunk(first, {"code": "Y", "day": date(2023, 2, 1), "line": 8}),
            with_empty_chunk(second, {"code": "Z", "day": date(2023, 2, 2), "line": 9}),
        ]
    )
    said = both.select(
        message(pl.col("code"), " on ", pl.col("day")), message("line ", pl.col("line"), ": '", pl.col("code"), "'")
    )
    assert said.rows() == [("A on 2023-01-20", "line 3: 'A'"), ("B on 2023-01-21", "line 4: 'B'")]
    missing = pl.DataFrame({"line": [3, None]}).select(message("line ", pl.col("line")))
    assert missing.to_series().to_list() == ["line 3", None]


def test_blanks_and_null_spellings_are_absent_not_failures() -> None:
    frame = pl.DataFrame({"d": ["", "  ", "-", "NULL", "无", "\u3000", None]})
    result = parse_dates(frame, ["d"])
    assert result.problems.height == 0
    assert result.frame["d"].null_count() == frame.height


def test_extra_formats_are_tried_after_the_built_in_ones() -> None:
    frame = pl.DataFrame({"d": ["20/01/2023", "2023-01-20"]})
    assert parse_dates(frame, ["d"]).problems.height == 1
    result = parse_dates(frame, ["d"], extra_formats=["%d/%m/%Y"])
    assert result.frame["d"].to_list() == [JAN_20, JAN_20]


def test_codes_and_text_are_normalised() -> None:
    frame = pl.DataFrame(
        {
            "code": [" ３６０７０２ ", "360702.0", "GZ2023-0001\u00a0", "-"],
            "text": ["  食品经营许可\u3000", "建筑业企业资质（三级）核准", "", "无"],
        }
    )
    result = parse_columns(frame, {"code": ColumnKind.CODE, "text": ColumnKind.TEXT})
    assert result.frame["code"].to_list() == ["360702", "360702", "GZ2023-0001", None]
    # Free text keeps its full-width punctuation and its "无"; only spaces are folded and trimmed.
    assert result.frame["text"].to_list() == ["食品经营许可", "建筑业企业资质（三级）核准", None, "无"]
    assert result.problems.height == 0


def test_spreadsheet_numbers_become_codes() -> None:
    frame = pl.DataFrame({"code": [360702.0, 360703.0, None]})
    assert parse_columns(frame, {"code": ColumnKind.CODE}).frame["code"].to_list() == ["360702", "360703", None]


def test_fold_width_maps_full_width_ascii() -> None:
    folded = pl.select(fold_width(pl.lit("ＡＢＣ１２３！（）\u3000"))).item()
    assert folded == "ABC123!() "


def test_other_columns_are_untouched_and_order_kept() -> None:
    frame = pl.DataFrame({"a": ["x"], "d": ["2023-01-20"], "z": [1]})
    result = parse_dates(frame, ["d"])
    assert result.frame.columns == ["a", "d", "z"]
    assert result.frame.row(0) == ("x", JAN_20, 1)


def test_a_missing_column_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="nope"):
        parse_dates(pl.DataFrame({"d": ["2023-01-20"]}), ["nope"])


SPELLINGS = [
    lambda d: d.isoformat(),
    lambda d: f"{d.year}/{d.month}/{d.day} 9:05",
    lambda d: f"{d.year}年{d.month}月{d.day}日",
    lambda d: d.strftime("%Y%m%d"),
    lambda d: str((d - date(1899, 12, 30)).days),
    lambda d: datetime(d.year, d.month, d.day, 12, tzinfo=ZoneInfo("Asia/Shanghai")).isoformat(),
    lambda d: "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in d.isoformat()),
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)), st.integers(0, len(SPELLINGS) - 1)
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_supported_spelling_of_any_date_reads_back(values: list[tuple[date, int]]) -> None:
    texts = [SPELLINGS[spelling](day) for day, spelling in values]
    result = parse_dates(pl.DataFrame({"d": texts}), ["d"])
    assert result.frame["d"].to_list() == [day for day, _ in values]
    assert result.problems.height == 0


@given(st.text(alphabet=st.sampled_from("ａＡ１＿（ 　\ufeff\u200bAb办件 \t"), max_size=12))
def test_header_key_folds_width_as_the_value_parser_does(header: str) -> None:
    folded = pl.select(fold_width(pl.lit(header))).item()
    assert header_key(header) == folded.replace("\ufeff", "").replace("\u200b", "").strip().lower()


def test_header_key_matches_export_spellings_of_one_header() -> None:
    assert {header_key(spelling) for spelling in ("case_id", "\ufeffCase_ID ", "ＣＡＳＥ＿ＩＤ", "case\u200b_id")} == {
        "case_id"
    }
