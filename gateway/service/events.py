"""A local principal changes its own calendar (the command, the CalDAV face): put, reply, delete.

The edit itself is the core's (``gateway.core.itip.edits``); this module loads the old
object, has the core plan the change (old object vs new object), stores it and delivers
the messages it requires in the same transaction: applied for local principals, queued
in the outbox for everyone else (implicit scheduling, RFC 6638 §3.2). A change that
cannot be made raises ``EditError`` with a named reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.ical import components_of, uid_of
from gateway.core.itip.edits import EditError, answered, object_to_store, role_address
from gateway.core.itip.plan import PlanError, plan_itip
from gateway.core.itip.types import Stored
from gateway.core.itip.schedulestatus import ScheduleStatus, set_schedule_status
from gateway.core.model import Method, OutgoingMessage, PartStat
from gateway.service.itip_delivery import Applied, answered_invitation, deliver
from gateway.service.rooms import RoomRules, no_rules
from gateway.store import calendars, directory
from gateway.store.calendars import Place
from gateway.store.directory import PrincipalRef


ANSWERS = frozenset({Method.REPLY, Method.COUNTER, Method.REFRESH})  # an attendee's, to the invitation it got


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
    return put_object(session, actor, object_to_store(text, actor.address), now, rules)


def put_object(session: Session, actor: PrincipalRef, calendar: Calendar, now: datetime, rules: RoomRules = no_rules,
               *, place: Place | None = None) -> Change:
    """``put_event`` for an object already read (``object_to_store``); ``place`` is where a CalDAV client put it."""
    uid = uid_of(components_of(calendar)[0])
    old = calendars.load_object(session, actor.id, uid)
    return _commit(session, actor, uid, old, calendar, _role_address(actor, calendar), now, rules=rules, place=place)


def delete_event(session: Session, actor: PrincipalRef, uid: str, now: datetime, *, notify: bool = True) -> Change:
    """Remove an object from the actor's calendar: attendees are cancelled, or the organizer told.

    ``notify`` False removes it and tells no one (a CalDAV client's ``Schedule-Reply: F``).
    """
    old = _existing(session, actor, uid)
    assert old.calendar is not None
    if not notify:
        calendars.save_object(session, actor.id, uid, Stored(None, old.state), now)
        return Change(uid, (), ())
    return _commit(session, actor, uid, old, None, _role_address(actor, old.calendar), now)


def reply_event(
    session: Session, actor: PrincipalRef, uid: str, partstat: PartStat, now: datetime,
    *, recurrence_id: str | None = None, comment: str | None = None,
) -> Change:
    """A local attendee answers an invitation, for the whole object or one instance."""
    old = _existing(session, actor, uid)
    assert old.calendar is not None
    address = _role_address(actor, old.calendar)
    new = answered(old.calendar, address, partstat, recurrence_id)
    return _commit(session, actor, uid, old, new, address, now, comment=comment)


def _commit(
    session: Session, actor: PrincipalRef, uid: str, old: Stored, new: Calendar | None, address: str,
    now: datetime, *, comment: str | None = None, rules: RoomRules = no_rules, place: Place | None = None,
) -> Change:
    """Plan the change from the stored ``old`` to ``new``, store it, and deliver what it requires."""
    try:
        plan = plan_itip(old.calendar, new, address, now, comment=comment)
    except PlanError as error:
        raise EditError(error.reason, error.detail) from error
    stored = _delivered_locally(session, plan.stored, plan.messages, address)
    calendars.save_object(session, actor.id, uid, Stored(stored, old.state), now, place=place)
    answering = answered_invitation(session, actor, uid) if any(m.method in ANSWERS for m in plan.messages) else None
    applied = deliver(session, plan.messages, now, rules, answering=answering)
    return Change(uid, plan.messages, tuple(applied))


def _delivered_locally(session: Session, stored: Calendar | None, messages: tuple[OutgoingMessage, ...],
                       organizer: str) -> Calendar | None:
    """The organizer's copy with SCHEDULE-STATUS 1.2 for each local attendee it just invited (RFC 6638 §3.2.9).

    Outside attendees get theirs from the delivery attempts (1.1, 5.1, 3.7).
    """
    if stored is None:
        return None
    for message in messages:
        if message.sender != organizer or message.method not in (Method.REQUEST, Method.ADD):
            continue
        for recipient in message.recipients:
            if directory.resolve(session, recipient) is not None:
                stored = set_schedule_status(stored, recipient, ScheduleStatus.DELIVERED)
    return stored


def _existing(session: Session, actor: PrincipalRef, uid: str) -> Stored:
    stored = calendars.load_object(session, actor.id, uid)
    if stored.calendar is None:
        raise EditError("unknown-object", f"{actor.address} has no object {uid}")
    return stored


def _role_address(actor: PrincipalRef, calendar: Calendar) -> str:
    return role_address(actor.addresses, calendar, actor.address)

