"""The ledger of handled scheduling messages, so that a replayed message changes nothing."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from gateway.store.schema import LedgerEntry


def fingerprint(method: str, calendar_text: str) -> str:
    """A stable name for one scheduling message: its method and its unfolded, normalized text."""
    unfolded = calendar_text.replace("\r\n", "\n").replace("\n ", "").replace("\n\t", "")
    lines = "\n".join(line.rstrip() for line in unfolded.split("\n") if line.strip())
    return hashlib.sha256(f"{method}\n{lines}".encode()).hexdigest()


def seen(session: Session, principal_id: int, print_: str) -> bool:
    """True when this message was already handled for this principal."""
    query = select(LedgerEntry.id).where(LedgerEntry.principal_id == principal_id, LedgerEntry.fingerprint == print_)
    return session.scalars(query).first() is not None


def remember(session: Session, principal_id: int, print_: str, now: datetime) -> None:
    """Note that this message was handled for this principal."""
    session.execute(insert(LedgerEntry).values(principal_id=principal_id, fingerprint=print_, created_at=now))
