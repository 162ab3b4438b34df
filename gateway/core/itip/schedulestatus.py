"""What the organizer's copy says about each delivery: the ATTENDEE's SCHEDULE-STATUS (RFC 6638 §3.2.9, §7.3).

Sets the code on a copy; deciding which code a delivery earned is ``gateway.core.mail.retry``'s job.
"""

from __future__ import annotations

from enum import StrEnum

from icalendar import Calendar, vCalAddress

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import attendee_properties, components_of, copy_calendar
from gateway.core.itip.resource import SCHEDULE_STATUS


class ScheduleStatus(StrEnum):
    """The RFC 6638 §3.2.9 codes a delivery can end in."""

    SENT = "1.1"  # handed to mail; whether it arrived is unknown (store and forward)
    DELIVERED = "1.2"  # in a local principal's calendar and inbox
    INVALID_USER = "3.7"  # the recipient's address was refused as not existing
    NOT_DELIVERED = "5.1"  # delivery could not be completed


def schedule_statuses(calendar: Calendar, attendee: str) -> set[str]:
    """The SCHEDULE-STATUS values of an attendee across the object's components ("" where unset)."""
    return {str(prop.params.get(SCHEDULE_STATUS, "")) for prop in _attendee_props(calendar, attendee)}


def supersedes(code: ScheduleStatus, current: set[str]) -> bool:
    """Whether a delivery result should replace the attendee's current codes.

    Not when nothing names the attendee any more, or it already says so; and "sent"
    never replaces a 2.x code: the attendee's answer came first, and delivered says more.
    """
    if current in (set(), {code.value}):
        return False
    return not (code is ScheduleStatus.SENT and all(c.startswith("2.") for c in current))


def set_schedule_status(calendar: Calendar, attendee: str, code: ScheduleStatus) -> Calendar:
    """A copy of the object with the attendee's SCHEDULE-STATUS set in every component that names it."""
    updated = copy_calendar(calendar)
    for prop in _attendee_props(updated, attendee):
        prop.params[SCHEDULE_STATUS] = code.value
    return updated


def _attendee_props(calendar: Calendar, attendee: str) -> list[vCalAddress]:
    wanted = normalize_address(attendee)
    return [
        prop
        for component in components_of(calendar)
        for prop in attendee_properties(component)
        if wanted is not None and normalize_address(prop) == wanted
    ]
