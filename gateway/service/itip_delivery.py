"""Delivering iTIP messages: applied in the store for local principals, queued in the outbox for everyone else."""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.addresses import domain_of
from gateway.core.calendar.ical import serialize_calendar
from gateway.core.imip.answering import Answered, answered_from_raw, stored_references
from gateway.core.itip.apply import apply_itip
from gateway.core.itip.types import ApplyResult, Recipient, Stored
from gateway.core.mail.replyaddress import token_expiry
from gateway.core.model import Method, Outcome, OutgoingMessage
from gateway.service import rooms
from gateway.service.rooms import RoomRules, no_rules
from gateway.store import calendars, directory, inbox, outbox, received, replytokens
from gateway.store.directory import PrincipalRef

log = logging.getLogger(__name__)
MAX_LOCAL_HOPS = 100  # answers to answers: a REFRESH answered locally, and so on
INVITING = (Method.REQUEST.value, Method.ADD.value)  # what an attendee's answer answers


@dataclass(frozen=True)
class Applied:
    """One message applied to one local principal, as recorded in its inbox."""

    principal: PrincipalRef
    result: ApplyResult


def recipient_of(principal: PrincipalRef) -> Recipient:
    return Recipient(principal.address, principal.aliases)


def apply_for(
    session: Session, principal: PrincipalRef, method: Method, uid: str, message: Calendar, now: datetime,
    stored: Stored | None = None,
) -> ApplyResult:
    """Apply one message to a principal's copy and save what changed; ``stored``: the copy, when already loaded."""
    if stored is None:
        stored = calendars.load_object(session, principal.id, uid)
    result = apply_itip(message, method, stored, recipient_of(principal), now)
    if result.changed:
        calendars.save_object(session, principal.id, uid, result.stored, now)
    return result


def deliver(
    session: Session, messages: Iterable[OutgoingMessage], now: datetime, rules: RoomRules = no_rules,
    *, answering: Answered | None = None,
) -> list[Applied]:
    """Apply messages to local recipients (and their answers, in turn); queue the rest for sending.

    A room or resource invited answers at once (``rooms``), under the booking ``rules``.
    ``answering``: the mail these messages answer; each one queued threads under it. What
    local recipients answer in turn answers no mail.
    """
    pending: deque[tuple[OutgoingMessage, Answered | None]] = deque((m, answering) for m in messages)
    applied: list[Applied] = []
    hops = 0
    while pending and hops < MAX_LOCAL_HOPS:
        message, answers = pending.popleft()
        hops += 1
        for address in message.recipients:
            principal = directory.resolve(session, address)
            if principal is None:
                queue_outbound(session, message, address, now, answers)
                continue
            result = apply_for(session, principal, message.method, message.uid, message.calendar, now)
            inbox.record(session, _inbox_line(principal, message, result), now)
            applied.append(Applied(principal, result))
            pending.extend((m, None) for m in result.messages)
            if books_itself(principal, message.method, result):
                pending.extend((m, None) for m in rooms.answer(session, principal, message.uid, now, rules))
    if pending:
        log.error("local delivery stopped after %d hops; %d messages not delivered", hops, len(pending))
    return applied


def books_itself(principal: PrincipalRef, method: Method, result: ApplyResult) -> bool:
    """A room or resource whose copy of an invitation just changed answers it itself."""
    return principal.kind in rooms.SELF_SCHEDULING and method in (Method.REQUEST, Method.ADD) and result.changed


def _inbox_line(principal: PrincipalRef, message: OutgoingMessage, result: ApplyResult) -> inbox.InboxRecord:
    kept = serialize_calendar(message.calendar) if result.outcome is Outcome.APPLIED else ""  # the CalDAV inbox's
    return inbox.InboxRecord(
        principal.id, message.method.value, message.uid, message.sender, result.outcome, result.reason, result.detail,
        kept,
    )


def answered_invitation(session: Session, principal: PrincipalRef, uid: str) -> Answered | None:
    """The invitation mail a local attendee's answer answers: the latest REQUEST or ADD applied to its copy.

    None when the copy came by no mail (a local organizer's, or a mail without a
    Message-ID); the mail's References are known while its bytes are kept.
    """
    mail = received.latest_applied(session, principal.id, uid, INVITING)
    return answered_from_raw(mail.message_id, mail.head) if mail is not None else None


def queue_outbound(
    session: Session, message: OutgoingMessage, recipient: str, now: datetime, answering: Answered | None = None
) -> None:
    """One outbox row for one non-local recipient, with the reply token of this event and recipient.

    The row keeps what the recipient was last sent about the event, so that the mail can
    say what changed, and the mail it answers (``answering``), so that it threads under it.
    """
    in_reply_to, reference_ids = stored_references(answering)
    sender = directory.resolve(session, message.sender)
    token = "" if sender is None else replytokens.issue(
        session, sender.id, message.uid, recipient, token_expiry(message.calendar), now
    )
    outbox_id = outbox.enqueue(
        session,
        method=message.method.value,
        uid=message.uid,
        sender=message.sender,
        recipient=recipient,
        ical=serialize_calendar(message.calendar),
        message_id=f"<{uuid.uuid4().hex}@{domain_of(message.sender)}>",
        now=now,
        reply_token=token,
        previous_ical=outbox.last_ical_to(session, message.sender, message.uid, recipient),
        in_reply_to=in_reply_to,
        reference_ids=reference_ids,
    )
    log.info("outbox %d: %s %s for %s", outbox_id, message.method.value, message.uid, recipient)
