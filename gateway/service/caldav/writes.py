"""What a CalDAV client changes: objects PUT and DELETEd with their scheduling, calendars made, set and removed.

A PUT is read as ``reefknot event put`` reads an object (``object_to_store``) and
scheduled by the same planner: an organizer's change invites or cancels, an attendee's
answer replies (RFC 6638 §3.2). An attendee may change only its own participation
(§3.2.2.1). Every refusal names the RFC 4791 / 6638 precondition it failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.ical import components_of, organizer_of, uid_of
from gateway.core.dav import paths
from gateway.core.dav.paths import Kind
from gateway.core.dav.preconditions import Conditions, check_conditions
from gateway.core.dav.properties import MAX_RESOURCE_SIZE, read_calendar_settings
from gateway.core.dav.requests import PropertyUpdate
from gateway.core.dav.responses import patch_response
from gateway.core.dav.scheduling import attendee_change_refusal
from gateway.core.dav.xml import CALDAV, DAV, DavError, qname
from gateway.core.itip.edits import EditError, object_to_store, role_address
from gateway.service import events
from gateway.service.caldav.tree import Request, calendar_of, inbox_item_id
from gateway.service.rooms import RoomRules, no_rules
from gateway.store import calendars, collections, inbox, members
from gateway.store.calendars import Place
from gateway.store.collections import CalendarInfo


def caldav_condition(local: str) -> str:
    return qname(CALDAV, local)


# What a planner refusal means to a CalDAV client.
_PLAN_CONDITIONS = {
    "organizer-changed": "allowed-organizer-scheduling-object-change",
    "organizer-inconsistent": "same-organizer-in-all-components",
    "actor-not-in-event": "valid-organizer",
    "missing-organizer": "valid-organizer",
}


@dataclass(frozen=True)
class Written:
    """A PUT's outcome: created or replaced, the ETag if the object was stored as sent, and its Schedule-Tag."""

    created: bool
    etag: str | None
    schedule_tag: str | None


def put_object(session: Session, request: Request, body: bytes, conditions: Conditions,
               rules: RoomRules = no_rules) -> Written:
    target, actor = request.target, request.actor
    if target.kind is not Kind.OBJECT:
        raise DavError(405, "not-an-object", "PUT names a calendar object resource")
    calendar = _parent(session, request)
    new = _read_object(body, actor.address, calendar)
    uid = uid_of(components_of(new)[0])
    existing = members.member_named(session, calendar.id, target.name, with_text=False)
    check_conditions(conditions, existing.etag if existing else None, existing.schedule_tag if existing else None)
    _refuse_uid_conflict(session, request, calendar, uid, existing, new)
    old = calendars.load_object(session, actor.id, uid)
    if old.calendar is not None:
        _refuse_attendee_overreach(actor.addresses, old.calendar, new, actor.address)
    try:
        events.put_object(session, actor, new, request.now, rules, place=Place(calendar.id, target.name))
    except EditError as error:
        raise _plan_refusal(error) from error
    stored = members.member_named(session, calendar.id, target.name, with_text=True)
    if stored is None:  # the planner stored nothing: nothing left to show
        return Written(existing is None, None, None)
    as_sent = _normalized(stored.ical) == _normalized(body.decode("utf-8", "replace"))
    return Written(existing is None, stored.etag if as_sent else None,
                   stored.schedule_tag if stored.organizer else None)


def _parent(session: Session, request: Request) -> CalendarInfo:
    try:
        return calendar_of(session, request)
    except DavError as error:
        raise DavError(409, "no-such-calendar", request.target.calendar) from error


def _read_object(body: bytes, owner: str, calendar: CalendarInfo) -> Calendar:
    if len(body) > MAX_RESOURCE_SIZE:
        raise DavError(403, "object-too-large", f"{len(body)} bytes", condition=caldav_condition("max-resource-size"))
    try:
        new = object_to_store(body.decode("utf-8"), owner)
    except UnicodeDecodeError as error:
        raise DavError(403, "not-utf-8", str(error), condition=caldav_condition("valid-calendar-data")) from error
    except EditError as error:
        condition = "valid-calendar-object-resource" if error.reason in (
            "one-uid-per-object", "no-scheduling-component", "one-calendar-per-object") else "valid-calendar-data"
        raise DavError(403, error.reason, error.detail, condition=caldav_condition(condition)) from error
    kinds = {c.name for c in components_of(new)}
    if not kinds <= set(calendar.components):
        raise DavError(403, "unsupported-component", ", ".join(sorted(kinds - set(calendar.components))),
                       condition=caldav_condition("supported-calendar-component"))
    return new


def _refuse_uid_conflict(session: Session, request: Request, calendar: CalendarInfo, uid: str,
                         existing: members.Member | None, new: Calendar) -> None:
    """One UID per resource, and per home: RFC 4791 §5.3.2.1 ``no-uid-conflict``, RFC 6638 §3.2.4.1."""
    if existing is not None and existing.uid != uid:
        raise DavError(403, "uid-changed", f"{existing.uid} -> {uid}", condition=caldav_condition("no-uid-conflict"),
                       href=request.target.href)
    elsewhere = members.member_with_uid(session, request.actor.id, uid)
    if elsewhere is None or (elsewhere[0], elsewhere[1].href) == (calendar.id, request.target.name):
        return
    other = collections.calendar_by_id(session, elsewhere[0])
    href = paths.object_href(request.actor.address, other.name if other else "", elsewhere[1].href)
    scheduling = organizer_of(components_of(new)[0]) is not None
    condition = "unique-scheduling-object-resource" if scheduling else "no-uid-conflict"
    raise DavError(403, "uid-in-use", uid, condition=caldav_condition(condition), href=href)


def _refuse_attendee_overreach(addresses: frozenset[str], old: Calendar, new: Calendar, default: str) -> None:
    address = role_address(addresses, old, default)
    organizer = next((o for c in components_of(old) if (o := organizer_of(c)) is not None), None)
    if organizer is None or organizer == address:
        return
    refusal = attendee_change_refusal(old, new, address)
    if refusal is not None:
        raise DavError(403, "attendee-change-not-allowed", refusal,
                       condition=caldav_condition("allowed-attendee-scheduling-object-change"))


def _plan_refusal(error: EditError) -> DavError:
    condition = _PLAN_CONDITIONS.get(error.reason, "valid-calendar-object-resource")
    return DavError(403, error.reason, error.detail, condition=caldav_condition(condition))


def _normalized(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def delete(session: Session, request: Request, conditions: Conditions, *, schedule_reply: bool = True) -> None:
    """DELETE of an object (cancelling or declining, unless ``Schedule-Reply: F``), a calendar, or an inbox item."""
    kind = request.target.kind
    if kind is Kind.OBJECT:
        _delete_object(session, request, conditions, schedule_reply)
    elif kind is Kind.CALENDAR:
        _delete_calendar(session, request)
    elif kind is Kind.INBOX_ITEM:
        if not inbox.dismiss(session, request.actor.id, inbox_item_id(request.target), request.now):
            raise DavError(404, "no-such-inbox-item", request.target.name)
    else:
        raise DavError(403, "not-deletable", request.target.href)


def _delete_object(session: Session, request: Request, conditions: Conditions, schedule_reply: bool) -> None:
    calendar = calendar_of(session, request)
    member = members.member_named(session, calendar.id, request.target.name, with_text=False)
    if member is None:
        raise DavError(404, "no-such-object", request.target.href)
    check_conditions(conditions, member.etag, member.schedule_tag)
    events.delete_event(session, request.actor, member.uid, request.now, notify=schedule_reply)


def _delete_calendar(session: Session, request: Request) -> None:
    """A calendar goes with its objects, each cancelled or declined as its own DELETE would be."""
    calendar = calendar_of(session, request)
    if calendar.is_default:
        raise DavError(403, "default-calendar", "the default calendar stays",
                       condition=caldav_condition("default-calendar-needed"))
    for uid in members.uids_in(session, calendar.id):
        events.delete_event(session, request.actor, uid, request.now)
    collections.remove_calendar(session, calendar.id)


def make_calendar(session: Session, request: Request, update: PropertyUpdate) -> None:
    """MKCALENDAR, or an extended MKCOL asking for a calendar (RFC 4791 §5.3.1, RFC 5689)."""
    target = request.target
    if target.kind is not Kind.CALENDAR or target.calendar in paths.RESERVED:
        raise DavError(403, "not-a-calendar-place", target.href)
    if qname(CALDAV, "calendar") not in update.resourcetype:
        raise DavError(403, "only-calendars", "a calendar home holds calendars",
                       condition=qname(DAV, "valid-resourcetype"))
    if collections.calendar_named(session, request.actor.id, target.calendar) is not None:
        raise DavError(405, "calendar-exists", target.href, condition=qname(DAV, "resource-must-be-null"))
    settings = read_calendar_settings(update.sets, creating=True)
    if settings.refused:
        raise DavError(403, "cannot-set", ", ".join(settings.refused),
                       condition=qname(DAV, "cannot-modify-protected-property"))
    made = collections.add_calendar(session, request.actor.id, target.calendar, request.now)
    if settings.values:
        collections.update_calendar(session, made.id, **dict(settings.values))


def patch_calendar(session: Session, request: Request, update: PropertyUpdate) -> str:
    """PROPPATCH of a calendar: all or nothing (RFC 4918 §9.2); the multistatus member saying which."""
    if request.target.kind is not Kind.CALENDAR:
        raise DavError(403, "not-patchable", request.target.href,
                       condition=qname(DAV, "cannot-modify-protected-property"))
    calendar = calendar_of(session, request)
    settings = read_calendar_settings(update.sets, update.removes)
    if settings.refused:
        return patch_response(request.target.href, [(403, settings.refused), (424, settings.accepted)])
    if settings.values:
        collections.update_calendar(session, calendar.id, **dict(settings.values))
    return patch_response(request.target.href, [(200, settings.accepted)])
