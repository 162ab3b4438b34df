"""The handoff ledger: which message each recipient's mailbox already has. Knows nothing about iCalendar.

A listener with a ``next_hop`` asks it before handing a message on, and records what the
next hop accepted in the same commit as the intake row; an MTA that retries a message
(it never got the answer) finds its recipients here and is answered without a second
delivery. Rows are kept longer than any MTA retries (Postfix: 5 days).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from gateway.store.schema import Handoff


def delivered_to(session: Session, digest: str, recipients: Iterable[str]) -> set[str]:
    """The recipients (lower case) whose mailbox already has the message with this digest."""
    wanted = {r.lower() for r in recipients}
    if not wanted:
        return set()
    query = select(Handoff.recipient).where(Handoff.digest == digest, Handoff.recipient.in_(wanted))
    return set(session.scalars(query))


def record(session: Session, digest: str, recipients: Iterable[str], now: datetime) -> None:
    """Remember that the next hop accepted the message for these recipients."""
    rows = [{"digest": digest, "recipient": r.lower(), "delivered_at": now} for r in dict.fromkeys(recipients)]
    if rows:
        session.execute(insert(Handoff), rows)


def forget(session: Session, before: datetime) -> int:
    """Remove what was handed on before ``before``; how many rows went."""
    return session.execute(delete(Handoff).where(Handoff.delivered_at < before)).rowcount or 0
