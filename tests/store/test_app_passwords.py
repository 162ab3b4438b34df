"""App passwords in the store, on SQLite and PostgreSQL: labels unique per principal, revocation, use times."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.store import app_passwords, directory
from gateway.store.app_passwords import DuplicateLabel, PasswordEntry
from gateway.store.db import Database
from tests.conftest import NOW


@pytest.fixture
def alice(db: Database) -> int:
    with db.transaction() as session:
        return directory.add_principal(session, "alice@foo.example", NOW).id


@pytest.fixture
def bob(db: Database) -> int:
    with db.transaction() as session:
        return directory.add_principal(session, "bob@foo.example", NOW).id


def test_added_passwords_are_listed_oldest_first_without_their_hashes(db: Database, alice: int) -> None:
    with db.transaction() as session:
        app_passwords.add(session, alice, "phone", "scrypt$a", NOW)
        app_passwords.add(session, alice, "laptop", "scrypt$b", NOW + timedelta(hours=1))
    with db.reading() as session:
        assert app_passwords.list_passwords(session, alice) == [
            PasswordEntry("phone", NOW, None), PasswordEntry("laptop", NOW + timedelta(hours=1), None),
        ]
        assert app_passwords.labels_of(session, alice) == {"phone", "laptop"}


def test_a_label_is_unique_per_principal_but_free_for_another(db: Database, alice: int, bob: int) -> None:
    with db.transaction() as session:
        app_passwords.add(session, alice, "phone", "scrypt$a", NOW)
        app_passwords.add(session, bob, "phone", "scrypt$b", NOW)
    with pytest.raises(DuplicateLabel) as raised, db.transaction() as session:
        app_passwords.add(session, alice, "phone", "scrypt$c", NOW)
    assert (raised.value.principal_id, raised.value.label) == (alice, "phone")
    with db.reading() as session:
        assert [h for _, h in app_passwords.hashes_of(session, alice)] == ["scrypt$a"]


def test_hashes_are_the_principals_own_newest_first(db: Database, alice: int, bob: int) -> None:
    with db.transaction() as session:
        first = app_passwords.add(session, alice, "phone", "scrypt$a", NOW)
        second = app_passwords.add(session, alice, "laptop", "scrypt$b", NOW)
        app_passwords.add(session, bob, "phone", "scrypt$c", NOW)
    with db.reading() as session:
        assert app_passwords.hashes_of(session, alice) == [(second, "scrypt$b"), (first, "scrypt$a")]


def test_a_revoked_password_no_longer_exists_and_a_second_revocation_finds_nothing(db: Database, alice: int) -> None:
    with db.transaction() as session:
        kept = app_passwords.add(session, alice, "phone", "scrypt$a", NOW)
        gone = app_passwords.add(session, alice, "laptop", "scrypt$b", NOW)
    with db.transaction() as session:
        assert app_passwords.revoke(session, alice, "laptop") is True
        assert app_passwords.revoke(session, alice, "laptop") is False
        assert app_passwords.revoke(session, alice, "tablet") is False
    with db.reading() as session:
        assert app_passwords.exists(session, kept) and not app_passwords.exists(session, gone)
        assert [e.label for e in app_passwords.list_passwords(session, alice)] == ["phone"]


def test_removing_the_principal_removes_its_passwords(db: Database, alice: int) -> None:
    with db.transaction() as session:
        password_id = app_passwords.add(session, alice, "phone", "scrypt$a", NOW)
    with db.transaction() as session:
        directory.remove_principal(session, "alice@foo.example")
    with db.reading() as session:
        assert not app_passwords.exists(session, password_id)


def test_touch_records_a_use_at_most_once_a_minute(db: Database, alice: int) -> None:
    with db.transaction() as session:
        password_id = app_passwords.add(session, alice, "phone", "scrypt$a", NOW)
    uses = [NOW, NOW + timedelta(seconds=30), NOW + timedelta(seconds=60), NOW + timedelta(seconds=61)]
    written = []
    for when in uses:
        with db.transaction() as session:
            written.append(app_passwords.touch(session, password_id, when))
    assert written == [True, False, True, False]
    with db.reading() as session:
        (entry,) = app_passwords.list_passwords(session, alice)
    assert entry.last_used_at == NOW + timedelta(seconds=60)
