"""The outbound queue: one row per message and recipient, written with the change that caused it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.store.schema import OutboxMessage


class OutboxState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    DROPPED = "dropped"


class OutboxNotFound(Exception):
    """No outbox message with that id."""


def enqueue(
    session: Session, *, method: str, uid: str, sender: str, recipient: str, ical: str, message_id: str, now: datetime
) -> OutboxMessage:
    """Queue one message for one recipient, due now."""
    row = OutboxMessage(
        created_at=now,
        method=method,
        uid=uid[:500],
        sender=sender,
        recipient=recipient,
        ical=ical,
        message_id=message_id,
        state=OutboxState.QUEUED.value,
        attempts=0,
        next_attempt_at=now,
        last_error="",
    )
    session.add(row)
    session.flush()
    return row


def list_messages(session: Session, *, states: tuple[OutboxState, ...] = ()) -> list[OutboxMessage]:
    """Outbox rows, oldest first, optionally in some states only."""
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if states:
        query = query.where(OutboxMessage.state.in_([s.value for s in states]))
    return list(session.scalars(query))


def get(session: Session, outbox_id: int) -> OutboxMessage:
    row = session.get(OutboxMessage, outbox_id)
    if row is None:
        raise OutboxNotFound(f"no outbox message {outbox_id}")
    return row


def retry(row: OutboxMessage, now: datetime) -> None:
    """Make a message due now again, whatever state it was in (except sent)."""
    row.state = OutboxState.QUEUED.value
    row.next_attempt_at = now


def drop(row: OutboxMessage) -> None:
    """Give up on a message; it stays listed as dropped."""
    row.state = OutboxState.DROPPED.value
