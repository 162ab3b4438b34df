"""Rooms and resources answer their invitations themselves: each instance accepted when free and allowed, else declined.

A room's copy of a request is judged instance by instance against the room's other
bookings (``gateway.core.calendar.booking``); the answers are stored on the room's copy and the
planner turns them into the room's REPLY, with an override for each declined instance of
a series. An update is judged again (a moved meeting may now clash, or fit); a cancelled
meeting is free time, so the room is free again. A request the policy declines outright
(``auto-decline``) is declined whole, with the policy's reason as the comment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.booking import (
    Booking,
    BookingError,
    BookingRules,
    Decline,
    apply_booking,
    booking_horizon,
    decide_booking,
)
from gateway.core.calendar.ical import components_of, copy_calendar, find_attendee, partstat_of
from gateway.core.calendar.instances import recurrence_key_of
from gateway.core.calendar.recurrence import FOREVER, ObjectTimes, read_times
from gateway.core.itip.plan import plan_itip
from gateway.core.itip.resource import PlanError
from gateway.core.itip.types import Stored
from gateway.core.model import Kind, OutgoingMessage, PartStat
from gateway.service.freebusy import busy_of
from gateway.store import calendars
from gateway.store.directory import PrincipalRef

log = logging.getLogger(__name__)
HORIZON = timedelta(days=366)  # how far ahead the instances of an endless series are checked, at least
LONGEST_HORIZON = timedelta(days=20 * 366)  # and at most: as far as the room's other bookings reach
SELF_SCHEDULING = frozenset({Kind.ROOM, Kind.RESOURCE})

RoomRules = Callable[[str], BookingRules]
"""The booking rules for a room address (the policy's ``[[room]]`` sections)."""


def no_rules(room: str) -> BookingRules:
    return BookingRules()


def answer(
    session: Session, room: PrincipalRef, uid: str, now: datetime, rules: RoomRules = no_rules, *, decline: str = ""
) -> list[OutgoingMessage]:
    """Decide the room's answers to its copy of ``uid``, store them, and return the REPLY to send (if any changed)."""
    calendars.lock_calendar(session, room.id)  # the clash decision and its answer, one room at a time
    stored = calendars.load_object(session, room.id, uid)
    if stored.calendar is None:
        return []
    try:
        attendee, new, comment = _answered(session, room, uid, stored.calendar, now, rules(room.address), decline)
    except BookingError as error:
        log.info("room %s, %s: no answer (%s)", room.address, uid, error.reason)
        return []
    if _answers(new, attendee) == _answers(stored.calendar, attendee):
        return []  # an update that changes nothing for the room: no new answer
    try:
        plan = plan_itip(stored.calendar, new, attendee, now, comment=comment or None)
    except PlanError as error:
        log.warning("room %s, %s: cannot answer: %s %s", room.address, uid, error.reason, error.detail)
        return []
    calendars.save_object(session, room.id, uid, Stored(plan.stored, stored.state), now)
    log.info("room %s, %s: %s", room.address, uid, ", ".join(f"{k or 'series'} {v}" for k, v in
                                                             sorted(_answers(new, attendee).items())))
    return list(plan.messages)


def _answered(
    session: Session, room: PrincipalRef, uid: str, request: Calendar, now: datetime, rules: BookingRules,
    decline: str,
) -> tuple[str, Calendar, str]:
    """The room's address in the request, its copy with the answers set, and the comment for the REPLY."""
    if decline:
        return _declined(request, room.addresses, decline)
    others = calendars.load_times(session, room.id, except_uid=uid)
    horizon_end = _horizon_end(others, now)
    span = booking_horizon(request, room.addresses, now, horizon_end)
    busy = busy_of(session, room, span[0], span[1], except_uid=uid) if span else []
    booking = decide_booking(request, room.addresses, busy, rules, now, horizon_end)
    if _clashes_without_end(request, booking, others):
        return _declined(request, room.addresses, Decline.CLASH.value)
    comment = booking.reason if booking.partstat == PartStat.DECLINED else ""
    return booking.attendee, apply_booking(request, booking.attendee, booking), comment


def _horizon_end(others: list[ObjectTimes], now: datetime) -> datetime:
    """How far an endless series is judged: a year ahead, and on to the room's furthest other booking.

    Past that, the room holds nothing an instance could clash with: a finite booking
    counts to its end, another endless series to a year past its start.
    """
    reach = [t.end if t.end < FOREVER else t.start + HORIZON for t in others]
    return min(max([now + HORIZON, *reach]), now + LONGEST_HORIZON)


def _clashes_without_end(request: Calendar, booking: Booking, others: list[ObjectTimes]) -> bool:
    """An endless series that clashes after every finite booking has ended clashes with an endless one:
    for ever, at more instances than any reply can list, so it is declined whole."""
    if read_times(request).end < FOREVER:
        return False
    finite_end = max((t.end for t in others if t.end < FOREVER), default=None)
    return any(d.reason == Decline.CLASH and (finite_end is None or d.start >= finite_end) for d in booking.decisions)


def _declined(request: Calendar, room: frozenset[str], reason: str) -> tuple[str, Calendar, str]:
    """Every component the room attends answered DECLINED (the policy refuses the booking)."""
    declined = copy_calendar(request)
    address = ""
    for component in components_of(declined):
        for candidate in sorted(room):
            prop = find_attendee(component, candidate)
            if prop is not None:
                prop.params["PARTSTAT"] = PartStat.DECLINED.value
                prop.params.pop("RSVP", None)
                address = candidate
    if not address:
        raise BookingError("room-not-invited", ", ".join(sorted(room)))
    return address, declined, reason


def _answers(calendar: Calendar, attendee: str) -> dict[str, str]:
    """The attendee's PARTSTAT in each component, by instance key."""
    return {
        recurrence_key_of(c): partstat_of(prop)
        for c in components_of(calendar) if (prop := find_attendee(c, attendee)) is not None
    }
