"""The attendee's side of implicit scheduling: which answers a change to its copy sends (RFC 6638 §3.2.2).

Only the attendee's own participation travels: a changed PARTSTAT (or delegation) on
the master or an instance, an instance it removed, the whole object it deleted. Its
other edits (summary, alarms) stay private. Never mutates its inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from icalendar import Calendar, Component, vCalAddress

from gateway.core.addresses import as_uri, normalize_address
from gateway.core.calendar.ical import (
    copy_calendar,
    copy_component,
    find_attendee,
    partstat_of,
    sequence_of,
)
from gateway.core.calendar.instances import exdate_keys
from gateway.core.itip.compose import compose_message, reply_component
from gateway.core.itip.resource import (
    SCHEDULE_FORCE_SEND,
    SchedulingObject,
    force_send,
    is_cancelled,
    read_object,
    schedule_agent,
    set_partstat,
    set_sequence,
    strip_parameters,
)
from gateway.core.model import Method, OutgoingMessage, PartStat

Answer = tuple[str, frozenset[str]]  # PARTSTAT and DELEGATED-TO addresses
Answers = list[tuple[str, Component]]  # (instance key, component carrying the answer)
_UNANSWERED: Answer = (PartStat.NEEDS_ACTION.value, frozenset())


def plan_attendee(
    old: SchedulingObject | None,
    new: SchedulingObject | None,
    attendee: str,
    organizer: str,
    now: datetime,
    comment: str | None,
) -> tuple[Calendar | None, list[OutgoingMessage]]:
    """The attendee's stored copy after its change, and the REPLY (and delegate REQUESTs) it needs."""
    stored = _settle_stored(old, new) if new is not None else None
    current = read_object(stored)
    source = current if current is not None else old
    assert source is not None
    if not _organizer_scheduled(source):
        return stored, []  # SCHEDULE-AGENT=CLIENT on ORGANIZER: the client talks to the organizer
    if current is None:
        assert old is not None
        answers = _declines_on_delete(old, attendee)
    else:
        answers = _changed_answers(old, current, attendee) + _removed_instances(old, current, attendee)
        if not answers and _forced_reply(new):
            answers = [(k, c) for k, c in sorted(current.components.items()) if find_attendee(c, attendee) is not None]
    if not answers:
        return stored, []
    replies = [reply_component(c, attendee, comment) for _key, c in answers]
    messages = [compose_message(Method.REPLY, replies, source.calendar, attendee, organizer, now)]
    messages.extend(_delegate_requests(old, answers, attendee, source, now))
    return stored, messages


def _settle_stored(old: SchedulingObject | None, new: SchedulingObject) -> Calendar:
    """A copy of the attendee's new copy: SEQUENCE never lowered, no SCHEDULE-FORCE-SEND.

    DTSTAMP is left alone: in an attendee's copy it dates the organizer's version.
    """
    calendar = copy_calendar(new.calendar)
    settled = read_object(calendar)
    assert settled is not None
    for key, component in settled.components.items():
        strip_parameters(component, (SCHEDULE_FORCE_SEND,))
        before = old.components.get(key) if old is not None else None
        if before is not None and sequence_of(component) < sequence_of(before):
            set_sequence(component, sequence_of(before))
    return calendar


def _organizer_scheduled(obj: SchedulingObject) -> bool:
    return all(schedule_agent(c.get("ORGANIZER")) == "SERVER" for c in obj.components.values() if "ORGANIZER" in c)


def _forced_reply(new: SchedulingObject | None) -> bool:
    """SCHEDULE-FORCE-SEND=REPLY on the ORGANIZER (RFC 6638 §7.2)."""
    return new is not None and any(force_send(c.get("ORGANIZER")) == "REPLY" for c in new.components.values())


def answer_of(component: Component | None, attendee: str) -> Answer:
    prop = find_attendee(component, attendee) if component is not None else None
    if prop is None:
        return _UNANSWERED
    return partstat_of(prop), frozenset(_addresses_in(prop.params.get("DELEGATED-TO")))


def _addresses_in(value: object) -> list[str]:
    items: Iterable[object] = value if isinstance(value, list) else str(value or "").split(",")
    found = (normalize_address(str(item).strip().strip('"')) for item in items)
    return [a for a in found if a]


def _changed_answers(old: SchedulingObject | None, current: SchedulingObject, attendee: str) -> Answers:
    """Components whose answer differs from the one the attendee had for that instance.

    An override the attendee just created (to decline one instance) is compared with
    the instance as the master had it.
    """
    changed = []
    for key, component in sorted(current.components.items()):
        if find_attendee(component, attendee) is None or is_cancelled(component):
            continue
        before = old.instance(key) if old is not None else None
        if answer_of(component, attendee) != answer_of(before, attendee):
            changed.append((key, component))
    return changed


def _removed_instances(old: SchedulingObject | None, current: SchedulingObject, attendee: str) -> Answers:
    """Instances the attendee deleted from its copy (a new EXDATE) are declined, as clients expect."""
    if old is None or old.master is None or current.master is None:
        return []
    declined = []
    for key in sorted(exdate_keys(current.master) - exdate_keys(old.master)):
        if key in current.components:
            continue
        had = old.instance(key)
        if had is None or is_cancelled(had) or answer_of(had, attendee)[0] == PartStat.DECLINED:
            continue
        if find_attendee(had, attendee) is not None:
            declined.append((key, _declined(had, attendee)))
    return declined


def _declines_on_delete(old: SchedulingObject, attendee: str) -> Answers:
    """Deleting its copy declines everything still live that the attendee had not declined."""
    if old.master is not None and is_cancelled(old.master):
        return []
    return [
        (key, _declined(component, attendee))
        for key, component in sorted(old.components.items())
        if find_attendee(component, attendee) is not None
        and not is_cancelled(component)
        and answer_of(component, attendee)[0] != PartStat.DECLINED
    ]


def _declined(component: Component, attendee: str) -> Component:
    declined = copy_component(component)
    prop = find_attendee(declined, attendee)
    assert prop is not None
    set_partstat(prop, PartStat.DECLINED.value)
    for name in ("DELEGATED-TO", "RSVP"):
        prop.params.pop(name, None)
    return declined


def _delegate_requests(
    old: SchedulingObject | None, answers: Answers, attendee: str, source: SchedulingObject, now: datetime
) -> list[OutgoingMessage]:
    """RFC 5546 §3.2.2.3: the delegator passes the invitation on to each new delegate."""
    by_delegate: dict[str, list[Component]] = {}
    for key, component in answers:
        status, delegates = answer_of(component, attendee)
        if status != PartStat.DELEGATED:
            continue
        before = old.instance(key) if old is not None else None
        for delegate in sorted(delegates - answer_of(before, attendee)[1]):
            by_delegate.setdefault(delegate, []).append(_with_delegate(component, attendee, delegate))
    return [
        compose_message(Method.REQUEST, components, source.calendar, attendee, delegate, now)
        for delegate, components in by_delegate.items()
    ]


def _with_delegate(component: Component, delegator: str, delegate: str) -> Component:
    invitation = copy_component(component)
    if find_attendee(invitation, delegate) is None:
        prop = vCalAddress(as_uri(delegate))
        prop.params.update({"PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE", "DELEGATED-FROM": as_uri(delegator)})
        invitation.add("ATTENDEE", prop, encode=False)
    return invitation
