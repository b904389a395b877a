"""Engine creation and schema migrations. SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Values per `IN (…)` list: well under the bound parameters SQLite and PostgreSQL accept in one statement.
IN_LIST_SIZE = 5000
ValueT = TypeVar("ValueT")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (`permitwatch db upgrade`, and automatically on first use)."""
    command.upgrade(alembic_config(engine), revision)


def ensure_schema(url: str) -> Engine:
    """An engine whose database is at the newest schema."""
    engine = make_engine(url)
    if "alembic_version" not in inspect(engine).get_table_names() or _behind_head(engine):
        upgrade(engine)
    return engine


def _behind_head(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() != head


def in_batches(values: Sequence[ValueT], size: int = IN_LIST_SIZE) -> Iterator[Sequence[ValueT]]:
    """`values` in slices of at most `size`, one `IN (…)` list each."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
