"""App passwords and signing in with them, on SQLite and PostgreSQL: hashing, the sign-in cache, revocation, limits."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from gateway.service import credentials
from gateway.service.credentials import Authenticator, hash_password, verify_password
from gateway.store import directory
from gateway.store.db import Database
from tests.conftest import NOW

ALICE, ALIAS, BOB = "alice@foo.example", "a.smith@foo.example", "bob@foo.example"
PEER, OTHER_PEER = "192.0.2.1", "192.0.2.2"


class CountingVerify:
    """The real scrypt verification, counted: how often a sign-in paid for it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password: str, encoded: str) -> bool:
        self.calls += 1
        return verify_password(password, encoded)


@pytest.fixture
def users(db: Database) -> Database:
    with db.transaction() as session:
        directory.add_principal(session, ALICE, NOW, aliases=(ALIAS,))
        directory.add_principal(session, BOB, NOW)
    return db


@pytest.fixture
def verify() -> CountingVerify:
    return CountingVerify()


@pytest.fixture
def auth(users: Database, verify: CountingVerify) -> Authenticator:
    return Authenticator(users, verify=verify)


def test_a_new_password_is_four_groups_of_four_and_never_the_same() -> None:
    passwords = {credentials.new_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}", p) for p in passwords)


def test_a_hash_is_salted_scrypt_and_verifies_only_its_password() -> None:
    first, second = hash_password("abcd-efgh"), hash_password("abcd-efgh")
    assert first != second
    scheme, n, r, p, _salt, _key = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert verify_password("abcd-efgh", first) and verify_password("abcd-efgh", second)
    assert not verify_password("abcd-efgi", first)


@pytest.mark.parametrize("encoded", ["", "scrypt$1$2", "bcrypt$16384$8$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA",
                                     "scrypt$16384$8$1$not base64$AAAA"])
def test_a_hash_that_cannot_be_read_verifies_nothing(encoded: str) -> None:
    assert not verify_password("anything", encoded)


def test_default_labels_take_the_first_free_number(users: Database) -> None:
    credentials.add_password(users, ALICE, NOW)
    credentials.add_password(users, ALICE, NOW, label="phone")
    credentials.add_password(users, ALICE, NOW)
    credentials.revoke_password(users, ALICE, "app-1")
    credentials.add_password(users, ALICE, NOW)
    assert [e.label for e in credentials.list_passwords(users, ALICE)] == ["phone", "app-2", "app-1"]


def test_passwords_are_managed_through_any_address_of_the_principal(users: Database) -> None:
    credentials.add_password(users, "MAILTO:A.Smith@Foo.Example", NOW, label="phone")
    assert [e.label for e in credentials.list_passwords(users, ALICE)] == ["phone"]
    credentials.revoke_password(users, ALIAS, "phone")
    assert credentials.list_passwords(users, ALICE) == []


def test_changes_that_cannot_be_made_raise_errors_that_say_which(users: Database) -> None:
    credentials.add_password(users, ALICE, NOW, label="phone")
    with pytest.raises(credentials.LabelTaken):
        credentials.add_password(users, ALIAS, NOW, label="phone")
    with pytest.raises(credentials.UnknownPrincipal):
        credentials.add_password(users, "carol@foo.example", NOW)
    with pytest.raises(credentials.UnknownPrincipal):
        credentials.list_passwords(users, "carol@foo.example")
    with pytest.raises(credentials.NoSuchPassword):
        credentials.revoke_password(users, ALICE, "laptop")
    for label in ["", " phone", "x" * 101, "tab\there"]:
        with pytest.raises(credentials.BadLabel):
            credentials.add_password(users, ALICE, NOW, label=label)


@pytest.mark.parametrize("username", [ALICE, ALIAS, "Alice@Foo.Example", "alice%40foo.example", "a.smith%40foo.example"])
def test_the_right_password_signs_in_by_address_alias_or_percent_encoded_at(
    users: Database, auth: Authenticator, username: str
) -> None:
    password = credentials.add_password(users, ALICE, NOW)
    principal = auth.authenticate(username, password, PEER, NOW)
    assert principal is not None and principal.address == ALICE


def test_a_wrong_password_or_another_principals_or_an_unknown_user_is_refused(users: Database, auth: Authenticator) -> None:
    credentials.add_password(users, ALICE, NOW)
    bobs = credentials.add_password(users, BOB, NOW)
    assert auth.authenticate(ALICE, "wron-gpas-swor-d000", PEER, NOW) is None
    assert auth.authenticate(ALICE, bobs, PEER, NOW) is None
    assert auth.authenticate("carol@foo.example", bobs, PEER, NOW) is None
    assert auth.authenticate(ALICE, "", PEER, NOW) is None


def test_every_password_of_the_principal_signs_in(users: Database, auth: Authenticator) -> None:
    phone = credentials.add_password(users, ALICE, NOW, label="phone")
    laptop = credentials.add_password(users, ALICE, NOW, label="laptop")
    assert auth.authenticate(ALICE, phone, PEER, NOW) is not None
    assert auth.authenticate(ALICE, laptop, PEER, NOW) is not None


def test_a_remembered_sign_in_runs_no_scrypt_until_it_expires(
    users: Database, auth: Authenticator, verify: CountingVerify
) -> None:
    password = credentials.add_password(users, ALICE, NOW)
    assert auth.authenticate(ALICE, password, PEER, NOW) is not None
    paid = verify.calls
    for seconds in range(1, 60):
        assert auth.authenticate(ALICE, password, PEER, NOW + timedelta(seconds=seconds)) is not None
    assert verify.calls == paid
    assert auth.authenticate(ALICE, password, PEER, NOW + timedelta(minutes=5)) is not None
    assert verify.calls == paid + 1


def test_a_remembered_sign_in_is_not_a_wrong_password(users: Database, auth: Authenticator) -> None:
    password = credentials.add_password(users, ALICE, NOW)
    assert auth.authenticate(ALICE, password, PEER, NOW) is not None
    assert auth.authenticate(ALICE, password[:-1] + "!", PEER, NOW) is None
    assert auth.authenticate(BOB, password, PEER, NOW) is None


def test_revocation_takes_effect_at_once_even_when_the_sign_in_is_remembered(users: Database, auth: Authenticator) -> None:
    password = credentials.add_password(users, ALICE, NOW, label="phone")
    assert auth.authenticate(ALICE, password, PEER, NOW) is not None
    credentials.revoke_password(users, ALICE, "phone")
    assert auth.authenticate(ALICE, password, PEER, NOW + timedelta(seconds=1)) is None


def test_revocation_by_another_process_takes_effect_at_once(users: Database, auth: Authenticator, database_url: str) -> None:
    password = credentials.add_password(users, ALICE, NOW, label="phone")
    assert auth.authenticate(ALIAS, password, PEER, NOW) is not None
    other = Database(database_url)
    try:
        credentials.revoke_password(other, ALICE, "phone")
    finally:
        other.dispose()
    assert auth.authenticate(ALIAS, password, PEER, NOW + timedelta(seconds=1)) is None


def test_a_sign_in_records_its_use_at_most_once_a_minute(users: Database, auth: Authenticator) -> None:
    password = credentials.add_password(users, ALICE, NOW)
    for seconds in (0, 30, 59):
        auth.authenticate(ALICE, password, PEER, NOW + timedelta(seconds=seconds))
    assert [e.last_used_at for e in credentials.list_passwords(users, ALICE)] == [NOW]
    auth.authenticate(ALICE, password, PEER, NOW + timedelta(seconds=61))
    assert [e.last_used_at for e in credentials.list_passwords(users, ALICE)] == [NOW + timedelta(seconds=61)]


def _fail(auth: Authenticator, username: str, peer: str, times: int) -> None:
    for second in range(times):
        assert auth.authenticate(username, "wron-gpas-swor-d000", peer, NOW + timedelta(seconds=second)) is None


def test_a_peer_that_failed_five_times_is_refused_without_scrypt_until_the_window_passes(
    users: Database, auth: Authenticator, verify: CountingVerify
) -> None:
    password = credentials.add_password(users, ALICE, NOW)
    bobs = credentials.add_password(users, BOB, NOW)
    for username in (ALICE, BOB, "carol@foo.example", ALIAS, ALICE):  # one peer trying many users
        _fail(auth, username, PEER, 1)
    later = NOW + timedelta(seconds=10)
    assert auth.is_limited(ALICE, PEER, later) and auth.is_limited(BOB, PEER, later)
    paid = verify.calls
    assert auth.authenticate(ALICE, password, PEER, later) is None
    assert verify.calls == paid
    assert auth.authenticate(BOB, bobs, OTHER_PEER, later) is not None
    after_window = NOW + timedelta(seconds=61)
    assert not auth.is_limited(ALICE, PEER, after_window)
    assert auth.authenticate(ALICE, password, PEER, after_window) is not None


def test_a_username_that_failed_five_times_is_refused_from_every_peer_until_the_window_passes(
    users: Database, auth: Authenticator, verify: CountingVerify
) -> None:
    password = credentials.add_password(users, ALICE, NOW)
    for number in range(5):  # many peers trying one user, however the name is spelled
        _fail(auth, "Alice%40Foo.Example" if number % 2 else ALICE, f"198.51.100.{number}", 1)
    later = NOW + timedelta(seconds=10)
    assert auth.is_limited(ALICE, OTHER_PEER, later) and not auth.is_limited(BOB, OTHER_PEER, later)
    paid = verify.calls
    assert auth.authenticate(ALICE, password, OTHER_PEER, later) is None
    assert verify.calls == paid
    assert auth.authenticate(ALICE, password, OTHER_PEER, NOW + timedelta(seconds=60)) is not None


def test_failures_spread_over_more_than_the_window_never_limit(users: Database, auth: Authenticator) -> None:
    for number in range(12):
        when = NOW + timedelta(seconds=15 * number)
        assert auth.authenticate(ALICE, "wron-gpas-swor-d000", PEER, when) is None
        assert not auth.is_limited(ALICE, PEER, when)


def test_four_failures_do_not_limit(users: Database, auth: Authenticator) -> None:
    password = credentials.add_password(users, ALICE, NOW)
    _fail(auth, ALICE, PEER, 4)
    assert not auth.is_limited(ALICE, PEER, NOW + timedelta(seconds=5))
    assert auth.authenticate(ALICE, password, PEER, NOW + timedelta(seconds=5)) is not None
