"""tasks/pii.py: names 张*三, phones 138****0000; the polars expression and the scalar version always agree."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.pii import mask_name, mask_phone, mask_pii


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张小三", "张*三"),
        ("欧阳娜娜", "欧**娜"),
        ("李四", "李*"),
        ("王", "*"),
        (" 赵钱孙 ", "赵*孙"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_name(name: str | None, masked: str | None) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13800000000", "138****0000"),
        ("138 1234 5678", "138****5678"),
        ("+86 138-1234-5678", "861******5678"),
        ("0797-8123456", "079****3456"),
        ("8123456", "*****56"),
        ("12", "**"),
        ("无", "*"),
        (None, None),
    ],
)
def test_mask_phone(phone: str | None, masked: str | None) -> None:
    assert mask_phone(phone) == masked


@given(st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=30))
def test_expression_and_scalar_agree(values: list[str | None]) -> None:
    frame = pl.DataFrame(
        {"applicant_name": values, "applicant_phone": values},
        schema={"applicant_name": pl.String, "applicant_phone": pl.String},
    )
    masked = mask_pii(frame)
    assert masked["applicant_name"].to_list() == [mask_name(value) for value in values]
    assert masked["applicant_phone"].to_list() == [mask_phone(value) for value in values]


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_a_masked_mobile_number_keeps_only_seven_digits(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked is not None and masked[:3] == phone[:3] and masked[-4:] == phone[-4:] and masked[3:7] == "****"


def test_mask_pii_leaves_other_columns_and_frames_without_pii_alone() -> None:
    frame = pl.DataFrame({"case_id": ["C1"], "applicant_name": ["张小三"]})
    assert mask_pii(frame).rows() == [("C1", "张*三")]
    assert mask_pii(frame.select("case_id")).equals(frame.select("case_id"))
