"""Forgetting what need not be kept: raw messages already handled, and old inbox and outbox history.

A handled message keeps its row (its outcome, its Message-ID) but loses its raw bytes
after ``raw_messages``; the ledger, which makes a replay harmless, is never pruned here.
Held messages are kept whole until the operator releases or drops them; queued ones are
never touched. Inbox lines older than ``inbox`` and finished outbox rows older than
``outbox`` go.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.settings.config import RetentionOptions
from gateway.store import inbox, intake, outbox
from gateway.store.db import Database


@dataclass(frozen=True)
class Pruned:
    """What one pass forgot."""

    raw_messages: int
    inbox_lines: int
    outbox_rows: int


def prune(db: Database, now: datetime, keep: RetentionOptions) -> Pruned:
    """Forget, in one transaction, what ``keep`` no longer keeps."""
    with db.transaction() as session:
        return Pruned(intake.forget_raw(session, now - keep.raw_messages), inbox.prune(session, now - keep.inbox),
                      outbox.prune_finished(session, now - keep.outbox))
