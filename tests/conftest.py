"""Shared fixtures: a database on each backend (SQLite file, real PostgreSQL), a clock, the CLI."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gateway.store.db import Database
from tests.peers.cli import Reefknot
from tests.peers.servers import ServerUnavailable, postgres_cluster

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {"core": pytest.mark.core, "e2e": pytest.mark.e2e}  # tests/<folder>/… gets the marker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the folder it lives in, so that ``pytest -m core`` or ``-m "not e2e"`` picks a layer."""
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        if len(parts) > 1 and parts[0] in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[parts[0]])
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for the whole run (skips where no server is installed)."""
    try:
        with postgres_cluster() as url:
            yield url
    except ServerUnavailable as error:
        pytest.skip(f"PostgreSQL not available: {error}")


def _fresh_postgres_database(server_url: str) -> Iterator[str]:
    name = f"reefknot_{next(_names)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, once for the embedded SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reefknot.db'}"
    else:
        yield from _fresh_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An upgraded database on each backend."""
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def reefknot(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Reefknot:
    """The command against a fresh database (each backend) with alice, bob and room R."""
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n')
    run = Reefknot(config, capsys)
    run("users", "add", "alice@foo.example", "--name", "Alice", "--alias", "a.smith@foo.example")
    run("users", "add", "bob@foo.example", "--name", "Bob")
    run("users", "add", "room-r@foo.example", "--name", "Room R", "--kind", "room")
    return run
