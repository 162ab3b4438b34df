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

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session

from gateway.core.mail.envelope import Envelope
from gateway.store.schema import IntakeMessage

MESSAGE_ID_LENGTH = 500  # the length of the message_id column: longer ones are cut
_TABLE = IntakeMessage.__table__
_INSERT = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)  # Core: no unit of work to flush
_LOAD = select(
    _TABLE.c.id, _TABLE.c.raw, _TABLE.c.envelope_sender, _TABLE.c.sender_domain, _TABLE.c.recipients,
    _TABLE.c.message_id, _TABLE.c.attempts, _TABLE.c.state, _TABLE.c.claims, _TABLE.c.source, _TABLE.c.received_at,
).where(_TABLE.c.id == bindparam("id"))
_UPDATE = update(_TABLE).where(_TABLE.c.id == bindparam("row_id"))
_FINISH = _UPDATE.values(claimed_until=None, claims=0)
_FINISH_IGNORED = _FINISH.values(raw=case((_TABLE.c.handed_on, b""), else_=_TABLE.c.raw))  # the mailbox has the bytes


class IntakeState(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    IGNORED = "ignored"
    HELD = "held"
    DROPPED = "dropped"


class IntakeNotFound(Exception):
    """No intake message with that id in the state asked for."""


@dataclass(frozen=True)
class Queued:
    """An intake message as a processor reads it."""

    id: int
    raw: bytes
    envelope_sender: str
    sender_domain: str
    recipients: tuple[str, ...]
    message_id: str
    attempts: int = 0
    claims: int = 0  # times claimed, this one included, without an outcome recorded
    source: str = ""  # smtp, lmtp, imap, ingest: for the metrics
    received_at: datetime | None = None


def enqueue_many(
    session: Session, messages: Sequence[tuple[bytes, Envelope, str]], now: datetime, handed_on: Sequence[bool] = (),
) -> list[Queued]:
    """Store several messages (raw, envelope, Message-ID) with one statement; each as a processor reads it, in order.

    ``handed_on``, per message: its recipients' mailboxes already have it, so once it is
    found to hold nothing to apply its bytes need not be kept.
    """
    if not messages:
        return []
    handed = list(handed_on) or [False] * len(messages)
    rows = [
        {
            "received_at": now, "source": envelope.source, "envelope_sender": envelope.sender,
            "sender_domain": envelope.sender_domain,
            "recipients": list(envelope.recipients), "message_id": message_id[:MESSAGE_ID_LENGTH], "raw": raw,
            "state": IntakeState.QUEUED.value, "attempts": 0, "reason": "", "detail": "", "handed_on": on,
        }
        for (raw, envelope, message_id), on in zip(messages, handed, strict=True)
    ]
    ids = session.scalars(_INSERT, rows)
    return [
        Queued(intake_id, raw, envelope.sender, envelope.sender_domain, envelope.recipients,
               message_id[:MESSAGE_ID_LENGTH], source=envelope.source, received_at=now)
        for intake_id, (raw, envelope, message_id) in zip(ids, messages, strict=True)
    ]


def count_from_domain(session: Session, domain: str, since: datetime) -> int:
    """How many messages arrived from a sender domain (by envelope) since a moment."""
    query = select(func.count()).select_from(IntakeMessage).where(
        IntakeMessage.sender_domain == domain.lower(), IntakeMessage.received_at >= since
    )
    return session.scalar(query) or 0


def load(session: Session, intake_id: int, *, states: Sequence[IntakeState] = (IntakeState.QUEUED,)) -> Queued:
    """One intake message in one of the given states, to process."""
    row = session.execute(_LOAD, {"id": intake_id}).first()
    if row is None or row.state not in states:
        raise IntakeNotFound(f"no {'/'.join(states)} message {intake_id}")
    return Queued(row.id, row.raw, row.envelope_sender, row.sender_domain, tuple(row.recipients), row.message_id,
                  row.attempts, row.claims, row.source, row.received_at)


def outcome_of(session: Session, intake_id: int) -> tuple[str, str]:
    """The reason and detail recorded for a message."""
    row = session.execute(select(IntakeMessage.reason, IntakeMessage.detail).where(IntakeMessage.id == intake_id)).first()
    return (row.reason, row.detail) if row is not None else ("", "")


def finish(session: Session, intake_id: int, state: IntakeState, now: datetime, reason: str = "", detail: str = "") -> None:
    """Record where a processed message ends up; one with nothing to apply that the mailbox has keeps no bytes."""
    values = {"row_id": intake_id, "state": state.value, "reason": reason, "detail": detail, "processed_at": now}
    session.execute(_FINISH_IGNORED if state is IntakeState.IGNORED else _FINISH, values)


def failed_attempt(session: Session, message: Queued, reason: str, detail: str) -> int:
    """Count a failed processing attempt; the message stays queued for the next one. How many attempts failed."""
    attempts = message.attempts + 1
    values = {"attempts": attempts, "reason": reason, "detail": detail, "claimed_until": None, "claims": 0}
    session.execute(_UPDATE, {"row_id": message.id, **values})
    return attempts


def requeue(session: Session, intake_id: int) -> None:
    """Put a held message back in the queue with its attempts forgotten (the operator's release)."""
    session.execute(_UPDATE, {"row_id": intake_id, "state": IntakeState.QUEUED.value, "attempts": 0, "claims": 0})


def list_in_state(session: Session, state: IntakeState, limit: int = 1000, *, after_id: int = 0) -> list[IntakeMessage]:
    """Messages in one state, oldest first: up to ``limit`` with an id above ``after_id``."""
    query = select(IntakeMessage).where(IntakeMessage.state == state.value, IntakeMessage.id > after_id)
    return list(session.scalars(query.order_by(IntakeMessage.id).limit(limit)))


def count_in_state(session: Session, state: IntakeState, *, after_id: int = 0) -> int:
    """How many messages in one state have an id above ``after_id``."""
    query = select(func.count()).select_from(IntakeMessage).where(
        IntakeMessage.state == state.value, IntakeMessage.id > after_id
    )
    return session.scalar(query) or 0


def claim_queued(session: Session, now: datetime, lease_until: datetime, limit: int) -> list[int]:
    """Claim up to ``limit`` queued messages whose lease is free, so that one processor takes each."""
    free = (IntakeMessage.claimed_until.is_(None)) | (IntakeMessage.claimed_until < now)
    query = select(IntakeMessage.id).where(IntakeMessage.state == IntakeState.QUEUED.value, free)
    query = query.order_by(IntakeMessage.id).limit(limit)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if ids:
        claimed = {"claimed_until": lease_until, "claims": IntakeMessage.claims + 1}
        session.execute(update(IntakeMessage).where(IntakeMessage.id.in_(ids)).values(claimed))
    return ids


def renew_claims(session: Session, ids: Sequence[int], until: datetime) -> int:
    """Extend the lease on claimed queued messages; how many were renewed (an outcome ends a claim)."""
    if not ids:
        return 0
    query = update(IntakeMessage).where(IntakeMessage.id.in_(ids), IntakeMessage.state == IntakeState.QUEUED.value,
                                        IntakeMessage.claimed_until.is_not(None))
    return session.execute(query.values(claimed_until=until)).rowcount or 0


def release_claims(session: Session, ids: Sequence[int]) -> None:
    """Give back claimed messages untouched (a processor stopping), so that any processor takes them at once."""
    if ids:
        query = update(IntakeMessage).where(IntakeMessage.id.in_(ids), IntakeMessage.state == IntakeState.QUEUED.value)
        uncounted = case((IntakeMessage.claims > 0, IntakeMessage.claims - 1), else_=0)  # this claim was no crash
        session.execute(query.values(claimed_until=None, claims=uncounted))


def drop(session: Session, intake_id: int, now: datetime) -> None:
    """Discard a held message's content, keeping the record (and the reason it was held) that it was dropped."""
    values = {"raw": b"", "state": IntakeState.DROPPED.value, "processed_at": now, "claimed_until": None}
    session.execute(_UPDATE, {"row_id": intake_id, **values})


def forget_raw(session: Session, before: datetime) -> int:
    """Empty the raw bytes of messages handled before ``before`` (done, ignored, dropped); held ones are kept."""
    handled = (IntakeState.DONE.value, IntakeState.IGNORED.value, IntakeState.DROPPED.value)
    result = session.execute(update(IntakeMessage).where(
        IntakeMessage.state.in_(handled), IntakeMessage.processed_at < before, IntakeMessage.raw != b"").values(raw=b""))
    return result.rowcount or 0
