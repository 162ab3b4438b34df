"""A POST to the scheduling outbox: a VFREEBUSY question answered at once for each attendee (RFC 6638 §5).

Local principals' busy time is given when the policy's ``[freebusy] local`` lets local
users see each other's (one's own always); anyone else gets a request status saying
why not. Invitations need no POST: the server schedules them when a client PUTs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway.core.addresses import as_uri
from gateway.core.calendar.freebusy import FreeBusyError, FreeBusyRequest, read_freebusy_request
from gateway.core.calendar.ical import CalendarError, method_of, parse_calendar, serialize_calendar
from gateway.core.dav.paths import Kind
from gateway.core.dav.responses import XML_HEAD, href
from gateway.core.dav.xml import CALDAV, NAMESPACE_DECLARATIONS, DavError, element, escape, qname, text_element
from gateway.service import freebusy
from gateway.service.caldav.tree import Request
from gateway.store import directory

SUCCESS = "2.0;Success"
NO_AUTHORITY = "3.8;No authority"
NOT_HERE = "5.3;No scheduling support for user"


@dataclass(frozen=True)
class Answer:
    """What one recipient's question got: a request status and, on success, its VFREEBUSY."""

    recipient: str
    status: str
    calendar_data: str = ""


def post_freebusy(session: Session, request: Request, body: bytes, local_may_see: bool) -> str:
    """The ``schedule-response`` body for a VFREEBUSY REQUEST posted by the principal."""
    if request.target.kind is not Kind.OUTBOX:
        raise DavError(405, "not-an-outbox", request.target.href)
    question = _read_question(body)
    if question.organizer not in request.actor.addresses:
        raise DavError(403, "not-the-organizer", question.organizer, condition=qname(CALDAV, "organizer-allowed"))
    answers = []
    for attendee in question.attendees:
        principal = directory.resolve(session, attendee)
        if principal is None:
            answers.append(Answer(attendee, NOT_HERE))
        elif not local_may_see and principal.id != request.actor.id:
            answers.append(Answer(attendee, NO_AUTHORITY))
        else:
            reply = freebusy.answer_request(session, principal, question, request.now)
            answers.append(Answer(attendee, SUCCESS, serialize_calendar(reply.calendar)))
    return schedule_response(answers)


def _read_question(body: bytes) -> FreeBusyRequest:
    try:
        calendar = parse_calendar(body.decode("utf-8"))
        if method_of(calendar) != "REQUEST":
            raise DavError(403, "not-a-request", "the outbox takes VFREEBUSY REQUESTs",
                           condition=qname(CALDAV, "valid-scheduling-message"))
        return read_freebusy_request(calendar, freebusy.MAX_WINDOW)
    except (UnicodeDecodeError, CalendarError, FreeBusyError) as error:
        raise DavError(400, "invalid-freebusy-request", str(error),
                       condition=qname(CALDAV, "valid-calendar-data")) from error


def schedule_response(answers: list[Answer]) -> str:
    """RFC 6638 §10.1: one ``C:response`` per recipient."""
    parts = []
    for answer in answers:
        inner = (element(qname(CALDAV, "recipient"), href(as_uri(answer.recipient)))
                 + text_element(qname(CALDAV, "request-status"), answer.status))
        if answer.calendar_data:
            inner += element(qname(CALDAV, "calendar-data"), escape(answer.calendar_data))
        parts.append(element(qname(CALDAV, "response"), inner))
    return f"{XML_HEAD}<C:schedule-response {NAMESPACE_DECLARATIONS}>{''.join(parts)}</C:schedule-response>"
