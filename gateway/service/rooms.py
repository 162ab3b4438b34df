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
from datetime import datetime

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.booking import (
    BookingError,
    BookingRules,
    Decline,
    apply_booking,
    booking_horizon,
    clashes_without_end,
    decide_booking,
    judging_horizon_end,
)
from gateway.core.itip.edits import EditError, answers_of, declined_everywhere
from gateway.core.itip.plan import plan_itip
from gateway.core.itip.resource import PlanError
from gateway.core.itip.types import Stored
from gateway.core.model import Kind, OutgoingMessage, PartStat
from gateway.service.freebusy import busy_of
from gateway.store import calendars
from gateway.store.directory import PrincipalRef

log = logging.getLogger(__name__)
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
    except (BookingError, EditError) as error:
        log.info("room %s, %s: no answer (%s)", room.address, uid, error.reason)
        return []
    if answers_of(new, attendee) == answers_of(stored.calendar, attendee):
        return []  # an update that changes nothing for the room: no new answer
    try:
        plan = plan_itip(stored.calendar, new, attendee, now, comment=comment or None)
    except PlanError as error:
        log.warning("room %s, %s: cannot answer: %s %s", room.address, uid, error.reason, error.detail)
        return []
    calendars.save_object(session, room.id, uid, Stored(plan.stored, stored.state), now)
    log.info("room %s, %s: %s", room.address, uid, ", ".join(f"{k or 'series'} {v}" for k, v in
                                                             sorted(answers_of(new, attendee).items())))
    return list(plan.messages)


def _answered(
    session: Session, room: PrincipalRef, uid: str, request: Calendar, now: datetime, rules: BookingRules,
    decline: str,
) -> tuple[str, Calendar, str]:
    """The room's address in the request, its copy with the answers set, and the comment for the REPLY."""
    if decline:
        return *declined_everywhere(request, room.addresses), decline
    others = calendars.load_times(session, room.id, except_uid=uid)
    horizon_end = judging_horizon_end(others, now)
    span = booking_horizon(request, room.addresses, now, horizon_end)
    busy = busy_of(session, room, span[0], span[1], except_uid=uid) if span else []
    booking = decide_booking(request, room.addresses, busy, rules, now, horizon_end)
    if clashes_without_end(request, booking, others):
        return *declined_everywhere(request, room.addresses), Decline.CLASH.value
    comment = booking.reason if booking.partstat == PartStat.DECLINED else ""
    return booking.attendee, apply_booking(request, booking.attendee, booking), comment
