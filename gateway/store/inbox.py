"""The principals' inboxes: what each scheduling message did for each principal, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
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


@dataclass(frozen=True)
class InboxItem:
    """A scheduling message applied to a principal, as a resource of its CalDAV scheduling inbox."""

    id: int
    received_at: datetime
    method: str
    uid: str
    ical: str

    @property
    def href(self) -> str:
        return f"{self.id}.ics"

    @property
    def etag(self) -> str:
        return f"inbox-{self.id}"


_ITEMS = select(InboxEntry.id, InboxEntry.received_at, InboxEntry.method, InboxEntry.uid, InboxEntry.ical)


def _visible(principal_id: int, since: datetime) -> tuple[object, ...]:
    return (InboxEntry.principal_id == principal_id, InboxEntry.outcome == Outcome.APPLIED.value,
            InboxEntry.ical != "", InboxEntry.dismissed_at.is_(None), InboxEntry.received_at >= since)


def items_of(session: Session, principal_id: int, since: datetime) -> list[InboxItem]:
    """The applied messages since ``since`` that the principal's clients have not deleted, oldest first."""
    rows = session.execute(_ITEMS.where(*_visible(principal_id, since)).order_by(InboxEntry.id))
    return [InboxItem(*row) for row in rows]


def item(session: Session, principal_id: int, item_id: int, since: datetime) -> InboxItem | None:
    row = session.execute(_ITEMS.where(InboxEntry.id == item_id, *_visible(principal_id, since))).first()
    return InboxItem(*row) if row is not None else None


def dismiss(session: Session, principal_id: int, item_id: int, now: datetime) -> bool:
    """A client deleted the item: it leaves the CalDAV inbox; the line stays in the operator's listing."""
    updated = session.execute(update(InboxEntry).where(InboxEntry.id == item_id, InboxEntry.principal_id == principal_id,
                                                       InboxEntry.dismissed_at.is_(None)).values(dismissed_at=now))
    return bool(updated.rowcount)


def inbox_tag(session: Session, principal_id: int, since: datetime) -> str:
    """Changes whenever an item comes or goes: the newest id and how many there are."""
    row = session.execute(select(func.max(InboxEntry.id), func.count()).where(*_visible(principal_id, since))).one()
    return f"inbox-{row[0] or 0}-{row[1]}"


def prune(session: Session, before: datetime) -> int:
    """Remove inbox lines older than ``before``."""
    return session.execute(delete(InboxEntry).where(InboxEntry.received_at < before)).rowcount or 0
