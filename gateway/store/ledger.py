"""The ledger of handled scheduling messages, so that a replayed message changes nothing."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.store.schema import LedgerEntry


def fingerprint(method: str, calendar_text: str) -> str:
    """A stable name for one scheduling message: its method and its unfolded, normalized text."""
    unfolded = calendar_text.replace("\r\n", "\n").replace("\n ", "").replace("\n\t", "")
    lines = "\n".join(line.rstrip() for line in unfolded.split("\n") if line.strip())
    return hashlib.sha256(f"{method}\n{lines}".encode()).hexdigest()


_TABLE = LedgerEntry.__table__
_CLAIM = {
    "postgresql": postgresql.insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.id),
    "sqlite": sqlite.insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.id),
}


def claim(session: Session, principal_id: int, print_: str, now: datetime) -> bool:
    """Note that this message is handled for this principal; False when it already was.

    One statement: an insert that does nothing on a known fingerprint. The caller's
    transaction (or savepoint) undoes the claim if handling the message fails.
    """
    statement = _CLAIM[session.get_bind().dialect.name]
    values = {"principal_id": principal_id, "fingerprint": print_, "created_at": now}
    return session.execute(statement, values).first() is not None
