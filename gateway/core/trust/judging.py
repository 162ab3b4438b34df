"""Judging one scheduling message for one local recipient: the gathered facts in, one decision out, purely.

The service gathers what the store knows in one pass (``Circumstances``: the
recipient's copy, the local principals among the message's parties, who organizes
something in the recipient's calendar) and the mail's sender evidence. ``judge`` then
decides: who the sender is allowed to be (``gateway.core.trust.authority``), with
Reefknot's own DKIM verification asked for only when the mail's evidence falls short and
the policy wants it, and what the policy does with those facts. A message the operator
released is applied whatever the policy says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from icalendar import Calendar

from gateway.core.calendar.ical import attendee_properties, components_of
from gateway.core.calendar.recurrence import occurrence_of
from gateway.core.itip.messages import ItipMessage
from gateway.core.model import Kind
from gateway.core.trust.authority import Authority, authorize_itip, party_of, stored_organizer_of
from gateway.core.trust.evidence import Relay, SenderEvidence
from gateway.core.trust.policy import Action, Facts, Policy


@dataclass(frozen=True)
class Circumstances:
    """What the store knows that bears on one message and recipient, gathered in one pass."""

    recipient: str
    recipient_kind: Kind
    stored: Calendar | None  # the recipient's copy (None: new to it)
    principals: Mapping[str, frozenset[str]] = field(default_factory=dict)  # local address → all its addresses
    known_organizers: frozenset[str] = frozenset()  # of the looked-up addresses, who organizes a recipient's object


@dataclass(frozen=True)
class Judgement:
    """What to do with one message for one recipient, and why."""

    action: Action
    rule: str
    reason: str
    authority: Authority | None = None
    facts: Facts | None = None
    notify_sender: bool = False  # the rule asks for a notice; the caller sends one only where safe

    @property
    def detail(self) -> str:
        if self.authority is None:
            return f"rule {self.rule}: {self.reason}"
        proof = f" ({self.authority.proof})" if self.authority.proof else ""
        said = f"; {self.authority.detail}" if self.authority.detail else ""
        return f"rule {self.rule}: {self.authority.auth.value} {self.authority.reason}{proof}{said}"


def addresses_to_look_up(message: ItipMessage, stored: Calendar | None, claimed: str) -> frozenset[str]:
    """Every address the judgement may ask the store about: the parties the message and the stored copy name,
    and the claimed sender."""
    props = [c.get("ORGANIZER") for c in components_of(message.calendar)]
    props += [a for c in components_of(message.calendar) for a in attendee_properties(c)]
    parties = [p for p in map(party_of, props) if p is not None]
    stored_organizer = stored_organizer_of(stored)
    if stored_organizer is not None:
        parties.append(stored_organizer)
    found = {a for p in parties for a in (*p.names, p.sent_by) if a}
    return frozenset(found | ({claimed} if claimed else set()))


def judge(
    message: ItipMessage, circumstances: Circumstances, evidence: SenderEvidence, *, policy: Policy,
    relays: tuple[Relay, ...], now: datetime, claimed: str, is_noise: bool, released: bool = False,
    with_own_dkim: Callable[[], SenderEvidence] | None = None,
) -> Judgement:
    """The policy's action for this message and recipient.

    ``with_own_dkim`` gives the evidence with Reefknot's own DKIM verification added; it
    is called only when the mail's evidence does not prove the sender's role and the
    policy verifies DKIM for the authentication that leaves.
    """
    def aliases(address: str) -> frozenset[str]:
        return circumstances.principals.get(address, frozenset())

    authority = authorize_itip(message, circumstances.stored, evidence, relays, aliases)
    if not authority.allowed and with_own_dkim is not None and authority.auth in policy.verify_dkim_for:
        authority = authorize_itip(message, circumstances.stored, with_own_dkim(), relays, aliases)
    facts = _facts(message, circumstances, authority, claimed, is_noise)
    decision = policy.decide(facts, now)
    action = decision.action
    if released and action in (Action.HOLD, Action.REJECT):
        action = Action.APPLY
    return Judgement(action, decision.rule, decision.reason, authority, facts, decision.notify_sender)


def _facts(message: ItipMessage, circumstances: Circumstances, authority: Authority, claimed: str,
           is_noise: bool) -> Facts:
    sender = authority.party or claimed
    start, end = booking_span(message.calendar)
    return Facts(
        method=message.method.value, component=component_name(message), sender=sender,
        recipient=circumstances.recipient, recipient_kind=circumstances.recipient_kind, auth=authority.auth,
        authority=authority.reason,
        sender_known=circumstances.stored is not None or sender in circumstances.known_organizers,
        sender_local=sender in circumstances.principals,
        is_noise=is_noise, start=start, end=end,
    )


def component_name(message: ItipMessage) -> str:
    """VEVENT, VTODO, …: the kind of the message's first component."""
    components = components_of(message.calendar)
    return str(components[0].name) if components else ""


def booking_span(calendar: Calendar) -> tuple[datetime | None, datetime | None]:
    """When the first component asks for (a series: its first occurrence), for the room booking rules."""
    components = components_of(calendar)
    occurrence = occurrence_of(components[0]) if components else None
    return (occurrence.start, occurrence.end) if occurrence is not None else (None, None)
