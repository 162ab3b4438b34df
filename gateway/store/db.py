"""Opening the database: engines, SQLite durability settings, sessions, and schema upgrades.

SQLite is opened in WAL mode with ``synchronous=FULL`` (a commit is on disk when it
returns, the Postfix promise); PostgreSQL is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.caches import CACHES, StoreCaches

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
READ_ONLY = "reefknot_read_only"


class Database:
    """An engine, its session factories, and the caches its sessions share (``gateway.store.caches``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self.caches = StoreCaches()
        shared = {CACHES: self.caches}
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info=shared)
        self.readers = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False,
                                    info=shared)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it takes no write lock, so it never waits for a writer."""
        with self.readers() as session, session.begin():
            yield session

    def upgrade(self) -> None:
        """Bring the schema to the newest migration."""
        with self.engine.begin() as connection:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def is_current(self) -> bool:
        """True when the schema is at the newest migration."""
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision() == head

    def is_empty(self) -> bool:
        """True when the database has no tables at all (a fresh embedded database)."""
        return not inspect(self.engine).get_table_names()

    def ensure_schema(self) -> None:
        """Create the schema of an empty database; refuse to touch an outdated one silently."""
        if self.is_empty():
            log.info("empty database %s: creating the schema", self.engine.url.render_as_string())
            self.upgrade()
        elif not self.is_current():
            raise SchemaOutdated("the database schema is outdated: run 'reefknot db upgrade'")

    def dispose(self) -> None:
        self.engine.dispose()


class SchemaOutdated(Exception):
    """The database needs ``reefknot db upgrade`` before use."""


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _make_parent_directory(url)
        engine = create_engine(url, connect_args={"timeout": 30}, pool_pre_ping=False)
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _make_parent_directory(url: str) -> None:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (see _begin_immediate), as pysqlite's own
    # transaction handling defers locking and breaks SERIALIZABLE-like behaviour.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    # Take the write lock at BEGIN: two processes never deadlock upgrading a read lock.
    # A reader (Database.reading) begins a deferred transaction: a snapshot, no lock.
    connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
