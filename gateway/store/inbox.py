"""The principals' inboxes: what each scheduling message did for each principal, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from gateway.core.model import Outcome
from gateway.store.schema import InboxEntry

_INSERT = insert(InboxEntry.__table__)  # a table statement: no ORM bookkeeping per line


@dataclass(frozen=True)
class InboxRecord:
    """One line of a principal's inbox."""

    principal_id: int
    method: str
    uid: str
    sender: str
    outcome: Outcome
    reason: str = ""
    detail: str = ""
    ical: str = ""
    intake_id: int | None = None


def record(session: Session, entry: InboxRecord, now: datetime) -> None:
    """Add one line to a principal's inbox."""
    session.execute(
        _INSERT,
        {
            "principal_id": entry.principal_id,
            "intake_id": entry.intake_id,
            "received_at": now,
            "method": entry.method,
            "uid": entry.uid[:500],
            "sender": entry.sender,
            "outcome": entry.outcome.value,
            "reason": entry.reason,
            "detail": entry.detail,
            "ical": entry.ical,
        },
    )


def list_entries(session: Session, principal_id: int, limit: int = 1000, *, after_id: int = 0) -> list[InboxEntry]:
    """The principal's inbox, oldest first: up to ``limit`` lines with an id above ``after_id``."""
    query = select(InboxEntry).where(InboxEntry.principal_id == principal_id, InboxEntry.id > after_id)
    return list(session.scalars(query.order_by(InboxEntry.id).limit(limit)))


def count_entries(session: Session, principal_id: int, *, after_id: int = 0) -> int:
    """How many lines of the principal's inbox have an id above ``after_id``."""
    query = select(func.count()).select_from(InboxEntry).where(
        InboxEntry.principal_id == principal_id, InboxEntry.id > after_id
    )
    return session.scalar(query) or 0


def held_for(session: Session, intake_id: int) -> list[InboxEntry]:
    """The lines that recorded an intake message as held, one per principal and message."""
    query = select(InboxEntry).where(InboxEntry.intake_id == intake_id, InboxEntry.outcome == Outcome.HELD.value)
    return list(session.scalars(query.order_by(InboxEntry.id)))
