"""Free/busy from the store: a principal's busy time, several aggregated, and the answer to a VFREEBUSY request.

The busy time itself is the pure core's (``gateway.core.calendar.freebusy``); here the objects
are read from the store. Who may ask is the policy's to say, and the caller's to check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dateutil import parser as dateparser
from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.freebusy import (
    BusyPeriod,
    FreeBusyError,
    FreeBusyRequest,
    busy_periods,
    freebusy_reply,
    freebusy_result,
    merge_periods,
    read_freebusy_request,
)
from gateway.core.calendar.ical import components_of
from gateway.core.model import Method, Outcome, OutgoingMessage
from gateway.store import calendars
from gateway.store.directory import PrincipalRef

MAX_WINDOW = timedelta(days=366)  # the longest window answered, by mail or over HTTP
DEFAULT_WINDOW = timedelta(days=42)  # when a question names no end: six weeks from its start


class WindowError(ValueError):
    """A free/busy window that cannot be answered; the message says why."""


def read_window(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The UTC window of a free/busy question: ``start`` (default now) and ``end`` (default six weeks on).

    Each is an ISO 8601 date-time, extended or basic (the iCalendar form); without a zone, UTC.
    """
    first = _instant(start, "start") or now
    last = _instant(end, "end") or first + DEFAULT_WINDOW
    if last <= first:
        raise WindowError("end must be after start")
    if last - first > MAX_WINDOW:
        raise WindowError(f"the window may be at most {MAX_WINDOW.days} days")
    return first, last


def _instant(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = dateparser.isoparse(value)
    except (ValueError, OverflowError) as error:
        raise WindowError(f"{name}: not an ISO 8601 date-time: {value}") from error
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def busy_of(session: Session, principal: PrincipalRef, start: datetime, end: datetime,
            *, except_uid: str | None = None) -> list[BusyPeriod]:
    """The principal's busy time in [start, end) from everything in its calendar (but ``except_uid``)."""
    return busy_periods(calendars.load_times(session, principal.id, except_uid=except_uid), principal.addresses,
                        start, end)


def published(session: Session, principals: Iterable[PrincipalRef], start: datetime, end: datetime,
              now: datetime) -> Calendar:
    """One VFREEBUSY for the principals together: their busy time merged (the free/busy URL, ``reefknot freebusy``)."""
    owners = list(principals)
    periods = merge_periods(p for owner in owners for p in busy_of(session, owner, start, end))
    return freebusy_result([o.address for o in owners], start, end, periods, now)


@dataclass(frozen=True)
class MailAnswer:
    """What became of a VFREEBUSY REQUEST by mail: the inbox outcome, and the REPLY to send if any."""

    outcome: Outcome
    reason: str
    detail: str = ""
    reply: OutgoingMessage | None = None


def is_freebusy(calendar: Calendar) -> bool:
    return any(c.name == "VFREEBUSY" for c in components_of(calendar))


def answer_by_mail(session: Session, principal: PrincipalRef, request_calendar: Calendar, allowed: bool,
                   now: datetime) -> MailAnswer:
    """Answer a VFREEBUSY REQUEST (RFC 5546 §3.3.1) for the principal, if it is asked about and ``allowed``."""
    try:
        request = read_freebusy_request(request_calendar, MAX_WINDOW)
    except FreeBusyError as error:
        return MailAnswer(Outcome.REJECTED, error.reason, error.detail)
    if not principal.addresses & set(request.attendees):
        return MailAnswer(Outcome.IGNORED, "not-asked", f"asked about {', '.join(request.attendees)}")
    if not allowed:
        return MailAnswer(Outcome.RECORDED, "freebusy-not-allowed")
    reply = answer_request(session, principal, request, now)
    return MailAnswer(Outcome.ANSWERED, "freebusy-answered", f"to {request.organizer}", reply)


def answer_request(session: Session, principal: PrincipalRef, request: FreeBusyRequest,
                   now: datetime) -> OutgoingMessage:
    """The principal's VFREEBUSY REPLY to the organizer who asked (RFC 5546 §3.3.2)."""
    periods = busy_of(session, principal, request.start, request.end)
    reply = freebusy_reply(principal.address, request.organizer, request.start, request.end, periods, now,
                           request.uid)
    uid = str(reply.walk("VFREEBUSY")[0]["UID"])
    return OutgoingMessage(Method.REPLY, uid, principal.address, (request.organizer,), reply)
