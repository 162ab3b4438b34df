"""The values the apply engine takes and returns: a recipient, its stored object, the result."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from icalendar import Calendar, Component

from gateway.core.calendar.ical import (
    components_of,
    copy_component,
    find_attendee,
    new_calendar,
    organizer_of,
    timezones_of,
)
from gateway.core.calendar.instances import recurrence_key_of
from gateway.core.itip.ordering import SchedulingState
from gateway.core.model import Outcome, OutgoingMessage

Instances = dict[str, Component]  # instance key (MASTER for the master) -> component


@dataclass(frozen=True)
class Recipient:
    """A local principal receiving a message: its address and every alias it answers to."""

    address: str
    aliases: frozenset[str] = frozenset()

    @property
    def addresses(self) -> frozenset[str]:
        return self.aliases | {self.address}

    def is_organizer_of(self, component: Component) -> bool:
        return organizer_of(component) in self.addresses

    def attendee_in(self, component: Component) -> str | None:
        """The address under which this recipient is an attendee of the component, if any."""
        for address in sorted(self.addresses):
            if find_attendee(component, address) is not None:
                return address
        return None


@dataclass(frozen=True)
class Stored:
    """One UID in one principal's calendar: the object (None when absent) and its versions."""

    calendar: Calendar | None = None
    state: SchedulingState = field(default_factory=SchedulingState)

    @property
    def components(self) -> list[Component]:
        return components_of(self.calendar) if self.calendar is not None else []


@dataclass(frozen=True)
class ApplyResult:
    """What applying one message did for one recipient.

    ``stored`` is the object to write back when ``changed``; ``messages`` are answers the
    message requires (the current REQUEST for a REFRESH, a REFRESH for an unknown ADD).
    """

    outcome: Outcome
    stored: Stored
    reason: str = ""
    detail: str = ""
    changed: bool = False
    messages: tuple[OutgoingMessage, ...] = ()

    def with_messages(self, *messages: OutgoingMessage) -> ApplyResult:
        return replace(self, messages=self.messages + messages)


def unchanged(outcome: Outcome, stored: Stored, reason: str, detail: str = "") -> ApplyResult:
    """A result that leaves the stored object as it was."""
    return ApplyResult(outcome, stored, reason, detail)


def copy_instances(stored: Stored) -> Instances:
    """The stored components by instance key. They are shared with the stored object:
    take ``own(instances, key)`` before changing one (copy on write)."""
    return {recurrence_key_of(c): c for c in stored.components}


def own(instances: Instances, key: str) -> Component:
    """The component of an instance, copied into ``instances`` so that it may be changed."""
    instances[key] = copy_component(instances[key])
    return instances[key]


def assemble(message: Calendar, stored: Stored, instances: Instances) -> Calendar:
    """The object to store: VTIMEZONEs (the message's win), master first, overrides in order."""
    calendar = new_calendar()
    zones: dict[str, Component] = {}
    sources = [stored.calendar, message] if stored.calendar is not None else [message]
    for source in sources:
        for zone in timezones_of(source):
            zones[str(zone.get("TZID"))] = zone
    for zone in zones.values():
        calendar.add_component(zone)  # shared, never changed
    for key in sorted(instances):
        calendar.add_component(instances[key])
    return calendar
