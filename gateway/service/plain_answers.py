"""Plain-email answers (scenario 5): "accept", "decline" or "maybe" sent to a reply address becomes that attendee's REPLY.

The reply token names the event and the attendee, whatever address the answer came
from. The answer is read from the subject and the first line the person wrote
(``gateway.core.mail.plainreply``); an unclear one is recorded in the organizer's inbox with
what the person wrote, never guessed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.orm import Session

from gateway.core.imip.answering import answered_mail
from gateway.core.itip.compose import build_reply
from gateway.core.itip.resource import PlanError
from gateway.core.mail.calendarparts import ParsedMail
from gateway.core.mail.plainreply import first_line, read_plain_answer
from gateway.core.model import Method, Outcome
from gateway.service.itip_delivery import apply_for, deliver
from gateway.service.routing import Route
from gateway.store import calendars, inbox, ledger

MAX_COMMENT = 300  # characters of the person's first line kept as the answer's COMMENT


def apply_plain_answer(
    session: Session, route: Route, mail: ParsedMail, raw: bytes, intake_id: int, now: datetime
) -> inbox.InboxRecord:
    """Apply one plain answer for the attendee the route's token names; the organizer's inbox line says what happened."""
    assert route.token is not None
    token, principal = route.token, route.principal
    said = (first_line(mail.text_body or "") or mail.subject)[:MAX_COMMENT]

    def line(outcome: Outcome, reason: str, detail: str) -> inbox.InboxRecord:
        record = inbox.InboxRecord(principal.id, Method.REPLY.value, token.uid, token.address, outcome, reason,
                                   detail, intake_id=intake_id)
        inbox.record(session, record, now)
        return record

    if token.expired:
        return line(Outcome.IGNORED, "reply-token-expired", f"{token.address} wrote after the event ended: {said}")
    answer = read_plain_answer(mail.subject, mail.text_body or "")
    if answer is None:
        return line(Outcome.RECORDED, "unclear-plain-answer", f"{token.address} wrote: {said}")
    stored = calendars.load_object(session, principal.id, token.uid)
    if stored.calendar is None:
        return line(Outcome.NOT_FOUND, "unknown-object", f"{token.address} answered {answer.value}")
    if not ledger.claim(session, principal.id, _fingerprint(token.uid, token.address, raw), now):
        return line(Outcome.DUPLICATE, "already-processed", f"{token.address} answered {answer.value}")
    try:
        reply = build_reply(stored.calendar, token.address, now, partstat=answer, comment=said or None)
    except PlanError as error:
        return line(Outcome.REJECTED, error.reason, f"{token.address} answered {answer.value}: {error.detail}")
    result = apply_for(session, principal, Method.REPLY, token.uid, reply.calendar, now, stored)
    if result.messages and not mail.is_noise:
        deliver(session, result.messages, now, answering=answered_mail(mail.message_id, mail.references))
    detail = f"{token.address} answered {answer.value} by plain email: {said}"
    return line(result.outcome, result.reason or "plain-answer", "; ".join(d for d in (detail, result.detail) if d))


def _fingerprint(uid: str, attendee: str, raw: bytes) -> str:
    """The same mail answering the same invitation twice changes nothing the second time."""
    return ledger.fingerprint("PLAIN-ANSWER", f"{uid}\n{attendee}\n{hashlib.sha256(raw).hexdigest()}")
