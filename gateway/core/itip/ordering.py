"""Which scheduling message is newer: SEQUENCE, then DTSTAMP (RFC 5546 §2.1.5).

Versions are remembered per instance for organizer messages and per (instance,
attendee) for replies (INTEROP rule 13): Exchange numbers every change of a series
with one counter, and a master update may arrive before older instance updates.
A master version covers every instance.

At an equal version a cancellation wins: Outlook for Mac sends a CANCEL with the
SEQUENCE and DTSTAMP of the update it cancels, and an update that ties with a
cancellation it would undo is the older news. Two messages of the same kind at one
version are the same version (a resend). What was cancelled is remembered per instance,
also for a UID that has no stored object, so that an older update arriving after its
cancellation changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from gateway.core.calendar.ical import Version
from gateway.core.calendar.instances import MASTER


class Order(StrEnum):
    """How an incoming version compares with what was applied before."""

    NEWER = "newer"
    SAME = "same"
    OLDER = "older"


def compare(incoming: Version, applied: Version | None) -> Order:
    """Order an incoming version against the last applied one (None: nothing applied yet)."""
    if applied is None or incoming > applied:
        return Order.NEWER
    return Order.SAME if incoming == applied else Order.OLDER


def compare_organizer(incoming: Version, cancels: bool, standing: Standing | None) -> Order:
    """Order an organizer message (``cancels``: a CANCEL) against the version standing for its instance."""
    if standing is None or incoming > standing.version:
        return Order.NEWER
    if incoming < standing.version or standing.cancelled > cancels:
        return Order.OLDER
    return Order.NEWER if cancels > standing.cancelled else Order.SAME


@dataclass(frozen=True)
class Standing:
    """The last organizer version applied to an instance, and whether it cancelled it."""

    version: Version
    cancelled: bool = False


def _frozen(mapping: Mapping[str, Version]) -> Mapping[str, Version]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class SchedulingState:
    """The versions already applied to one stored object.

    ``instances`` maps an instance key (MASTER for the whole object) to the version of the
    last organizer message applied to it; ``replies`` maps ``"key|attendee"`` to the version
    of that attendee's last applied REPLY; ``cancelled`` holds the instance keys whose last
    organizer message was a CANCEL.
    """

    instances: Mapping[str, Version] = field(default_factory=lambda: _frozen({}))
    replies: Mapping[str, Version] = field(default_factory=lambda: _frozen({}))
    cancelled: frozenset[str] = frozenset()

    @property
    def is_empty(self) -> bool:
        """Nothing applied yet: nothing to remember."""
        return not (self.instances or self.replies)

    def organizer_version(self, key: str) -> Version | None:
        """The newest organizer version covering an instance: its own or the master's."""
        candidates = [v for v in (self.instances.get(key), self.instances.get(MASTER)) if v]
        return max(candidates) if candidates else None

    def organizer_standing(self, key: str) -> Standing | None:
        """The newest organizer version covering an instance, and whether it was a cancellation.

        At an equal version of the instance and the master, a cancellation of either stands.
        """
        candidates = [Standing(v, k in self.cancelled) for k in (key, MASTER) if (v := self.instances.get(k))]
        return max(candidates, key=lambda s: (s.version, s.cancelled)) if candidates else None

    def cancelled_after(self, version: Version) -> list[str]:
        """The instances (not the master) cancelled by a message newer than ``version``."""
        return sorted(k for k in self.cancelled if k != MASTER and self.instances[k] > version)

    def reply_version(self, key: str, attendee: str) -> Version | None:
        """The version of the attendee's last applied REPLY for that instance."""
        return self.replies.get(f"{key}|{attendee}")

    def with_instance(self, key: str, version: Version, *, cancelled: bool = False) -> SchedulingState:
        """A new state that remembers an applied organizer message (``cancelled``: a CANCEL) for an instance."""
        marks = self.cancelled | {key} if cancelled else self.cancelled - {key}
        return SchedulingState(_frozen({**self.instances, key: version}), self.replies, marks)

    def with_reply(self, key: str, attendee: str, version: Version) -> SchedulingState:
        """A new state that remembers an applied REPLY."""
        replies = _frozen({**self.replies, f"{key}|{attendee}": version})
        return SchedulingState(self.instances, replies, self.cancelled)

    def to_json(self) -> dict[str, object]:
        return {
            "instances": {k: v.to_json() for k, v in self.instances.items()},
            "replies": {k: v.to_json() for k, v in self.replies.items()},
            "cancelled": sorted(self.cancelled),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SchedulingState:
        data = data or {}
        return cls(
            _frozen({k: Version.from_json(v) for k, v in data.get("instances", {}).items()}),
            _frozen({k: Version.from_json(v) for k, v in data.get("replies", {}).items()}),
            frozenset(data.get("cancelled", ())),
        )
