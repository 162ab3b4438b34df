"""Which received mail brought a principal's copy of an object: what an answer to it threads under.

Reads the inbox lines and the intake rows they name; knows nothing about iCalendar or
the headers of the mail (``gateway.core.imip.answering`` reads those).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.core.model import Outcome
from gateway.store.schema import InboxEntry, IntakeMessage

HEAD_BYTES = 65536  # the header section is all that is read of the mail


@dataclass(frozen=True)
class ReceivedMail:
    """A mail as the intake queue kept it: its Message-ID field, and the start of its bytes (b"" once forgotten)."""

    message_id: str
    head: bytes


def latest_applied(session: Session, principal_id: int, uid: str, methods: Iterable[str]) -> ReceivedMail | None:
    """The latest mail with one of ``methods`` for ``uid`` that was applied to the principal's copy; None: none came by mail."""
    query = (
        select(IntakeMessage.message_id, func.substr(IntakeMessage.raw, 1, HEAD_BYTES))
        .join(InboxEntry, InboxEntry.intake_id == IntakeMessage.id)
        .where(InboxEntry.principal_id == principal_id, InboxEntry.uid == uid[:500],
               InboxEntry.method.in_(list(methods)), InboxEntry.outcome == Outcome.APPLIED.value)
        .order_by(InboxEntry.id.desc())
        .limit(1)
    )
    row = session.execute(query).first()
    return ReceivedMail(row[0] or "", bytes(row[1] or b"")) if row is not None else None
