from __future__ import annotations

from sqlalchemy import Engine, inspect

EXPECTED_TABLES = {
    "runs", "cases", "steps", "suspensions", "projects", "deferrals", "pushes",
    "change_history", "rejects", "evaluations", "cards", "deliveries", "silences",
}


def test_migrations_create_every_table(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES


def test_an_existing_database_is_upgraded_keeping_its_rows(database_url: str) -> None:
    from sqlalchemy import text

    from schemas.database import ensure_schema, make_engine, upgrade

    old = make_engine(database_url)
    upgrade(old, "0001")
    with old.begin() as connection:
        connection.execute(text(
            "INSERT INTO cases (case_id, matter_code, unit_code, accepted_at, row_hash) "
            "VALUES ('C1', 'M', 'U', '2026-03-02', 'h')"
        ))
    old.dispose()
    engine = ensure_schema(database_url)
    try:
        assert "platform_due_date" in {column["name"] for column in inspect(engine).get_columns("cases")}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT case_id, platform_due_date FROM cases")).all() == [("C1", None)]
    finally:
        engine.dispose()
