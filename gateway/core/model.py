"""The shared vocabulary of the core: methods, participation states, outcomes, messages.

Values only; no behaviour beyond trivial conversions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from icalendar import Calendar


class NamedError(Exception):
    """A permanent problem, named: ``reason`` is the kebab-case name that logs and inbox lines show."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Method(StrEnum):
    """iTIP methods (RFC 5546 §1.4)."""

    PUBLISH = "PUBLISH"
    REQUEST = "REQUEST"
    REPLY = "REPLY"
    ADD = "ADD"
    CANCEL = "CANCEL"
    REFRESH = "REFRESH"
    COUNTER = "COUNTER"
    DECLINECOUNTER = "DECLINECOUNTER"


class PartStat(StrEnum):
    """Participation states (RFC 5545 §3.2.12)."""

    NEEDS_ACTION = "NEEDS-ACTION"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    TENTATIVE = "TENTATIVE"
    DELEGATED = "DELEGATED"
    COMPLETED = "COMPLETED"
    IN_PROCESS = "IN-PROCESS"


class Kind(StrEnum):
    """Kinds of local principal (RFC 6638 calendar user types we schedule for)."""

    INDIVIDUAL = "individual"
    ROOM = "room"
    RESOURCE = "resource"


class Outcome(StrEnum):
    """What became of one scheduling message for one recipient (the inbox record)."""

    APPLIED = "applied"          # the recipient's calendar changed
    ANSWERED = "answered"        # nothing stored changed; an answer was produced (REFRESH)
    STALE = "stale"              # older than what is stored (SEQUENCE, then DTSTAMP)
    DUPLICATE = "duplicate"      # already applied: the same message again
    RECORDED = "recorded"        # kept for the principal to see; nothing to change (DECLINECOUNTER)
    PROPOSAL = "proposal"        # a COUNTER recorded for the organizer to decide
    UNINVITED = "uninvited"      # a reply from someone not invited, for the organizer to decide
    NOT_FOUND = "not-found"      # refers to an object the recipient does not have
    REJECTED = "rejected"        # invalid iTIP; the reason names the rule broken
    IGNORED = "ignored"          # not scheduling mail, or not for this recipient
    UNREADABLE = "unreadable"    # a calendar the gateway cannot read (TNEF, broken iCalendar)
    HELD = "held"                # held for the operator (quarantine)
    BOUNCED = "bounced"          # a delivery failure report for our own mail


@dataclass(frozen=True)
class OutgoingMessage:
    """One iTIP message to deliver: to local principals in the store, else by iMIP.

    ``calendar`` is a complete VCALENDAR with METHOD set; the core never mutates it
    after building it. Addresses are normalized (see ``gateway.core.addresses``).
    """

    method: Method
    uid: str
    sender: str
    recipients: tuple[str, ...]
    calendar: Calendar = field(compare=False)
