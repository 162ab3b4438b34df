"""How full the queues are, for ``/metrics``: intake waiting, quarantine, outbox waiting, each with its oldest age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from gateway.store.db import Database
from gateway.store.intake import IntakeState
from gateway.store.outbox import OutboxState
from gateway.store.schema import IntakeMessage, OutboxMessage


@dataclass(frozen=True)
class QueueDepth:
    """One queue: how many wait in it, and for how long the oldest has (seconds; 0 when empty)."""

    queue: str
    count: int
    oldest_seconds: float


def queue_depths(db: Database, now: datetime) -> list[QueueDepth]:
    """The intake queue, the quarantine and the outbox as they stand, in one read."""
    with db.reading() as session:
        found = []
        for queue, column, since, state in (
            ("intake", IntakeMessage.state, IntakeMessage.received_at, IntakeState.QUEUED.value),
            ("quarantine", IntakeMessage.state, IntakeMessage.received_at, IntakeState.HELD.value),
            ("outbox", OutboxMessage.state, OutboxMessage.created_at, OutboxState.QUEUED.value),
        ):
            count, oldest = session.execute(select(func.count(), func.min(since)).where(column == state)).one()
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            found.append(QueueDepth(queue, int(count), max(age, 0.0)))
        return found

