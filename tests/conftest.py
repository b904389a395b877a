"""Shared fixtures: SQLite always, PostgreSQL when PERMITWATCH_TEST_DATABASE_URL is set, and Prefect's harness."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from schemas.database import ensure_schema
from tasks.alerts.apprise_setup import setup_apprise

POSTGRES_URL = os.environ.get("PERMITWATCH_TEST_DATABASE_URL")


def pytest_configure(config: pytest.Config) -> None:
    """The tests call delivery and config loading directly, without the CLI or a flow to set apprise up."""
    setup_apprise()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One ephemeral Prefect server for the whole session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'permitwatch.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema per test, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("PERMITWATCH_TEST_DATABASE_URL is not set (no PostgreSQL on this machine); .ci/run sets it")
    schema = f"pw_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run a test on SQLite and, when available, on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = ensure_schema(database_url)
    yield engine
    engine.dispose()
