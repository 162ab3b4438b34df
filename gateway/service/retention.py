"""Forgetting what need not be kept: raw messages already handled, and old inbox and outbox history.

A handled message keeps its row (its outcome, its Message-ID) but loses its raw bytes
after ``raw_messages``; the ledger, which makes a replay harmless, is never pruned here.
Held messages are kept whole until the operator releases or drops them; queued ones are
never touched. Inbox lines older than ``inbox`` and finished outbox rows older than
``outbox`` go, and the record of what was handed on to the mailboxes after
``HANDOFF_MEMORY``, longer than any MTA goes on retrying a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.settings.config import RetentionOptions
from gateway.store import handoffs, inbox, intake, outbox
from gateway.store.db import Database

HANDOFF_MEMORY = timedelta(days=10)  # Postfix gives up after 5 days (maximal_queue_lifetime), Exim after 4


@dataclass(frozen=True)
class Pruned:
    """What one pass forgot."""

    raw_messages: int
    inbox_lines: int
    outbox_rows: int
    handoffs: int = 0


def prune(db: Database, now: datetime, keep: RetentionOptions) -> Pruned:
    """Forget, in one transaction, what ``keep`` no longer keeps."""
    with db.transaction() as session:
        return Pruned(intake.forget_raw(session, now - keep.raw_messages), inbox.prune(session, now - keep.inbox),
                      outbox.prune_finished(session, now - keep.outbox), handoffs.forget(session, now - HANDOFF_MEMORY))
