"""Private events from outside stored as busy time only: the times stay, the details go.

A CLASS:PRIVATE or CONFIDENTIAL object may be kept "busy-only" by policy. What is kept
is what scheduling and free/busy need: the UID, the versions (SEQUENCE, DTSTAMP), the
times and recurrence, the organizer, the recipient's own ATTENDEE line (so that it can
still answer), STATUS, TRANSP and CLASS. Everything else (summary, description,
location, the other attendees, attachments, alarms, vendor properties) is dropped.
"""

from __future__ import annotations

from icalendar import Calendar, Component

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import attendee_properties, components_of, copy_calendar

KEPT = frozenset({
    "UID", "DTSTAMP", "SEQUENCE", "DTSTART", "DTEND", "DURATION", "DUE", "RRULE", "RDATE", "EXDATE",
    "RECURRENCE-ID", "ORGANIZER", "STATUS", "TRANSP", "CLASS",
})
BUSY_SUMMARY = "Busy"


def classification_of(calendar: Calendar) -> str:
    """The most private CLASS among the object's components ("PUBLIC" when none says otherwise)."""
    classes = {str(c.get("CLASS", "PUBLIC")).upper() for c in components_of(calendar)}
    for level in ("CONFIDENTIAL", "PRIVATE"):
        if level in classes:
            return level
    return "PUBLIC"


def busy_only(calendar: Calendar, recipient: frozenset[str]) -> Calendar:
    """A copy keeping only the times, versions and the recipient's own participation (``recipient``: its addresses)."""
    kept = copy_calendar(calendar)
    for component in components_of(kept):
        _strip(component, recipient)
    return kept


def _strip(component: Component, recipient: frozenset[str]) -> None:
    own = [p for p in attendee_properties(component) if normalize_address(p) in recipient]
    for name in list(component.keys()):
        if name not in KEPT:
            del component[name]
    component.subcomponents.clear()
    component.add("SUMMARY", BUSY_SUMMARY)
    for prop in own:
        component.add("ATTENDEE", prop, encode=False)
