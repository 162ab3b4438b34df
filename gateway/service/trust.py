"""The verify and policy steps of the data flow: who sent a message, and what each local recipient does with it.

``Trust`` is what a process loaded at start (and again on SIGHUP): the policy, the
calendar relays, whose Authentication-Results to believe, and a DNS key cache. With no
policy files it is the core's built-in roles check with the shipped relays. A
``Judge`` looks at one message: its sender evidence is gathered once, and Reefknot's
own DKIM verification (DNS lookups included) happens only when a decision needs it,
that is when the trusted headers and the reply token do not already authenticate the
sender. The decision itself is the pure core's: ``authority`` then ``policy``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.settings.config import Config
from gateway.core.addresses import domain_of
from gateway.core.calendar.booking import BookingRules
from gateway.core.calendar.ical import (
    attendee_properties,
    components_of,
    organizer_of,
)
from gateway.core.calendar.privacy import classification_of
from gateway.core.itip.compose import build_reply
from gateway.core.itip.messages import ItipMessage
from gateway.core.itip.resource import PlanError
from gateway.core.itip.types import Recipient
from gateway.core.mail.calendarparts import ParsedMail
from gateway.core.model import Method, OutgoingMessage, PartStat
from gateway.core.trust.authresults import trusted_results
from gateway.core.trust.judging import Circumstances, Judgement, addresses_to_look_up, component_name, judge
from gateway.core.trust.evidence import Relay, SenderEvidence, authenticated_identities, gather_evidence
from gateway.core.trust.policy import (
    Action,
    Facts,
    Measures,
    Policy,
    PrivateEvents,
    builtin_policy,
)
from gateway.adapters.dkim import KeyResolver, pinned_only, verify_dkim
from gateway.settings.policy import load_relays, read_policy_files
from gateway.service.routing import Route
from gateway.store import calendars, directory, intake

log = logging.getLogger(__name__)
NOTICE_METHODS = frozenset({Method.REQUEST, Method.ADD})  # a rejected invitation can be declined; nothing else can
# The relays a source checkout ships; without policy files they are the only ones (an install without them has none).
SHIPPED_RELAYS = Path(__file__).resolve().parents[2] / "policies" / "relays.toml"


@dataclass(frozen=True)
class Trust:
    """The loaded trust settings of one process."""

    policy: Policy = field(default_factory=builtin_policy)
    relays: tuple[Relay, ...] = ()
    authserv_ids: frozenset[str] = frozenset()
    resolver: KeyResolver = field(default_factory=lambda: KeyResolver(pinned_only))  # DKIM keys, shared by the process
    dns_timeout: float = 5.0

    @property
    def summary(self) -> str:
        """Which policy runs, in one line for ``check-config`` and the start log."""
        policy, relays = self.policy, f"{len(self.relays)} calendar relays"
        if policy.is_builtin:
            return f"built-in roles check (no [policy] files): a sender not in its iTIP role is held; {relays}"
        return (f"{len(policy.rules)} rules, {len(policy.partners)} partners, {len(policy.rooms)} room sections, "
                f"{relays}; default {policy.default.action.value}")

    def room_rules(self, room: str) -> BookingRules:
        """The time rules of the first ``[[room]]`` section naming the room (none: no limits)."""
        section = self.policy.room_for(room)
        return BookingRules(section.max_duration, section.booking_window) if section else BookingRules()


def load_trust(config: Config, resolver: KeyResolver | None = None) -> Trust:
    """The trust settings a configuration names; a SettingError naming the file, rule and line."""
    if config.policy_files:
        files = read_policy_files(config.policy_files)
        policy, relays = files.policy, files.relays
    else:
        policy, relays = builtin_policy(), load_relays(SHIPPED_RELAYS) if SHIPPED_RELAYS.is_file() else ()
    options = config.trust
    return Trust(
        policy=policy,
        relays=relays,
        authserv_ids=frozenset(options.authserv_ids),
        resolver=(resolver or KeyResolver()) if options.dns else KeyResolver(pinned_only),
        dns_timeout=options.dns_timeout,
    )


class Judge:
    """Judges the scheduling messages of one mail for each local recipient."""

    def __init__(
        self, trust: Trust, mail: ParsedMail, raw: bytes, envelope_sender: str, *, released: bool = False
    ) -> None:
        self.trust = trust
        self.mail = mail
        self.raw = raw
        self.envelope_sender = envelope_sender
        self.released = released
        self._verified: frozenset[str] | None = None

    def limits(
        self, session: Session, sender_domain: str, messages: list[ItipMessage], now: datetime
    ) -> Judgement | None:
        """A hold or reject for a message over a policy limit or its (envelope) sender domain's rate, else None."""
        if self.released:
            return None
        policy = self.trust.policy
        components = [c for m in messages for c in components_of(m.calendar)]
        measures = Measures(
            message_bytes=len(self.raw), components=len(components),
            attendees=max((len(attendee_properties(c)) for c in components), default=0),
        )
        decision = policy.check_limits(measures)
        rate = policy.limits.rate
        if decision is None and rate is not None and sender_domain:
            recent = intake.count_from_domain(session, sender_domain, now - rate.period)
            decision = policy.check_rate(recent)
        return Judgement(decision.action, decision.rule, decision.reason) if decision is not None else None

    def judge(self, session: Session, route: Route, message: ItipMessage, stored: Calendar | None,
              now: datetime) -> Judgement:
        """The policy's action for this message and recipient: the facts gathered, then the core decides."""
        claimed = self._claimed()
        wanted = addresses_to_look_up(message, stored, claimed)
        found = directory.resolve_many(session, wanted)
        circumstances = Circumstances(
            route.principal.address, route.principal.kind, stored,
            principals={address: p.addresses for address, p in found.items() if p is not None},
            known_organizers=calendars.known_organizers(session, route.principal.id, wanted),
        )
        own_dkim = (lambda: self._evidence(route, self._dkim_domains())) if self.mail.dkim_signed else None
        return judge(
            message, circumstances, self._evidence(route, frozenset()), policy=self.trust.policy,
            relays=self.trust.relays, now=now, claimed=claimed, is_noise=self.mail.is_noise, released=self.released,
            with_own_dkim=own_dkim,
        )

    def notice(self, route: Route, message: ItipMessage, judgement: Judgement, now: datetime) -> OutgoingMessage | None:
        """The notice a rejecting rule asks for, where it is safe: an authenticated organizer's invitation is
        declined, naming the rule. Never to noise, never to an unproven sender (it would go to a victim)."""
        authority = judgement.authority
        if (judgement.action is not Action.REJECT or not judgement.notify_sender or self.mail.is_noise
                or authority is None or not authority.allowed or message.method not in NOTICE_METHODS):
            return None
        recipient = Recipient(route.principal.address, route.principal.aliases)
        attendee = next((a for c in components_of(message.calendar) if (a := recipient.attendee_in(c))), None)
        if attendee is None:
            return None
        comment = f"Not accepted by the policy of {domain_of(attendee)} ({judgement.rule})."
        try:
            return build_reply(message.calendar, attendee, now, partstat=PartStat.DECLINED, comment=comment)
        except PlanError:
            return None

    def may_see_freebusy(self, judgement: Judgement) -> bool:
        """Whether the policy lets this sender have a VFREEBUSY reply by mail."""
        return judgement.facts is not None and self.trust.policy.may_receive_freebusy(judgement.facts)

    def private_handling(self, session: Session, route: Route, message: ItipMessage) -> PrivateEvents:
        """How this object is stored for this recipient: kept, busy time only, or not at all."""
        organizers = {o for c in components_of(message.calendar) if (o := organizer_of(c))}
        local = bool(organizers) and all(directory.resolve(session, o) is not None for o in organizers)
        facts = Facts(message.method.value, component_name(message), self._claimed(), route.principal.address,
                      route.principal.kind, sender_local=local)
        return self.trust.policy.private_handling(facts, classification_of(message.calendar))

    def authenticated_addresses(self) -> frozenset[str]:
        """The mail's addresses that are authenticated, our own DKIM check included (who reported a bounce)."""
        verified = self._dkim_domains() if self.mail.dkim_signed else frozenset()
        found = authenticated_identities(self._evidence(None, verified), self.trust.relays)
        return frozenset(v.address for v in found)

    def _evidence(self, route: Route | None, verified: frozenset[str]) -> SenderEvidence:
        token = route.token if route is not None and route.token is not None and not route.token.expired else None
        return gather_evidence(
            from_address=self.mail.from_address, envelope_sender=self.envelope_sender or None,
            sender_header=self.mail.sender_header,
            results=trusted_results(self.mail.trace_fields, self.trust.authserv_ids),
            verified_dkim_domains=verified,
            token_attendee=token.address if token else None, token_uid=token.uid if token else None,
        )

    def _dkim_domains(self) -> frozenset[str]:
        """The domains whose DKIM signatures on this mail verify, checked once, only when needed."""
        if self._verified is None:
            pins = {k.name: k.record.encode() for p in self.trust.policy.partners for k in p.dkim_keys}
            results = verify_dkim(self.raw, pinned_keys=pins, dns_timeout=self.trust.dns_timeout,
                                  resolver=self.trust.resolver)
            self._verified = frozenset(r.domain for r in results if r.passed)
            log.info("DKIM: %s", ", ".join(f"{r.domain}={r.result}" for r in results) or "no signature")
        return self._verified

    def _claimed(self) -> str:
        return self.mail.from_address or self.envelope_sender or ""
