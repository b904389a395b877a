from __future__ import annotations

from sqlalchemy import Engine, inspect

EXPECTED_TABLES = {
    "runs", "cases", "steps", "suspensions", "projects", "deferrals", "pushes",
    "change_history", "rejects", "evaluations", "cards", "deliveries", "silences",
}


def test_migrations_create_every_table(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
