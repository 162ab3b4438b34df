"""Turning the calendar parts of a mail into validated iTIP messages, or named problems.

A part with no METHOD anywhere is a plain calendar, not a scheduling message (INTEROP
rule 4); when the Content-Type's method and the body's METHOD disagree the body wins
and the disagreement is noted (rule 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from icalendar import Calendar

from gateway.core.ical import (
    CalendarError,
    attendees_of,
    components_of,
    method_of,
    organizer_of,
    parse_calendar,
    uid_of,
)
from gateway.core.itip.validate import ItipError, resolve_method, validate_itip
from gateway.core.mail import CalendarPart
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


def read_itip(part: CalendarPart) -> ItipMessage | PartProblem:
    """Parse, find the method of, and validate one calendar part."""
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
        validate_itip(calendar, method)
    except ItipError as error:
        return PartProblem(Outcome.REJECTED, error.rule, error.detail, method_of(calendar) or "", uid, part.text)
    if method_of(calendar) != method.value:
        calendar["METHOD"] = method.value
    return ItipMessage(method, uid, calendar, part.text, note or "")

