"""The store: durable SQLite settings, migrations that match the models, the parsed-object cache."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from gateway.core.calendar.ical import parse_calendar
from gateway.core.itip.types import Stored
from gateway.core.model import Kind, PartStat
from gateway.service.events import reply_event
from gateway.store import calendars, directory
from gateway.store.db import Database
from gateway.store.schema import Base
from tests.conftest import NOW


def test_sqlite_commits_are_durable_wal_with_full_sync(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrations_create_exactly_the_schema_of_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert db.is_current()


def test_an_empty_database_gets_its_schema_and_an_outdated_one_is_refused(database_url: str) -> None:
    db = Database(database_url)
    assert db.is_empty()
    db.ensure_schema()
    assert db.is_current() and not db.is_empty()
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        db.ensure_schema()
    except Exception as error:
        assert "reefknot db upgrade" in str(error)
    else:
        raise AssertionError("an outdated schema was accepted")
    finally:
        db.dispose()


def test_a_stored_object_reads_back_equal_and_removing_all_components_deletes_it(db: Database) -> None:
    text_ = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//T//T//EN\r\nBEGIN:VEVENT\r\nUID:u1\r\n"
        "DTSTAMP:20260601T080000Z\r\nDTSTART;TZID=Europe/Berlin:20260701T100000\r\nSUMMARY:Ünïcödé ✓\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    with db.transaction() as session:
        alice = directory.add_principal(session, "alice@foo.example", NOW, kind=Kind.INDIVIDUAL)
        calendars.save_object(session, alice.id, "u1", Stored(parse_calendar(text_)), NOW)
    with db.transaction() as session:
        stored = calendars.load_object(session, alice.id, "u1")
        assert stored.calendar is not None
        assert str(stored.components[0]["SUMMARY"]) == "Ünïcödé ✓"
        calendars.save_object(session, alice.id, "u1", Stored(None, stored.state), NOW)
    with db.transaction() as session:
        assert calendars.load_object(session, alice.id, "u1").calendar is None
        assert calendars.list_objects(session, alice.id) == []


def test_a_directory_change_made_by_another_process_is_seen_by_the_next_transaction(database_url: str) -> None:
    here, elsewhere = Database(database_url), Database(database_url)  # two engines: as two processes would be
    here.upgrade()
    try:
        with here.transaction() as session:
            directory.add_principal(session, "alice@foo.example", NOW)
        with here.transaction() as session:
            assert directory.resolve(session, "bob@foo.example") is None  # a "no" this process now remembers
            alice = directory.resolve(session, "alice@foo.example")
            assert alice is not None and directory.principal_by_id(session, alice.id) == alice
        with elsewhere.transaction() as session:
            directory.add_principal(session, "bob@foo.example", NOW, aliases=("robert@foo.example",))
            directory.remove_principal(session, "alice@foo.example")
        with here.transaction() as session:
            bob = directory.resolve(session, "ROBERT@foo.example")
            assert bob is not None and bob.address == "bob@foo.example"
            assert directory.resolve(session, "alice@foo.example") is None
            assert directory.principal_by_id(session, alice.id) is None
    finally:
        here.dispose()
        elsewhere.dispose()


def test_a_transaction_that_changes_the_directory_sees_its_own_change_and_a_rollback_leaves_none(db: Database) -> None:
    with db.transaction() as session:
        assert directory.resolve(session, "carol@foo.example") is None
        directory.add_principal(session, "carol@foo.example", NOW)
        assert directory.resolve(session, "carol@foo.example") is not None
    try:
        with db.transaction() as session:
            directory.remove_principal(session, "carol@foo.example")
            assert directory.resolve(session, "carol@foo.example") is None
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    with db.transaction() as session:
        assert directory.resolve(session, "carol@foo.example") is not None


EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//T//T//EN\r\nBEGIN:VEVENT\r\nUID:u-cache\r\n"
    "DTSTAMP:20260601T080000Z\r\nDTSTART:20260701T100000Z\r\nDTEND:20260701T110000Z\r\n"
    "ORGANIZER:mailto:bob@bar.example\r\nATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:alice@foo.example\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_each_database_handle_owns_its_caches_and_hands_out_calendars_no_edit_changes(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    try:
        first.upgrade()
        assert first.caches is not second.caches
        with first.transaction() as session:
            alice = directory.add_principal(session, "alice@foo.example", NOW, kind=Kind.INDIVIDUAL)
            calendars.save_object(session, alice.id, "u-cache", Stored(parse_calendar(EVENT)), NOW)
        with first.reading() as session:
            shared = calendars.load_object(session, alice.id, "u-cache").calendar
            assert directory.resolve(session, "alice@foo.example") == alice
        assert len(first.caches.parsed) == 1 and len(second.caches.parsed) == 0
        assert first.caches.directory.by_address and not second.caches.directory.by_address
        before = shared.to_ical()
        with first.transaction() as session:
            reply_event(session, alice, "u-cache", PartStat.ACCEPTED, NOW)
        assert shared.to_ical() == before  # the edit worked on a copy
        with second.reading() as session:
            (component,) = calendars.load_object(session, alice.id, "u-cache").components
        assert "PARTSTAT=ACCEPTED" in component.to_ical().decode()
    finally:
        first.dispose()
        second.dispose()
