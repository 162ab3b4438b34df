"""The outbound queue: one row per message and recipient, written with the change that caused it.

A row's state is where it sits: ``queued`` (due at ``next_attempt_at``; while a sender is
at it, ``claimed_until`` holds others off), then ``sent``, ``failed`` (with the reason in
``last_error``) or ``dropped`` by the operator. What leaves this module is a frozen
``OutboxRecord`` with its state as an ``OutboxState``; changes go by id. Knows nothing
about SMTP or iCalendar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import Session

from gateway.store.schema import OutboxMessage

MAX_ERROR = 1000  # characters of a server reply or error kept in last_error


class OutboxState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    DROPPED = "dropped"


class OutboxNotFound(Exception):
    """No outbox message with that id (in the states asked for)."""


@dataclass(frozen=True)
class OutboxRecord:
    """One outbox row as read: what to send to whom, and where it stands."""

    id: int
    created_at: datetime
    method: str
    uid: str
    sender: str
    recipient: str
    ical: str
    message_id: str
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str
    claimed_until: datetime | None
    finished_at: datetime | None
    reply_token: str
    previous_ical: str
    in_reply_to: str = ""  # the Message-ID of the mail this one answers; "": it answers none
    reference_ids: str = ""  # that mail's References, space separated

    @classmethod
    def of(cls, row: OutboxMessage) -> OutboxRecord:
        return cls(
            row.id, row.created_at, row.method, row.uid, row.sender, row.recipient, row.ical, row.message_id,
            OutboxState(row.state), row.attempts, row.next_attempt_at, row.last_error, row.claimed_until,
            row.finished_at, row.reply_token, row.previous_ical, row.in_reply_to, row.reference_ids,
        )


def enqueue(
    session: Session, *, method: str, uid: str, sender: str, recipient: str, ical: str, message_id: str, now: datetime,
    reply_token: str = "", previous_ical: str = "", in_reply_to: str = "", reference_ids: str = "",
) -> int:
    """Queue one message for one recipient, due now; ``in_reply_to``: the Message-ID of the mail it answers."""
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
        reply_token=reply_token,
        previous_ical=previous_ical,
        in_reply_to=in_reply_to[:500],
        reference_ids=reference_ids,
    )
    session.add(row)
    session.flush()
    return row.id


def last_ical_to(session: Session, sender: str, uid: str, recipient: str) -> str:
    """The calendar of the latest message about ``uid`` from ``sender`` to ``recipient`` not given up on; "" if none."""
    query = (
        select(OutboxMessage.ical)
        .where(
            OutboxMessage.sender == sender, OutboxMessage.uid == uid[:500], OutboxMessage.recipient == recipient,
            OutboxMessage.state.in_([OutboxState.QUEUED.value, OutboxState.SENT.value]),
        )
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    )
    return session.scalars(query).first() or ""


def find_by_message_id(session: Session, message_id: str) -> OutboxRecord | None:
    """The row that sent a Message-ID (a bounce names the message it returns)."""
    row = session.scalars(select(OutboxMessage).where(OutboxMessage.message_id == message_id).limit(1)).first()
    return OutboxRecord.of(row) if row is not None else None


def list_messages(session: Session, *, states: tuple[OutboxState, ...] = ()) -> list[OutboxRecord]:
    """Outbox rows, oldest first, optionally in some states only."""
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if states:
        query = query.where(OutboxMessage.state.in_([s.value for s in states]))
    return [OutboxRecord.of(row) for row in session.scalars(query)]


def get(
    session: Session, outbox_id: int, *, states: Sequence[OutboxState] | None = None, lock: bool = False
) -> OutboxRecord:
    """One row, optionally only in the given states; ``lock`` holds it until the transaction ends (PostgreSQL)."""
    return OutboxRecord.of(_row(session, outbox_id, states=states, lock=lock))


def _row(
    session: Session, outbox_id: int, *, states: Sequence[OutboxState] | None = None, lock: bool = False
) -> OutboxMessage:
    row = session.get(OutboxMessage, outbox_id, with_for_update=lock or None, populate_existing=lock)
    if row is None or (states is not None and row.state not in {s.value for s in states}):
        raise OutboxNotFound(f"no {'/'.join(states or ['outbox'])} message {outbox_id}")
    return row


def claim_due(session: Session, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRecord]:
    """Take up to ``limit`` queued rows due by ``now`` that no sender holds, for one attempt each.

    On PostgreSQL the rows are locked with SKIP LOCKED, so concurrent senders take
    different rows; SQLite has one writer at a time anyway. Each claimed row counts one
    more attempt now, so that a sender dying mid-attempt still moves the backoff on.
    """
    query = _claimable(now).where(OutboxMessage.next_attempt_at <= now)
    return _claim(session, query.order_by(OutboxMessage.next_attempt_at, OutboxMessage.id), now, lease_until, limit)


def claim_queued(session: Session, now: datetime, lease_until: datetime, limit: int, after_id: int) -> list[OutboxRecord]:
    """Take up to ``limit`` queued rows with an id above ``after_id``, due or in backoff, that no sender holds.

    For ``reefknot outbox flush``, which goes through the queue by id. Only a row that is
    due counts an attempt here: an early attempt that is deferred leaves the row's
    schedule as it was (``gateway.core.mail.retry.decide_attempt``).
    """
    query = _claimable(now).where(OutboxMessage.id > after_id)
    return _claim(session, query.order_by(OutboxMessage.id), now, lease_until, limit)


def renew_claims(session: Session, ids: list[int], until: datetime) -> int:
    """Extend the lease on claimed queued rows; how many were renewed (a recorded attempt ends a claim)."""
    if not ids:
        return 0
    query = update(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.state == OutboxState.QUEUED.value,
                                        OutboxMessage.claimed_until.is_not(None))
    return session.execute(query.values(claimed_until=until)).rowcount or 0


def _claimable(now: datetime) -> Select[OutboxMessage]:
    free = OutboxMessage.claimed_until.is_(None) | (OutboxMessage.claimed_until < now)
    return select(OutboxMessage).where(OutboxMessage.state == OutboxState.QUEUED.value, free)


def _claim(
    session: Session, query: Select[OutboxMessage], now: datetime, lease_until: datetime, limit: int
) -> list[OutboxRecord]:
    query = query.limit(limit)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(session.scalars(query))
    for row in rows:
        row.claimed_until = lease_until
        if row.next_attempt_at <= now:
            row.attempts += 1
    session.flush()
    return [OutboxRecord.of(row) for row in rows]


def mark_sent(session: Session, outbox_id: int, now: datetime) -> None:
    """The smarthost took the message."""
    _finish(_row(session, outbox_id), OutboxState.SENT, now, "")


def mark_deferred(session: Session, outbox_id: int, now: datetime, error: str, next_at: datetime) -> None:
    """Not taken this time: stays queued until ``next_at``."""
    row = _row(session, outbox_id)
    row.state = OutboxState.QUEUED.value
    row.next_attempt_at = max(next_at, now)
    row.last_error = error[:MAX_ERROR]
    row.claimed_until = None


def mark_failed(session: Session, outbox_id: int, now: datetime, error: str) -> None:
    """Permanently refused, too old, or impossible to compose: no more attempts."""
    _finish(_row(session, outbox_id), OutboxState.FAILED, now, error)


def retry(session: Session, outbox_id: int, now: datetime, states: Sequence[OutboxState]) -> None:
    """Make a message in one of ``states`` due now, its backoff started afresh (its lifetime is not)."""
    row = _row(session, outbox_id, states=states)
    row.state = OutboxState.QUEUED.value
    row.next_attempt_at = now
    row.attempts = 0
    row.claimed_until = None
    row.finished_at = None


def drop(session: Session, outbox_id: int, now: datetime) -> None:
    """Give up on a message; it stays listed as dropped."""
    row = _row(session, outbox_id)
    _finish(row, OutboxState.DROPPED, now, row.last_error)


def _finish(row: OutboxMessage, state: OutboxState, now: datetime, error: str) -> None:
    row.state = state.value
    row.last_error = error[:MAX_ERROR]
    row.claimed_until = None
    row.finished_at = now


def prune_finished(session: Session, before: datetime) -> int:
    """Remove rows sent, failed or dropped before ``before``; queued ones stay whatever their age."""
    finished = (OutboxState.SENT.value, OutboxState.FAILED.value, OutboxState.DROPPED.value)
    query = delete(OutboxMessage).where(OutboxMessage.state.in_(finished), OutboxMessage.finished_at < before)
    return session.execute(query).rowcount or 0
