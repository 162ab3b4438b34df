"""Writing outgoing iTIP messages from a stored object (RFC 5546 §3.2, INTEROP rules 21–22).

Every calendar written here has METHOD, PRODID and VERSION, a fresh DTSTAMP on each
component, a VTIMEZONE for every TZID used, no CalDAV-internal parameters (RFC 6638
§7.1–7.3) and no alarms; unknown X- properties are kept. Decides nothing about who must
be told what: that is ``plan``'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from icalendar import Calendar, Component, vCalAddress

from gateway.core.addresses import as_uri
from gateway.core.calendar.ical import (
    copy_component,
    find_attendee,
    new_calendar,
    partstat_of,
    uid_of,
)
from gateway.core.calendar.instances import MASTER, has_recurrence
from gateway.core.calendar.zones import timezones_for
from gateway.core.itip.resource import (
    PlanError,
    SchedulingObject,
    copy_address,
    exclude_instance,
    is_cancelled,
    read_object,
    set_dtstamp,
    strip_parameters,
    utc_now,
)
from gateway.core.model import Method, OutgoingMessage, PartStat

_NOT_IN_REPLY = ("COMMENT", "REQUEST-STATUS")
_NOT_IN_REFRESH_ATTENDEE = ("RSVP", "PARTSTAT")


def attendee_view(obj: SchedulingObject, attendee: str) -> dict[str, Component]:
    """What one attendee is sent of the object: its share, by instance key.

    The master when it attends the master, with an EXDATE for every override it is not
    in (or that is cancelled); the live overrides it attends. Empty when the object is
    cancelled or the attendee is in nothing live. Components not copied are read-only.
    """
    master = obj.master
    if master is not None and is_cancelled(master):
        return {}
    view = {
        key: component
        for key, component in obj.overrides.items()
        if find_attendee(component, attendee) is not None and not is_cancelled(component)
    }
    if master is not None and find_attendee(master, attendee) is not None:
        own = copy_component(master)
        for key in obj.overrides if has_recurrence(own) else ():
            if key not in view:
                exclude_instance(own, key)
        view[MASTER] = own
    return view


def in_order(components: Mapping[str, Component]) -> list[Component]:
    """Components master first, then by instance key, so messages are deterministic."""
    return [components[k] for k in sorted(components)]


def compose_message(
    method: Method,
    components: Iterable[Component],
    source: Calendar,
    sender: str,
    recipient: str,
    now: datetime,
) -> OutgoingMessage:
    """One message to one recipient; ``source`` supplies the VTIMEZONEs the components use."""
    calendar = new_calendar(method.value)
    prepared = [_outgoing(c, now) for c in components]
    for zone in timezones_for(prepared, source):
        calendar.add_component(zone)
    for component in prepared:
        calendar.add_component(component)
    uid = uid_of(prepared[0]) if prepared else ""
    return OutgoingMessage(method=method, uid=uid, sender=sender, recipients=(recipient,), calendar=calendar)


def _outgoing(component: Component, now: datetime) -> Component:
    copied = copy_component(component)
    strip_parameters(copied)
    copied.subcomponents = [s for s in copied.subcomponents if s.name != "VALARM"]
    set_dtstamp(copied, now)
    return copied


def organizer_of_object(obj: SchedulingObject) -> str:
    """The one organizer of the object; PlanError when there is none or more than one."""
    organizers = obj.organizers()
    if not organizers:
        raise PlanError("missing-organizer")
    if len(organizers) > 1:
        raise PlanError("organizer-inconsistent", ", ".join(sorted(organizers)))
    return organizers.pop()


def _read(calendar: Calendar) -> SchedulingObject:
    obj = read_object(calendar)
    assert obj is not None
    return obj


def build_request(stored: Calendar, attendee: str, now: datetime) -> OutgoingMessage:
    """The organizer's current REQUEST for one attendee (the answer to a REFRESH, RFC 5546 §3.2.6).

    When everything the attendee is in is cancelled, the current state is a CANCEL,
    and that is what is returned.
    """
    now = utc_now(now)
    obj = _read(stored)
    organizer = organizer_of_object(obj)
    view = attendee_view(obj, attendee)
    if view:
        return compose_message(Method.REQUEST, in_order(view), stored, organizer, attendee, now)
    attended = {k: c for k, c in obj.components.items() if find_attendee(c, attendee) is not None}
    if not attended:
        raise PlanError("attendee-not-in-event", attendee)
    cancelled = [_with_status(c, "CANCELLED") for c in in_order(attended)]
    return compose_message(Method.CANCEL, cancelled, stored, organizer, attendee, now)


def _with_status(component: Component, status: str) -> Component:
    copied = copy_component(component)
    copied.pop("STATUS", None)
    copied.add("STATUS", status)
    return copied


def build_reply(
    stored: Calendar,
    attendee: str,
    now: datetime,
    *,
    keys: Iterable[str] | None = None,
    comment: str | None = None,
    partstat: PartStat | None = None,
) -> OutgoingMessage:
    """The attendee's REPLY for the given instance keys (default: every component it is in).

    The answer is the PARTSTAT stored for the attendee, or ``partstat`` when given (an
    answer the attendee gave by other means, such as a plain email).
    """
    now = utc_now(now)
    obj = _read(stored)
    organizer = organizer_of_object(obj)
    wanted = sorted(keys) if keys is not None else sorted(
        k for k, c in obj.components.items() if find_attendee(c, attendee) is not None
    )
    components = []
    for key in wanted:
        component = obj.instance(key)
        if component is None:
            raise PlanError("instance-not-found", key)
        components.append(reply_component(component, attendee, comment, partstat))
    if not components:
        raise PlanError("attendee-not-in-event", attendee)
    return compose_message(Method.REPLY, components, stored, attendee, organizer, now)


def reply_component(
    component: Component, attendee: str, comment: str | None, partstat: PartStat | None = None
) -> Component:
    """A component as the attendee's answer: exactly one ATTENDEE, its own COMMENT (RFC 5546 §3.2.3)."""
    prop = find_attendee(component, attendee)
    if prop is None:
        raise PlanError("actor-not-in-event", attendee)
    answer = vCalAddress(str(prop))
    answer.params.update(prop.params)
    answer.params["PARTSTAT"] = partstat.value if partstat is not None else partstat_of(prop)
    answer.params.pop("RSVP", None)
    reply = copy_component(component)
    for name in ("ATTENDEE", *_NOT_IN_REPLY):
        reply.pop(name, None)
    reply.add("ATTENDEE", answer, encode=False)
    if comment:
        reply.add("COMMENT", comment)
    return reply


def build_refresh(stored_or_message: Calendar, attendee: str, now: datetime) -> OutgoingMessage:
    """The attendee's REFRESH asking the organizer for the current version (RFC 5546 §3.2.6)."""
    now = utc_now(now)
    obj = _read(stored_or_message)
    organizer = organizer_of_object(obj)
    template = obj.master if obj.master is not None else in_order(obj.components)[0]
    refresh = type(template)()
    refresh.add("UID", obj.uid)
    organizer_prop = next(c.get("ORGANIZER") for c in obj.components.values() if c.get("ORGANIZER") is not None)
    refresh.add("ORGANIZER", copy_address(organizer_prop), encode=False)
    requester = find_attendee(template, attendee)
    asking = copy_address(requester) if requester is not None else vCalAddress(as_uri(attendee))
    for name in _NOT_IN_REFRESH_ATTENDEE:
        asking.params.pop(name, None)
    refresh.add("ATTENDEE", asking, encode=False)
    return compose_message(Method.REFRESH, [refresh], stored_or_message, attendee, organizer, now)
