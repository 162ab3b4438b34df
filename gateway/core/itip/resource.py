"""One scheduling object resource (RFC 6638 §3.1): one UID, a master and its overrides.

The small facts the planner's modules share: instances by key, an instance derived from
the master, the scheduling parameters of RFC 6638 §7. Makes no iTIP decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from icalendar import Calendar, Component, vCalAddress

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import (
    attendee_properties,
    components_of,
    organizer_of,
    sequence_of,
    uid_of,
)
from gateway.core.calendar.instances import (
    MASTER,
    add_date_value,
    instance_start,
    override_from_master,
    recurrence_key_of,
)
from gateway.core.model import NamedError

# RFC 6638 §7.1-7.3: CalDAV-internal parameters, never sent in a scheduling message.
SCHEDULE_AGENT = "SCHEDULE-AGENT"
SCHEDULE_STATUS = "SCHEDULE-STATUS"
SCHEDULE_FORCE_SEND = "SCHEDULE-FORCE-SEND"
SCHEDULING_PARAMETERS = (SCHEDULE_AGENT, SCHEDULE_STATUS, SCHEDULE_FORCE_SEND)
_ADDRESS_PROPERTIES = ("ORGANIZER", "ATTENDEE")
_RECURRENCE_PROPERTIES = ("RRULE", "RDATE", "EXDATE", "EXRULE")


class PlanError(NamedError):
    """A change that cannot be scheduled."""


@dataclass(frozen=True)
class SchedulingObject:
    """A read-only index of one stored object's components by instance key."""

    calendar: Calendar
    uid: str
    components: Mapping[str, Component]

    @property
    def master(self) -> Component | None:
        return self.components.get(MASTER)

    @property
    def overrides(self) -> dict[str, Component]:
        return {k: c for k, c in self.components.items() if k != MASTER}

    def instance(self, key: str) -> Component | None:
        """The component for an instance: its override, else derived from the master."""
        if key in self.components:
            return self.components[key]
        master = self.master
        return override_from_master(master, key)

    def organizers(self) -> set[str]:
        found = (organizer_of(c) for c in self.components.values())
        return {a for a in found if a is not None}

    def attendees(self) -> list[str]:
        """Every attendee address of every component, in order of first appearance."""
        seen: dict[str, None] = {}
        for component in self.components.values():
            for prop in attendee_properties(component):
                address = normalize_address(prop)
                if address is not None:
                    seen.setdefault(address, None)
        return list(seen)


def read_object(calendar: Calendar | None) -> SchedulingObject | None:
    """Index a stored object; PlanError when it is not one UID's master and overrides."""
    if calendar is None:
        return None
    components = components_of(calendar)
    if not components:
        raise PlanError("no-component")
    uids = {uid_of(c) for c in components}
    if len(uids) != 1:
        raise PlanError("multiple-uids", ", ".join(sorted(uids)))
    uid = uids.pop()
    if not uid:
        raise PlanError("missing-uid")
    by_key: dict[str, Component] = {}
    for component in components:
        key = recurrence_key_of(component)
        if key in by_key:
            raise PlanError("duplicate-instance", key or "master")
        by_key[key] = component
    return SchedulingObject(calendar, uid, by_key)


def schedule_agent(prop: object) -> str:
    """SCHEDULE-AGENT of an ORGANIZER or ATTENDEE property; SERVER when absent (RFC 6638 §7.1)."""
    params = getattr(prop, "params", {})
    return str(params.get(SCHEDULE_AGENT, "SERVER")).upper()


def force_send(prop: object) -> str:
    """SCHEDULE-FORCE-SEND of a property, upper-cased, or empty (RFC 6638 §7.2)."""
    params = getattr(prop, "params", {})
    return str(params.get(SCHEDULE_FORCE_SEND, "")).upper()


def is_cancelled(component: Component) -> bool:
    return str(component.get("STATUS", "")).strip().upper() == "CANCELLED"


def exclude_instance(master: Component, key: str) -> None:
    """Add the instance at ``key`` to the master's EXDATE (on a copy the caller owns)."""
    value = instance_start(master, key)
    if value is not None:
        add_date_value(master, "EXDATE", value)


def set_sequence(component: Component, sequence: int) -> None:
    component.pop("SEQUENCE", None)
    component.add("SEQUENCE", sequence)


def set_dtstamp(component: Component, now: datetime) -> None:
    component.pop("DTSTAMP", None)
    component.add("DTSTAMP", now)


def strip_parameters(component: Component, names: Iterable[str] = SCHEDULING_PARAMETERS) -> None:
    """Remove the given parameters from ORGANIZER and ATTENDEE (on a copy the caller owns)."""
    for name in _ADDRESS_PROPERTIES:
        value = component.get(name)
        props = value if isinstance(value, list) else [value] if value is not None else []
        for prop in props:
            for param in names:
                prop.params.pop(param, None)


def copy_address(prop: object) -> vCalAddress:
    """A new ORGANIZER/ATTENDEE value with the same address and parameters."""
    copied = vCalAddress(str(prop))
    copied.params.update(getattr(prop, "params", {}))
    return copied


def set_partstat(prop: vCalAddress, partstat: str, *, rsvp: bool | None = None) -> None:
    prop.params["PARTSTAT"] = partstat
    if rsvp is not None:
        prop.params["RSVP"] = "TRUE" if rsvp else "FALSE"


def utc_now(now: datetime) -> datetime:
    """``now`` in UTC; a naive value is a caller's bug."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(timezone.utc)


def max_sequence(components: Iterable[Component]) -> int:
    return max((sequence_of(c) for c in components), default=0)
