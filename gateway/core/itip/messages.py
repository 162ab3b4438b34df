"""Turning the calendar parts of a mail into validated iTIP messages, or named problems.

A part with no METHOD anywhere is a plain calendar, not a scheduling message (INTEROP
rule 4); when the Content-Type's method and the body's METHOD disagree the body wins
and the disagreement is noted (rule 3). A value that cannot be read as its type, even
leniently, makes the message ``invalid-value`` (the property named in the detail): it
would otherwise be stored where free/busy, rooms and clients cannot read it.

A component without DTSTAMP (RFC 5546 requires one; Outlook and Thunderbird forwards
drop it) is stamped with the mail's Date, or the time it is read when the mail has no
Date or dates itself later than that: the Date is when the sender sent this version,
which is what DTSTAMP orders by (RFC 5546 §2.1.5), while the time of reading would let a
delayed older message win a tie. The stamp is noted in the inbox detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from icalendar import Calendar

from gateway.core.calendar.ical import (
    CalendarError,
    attendees_of,
    components_of,
    method_of,
    organizer_of,
    parse_calendar,
    uid_of,
)
from gateway.core.calendar.values import REASON as INVALID_VALUE
from gateway.core.calendar.values import invalid_values
from gateway.core.itip.validate import ItipError, resolve_method, validate_itip
from gateway.core.mail.calendarparts import CalendarPart
from gateway.core.model import Method, Outcome


@dataclass(frozen=True)
class ItipMessage:
    """One valid scheduling message found in a mail."""

    method: Method
    uid: str
    calendar: Calendar = field(compare=False)
    text: str
    note: str = ""

    @property
    def participants(self) -> set[str]:
        """Everyone the message names: the organizer and the attendees."""
        found: set[str] = set()
        for component in components_of(self.calendar):
            found.update(attendees_of(component))
            organizer = organizer_of(component)
            if organizer:
                found.add(organizer)
        return found


@dataclass(frozen=True)
class PartProblem:
    """A calendar part that cannot be applied, with the outcome and the named reason."""

    outcome: Outcome
    reason: str
    detail: str = ""
    method: str = ""
    uid: str = ""
    text: str = ""


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the stamp when neither a Date nor a time is known


def read_itip(
    part: CalendarPart, *, sent: datetime | None = None, now: datetime | None = None
) -> ItipMessage | PartProblem:
    """Parse, find the method of, and validate one calendar part.

    ``sent`` is the mail's Date and ``now`` the time of reading: they give the DTSTAMP of
    a component that has none.
    """
    try:
        calendar = parse_calendar(part.text)
    except CalendarError as error:
        return PartProblem(Outcome.UNREADABLE, error.reason, error.detail, text=part.text)
    components = components_of(calendar)
    uid = uid_of(components[0]) if components else ""
    try:
        method, note = resolve_method(part.declared_method, method_of(calendar))
        if method is None:
            return PartProblem(Outcome.IGNORED, "not-itip", "a calendar without METHOD", uid=uid, text=part.text)
        invalid = invalid_values(calendar)
        if invalid:
            detail = invalid[0].describe() + (f"; and {len(invalid) - 1} more" if len(invalid) > 1 else "")
            return PartProblem(Outcome.REJECTED, INVALID_VALUE, detail, method.value, uid, part.text)
        validate_itip(calendar, method)
    except ItipError as error:
        return PartProblem(Outcome.REJECTED, error.rule, error.detail, method_of(calendar) or "", uid, part.text)
    if method_of(calendar) != method.value:
        calendar["METHOD"] = method.value
    notes = (note or "", _stamp_missing(calendar, _stamp(sent, now)))
    return ItipMessage(method, uid, calendar, part.text, "; ".join(n for n in notes if n))


def _stamp(sent: datetime | None, now: datetime | None) -> datetime:
    """The mail's Date, never later than the time of reading (a future Date would win every tie)."""
    known = [t.astimezone(timezone.utc) for t in (sent, now) if t is not None]
    return min(known).replace(microsecond=0) if known else EPOCH


def _stamp_missing(calendar: Calendar, stamp: datetime) -> str:
    """Give every scheduling component without DTSTAMP the stamp; the note saying so, or ''."""
    missing = [c for c in components_of(calendar) if c.get("DTSTAMP") is None]
    for component in missing:
        component.add("DTSTAMP", stamp)
    return f"no DTSTAMP: {stamp:%Y-%m-%dT%H:%M:%SZ} used" if missing else ""

