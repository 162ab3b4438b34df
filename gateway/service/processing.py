"""Taking mail in: make it durable, then process it; retry a bounded number of times, then hold.

Used by ``reefknot ingest`` (in-process), by the listeners and the poller (which only
enqueue) and by the processors that drain the queue.

One message never stops the others. Its processing runs under a budget (``[processing]
message_timeout``): past it, the work is undone and the message is held as
``processing-timeout``. A message claimed ``MAX_CLAIMS`` times without an outcome has
killed its processor each time (out of memory, a crash): the next claim holds it as
``worker-crashed`` instead of processing it again. An unexpected error is retried
``MAX_ATTEMPTS`` times, then held as ``processing-failed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from gateway.adapters import deadline
from gateway.adapters.metrics import METRICS, DeliveryResult, ProcessedOutcome
from gateway.core.mail.envelope import Envelope
from gateway.core.mail.headers import message_id_field
from gateway.core.mail.mailbox import MailboxKey, MailboxPosition
from gateway.core.model import Outcome
from gateway.adapters.deadline import DeadlineExceeded
from gateway.service.bounce_reports import DELIVERY_FAILED
from gateway.service.inbound import OPEN_TRUST, IntakeResult, process_message
from gateway.service.trust import Trust
from gateway.service.handoff import HandedOn
from gateway.service.leases import LEASE
from gateway.store import handoffs, inbox, intake, mailboxes
from gateway.store.db import Database
from gateway.store.intake import IntakeNotFound, IntakeState, Queued
from gateway.store.writers import WriteGate

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
MAX_CLAIMS = 3
PROCESSING_TIMEOUT, WORKER_CRASHED = "processing-timeout", "worker-crashed"
UNGATED = WriteGate(enabled=False)
TOGETHER = 8  # queued messages applied in one SQLite transaction: one commit, and one turn at the write gate, for them all
GROUP_SECONDS = 0.2  # past this, a group takes no further message: a listener waits at most a budget more for its turn


@dataclass(frozen=True)
class Receipt:
    """What became of one message taken in."""

    intake_id: int
    state: IntakeState
    reason: str = ""
    seconds: float = 0.0  # how long processing it took
    method: str = ""  # the first scheduling part's iTIP method; "": none was read
    source: str = ""
    latency: float = 0.0  # seconds from its receipt to its outcome


def take_in(
    db: Database,
    messages: Sequence[tuple[bytes, Envelope]],
    now: datetime,
    *,
    mailbox: tuple[MailboxKey, MailboxPosition] | None = None,
    handed_on: Sequence[HandedOn | None] = (),
) -> list[int]:
    """Make messages durable in one commit: the one door into the intake queue. Their intake ids.

    The listeners call it for each group commit; the IMAP poller with its mailbox's new
    position, which is saved in the same commit, so that once this returns the messages
    are queued and will not be taken from the mailbox again (their UIDs are at most
    ``position.last_uid``): only then may the poller move them out of the folder.
    A listener in front of the mailboxes gives, per message, what its next hop accepted
    (``handed_on``), recorded in the same commit.
    """
    with db.transaction() as session:
        queued = _enqueue(session, messages, now, [h is not None for h in handed_on])
        for handed in handed_on:
            if handed is not None:
                handoffs.record(session, handed.digest, handed.recipients, now)
        if mailbox is not None:
            mailboxes.save_position(session, *mailbox, now)
    for message, (_raw, envelope) in zip(queued, messages, strict=True):
        log.info("intake %d %s: queued from %s", message.id, message.message_id, envelope.source)
    return [message.id for message in queued]


def ingest_message(
    db: Database, raw: bytes, envelope: Envelope, now: datetime, trust: Trust = OPEN_TRUST, budget: float | None = None
) -> Receipt:
    """Make a message durable and apply it in the same transaction; if applying fails, keep it queued."""
    with db.transaction() as session:
        (message,) = _enqueue(session, [(raw, envelope)], now)
        result = _attempt(session, message, now, trust, budget)
        return Receipt(message.id, result.state, result.reason)


def _enqueue(
    session: Session, messages: Sequence[tuple[bytes, Envelope]], now: datetime, handed_on: Sequence[bool] = (),
) -> list[Queued]:
    with_ids = [(raw, envelope, message_id_field(raw)) for raw, envelope in messages]
    return intake.enqueue_many(session, with_ids, now, handed_on)


def process_queued(
    db: Database,
    now: datetime,
    limit: int = 100,
    trust: Trust = OPEN_TRUST,
    gate: WriteGate = UNGATED,
    *,
    budget: float | None = None,
    stopping: Callable[[], bool] = lambda: False,
    in_flight: set[int] | None = None,
    together: int | None = None,
) -> list[Receipt]:
    """Claim queued messages and apply them, up to ``together`` in one transaction, each within ``budget`` seconds.

    Each message of a group runs in its own savepoint, so that one message's failure
    undoes only its own work; the group shares one commit. By default a group is
    ``TOGETHER`` messages on SQLite, where one writer at a time is all there is, and one
    message on PostgreSQL, where processors work side by side and a transaction holding
    one message's locks while it applies the next would deadlock with the others. A group
    takes no further message once it has run ``GROUP_SECONDS``, so that a slow message
    keeps a listener waiting for its turn no longer than without groups. Should the
    commit itself fail, the group's messages are applied again one transaction each.

    The claim and each group take their own turn at ``gate``: a listener waiting to
    commit a message goes between them, not after the whole claim. Once ``stopping()``
    says so, the messages not yet begun are given back. ``in_flight`` holds the ids
    claimed and not yet finished, for a caller that must give them back if it cannot wait.
    """
    started = time.monotonic()  # ``now`` is when the batch began: latency counts from then on with this clock
    ids = gate.run(_claim, db, now, limit)
    flight = in_flight if in_flight is not None else set()
    flight.update(ids)
    receipts: list[Receipt] = []
    size = max(1, together or (TOGETHER if db.is_sqlite else 1))
    try:
        begun = 0
        while begun < len(ids):
            if stopping():
                gate.run(_release, db, ids[begun:])
                break
            group = ids[begun:begun + size]
            try:
                done = gate.run(_process_group, db, group, now, trust, budget, stopping)
            except Exception:  # the shared commit failed: none of the group's work is kept
                log.exception("intake %s: applying these together failed; applying them one by one", group)
                done = [gate.run(_process_group, db, [intake_id], now, trust, budget, stopping)[0]
                        for intake_id in group]
            finished = time.monotonic()
            for intake_id, receipt in done:
                flight.discard(intake_id)
                if receipt is not None:
                    receipt = replace(receipt, latency=receipt.latency + finished - started)
                    _count(receipt)
                    receipts.append(receipt)
            begun += len(done)
    finally:
        flight.difference_update(ids)
    return receipts


def release_claims(db: Database, ids: Sequence[int]) -> None:
    """Give back messages claimed and not begun, or begun by a processor that cannot finish them."""
    _release(db, list(ids))


def _claim(db: Database, now: datetime, limit: int) -> list[int]:
    with db.transaction() as session:
        return intake.claim_queued(session, now, now + LEASE, limit)  # the daemon renews it while it works


def _release(db: Database, ids: list[int]) -> None:
    with db.transaction() as session:
        intake.release_claims(session, ids)


def _process_group(
    db: Database, ids: list[int], now: datetime, trust: Trust, budget: float | None, stopping: Callable[[], bool],
) -> list[tuple[int, Receipt | None]]:
    """Apply claimed messages in one transaction, one savepoint each; stops early once ``stopping()`` says so, or
    once the group has taken ``GROUP_SECONDS``."""
    done: list[tuple[int, Receipt | None]] = []
    opened = time.monotonic()
    with db.transaction() as session:
        for intake_id in ids:
            if done and (stopping() or time.monotonic() - opened > GROUP_SECONDS):
                break
            began = time.monotonic()
            receipt = _process_claimed(session, intake_id, now, trust, budget)
            done.append((intake_id, receipt and replace(receipt, seconds=time.monotonic() - began)))
    return done


def _process_claimed(session: Session, intake_id: int, now: datetime, trust: Trust, budget: float | None) -> Receipt | None:
    try:
        message = intake.load(session, intake_id)
    except IntakeNotFound:  # released, dropped or processed meanwhile
        return None
    if message.claims > MAX_CLAIMS:
        detail = f"claimed {message.claims - 1} times by a processor that never finished it"
        log.error("intake %d %s: held as %s: %s", message.id, message.message_id, WORKER_CRASHED, detail)
        intake.finish(session, message.id, IntakeState.HELD, now, WORKER_CRASHED, detail)
        return Receipt(message.id, IntakeState.HELD, WORKER_CRASHED, source=message.source)
    result = _attempt(session, message, now, trust, budget)
    waited = (now - message.received_at).total_seconds() if message.received_at is not None else 0.0
    return Receipt(message.id, result.state, result.reason, method=result.method, source=message.source,
                   latency=waited)


def _count(receipt: Receipt) -> None:
    """The metrics of one outcome (or failed attempt), counted once its transaction has committed."""
    outcome = ProcessedOutcome.FAILED if receipt.state is IntakeState.QUEUED else ProcessedOutcome(receipt.state.value)
    METRICS.count_processed(receipt.source, receipt.method, outcome, receipt.reason, receipt.seconds, receipt.latency)
    if receipt.reason == DELIVERY_FAILED:  # a delivery report proved that a message sent earlier failed
        METRICS.count_delivery(DeliveryResult.BOUNCED)


def release_held(
    db: Database, intake_id: int, now: datetime, trust: Trust = OPEN_TRUST, budget: float | None = None
) -> Receipt:
    """Apply a held message as if the policy had accepted it (the operator's release), within the same budget."""
    with db.transaction() as session:
        message = replace(intake.load(session, intake_id, states=[IntakeState.HELD]), attempts=0)
        intake.requeue(session, intake_id)
        result = _attempt(session, message, now, trust, budget, released=True)
        return Receipt(message.id, result.state, result.reason)


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


def _attempt(
    session: Session, message: Queued, now: datetime, trust: Trust, budget: float | None, *, released: bool = False
) -> IntakeResult:
    """Process inside a savepoint: a timeout or an unexpected error undoes the work but keeps the message."""
    try:
        with session.begin_nested(), deadline.within(budget):
            return process_message(session, message, now, trust, released=released)
    except DeadlineExceeded as error:
        log.error("intake %d %s: held as %s: %s", message.id, message.message_id, PROCESSING_TIMEOUT, error)
        intake.finish(session, message.id, IntakeState.HELD, now, PROCESSING_TIMEOUT, str(error))
        return IntakeResult(IntakeState.HELD, PROCESSING_TIMEOUT, str(error))
    except Exception as error:  # any bug or odd input: never lose the message
        log.exception("intake %d %s: processing failed", message.id, message.message_id)
        detail = f"{type(error).__name__}: {error}"[:2000]
        if intake.failed_attempt(session, message, "processing-failed", detail) >= MAX_ATTEMPTS:
            intake.finish(session, message.id, IntakeState.HELD, now, "processing-failed", detail)
            return IntakeResult(IntakeState.HELD, "processing-failed", detail)
        return IntakeResult(IntakeState.QUEUED, "processing-failed", detail)
