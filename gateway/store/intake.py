"""The durable intake queue: raw messages and their envelopes. Knows nothing about iCalendar.

A message's state is where it sits: ``queued`` until processed, then ``done``,
``ignored`` (no scheduling content), ``held`` (with a reason, for the operator), or
``dropped`` (the operator discarded it; only the record remains).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from gateway.store.schema import IntakeMessage


class IntakeState(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    IGNORED = "ignored"
    HELD = "held"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Envelope:
    """Who the MTA says the message is from and for (RFC 5321), and where it came from."""

    sender: str
    recipients: tuple[str, ...]
    source: str

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2].lower()[:255] if "@" in self.sender else ""


class IntakeNotFound(Exception):
    """No intake message with that id in the state asked for."""


def enqueue(session: Session, raw: bytes, envelope: Envelope, message_id: str, now: datetime) -> IntakeMessage:
    """Store a message as it arrived; durable once the caller commits."""
    row = IntakeMessage(
        received_at=now,
        source=envelope.source,
        envelope_sender=envelope.sender,
        sender_domain=envelope.sender_domain,
        recipients=list(envelope.recipients),
        message_id=message_id[:500],
        raw=raw,
        state=IntakeState.QUEUED.value,
        attempts=0,
        reason="",
        detail="",
    )
    session.add(row)
    session.flush()
    return row


def enqueue_many(session: Session, messages: Sequence[tuple[bytes, Envelope, str]], now: datetime) -> list[int]:
    """Store several messages (raw, envelope, Message-ID) with one statement; their ids, in order."""
    if not messages:
        return []
    rows = [
        {
            "received_at": now, "source": envelope.source, "envelope_sender": envelope.sender,
            "sender_domain": envelope.sender_domain,
            "recipients": list(envelope.recipients), "message_id": message_id[:500], "raw": raw,
            "state": IntakeState.QUEUED.value, "attempts": 0, "reason": "", "detail": "",
        }
        for raw, envelope, message_id in messages
    ]
    statement = insert(IntakeMessage).returning(IntakeMessage.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows))


def count_from_domain(session: Session, domain: str, since: datetime) -> int:
    """How many messages arrived from a sender domain (by envelope) since a moment."""
    query = select(func.count()).select_from(IntakeMessage).where(
        IntakeMessage.sender_domain == domain.lower(), IntakeMessage.received_at >= since
    )
    return session.scalar(query) or 0


def finish(row: IntakeMessage, state: IntakeState, now: datetime, reason: str = "", detail: str = "") -> None:
    """Record where a processed message ends up."""
    row.state = state.value
    row.reason = reason
    row.detail = detail
    row.processed_at = now
    row.claimed_until = None


def get(session: Session, intake_id: int, *, states: Sequence[IntakeState] | None = None) -> IntakeMessage:
    """One intake message, optionally only in the given states."""
    row = session.get(IntakeMessage, intake_id)
    if row is None or (states is not None and row.state not in {s.value for s in states}):
        raise IntakeNotFound(f"no {'/'.join(states or ['intake'])} message {intake_id}")
    return row


def list_in_state(session: Session, state: IntakeState, limit: int = 1000) -> list[IntakeMessage]:
    """Messages in one state, oldest first."""
    query = select(IntakeMessage).where(IntakeMessage.state == state.value).order_by(IntakeMessage.id).limit(limit)
    return list(session.scalars(query))


def claim_queued(session: Session, now: datetime, lease_until: datetime, limit: int) -> list[int]:
    """Claim up to ``limit`` queued messages whose lease is free, so that one processor takes each."""
    free = (IntakeMessage.claimed_until.is_(None)) | (IntakeMessage.claimed_until < now)
    query = select(IntakeMessage.id).where(IntakeMessage.state == IntakeState.QUEUED.value, free)
    query = query.order_by(IntakeMessage.id).limit(limit)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if ids:
        session.execute(update(IntakeMessage).where(IntakeMessage.id.in_(ids)).values(claimed_until=lease_until))
    return ids


def drop(row: IntakeMessage, now: datetime) -> None:
    """Discard a held message's content, keeping the record that it was dropped."""
    row.raw = b""
    finish(row, IntakeState.DROPPED, now, row.reason, row.detail)
