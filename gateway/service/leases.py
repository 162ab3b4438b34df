"""Claims that end with their holder: a short lease on claimed intake and outbox rows, renewed while it lives.

A processor or sender claims rows for ``LEASE`` and renews its claims every
``RENEW_EVERY`` for as long as it works on them. One that dies, or loses the database,
stops renewing, and its rows are free to any other process within ``LEASE`` — not after
a lease long enough for the slowest imaginable batch.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from gateway.store import intake, outbox
from gateway.store.db import Database

LEASE = timedelta(seconds=20)
RENEW_EVERY = 5.0  # seconds: three renewals may fail before a living holder's claim runs out


def renew_intake_claims(db: Database, ids: Collection[int], now: datetime) -> int:
    """Extend this process's claims on queued intake messages to ``now + LEASE``; how many were still held."""
    with db.transaction() as session:
        return intake.renew_claims(session, list(ids), now + LEASE)


def renew_outbox_claims(db: Database, ids: Collection[int], now: datetime) -> int:
    """Extend this process's claims on queued outbox rows to ``now + LEASE``; how many were still held."""
    with db.transaction() as session:
        return outbox.renew_claims(session, list(ids), now + LEASE)
