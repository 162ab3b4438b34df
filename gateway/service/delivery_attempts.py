"""Outbound deliveries in the store: claiming due rows, and recording each attempt with its SCHEDULE-STATUS.

The sender edge (``gateway.edges.sender``) composes and talks SMTP and calls here. What
an attempt means is ``gateway.core.mail.retry``'s decision; the organizer's copy gets the
resulting code through ``gateway.core.itip.schedulestatus``. The row's new state and the
organizer's copy are written in one transaction (DESIGN.md, reliability rule 6). Not
for composing or sending mail.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from gateway.adapters.clock import utcnow
from gateway.settings.config import Config
from gateway.core.addresses import domain_of
from gateway.core.calendar.ical import organizer_of, parse_calendar
from gateway.core.imip.answering import read_stored_references
from gateway.core.imip.render import render_imip
from gateway.core.itip.schedulestatus import (
    ScheduleStatus,
    schedule_statuses,
    set_schedule_status,
    supersedes,
)
from gateway.core.itip.types import Stored
from gateway.core.mail.replyaddress import bounce_address, reply_address
from gateway.core.mail.retry import AfterAttempt, Attempt, Disposition, RetryPolicy, decide_attempt
from gateway.core.model import Method, OutgoingMessage
from gateway.adapters.dkim import DkimKeyError, DkimSigner, sign_with_each
from gateway.store import calendars, directory, outbox
from gateway.store.db import Database
from gateway.store.outbox import OutboxRecord, OutboxState
from gateway.adapters.templates import TemplateRenderer

log = logging.getLogger(__name__)

Compose = Callable[[OutboxRecord], bytes]
"""Turns one outbox row into the exact bytes to send: rendered, with its Message-ID, signed."""

# The organizer's own messages: only these leave a SCHEDULE-STATUS on the sender's copy.
STATUS_METHODS = frozenset({Method.REQUEST.value, Method.CANCEL.value, Method.ADD.value})


class ComposerUnavailable(Exception):
    """Outbound mail cannot be composed with this installation or configuration."""


@dataclass(frozen=True)
class SendResult:
    """What one attempt did to one row, as the command prints it."""

    outbox_id: int
    message_id: str
    recipient: str
    state: OutboxState
    detail: str
    next_attempt_at: datetime | None = None
    schedule_status: ScheduleStatus | None = None  # None: no organizer's copy was changed


def composer_for(config: Config, clock: Callable[[], datetime] = utcnow) -> Compose:
    """The composer of every outbound mail: ``gateway.core.imip.render`` renders, ``gateway.adapters.dkim`` signs.

    The calendar goes out as the row holds it (``ics``); the human parts are rendered in
    English from the shipped or the operator's templates and say what changed since the
    recipient's previous mail; replies are asked for at the row's token address under
    ``[outbound] reply_domain``; with ``[outbound.dkim]`` every mail is signed, once per key
    (an ed25519 and an RSA signature side by side), and a key that cannot be read refuses
    to start the sender.
    """
    renderer = TemplateRenderer(config.outbound.templates_dir or None)
    try:
        signers = tuple(DkimSigner(key.domain, key.selector, key.key_file) for key in config.dkim_keys)
    except (OSError, DkimKeyError) as error:
        raise ComposerUnavailable(f"[outbound.dkim]: {error}") from error

    def compose(row: OutboxRecord) -> bytes:
        message = OutgoingMessage(Method(row.method), row.uid, row.sender, (row.recipient,), parse_calendar(row.ical))
        previous = parse_calendar(row.previous_ical) if row.previous_ical else None
        reply_to = reply_address(row.reply_token, config.reply_domain) if row.reply_token and config.reply_domain else None
        mail = render_imip(
            message, recipient=row.recipient, previous=previous, reply_to=reply_to, envelope_from=None,
            message_id=row.message_id, thread_id=thread_id(row.uid, row.sender), language="en",
            recipient_zone=None, now=clock(), renderer=renderer, ics=row.ical,
            answered=read_stored_references(row.in_reply_to, row.reference_ids),
        )
        return sign_with_each(signers, mail.data)

    return compose


def thread_id(uid: str, sender: str) -> str:
    """The Message-ID that every mail about one event refers to, so that they thread together."""
    return f"<{hashlib.sha256(uid.encode()).hexdigest()[:32]}@{domain_of(sender)}>"


def retry_policy(config: Config) -> RetryPolicy:
    options = config.outbound
    return RetryPolicy(_seconds(options.retry_min), _seconds(options.retry_max), _seconds(options.lifetime))


def envelope_sender(row: OutboxRecord, reply_domain: str) -> str:
    """The SMTP MAIL FROM: an address naming the row and its token under the reply domain, so a bounce finds it."""
    if reply_domain and row.reply_token:
        return bounce_address(row.reply_token, row.id, reply_domain)
    return row.sender


def claim_due(db: Database, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRecord]:
    """Claim due rows in a transaction of their own; they stay readable after it ends."""
    with db.transaction() as session:
        return outbox.claim_due(session, now, lease_until, limit)


def claim_queued(db: Database, now: datetime, lease_until: datetime, limit: int, after_id: int) -> list[OutboxRecord]:
    """Claim queued rows after ``after_id``, due or not, in a transaction of their own (``reefknot outbox flush``)."""
    with db.transaction() as session:
        return outbox.claim_queued(session, now, lease_until, limit, after_id)


def record_attempt(db: Database, outbox_id: int, attempt: Attempt, policy: RetryPolicy, now: datetime) -> SendResult:
    """Move the row to the state the attempt earned and update the organizer's copy, in one transaction.

    A row the operator dropped or retried meanwhile keeps what the operator did.
    """
    with db.transaction() as session:
        row = outbox.get(session, outbox_id, lock=True)
        if row.state is not OutboxState.QUEUED or row.claimed_until is None:
            log.warning("outbox %d %s: %s, but it was %s meanwhile; left so", row.id, row.message_id,
                        attempt.result.value, "retried" if row.state is OutboxState.QUEUED else row.state)
            return SendResult(row.id, row.message_id, row.recipient, row.state, attempt.detail)
        after = decide_attempt(attempt, policy=policy, created_at=row.created_at, attempts=row.attempts, now=now,
                               due_at=row.next_attempt_at)
        state = _apply(session, row.id, after, now)
        written = update_schedule_status(session, row, after.status, now)
        result = SendResult(row.id, row.message_id, row.recipient, state, after.reason,
                            after.next_attempt_at, after.status if written else None)
        _log(row, result)
        return result


def drop_message(session: Session, outbox_id: int, now: datetime) -> None:
    """The operator gives up on a queued or failed row; one that was still queued leaves the organizer's copy at 5.1."""
    row = outbox.get(session, outbox_id, states=(OutboxState.QUEUED, OutboxState.FAILED))
    outbox.drop(session, row.id, now)
    if row.state is OutboxState.QUEUED:
        update_schedule_status(session, row, ScheduleStatus.NOT_DELIVERED, now)
    log.info("outbox %d %s: dropped by the operator", row.id, row.message_id)


def update_schedule_status(session: Session, row: OutboxRecord, code: ScheduleStatus, now: datetime) -> bool:
    """Set the recipient's SCHEDULE-STATUS on the local organizer's copy; True when the copy changed."""
    if row.method not in STATUS_METHODS:
        return False
    principal = directory.resolve(session, row.sender)
    if principal is None:
        return False
    stored = calendars.load_object(session, principal.id, row.uid)
    if stored.calendar is None or not any(organizer_of(c) in principal.addresses for c in stored.components):
        return False
    if not supersedes(code, schedule_statuses(stored.calendar, row.recipient)):
        return False
    updated = set_schedule_status(stored.calendar, row.recipient, code)
    calendars.save_object(session, principal.id, row.uid, Stored(updated, stored.state), now)
    return True


def _apply(session: Session, outbox_id: int, after: AfterAttempt, now: datetime) -> OutboxState:
    """Write what the attempt earned; the row's new state."""
    if after.disposition is Disposition.SENT:
        outbox.mark_sent(session, outbox_id, now)
        return OutboxState.SENT
    if after.disposition is Disposition.RETRY:
        assert after.next_attempt_at is not None
        outbox.mark_deferred(session, outbox_id, now, after.reason, after.next_attempt_at)
        return OutboxState.QUEUED
    outbox.mark_failed(session, outbox_id, now, after.reason)
    return OutboxState.FAILED


def _log(row: OutboxRecord, result: SendResult) -> None:
    code = result.schedule_status
    status = f"; {row.sender}'s copy says SCHEDULE-STATUS {code.value}" if code is not None else ""
    if result.state is OutboxState.SENT:
        log.info("outbox %d %s: sent to %s (%s)%s", row.id, row.message_id, row.recipient, result.detail, status)
    elif result.state is OutboxState.QUEUED:
        assert result.next_attempt_at is not None
        log.info("outbox %d %s: deferred, attempt %d, next at %s (%s)%s", row.id, row.message_id, row.attempts,
                 result.next_attempt_at.astimezone(UTC).isoformat(timespec="seconds"), result.detail, status)
    else:
        log.warning("outbox %d %s: failed for %s: %s%s", row.id, row.message_id, row.recipient, result.detail, status)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
