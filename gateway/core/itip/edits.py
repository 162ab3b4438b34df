"""A local principal's edits of its own calendar, as pure functions on calendars and plain addresses.

What a command, a CalDAV client or a room's automatic answer asks for becomes a new
calendar object here: an object to store (one UID, no METHOD, the principal as organizer
when none is named), an attendee's answer for the series or one instance, a room
declining everything it attends. Each returns a new calendar and never changes the one
it is given; planning the iTIP messages the change requires is ``gateway.core.itip.plan``'s.
Not for the store: the service loads the old object and saves the new one.
"""

from __future__ import annotations

from collections.abc import Iterable

from dateutil import parser as dateparser
from icalendar import Calendar, Component, vCalAddress

from gateway.core.addresses import as_uri
from gateway.core.calendar.ical import (
    CalendarError,
    attendees_of,
    components_of,
    copy_calendar,
    find_attendee,
    new_calendar,
    organizer_of,
    parse_calendar,
    partstat_of,
    timezones_of,
    uid_of,
)
from gateway.core.calendar.instances import MASTER, instance_key, override_from_master, recurrence_key_of
from gateway.core.calendar.recurrence import recurrence_limit
from gateway.core.calendar.values import REASON as INVALID_VALUE
from gateway.core.calendar.values import invalid_values
from gateway.core.model import NamedError, PartStat


class EditError(NamedError):
    """An edit a principal asked for that cannot be made."""


def object_to_store(text: str, organizer: str) -> Calendar:
    """The object a principal puts: one UID, no METHOD, ``organizer`` as ORGANIZER when attendees have none.

    A value no reader can use, or a recurrence beyond Reefknot's bounds, is refused as
    mail carrying it would be held.
    """
    if text.upper().count("BEGIN:VCALENDAR") > 1:
        raise EditError("one-calendar-per-object", "the text holds more than one VCALENDAR")
    try:
        parsed = parse_calendar(text)
    except CalendarError as error:
        raise EditError(error.reason, error.detail) from error
    components = components_of(parsed)
    if not components:
        raise EditError("no-scheduling-component")
    if len({uid_of(c) for c in components}) != 1 or not uid_of(components[0]):
        raise EditError("one-uid-per-object", "every component needs the same, non-empty UID")
    _refuse_unreadable(parsed, components)
    calendar = new_calendar()
    for zone in timezones_of(parsed):
        calendar.add_component(zone)
    for component in components:
        if attendees_of(component) and organizer_of(component) is None:
            component.add("ORGANIZER", vCalAddress(as_uri(organizer)), encode=False)
        calendar.add_component(component)
    return calendar


def _refuse_unreadable(parsed: Calendar, components: list[Component]) -> None:
    invalid = invalid_values(parsed)
    if invalid:
        raise EditError(INVALID_VALUE, invalid[0].describe())
    for component in components:
        beyond = recurrence_limit(component)
        if beyond is not None:
            raise EditError(*beyond)


def role_address(addresses: Iterable[str], calendar: Calendar, default: str) -> str:
    """The address under which a principal with ``addresses`` takes part: organizer first, else attendee."""
    mine = sorted(addresses)
    components = components_of(calendar)
    for component in components:
        organizer = organizer_of(component)
        if organizer is not None and organizer in mine:
            return str(organizer)
    for component in components:
        for address in mine:
            if find_attendee(component, address) is not None:
                return address
    return default


def answered(calendar: Calendar, attendee: str, partstat: PartStat, recurrence_id: str | None = None) -> Calendar:
    """A copy of ``calendar`` with ``attendee``'s PARTSTAT set, for the series or the instance ``recurrence_id``.

    ``recurrence_id`` is a date-time in any form dateutil reads, or an all-day
    instance's ``YYYYMMDD``; an instance without an override gets one from the master.
    """
    new = copy_calendar(calendar)
    target = _instance(new, _instance_key_of(recurrence_id))
    prop = find_attendee(target, attendee)
    if prop is None:
        raise EditError("not-an-attendee", f"{attendee} is not invited to that instance")
    prop.params["PARTSTAT"] = partstat.value
    prop.params.pop("RSVP", None)
    return new


def _instance_key_of(recurrence_id: str | None) -> str:
    if not recurrence_id:
        return MASTER
    if len(recurrence_id) == 8 and recurrence_id.isdigit():
        return recurrence_id  # an all-day instance: the key of a DATE is the date itself
    try:
        return instance_key(dateparser.parse(recurrence_id))
    except (ValueError, OverflowError) as error:
        raise EditError("bad-recurrence-id", recurrence_id) from error


def _instance(calendar: Calendar, key: str) -> Component:
    """The component for an instance key, adding an override from the master when needed."""
    components = {recurrence_key_of(c): c for c in components_of(calendar)}
    if key in components:
        return components[key]
    override = override_from_master(components.get(MASTER), key)
    if override is None:
        raise EditError("unknown-instance", key)
    calendar.add_component(override)
    return override


def declined_everywhere(request: Calendar, addresses: Iterable[str]) -> tuple[str, Calendar]:
    """A copy with every component the attendee (one of ``addresses``) attends answered DECLINED.

    Returns the address the request names it by; ``EditError("room-not-invited")`` when none.
    """
    declined = copy_calendar(request)
    mine = sorted(addresses)
    address = ""
    for component in components_of(declined):
        for candidate in mine:
            prop = find_attendee(component, candidate)
            if prop is not None:
                prop.params["PARTSTAT"] = PartStat.DECLINED.value
                prop.params.pop("RSVP", None)
                address = candidate
    if not address:
        raise EditError("room-not-invited", ", ".join(mine))
    return address, declined


def answers_of(calendar: Calendar, attendee: str) -> dict[str, str]:
    """The attendee's PARTSTAT in each component, by instance key."""
    return {
        recurrence_key_of(c): partstat_of(prop)
        for c in components_of(calendar) if (prop := find_attendee(c, attendee)) is not None
    }
