"""App passwords in the store: labelled hashes per principal. Knows nothing of hashing or of sign-in policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy import exists as sql_exists
from sqlalchemy.orm import Session

from gateway.store.schema import AppPassword

TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is a hint, not a log: one write a minute is enough


class DuplicateLabel(Exception):
    """The principal already has an app password under this label."""

    def __init__(self, principal_id: int, label: str) -> None:
        super().__init__(f"principal {principal_id} already has an app password labelled {label!r}")
        self.principal_id = principal_id
        self.label = label


@dataclass(frozen=True)
class PasswordEntry:
    """What may be shown of an app password: never its hash."""

    label: str
    created_at: datetime
    last_used_at: datetime | None


def add(session: Session, principal_id: int, label: str, hash: str, now: datetime) -> int:
    """Store a new app password's hash under a label new to the principal; its row id."""
    if label in labels_of(session, principal_id):
        raise DuplicateLabel(principal_id, label)
    row = AppPassword(principal_id=principal_id, label=label, hash=hash, created_at=now)
    session.add(row)
    session.flush()
    return row.id


def labels_of(session: Session, principal_id: int) -> set[str]:
    """The labels the principal's app passwords go by."""
    return set(session.scalars(select(AppPassword.label).where(AppPassword.principal_id == principal_id)))


def list_passwords(session: Session, principal_id: int) -> list[PasswordEntry]:
    """The principal's app passwords, oldest first."""
    query = select(AppPassword.label, AppPassword.created_at, AppPassword.last_used_at)
    rows = session.execute(query.where(AppPassword.principal_id == principal_id).order_by(AppPassword.id))
    return [PasswordEntry(row.label, row.created_at, row.last_used_at) for row in rows]


def revoke(session: Session, principal_id: int, label: str) -> bool:
    """Delete the app password under this label; False when there was none."""
    result = session.execute(
        delete(AppPassword).where(AppPassword.principal_id == principal_id, AppPassword.label == label)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def hashes_of(session: Session, principal_id: int) -> list[tuple[int, str]]:
    """Every (row id, hash) of the principal's app passwords, newest first: a sign-in tries them all."""
    query = select(AppPassword.id, AppPassword.hash).where(AppPassword.principal_id == principal_id)
    return [(row.id, row.hash) for row in session.execute(query.order_by(AppPassword.id.desc()))]


def exists(session: Session, password_id: int) -> bool:
    """True while the app password has not been revoked: one primary-key lookup."""
    return bool(session.scalar(select(sql_exists().where(AppPassword.id == password_id))))


def touch(session: Session, password_id: int, now: datetime, *, every: timedelta = TOUCH_EVERY) -> bool:
    """Record a use at ``now``, unless one was recorded less than ``every`` before; True when written."""
    stale = or_(AppPassword.last_used_at.is_(None), AppPassword.last_used_at <= now - every)
    result = session.execute(
        update(AppPassword).where(AppPassword.id == password_id, stale).values(last_used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
