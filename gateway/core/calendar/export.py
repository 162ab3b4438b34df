"""The iCalendar that leaves Reefknot (``calendar export``, the calendar feed, free/busy), checked object by object.

Not for: reading mail (``itip.messages`` holds a message with an unreadable value before
it is stored). An object that fails the check anyway (stored by an older version, or
written by hand) is left out of the stream and named, so that the edge logs it: one bad
object must not cost a subscriber the whole calendar, and must not reach a client that
would refuse the whole stream because of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from icalendar import Calendar

from gateway.core.calendar.ical import CalendarError, components_of, merge_calendars, parse_calendar, uid_of
from gateway.core.calendar.values import REASON as INVALID_VALUE
from gateway.core.calendar.values import invalid_values

REQUIRED = ("UID", "DTSTAMP")  # RFC 5545 §3.6.1–§3.6.4: in every scheduling component


@dataclass(frozen=True)
class LeftOut:
    """A stored object kept out of an export: its UID (empty when unreadable), the named reason, the detail."""

    uid: str
    reason: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.uid or 'an unreadable object'}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Export:
    """The stream to send, and what was kept out of it."""

    calendar: Calendar
    left_out: tuple[LeftOut, ...] = ()


def export_objects(texts: Iterable[str]) -> Export:
    """Stored objects as one calendar; each one that fails ``check_object`` is left out and named."""
    kept: list[Calendar] = []
    left_out: list[LeftOut] = []
    for text in texts:
        try:
            calendar = parse_calendar(text)
        except CalendarError as error:
            left_out.append(LeftOut("", error.reason, error.detail))
            continue
        problem = check_object(calendar)
        if problem is None:
            kept.append(calendar)
        else:
            left_out.append(problem)
    return Export(merge_calendars(kept), tuple(left_out))


def check_object(calendar: Calendar) -> LeftOut | None:
    """Why this calendar is not valid iCalendar to send, or None: a value unreadable as its type, no UID or DTSTAMP."""
    components = components_of(calendar)
    uid = uid_of(components[0]) if components else ""
    invalid = invalid_values(calendar)
    if invalid:
        return LeftOut(uid, INVALID_VALUE, invalid[0].describe())
    for component in components:
        for name in REQUIRED:
            if component.get(name) is None:
                return LeftOut(uid, f"missing-{name.lower()}", str(component.name))
    return None
