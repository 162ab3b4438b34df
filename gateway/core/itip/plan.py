"""Planning implicit scheduling: a local principal's change (old object → new object) → what to store and send.

The entry point of the planning direction (RFC 6638 §3.2 on top of RFC 5546): the actor
is either the object's organizer (``organizer`` rules) or one of its attendees
(``attendee`` rules). Pure: ``now`` is an argument, inputs are never mutated, and the
caller stores ``Plan.stored`` and queues ``Plan.messages`` in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from icalendar import Calendar

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import copy_calendar
from gateway.core.itip.attendee import plan_attendee
from gateway.core.itip.compose import build_refresh, build_reply, build_request
from gateway.core.itip.organizer import plan_organizer
from gateway.core.itip.resource import PlanError, SchedulingObject, read_object, utc_now
from gateway.core.model import OutgoingMessage

__all__ = ["Plan", "PlanError", "build_refresh", "build_reply", "build_request", "plan_itip"]


@dataclass(frozen=True)
class Plan:
    """What a change amounts to: the actor's copy to store (None: deleted) and one message per recipient."""

    stored: Calendar | None
    messages: tuple[OutgoingMessage, ...]


def plan_itip(
    old: Calendar | None,
    new: Calendar | None,
    actor: str,
    now: datetime,
    *,
    comment: str | None = None,
) -> Plan:
    """Plan the scheduling that the actor's change from ``old`` to ``new`` requires.

    ``old`` None is a new object, ``new`` None a deletion. Raises PlanError (with a
    kebab-case ``reason``) for a change that cannot be scheduled.
    """
    now = utc_now(now)
    principal = normalize_address(actor)
    if principal is None:
        raise PlanError("invalid-actor", actor)
    before, after = read_object(old), read_object(new)
    if before is None and after is None:
        raise PlanError("nothing-to-plan")
    if before is not None and after is not None and before.uid != after.uid:
        raise PlanError("uid-changed", f"{before.uid} -> {after.uid}")
    organizer = _organizer(before, after)
    if organizer is None:
        if any(obj is not None and obj.attendees() for obj in (before, after)):
            raise PlanError("missing-organizer")
        return Plan(copy_calendar(new) if new is not None else None, ())
    if organizer == principal:
        stored, messages = plan_organizer(before, after, organizer, now)
    elif any(obj is not None and principal in obj.attendees() for obj in (before, after)):
        stored, messages = plan_attendee(before, after, principal, organizer, now, comment)
    else:
        raise PlanError("actor-not-in-event", principal)
    return Plan(stored, tuple(messages))


def _organizer(before: SchedulingObject | None, after: SchedulingObject | None) -> str | None:
    """The one organizer of the object, old or new; an object may gain one, never swap it."""
    old_organizers = before.organizers() if before is not None else set()
    new_organizers = after.organizers() if after is not None else set()
    for organizers in (old_organizers, new_organizers):
        if len(organizers) > 1:
            raise PlanError("organizer-inconsistent", ", ".join(sorted(organizers)))
    if old_organizers and after is not None and new_organizers != old_organizers:
        if new_organizers or after.attendees():
            raise PlanError("organizer-changed", ", ".join(sorted(old_organizers | new_organizers)))
        # ORGANIZER dropped together with every attendee: a meeting turned private, which
        # the old organizer's rules turn into CANCELs.
    return next(iter(new_organizers or old_organizers), None)
