"""The organizer's side of implicit scheduling: what to store and whom to tell after its change.

RFC 5546 §2.1.4 and §3.2, RFC 6638 §3.2.1. Each attendee is told only about its own
share of the object (``compose.attendee_view``): a REQUEST when that share changed in a
way it should see, a CANCEL for instances that left its share. Never mutates its inputs.
"""

from __future__ import annotations

from datetime import datetime

from icalendar import Calendar, Component

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import (
    attendee_properties,
    copy_calendar,
    copy_component,
    find_attendee,
    partstat_of,
    sequence_of,
    set_attendees,
)
from gateway.core.calendar.instances import MASTER, override_from_master
from gateway.core.itip.compose import attendee_view, compose_message, in_order
from gateway.core.itip.resource import (
    SCHEDULE_FORCE_SEND,
    SchedulingObject,
    copy_address,
    force_send,
    is_cancelled,
    max_sequence,
    read_object,
    schedule_agent,
    set_dtstamp,
    set_partstat,
    set_sequence,
    strip_parameters,
)
from gateway.core.itip.significance import diff_components
from gateway.core.model import Method, OutgoingMessage, PartStat

View = dict[str, Component]


def plan_organizer(
    old: SchedulingObject | None,
    new: SchedulingObject | None,
    organizer: str,
    now: datetime,
) -> tuple[Calendar | None, list[OutgoingMessage]]:
    """The organizer's stored copy after its change, and one message per attendee told."""
    stored = settle_stored(old, new, organizer, now) if new is not None else None
    after = read_object(stored)
    forced = _forced_requests(new)
    messages: list[OutgoingMessage] = []
    for attendee in _recipients(old, new, organizer):
        messages.extend(_messages_for(attendee, old, after, organizer, now, attendee in forced))
    return stored, messages


def settle_stored(old: SchedulingObject | None, new: SchedulingObject, organizer: str, now: datetime) -> Calendar:
    """A copy of the new object with SEQUENCE, DTSTAMP and answers brought in line with the change."""
    calendar = copy_calendar(new.calendar)
    settled = read_object(calendar)
    assert settled is not None
    for key, component in settled.components.items():
        if old is None:
            set_dtstamp(component, now)
        else:
            _settle_component(component, old.instance(key), old, organizer, now)
        strip_parameters(component, (SCHEDULE_FORCE_SEND,))  # RFC 6638 §7.2: never stored
    if old is not None and settled.master is not None:
        _settle_dropped_overrides(settled, old, now)
    return calendar


def _settle_dropped_overrides(settled: SchedulingObject, old: SchedulingObject, now: datetime) -> None:
    """An override dropped while its instance stays reverts to the master's version of it:
    the master must then outrank the dropped override, or receivers would keep it."""
    master = settled.master
    assert master is not None
    reverted = [
        override
        for key, override in old.overrides.items()
        if key not in settled.components
        and (instance := settled.instance(key)) is not None
        and diff_components(override, instance).changed
    ]
    if reverted:
        before = [*reverted, old.master] if old.master is not None else reverted
        _raise_sequence(master, max(sequence_of(c) for c in before) + 1)
        set_dtstamp(master, now)


def _settle_component(
    component: Component, before: Component | None, old: SchedulingObject, organizer: str, now: datetime
) -> None:
    if before is None:  # an instance or master that did not exist before
        _raise_sequence(component, max_sequence(old.components.values()) + 1)
        set_dtstamp(component, now)
        return
    diff = diff_components(before, component)
    if not diff.changed:
        _raise_sequence(component, sequence_of(before))
        return
    _raise_sequence(component, sequence_of(before) + 1)
    set_dtstamp(component, now)
    if diff.resets and not is_cancelled(component):
        _reset_answers(component, organizer)


def _raise_sequence(component: Component, floor: int) -> None:
    """SEQUENCE at least ``floor``: bumped once even if the client bumped it already, never lowered."""
    if sequence_of(component) < floor or "SEQUENCE" not in component:
        set_sequence(component, max(sequence_of(component), floor))


def _reset_answers(component: Component, organizer: str) -> None:
    """Every scheduled attendee must answer again (RFC 5546 §2.1.4); the organizer's own answer stays."""
    for prop in attendee_properties(component):
        if normalize_address(prop) == organizer or schedule_agent(prop) != "SERVER":
            continue
        if partstat_of(prop) == PartStat.DELEGATED:
            continue  # the delegate answers now
        set_partstat(prop, PartStat.NEEDS_ACTION.value, rsvp=True)


def _forced_requests(new: SchedulingObject | None) -> set[str]:
    """Attendees marked SCHEDULE-FORCE-SEND=REQUEST (RFC 6638 §7.2)."""
    if new is None:
        return set()
    return {
        address
        for component in new.components.values()
        for prop in attendee_properties(component)
        if force_send(prop) == "REQUEST" and (address := normalize_address(prop)) is not None
    }


def _recipients(old: SchedulingObject | None, new: SchedulingObject | None, organizer: str) -> list[str]:
    """Attendees the server schedules for: not the organizer, not SCHEDULE-AGENT=CLIENT/NONE."""
    found: dict[str, None] = {}
    for obj in (new, old):
        for address in obj.attendees() if obj is not None else []:
            found.setdefault(address, None)
    return [a for a in found if a != organizer and _scheduled(new if _appears(new, a) else old, a)]


def _appears(obj: SchedulingObject | None, attendee: str) -> bool:
    return obj is not None and attendee in obj.attendees()


def _scheduled(obj: SchedulingObject | None, attendee: str) -> bool:
    if obj is None:
        return False
    props = [p for c in obj.components.values() if (p := find_attendee(c, attendee)) is not None]
    return bool(props) and all(schedule_agent(p) == "SERVER" for p in props)


def _messages_for(
    attendee: str,
    old: SchedulingObject | None,
    after: SchedulingObject | None,
    organizer: str,
    now: datetime,
    forced: bool,
) -> list[OutgoingMessage]:
    before = attendee_view(old, attendee) if old is not None and _scheduled(old, attendee) else {}
    current = attendee_view(after, attendee) if after is not None else {}
    if not current:
        gone = [MASTER] if MASTER in before else sorted(before)
        return [_cancel(attendee, gone, before, old, after, organizer, now)] if gone else []
    assert after is not None
    changed, removed = _compare_views(attendee, before, current) if before else (True, set[str]())
    messages = []
    if changed or forced:
        messages.append(compose_message(Method.REQUEST, in_order(current), after.calendar, organizer, attendee, now))
    # A REQUEST whose master excludes the removed instances says it all; otherwise cancel them.
    if removed and (not messages or MASTER not in current):
        messages.append(_cancel(attendee, sorted(removed), before, old, after, organizer, now))
    return messages


def _compare_views(attendee: str, before: View, current: View) -> tuple[bool, set[str]]:
    """Whether the attendee's share changed in a way it should see, and which instances left it."""
    changed, removed = False, set[str]()
    if MASTER in before and MASTER in current:
        diff = diff_components(before[MASTER], current[MASTER])
        changed = diff.concerns(attendee)
        removed |= diff.exdates_added
    elif MASTER in before or MASTER in current:
        changed = True  # joined or left the series while staying on some of its instances
    for key in (set(before) | set(current)) - {MASTER}:
        was, now_is = _instance_in(before, key), _instance_in(current, key)
        if now_is is None:
            removed.add(key)
        elif was is None or diff_components(was, now_is).concerns(attendee):
            changed = True
    return changed, removed


def _instance_in(view: View, key: str) -> Component | None:
    if key in view:
        return view[key]
    master = view.get(MASTER)
    return override_from_master(master, key)


def _cancel(
    attendee: str,
    keys: list[str],
    before: View,
    old: SchedulingObject | None,
    after: SchedulingObject | None,
    organizer: str,
    now: datetime,
) -> OutgoingMessage:
    """A CANCEL of the instances (or, with MASTER, the whole object) that left the attendee's share."""
    components = []
    for key in keys:
        had = _instance_in(before, key)
        assert had is not None
        components.append(_cancelled_component(attendee, key, had, after))
    source = after.calendar if after is not None else old.calendar if old is not None else None
    assert source is not None
    return compose_message(Method.CANCEL, components, source, organizer, attendee, now)


def _cancelled_component(attendee: str, key: str, had: Component, after: SchedulingObject | None) -> Component:
    """RFC 5546 §3.2.5: a cancelled instance lists every attendee and says STATUS:CANCELLED;
    an attendee uninvited from a live instance is listed alone, without STATUS."""
    live = _live_instance(after, key)
    if live is None:
        base = after.components.get(key) if after is not None else None
        cancelled = copy_component(base if base is not None and is_cancelled(base) else had)
        cancelled.pop("STATUS", None)
        cancelled.add("STATUS", "CANCELLED")
        floor = max(sequence_of(had) + 1, max_sequence(after.components.values()) if after is not None else 0)
    else:
        cancelled = copy_component(live)
        cancelled.pop("STATUS", None)
        own = find_attendee(had, attendee)
        set_attendees(cancelled, [copy_address(own)] if own is not None else [])
        if "ORGANIZER" not in cancelled and "ORGANIZER" in had:
            cancelled.add("ORGANIZER", copy_address(had["ORGANIZER"]), encode=False)
        floor = max(sequence_of(had) + 1, sequence_of(live))
    set_sequence(cancelled, max(sequence_of(cancelled), floor))
    return cancelled


def _live_instance(after: SchedulingObject | None, key: str) -> Component | None:
    """The instance as it stands after the change, or None when it no longer takes place."""
    if after is None or (after.master is not None and is_cancelled(after.master)):
        return None
    live = after.instance(key)
    return None if live is None or is_cancelled(live) else live
