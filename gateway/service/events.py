"""A local principal changes its own calendar (CLI and HTTP faces): put, reply, delete.

Each change is planned by the core (old object vs new object) and the messages it
requires are delivered in the same transaction: applied for local principals,
queued in the outbox for everyone else (implicit scheduling, RFC 6638 §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dateutil import parser as dateparser
from icalendar import Calendar, Component, vCalAddress
from sqlalchemy.orm import Session

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
    timezones_of,
    uid_of,
)
from gateway.core.calendar.instances import (
    MASTER,
    instance_key,
    override_from_master,
    recurrence_key_of,
)
from gateway.core.calendar.recurrence import recurrence_limit
from gateway.core.calendar.values import REASON as INVALID_VALUE
from gateway.core.calendar.values import invalid_values
from gateway.core.itip.plan import PlanError, plan_itip
from gateway.core.itip.types import Stored
from gateway.core.model import NamedError, OutgoingMessage, PartStat
from gateway.service.itip_delivery import Applied, deliver
from gateway.service.rooms import RoomRules, no_rules
from gateway.store import calendars
from gateway.store.directory import PrincipalRef


class EventError(NamedError):
    """A change a principal asked for that cannot be made."""


@dataclass(frozen=True)
class Change:
    """What a change did: the UID, the messages it sent, and what they did locally."""

    uid: str
    messages: tuple[OutgoingMessage, ...]
    applied: tuple[Applied, ...]


def put_event(session: Session, actor: PrincipalRef, text: str, now: datetime, rules: RoomRules = no_rules) -> Change:
    """Create or change an object in the actor's calendar and schedule what that requires.

    Rooms invited answer at once, under the booking ``rules`` (the policy's ``[[room]]``).
    """
    calendar = _read_object(text, actor)
    uid = uid_of(components_of(calendar)[0])
    old = calendars.load_object(session, actor.id, uid)
    return _commit(session, actor, uid, old, calendar, _role_address(actor, calendar), now, rules=rules)


def delete_event(session: Session, actor: PrincipalRef, uid: str, now: datetime) -> Change:
    """Remove an object from the actor's calendar: attendees are cancelled, or the organizer told."""
    old = _existing(session, actor, uid)
    assert old.calendar is not None
    return _commit(session, actor, uid, old, None, _role_address(actor, old.calendar), now)


def reply_event(
    session: Session, actor: PrincipalRef, uid: str, partstat: PartStat, now: datetime,
    *, recurrence_id: str | None = None, comment: str | None = None,
) -> Change:
    """A local attendee answers an invitation, for the whole object or one instance."""
    old = _existing(session, actor, uid)
    assert old.calendar is not None
    address = _role_address(actor, old.calendar)
    new = copy_calendar(old.calendar)
    target = _instance(new, _instance_key_of(recurrence_id))
    attendee = find_attendee(target, address)
    if attendee is None:
        raise EventError("not-an-attendee", f"{actor.address} is not invited to that instance")
    attendee.params["PARTSTAT"] = partstat.value
    attendee.params.pop("RSVP", None)
    return _commit(session, actor, uid, old, new, address, now, comment=comment)


def _commit(
    session: Session, actor: PrincipalRef, uid: str, old: Stored, new: Calendar | None, address: str,
    now: datetime, *, comment: str | None = None, rules: RoomRules = no_rules,
) -> Change:
    """Plan the change from the stored ``old`` to ``new``, store it, and deliver what it requires."""
    try:
        plan = plan_itip(old.calendar, new, address, now, comment=comment)
    except PlanError as error:
        raise EventError(error.reason, error.detail) from error
    calendars.save_object(session, actor.id, uid, Stored(plan.stored, old.state), now)
    applied = deliver(session, plan.messages, now, rules)
    return Change(uid, plan.messages, tuple(applied))


def _existing(session: Session, actor: PrincipalRef, uid: str) -> Stored:
    stored = calendars.load_object(session, actor.id, uid)
    if stored.calendar is None:
        raise EventError("unknown-object", f"{actor.address} has no object {uid}")
    return stored


def _read_object(text: str, actor: PrincipalRef) -> Calendar:
    """The object to store: one UID, no METHOD, the actor as organizer when none is named."""
    try:
        parsed = parse_calendar(text)
    except CalendarError as error:
        raise EventError(error.reason, error.detail) from error
    components = components_of(parsed)
    if not components:
        raise EventError("no-scheduling-component")
    if len({uid_of(c) for c in components}) != 1 or not uid_of(components[0]):
        raise EventError("one-uid-per-object", "every component needs the same, non-empty UID")
    _refuse_unreadable(parsed, components)
    calendar = new_calendar()
    for zone in timezones_of(parsed):
        calendar.add_component(zone)
    for component in components:
        if attendees_of(component) and organizer_of(component) is None:
            component.add("ORGANIZER", vCalAddress(as_uri(actor.address)), encode=False)
        calendar.add_component(component)
    return calendar


def _refuse_unreadable(parsed: Calendar, components: list[Component]) -> None:
    """A value no reader can use, or a recurrence beyond Reefknot's bounds, is refused as mail would be held."""
    invalid = invalid_values(parsed)
    if invalid:
        raise EventError(INVALID_VALUE, invalid[0].describe())
    for component in components:
        beyond = recurrence_limit(component)
        if beyond is not None:
            raise EventError(*beyond)


def _role_address(actor: PrincipalRef, calendar: Calendar) -> str:
    """The address under which the actor takes part: organizer first, else attendee."""
    components = components_of(calendar)
    for component in components:
        if organizer_of(component) in actor.addresses:
            return str(organizer_of(component))
    for component in components:
        for address in sorted(actor.addresses):
            if find_attendee(component, address) is not None:
                return address
    return actor.address


def _instance_key_of(recurrence_id: str | None) -> str:
    if not recurrence_id:
        return MASTER
    if len(recurrence_id) == 8 and recurrence_id.isdigit():
        return recurrence_id  # an all-day instance: the key of a DATE is the date itself
    try:
        return instance_key(dateparser.parse(recurrence_id))
    except (ValueError, OverflowError) as error:
        raise EventError("bad-recurrence-id", recurrence_id) from error


def _instance(calendar: Calendar, key: str) -> Component:
    """The component for an instance key in a calendar, adding an override from the master when needed."""
    components = {recurrence_key_of(c): c for c in components_of(calendar)}
    if key in components:
        return components[key]
    override = override_from_master(components.get(MASTER), key)
    if override is None:
        raise EventError("unknown-instance", key)
    calendar.add_component(override)
    return override
