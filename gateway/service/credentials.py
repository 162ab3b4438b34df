"""App passwords: making, scrypt hashing, and signing in with them. Knows nothing of HTTP.

A sign-in costs one scrypt per stored password of the principal; a verified one is
remembered briefly (by a SHA-256 of the password, never the password), and each use of
that memory still asks the store whether the password was revoked meanwhile. Failed
sign-ins are counted per peer and per username; past the limit, attempts are refused
without running scrypt, so that guessing costs the guesser time and the gateway nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import string
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy.orm import Session

from gateway.core.addresses import normalize_address
from gateway.store import app_passwords, directory
from gateway.store.app_passwords import DuplicateLabel, PasswordEntry
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef

log = logging.getLogger(__name__)

ALPHABET = string.ascii_lowercase + string.digits
GROUPS, GROUP_LENGTH = 4, 4  # 16 characters of 36: about 82.7 bits
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
LABEL_LENGTH = 100  # the column's width
DEFAULT_LABEL = "app-{}"
SWEEP_FROM = 1024  # remembered sign-ins or failing keys past which the stale ones are swept


class CredentialError(Exception):
    """An app password change that cannot be made."""


class UnknownPrincipal(CredentialError):
    def __init__(self, address: str) -> None:
        super().__init__(f"no local principal {address}")
        self.address = address


class BadLabel(CredentialError):
    def __init__(self, label: str) -> None:
        super().__init__(f"a label is 1 to {LABEL_LENGTH} printable characters, not {label!r}")
        self.label = label


class LabelTaken(CredentialError):
    def __init__(self, address: str, label: str) -> None:
        super().__init__(f"{address} already has an app password labelled {label!r}")
        self.address = address
        self.label = label


class NoSuchPassword(CredentialError):
    def __init__(self, address: str, label: str) -> None:
        super().__init__(f"{address} has no app password labelled {label!r}")
        self.address = address
        self.label = label


def new_password() -> str:
    """A random app password that is easy to type: ``abcd-efgh-ijkl-mnop``."""
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The password's scrypt hash, encoded ``scrypt$n$r$p$salt$key`` (base64)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)])


def verify_password(password: str, encoded: str) -> bool:
    """True when the password is the one hashed; False also for a hash this module cannot read."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        expected = base64.b64decode(key, validate=True)
        if scheme != "scrypt" or not expected:
            return False
        got = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p), len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    memory = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=memory)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@cache
def _dummy_hash() -> str:
    """A hash no password matches, checked when there is nothing to check: a sign-in costs the same either way."""
    return hash_password(secrets.token_urlsafe(32))


def add_password(db: Database, address: str, now: datetime, *, label: str | None = None) -> str:
    """Make a new app password for the principal the address reaches; the password, shown once.

    Without a label it gets the first free ``app-N``.
    """
    if label is not None and not _is_label(label):
        raise BadLabel(label)
    password = new_password()
    hashed = hash_password(password)  # before the transaction: scrypt holds no lock
    with db.transaction() as session:
        principal = _principal(session, address)
        taken = app_passwords.labels_of(session, principal.id)
        chosen = label if label is not None else _free_label(taken)
        try:
            app_passwords.add(session, principal.id, chosen, hashed, now)
        except DuplicateLabel as error:
            raise LabelTaken(principal.address, chosen) from error
    log.info("app password %r added for %s", chosen, principal.address)
    return password


def list_passwords(db: Database, address: str) -> list[PasswordEntry]:
    """The principal's app passwords (label, created, last used), oldest first."""
    with db.reading() as session:
        return app_passwords.list_passwords(session, _principal(session, address).id)


def revoke_password(db: Database, address: str, label: str) -> None:
    """Revoke the app password under this label: it stops working at once, in every process."""
    with db.transaction() as session:
        principal = _principal(session, address)
        if not app_passwords.revoke(session, principal.id, label):
            raise NoSuchPassword(principal.address, label)
    log.info("app password %r revoked for %s", label, principal.address)


def _principal(session: Session, address: str) -> PrincipalRef:
    found = directory.resolve(session, address)
    if found is None:
        raise UnknownPrincipal(address)
    return found


def _is_label(label: str) -> bool:
    return 0 < len(label) <= LABEL_LENGTH and label.isprintable() and label == label.strip()


def _free_label(taken: set[str]) -> str:
    number = 1
    while DEFAULT_LABEL.format(number) in taken:
        number += 1
    return DEFAULT_LABEL.format(number)


@dataclass(frozen=True)
class _Verified:
    """A sign-in remembered: whom it reached, with which stored password, until when."""

    principal: PrincipalRef
    password_id: int
    until: datetime


class Authenticator:
    """Signs principals in with their username (address or alias) and an app password; thread-safe.

    The HTTP edge asks ``is_limited`` first (429 when True), then ``authenticate``
    (401 when None). Every method takes ``now``; none reads the clock.
    """

    def __init__(
        self,
        db: Database,
        *,
        verify: Callable[[str, str], bool] = verify_password,
        remember_for: timedelta = timedelta(minutes=5),
        failures: int = 5,
        window: timedelta = timedelta(seconds=60),
        touch_every: timedelta = app_passwords.TOUCH_EVERY,
    ) -> None:
        self.db = db
        self.verify = verify
        self.remember_for = remember_for
        self.failures = failures
        self.window = window
        self.touch_every = touch_every
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, str], _Verified] = {}
        self._failed: dict[str, deque[datetime]] = {}
        self._touched: dict[int, datetime] = {}
        self._sweep_at = SWEEP_FROM

    def is_limited(self, username: str, peer: str, now: datetime) -> bool:
        """True while the peer or the username has failed too often within the window."""
        with self._lock:
            return any(self._count_failures(key, now) >= self.failures for key in _limit_keys(username, peer))

    def authenticate(self, username: str, password: str, peer: str, now: datetime) -> PrincipalRef | None:
        """The principal signed in, or None: a wrong password, an unknown user, or one limited."""
        if self.is_limited(username, peer, now):
            return None
        key = (_username(username), hashlib.sha256(password.encode()).hexdigest())
        verified = self._remembered(key, now) or self._verify(key, password, now)
        if verified is None:
            self._fail(username, peer, now)
            log.info("sign-in failed for %r from %s", username, peer)
            return None
        self._touch(verified.password_id, now)
        return verified.principal

    def _remembered(self, key: tuple[str, str], now: datetime) -> _Verified | None:
        with self._lock:
            verified = self._verified.get(key)
        if verified is None or verified.until <= now:
            return None
        with self.db.reading() as session:
            if app_passwords.exists(session, verified.password_id):
                return verified
        with self._lock:
            self._verified.pop(key, None)
        return None

    def _verify(self, key: tuple[str, str], password: str, now: datetime) -> _Verified | None:
        with self.db.reading() as session:
            principal = directory.resolve(session, key[0])
            hashes = app_passwords.hashes_of(session, principal.id) if principal else []
        if principal is None or not hashes:
            self.verify(password, _dummy_hash())
            return None
        password_id = next((pid for pid, hashed in hashes if self.verify(password, hashed)), None)
        if password_id is None:
            return None
        verified = _Verified(principal, password_id, now + self.remember_for)
        with self._lock:
            self._verified[key] = verified
            self._sweep(now)
        return verified

    def _fail(self, username: str, peer: str, now: datetime) -> None:
        with self._lock:
            for key in _limit_keys(username, peer):
                self._failed.setdefault(key, deque()).append(now)
            self._sweep(now)

    def _count_failures(self, key: str, now: datetime) -> int:
        failed = self._failed.get(key)
        if failed is None:
            return 0
        while failed and failed[0] <= now - self.window:
            failed.popleft()
        if not failed:
            del self._failed[key]
        return len(failed)

    def _touch(self, password_id: int, now: datetime) -> None:
        with self._lock:
            last = self._touched.get(password_id)
            if last is not None and now - last < self.touch_every:
                return
            self._touched[password_id] = now
        with self.db.transaction() as session:
            app_passwords.touch(session, password_id, now, every=self.touch_every)

    def _sweep(self, now: datetime) -> None:
        """Drop remembered sign-ins and failures that no longer count, once the tables have doubled (lock held)."""
        if len(self._verified) + len(self._failed) < self._sweep_at:
            return
        for key in [k for k, v in self._verified.items() if v.until <= now]:
            del self._verified[key]
        for failing in list(self._failed):
            self._count_failures(failing, now)
        self._sweep_at = max(SWEEP_FROM, 2 * (len(self._verified) + len(self._failed)))


def _username(username: str) -> str:
    """The comparable form of a username: an address, ``%40`` standing for ``@`` as some clients send it."""
    text = username.replace("%40", "@")
    return normalize_address(text) or text.strip().lower()


def _limit_keys(username: str, peer: str) -> tuple[str, str]:
    return f"peer:{peer}", f"user:{_username(username)}"
