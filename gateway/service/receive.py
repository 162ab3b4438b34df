"""Taking mail in: make it durable, then process it; retry a bounded number of times, then hold.

Used by ``reefknot ingest`` (in-process), by the listeners and the poller (which only
enqueue) and by the processors that drain the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from gateway.core.mailheaders import message_id_field
from gateway.core.model import Outcome
from gateway.service.mailflow import OPEN_TRUST, Verdict, process_message
from gateway.service.trust import Trust
from gateway.store import inbox, intake, mailboxes
from gateway.store.db import Database
from gateway.store.intake import Envelope, IntakeNotFound, IntakeState, Queued
from gateway.store.mailboxes import MailboxKey, MailboxPosition
from gateway.store.writers import WriteGate

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
LEASE = timedelta(minutes=5)
UNGATED = WriteGate(enabled=False)


@dataclass(frozen=True)
class Receipt:
    """What became of one message taken in."""

    intake_id: int
    state: IntakeState
    reason: str = ""


def ingest_message(db: Database, raw: bytes, envelope: Envelope, now: datetime, trust: Trust = OPEN_TRUST) -> Receipt:
    """Store a message and apply it in the same transaction; if applying fails, keep it queued."""
    with db.transaction() as session:
        message = intake.enqueue(session, raw, envelope, message_id_field(raw), now)
        verdict = _attempt(session, message, now, trust)
        return Receipt(message.id, verdict.state, verdict.reason)


def enqueue_message(db: Database, raw: bytes, envelope: Envelope, now: datetime) -> int:
    """Only make a message durable (the listeners' job); processors apply it later."""
    with db.transaction() as session:
        message = intake.enqueue(session, raw, envelope, message_id_field(raw), now)
        log.info("intake %d %s: queued from %s", message.id, message.message_id, envelope.source)
        return message.id


def enqueue_from_mailbox(
    db: Database,
    mailbox: MailboxKey,
    position: MailboxPosition,
    messages: Sequence[tuple[bytes, Envelope]],
    now: datetime,
) -> list[int]:
    """Make a batch of messages from an IMAP mailbox durable and advance the mailbox's position, in one commit.

    Once this returns, the messages are in the queue and will not be taken from the
    mailbox again (their UIDs are at most ``position.last_uid``); only then may the
    poller move them out of the folder.
    """
    items = [(raw, envelope, message_id_field(raw)) for raw, envelope in messages]
    with db.transaction() as session:
        ids = intake.enqueue_many(session, items, now)
        mailboxes.save_position(session, mailbox, position, now)
    for intake_id, (_raw, envelope, message_id) in zip(ids, items):
        log.info("intake %d %s: queued from %s", intake_id, message_id, envelope.source)
    return ids


def process_queued(
    db: Database, now: datetime, limit: int = 100, trust: Trust = OPEN_TRUST, gate: WriteGate = UNGATED
) -> list[Receipt]:
    """Claim queued messages and process each in its own transaction.

    The claim and each message take their own turn at ``gate``: a listener waiting to
    commit a message goes between them, not after the whole batch.
    """
    ids = gate.run(_claim, db, now, limit)
    receipts = (gate.run(_process_claimed, db, intake_id, now, trust) for intake_id in ids)
    return [receipt for receipt in receipts if receipt is not None]


def _claim(db: Database, now: datetime, limit: int) -> list[int]:
    with db.transaction() as session:
        return intake.claim_queued(session, now, now + LEASE, limit)


def _process_claimed(db: Database, intake_id: int, now: datetime, trust: Trust) -> Receipt | None:
    with db.transaction() as session:
        try:
            message = intake.load(session, intake_id)
        except IntakeNotFound:  # released, dropped or processed meanwhile
            return None
        verdict = _attempt(session, message, now, trust)
        return Receipt(message.id, verdict.state, verdict.reason)


def release_held(db: Database, intake_id: int, now: datetime, trust: Trust = OPEN_TRUST) -> Receipt:
    """Apply a held message as if the policy had accepted it (the operator's release)."""
    with db.transaction() as session:
        message = replace(intake.load(session, intake_id, states=[IntakeState.HELD]), attempts=0)
        intake.requeue(session, intake_id)
        verdict = _attempt(session, message, now, trust, released=True)
        return Receipt(message.id, verdict.state, verdict.reason)


def drop_held(db: Database, intake_id: int, now: datetime) -> None:
    """Discard a held message; the record that it was dropped stays, and each principal it was held for is told."""
    with db.transaction() as session:
        intake.load(session, intake_id, states=[IntakeState.HELD])
        intake.drop(session, intake_id, now)
        for entry in inbox.held_for(session, intake_id):
            inbox.record(session, inbox.InboxRecord(
                entry.principal_id, entry.method, entry.uid, entry.sender, Outcome.IGNORED, "dropped-by-operator",
                f"held as {entry.reason}; dropped from quarantine", intake_id=intake_id,
            ), now)


def _attempt(session: Session, message: Queued, now: datetime, trust: Trust, *, released: bool = False) -> Verdict:
    """Process inside a savepoint: an unexpected error undoes the work but keeps the message."""
    try:
        with session.begin_nested():
            return process_message(session, message, now, trust, released=released)
    except Exception as error:  # any bug or odd input: never lose the message
        log.exception("intake %d %s: processing failed", message.id, message.message_id)
        detail = f"{type(error).__name__}: {error}"[:2000]
        if intake.failed_attempt(session, message, "processing-failed", detail) >= MAX_ATTEMPTS:
            intake.finish(session, message.id, IntakeState.HELD, now, "processing-failed", detail)
            return Verdict(IntakeState.HELD, "processing-failed", detail)
        return Verdict(IntakeState.QUEUED, "processing-failed", detail)
