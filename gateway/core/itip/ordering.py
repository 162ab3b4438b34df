"""Which scheduling message is newer: SEQUENCE, then DTSTAMP (RFC 5546 §2.1.5).

Versions are remembered per instance for organizer messages and per (instance,
attendee) for replies (INTEROP rule 13): Exchange numbers every change of a series
with one counter, and a master update may arrive before older instance updates.
A master version covers every instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from gateway.core.ical import Version
from gateway.core.instances import MASTER


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


def _frozen(mapping: Mapping[str, Version]) -> Mapping[str, Version]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class SchedulingState:
    """The versions already applied to one stored object.

    ``instances`` maps an instance key (MASTER for the whole object) to the version of the
    last organizer message applied to it; ``replies`` maps ``"key|attendee"`` to the version
    of that attendee's last applied REPLY.
    """

    instances: Mapping[str, Version] = field(default_factory=lambda: _frozen({}))
    replies: Mapping[str, Version] = field(default_factory=lambda: _frozen({}))

    def organizer_version(self, key: str) -> Version | None:
        """The newest organizer version covering an instance: its own or the master's."""
        candidates = [v for v in (self.instances.get(key), self.instances.get(MASTER)) if v]
        return max(candidates) if candidates else None

    def reply_version(self, key: str, attendee: str) -> Version | None:
        """The version of the attendee's last applied REPLY for that instance."""
        return self.replies.get(f"{key}|{attendee}")

    def with_instance(self, key: str, version: Version) -> SchedulingState:
        """A new state that remembers an applied organizer message for an instance."""
        return SchedulingState(_frozen({**self.instances, key: version}), self.replies)

    def with_reply(self, key: str, attendee: str, version: Version) -> SchedulingState:
        """A new state that remembers an applied REPLY."""
        return SchedulingState(self.instances, _frozen({**self.replies, f"{key}|{attendee}": version}))

    def to_json(self) -> dict[str, dict[str, list[object]]]:
        return {
            "instances": {k: v.to_json() for k, v in self.instances.items()},
            "replies": {k: v.to_json() for k, v in self.replies.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Mapping[str, list[object]]] | None) -> SchedulingState:
        data = data or {}
        return cls(
            _frozen({k: Version.from_json(v) for k, v in data.get("instances", {}).items()}),
            _frozen({k: Version.from_json(v) for k, v in data.get("replies", {}).items()}),
        )
