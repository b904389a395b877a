"""One declaration per canonical table (config/canonical.py): a field added to a model reaches every place that
reads the table's columns, with nothing else edited."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from sqlalchemy import Integer, MetaData, String

from config import canonical
from config.canonical import CANONICAL_COLUMNS, TABLE_MODELS, Cases, column, columns_of
from config.sources import Source
from schemas.contracts import canonical_schema, empty_frame, key_columns, violations
from schemas.tables import CANONICAL_TABLES, canonical_table
from tasks.clocks.builders import input_columns


class CasesWithFloorArea(Cases):
    """办件 with one more column, as a future edit of config/canonical.py would add it."""

    floor_area: pl.Int32 = column(
        "integer",
        "建筑面积",
        clock=True,
        in_range={"min_value": 0, "max_value": 10**6, "error": "not within 0..1000000"},
    )
    land_parcel: str = column("code", "地块编码", max_length=30)


@pytest.fixture
def wider_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TABLE_MODELS, "cases", CasesWithFloorArea)
    monkeypatch.setitem(CANONICAL_COLUMNS, "cases", columns_of(CasesWithFloorArea))


@pytest.mark.usefixtures("wider_cases")
def test_a_field_added_to_a_model_reaches_ingest_contract_builder_and_table() -> None:
    assert canonical.canonical_names("cases")[-2:] == ["floor_area", "land_parcel"]
    assert canonical.default_header_map("cases")["建筑面积"] == "floor_area"
    source = Source(name="c", kind="csv", table="cases", path="c.csv", mapping={"面积": "floor_area"})
    assert source.header_map()["面积"] == "floor_area"
    assert canonical_schema("cases")["floor_area"] == pl.Int32()
    assert input_columns("cases")["floor_area"] == pl.Int32()
    assert "land_parcel" not in input_columns("cases")  # not declared clock=True

    table = canonical_table("cases", MetaData())
    assert isinstance(table.c.floor_area.type, Integer) and table.c.floor_area.nullable
    assert isinstance(table.c.land_parcel.type, String) and table.c.land_parcel.type.length == 30

    row = {"case_id": "GZ1", "matter_code": "M", "unit_code": "U", "accepted_at": date(2023, 1, 20)}
    frame = pl.DataFrame([row, {**row, "case_id": "GZ2", "floor_area": -1, "land_parcel": "L" * 31}])
    frame = frame.select(pl.col(n).cast(t) if n in frame.columns else pl.lit(None, t).alias(n)
                         for n, t in canonical_schema("cases").items())
    assert violations("cases", frame).select("row", "reason").rows() == [
        (1, "floor_area: not within 0..1000000 '-1'"),
        (1, "land_parcel: longer than 30 characters"),
    ]


def test_the_stored_tables_are_the_declared_columns_plus_storage_columns() -> None:
    storage = {"row_hash", "first_seen_run", "last_seen_run"}
    for name, columns in CANONICAL_COLUMNS.items():
        stored = CANONICAL_TABLES[name]
        assert [c.name for c in stored.columns if c.name not in storage] == [c.name for c in columns]
        assert [c.name for c in stored.primary_key.columns] == key_columns(name)
        assert {c.name for c in stored.columns if not c.nullable} - storage == {c.name for c in columns if c.required}


def test_every_kind_has_the_dtype_its_annotation_gives() -> None:
    for name, model in TABLE_MODELS.items():
        declared = {column: str(field.dtype) for column, field in model.to_schema().columns.items()}
        assert declared == {column: str(dtype) for column, dtype in empty_frame(name).schema.items()}, name
