"""Policy evaluation: ordered named rules over the facts of one message, first match wins.

The model of the ``policies/`` files and the decisions taken from it: which action a
scheduling message gets for one local recipient, whether a room may be booked, who may
receive free/busy, how private events from outside are kept, and which limit a message
breaks. Reading the files is ``gateway.settings.policy``; deciding whether a sender is
authenticated is the trust rules' job: the outcome arrives here as ``Facts.auth``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.core.addresses import domain_of
from gateway.core.mail.mimetree import TOO_DEEP, TOO_MANY_PARTS
from gateway.core.model import Kind
from gateway.core.trust.patterns import Glob


class Auth(StrEnum):
    """How the sender's identity relates to its iTIP role (the trust rules' outcome)."""

    PASS = "pass"                        # authenticated for the role (DKIM, SENT-BY, …)
    RELAY = "relay"                      # vouched for by a configured calendar relay
    TOKEN = "token"                      # carried a valid reply token
    UNAUTHENTICATED = "unauthenticated"  # nothing proves or disproves the identity
    REFUSED = "refused"                  # the identity contradicts the role


AUTHENTICATED = frozenset({Auth.PASS, Auth.RELAY, Auth.TOKEN})


class Action(StrEnum):
    """What becomes of a message for one recipient."""

    APPLY = "apply"
    HOLD = "hold"                  # quarantine, for the operator to release or drop
    REJECT = "reject"
    AUTO_ACCEPT = "auto-accept"    # rooms and resources: accept when the booking rules allow
    AUTO_DECLINE = "auto-decline"  # rooms and resources: decline


DEFAULT_ACTIONS = (Action.APPLY, Action.HOLD, Action.REJECT)
ROOM_KINDS = (Kind.ROOM, Kind.RESOURCE)
COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")
PRIVATE_CLASSES = ("PRIVATE", "CONFIDENTIAL")
NOT_ALLOWED_TO_BOOK = "not-allowed-to-book"
BOOKING_TOO_LONG = "booking-too-long"
BOOKING_TOO_FAR_AHEAD = "booking-too-far-ahead"
BOOKING_TIMES_UNKNOWN = "booking-times-unknown"
BUILTIN_ROLES = "builtin-roles"      # the built-in rule: a sender that does not play its iTIP role is held
BUILTIN_DEFAULT = "builtin-default"  # the built-in default: a sender that claims its role is applied


class PrivateEvents(StrEnum):
    """How a CLASS:PRIVATE or CONFIDENTIAL object from outside is stored."""

    KEEP = "keep"            # stored with its details
    BUSY_ONLY = "busy-only"  # stored with its times only
    EXCLUDE = "exclude"      # kept out of the shared store


class FreeBusyUrl(StrEnum):
    """Who may read the HTTP free/busy URL."""

    OFF = "off"
    PUBLIC = "public"
    TOKEN = "token"  # a partner's freebusy_token


@dataclass(frozen=True)
class Source:
    """Where something was defined: a file and a line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


BUILT_IN = Source("built-in", 0)


def _any(patterns: tuple[Glob, ...], value: str) -> bool:
    return any(p.matches(value) for p in patterns)


@dataclass(frozen=True)
class Facts:
    """What is known about one message for one local recipient.

    ``sender`` is the normalized address the trust rules judged (organizer or attendee);
    ``start`` and ``end`` are the booking a room request asks for (a series: the span to check).
    """

    method: str
    component: str
    sender: str
    recipient: str
    recipient_kind: Kind = Kind.INDIVIDUAL
    auth: Auth = Auth.UNAUTHENTICATED
    authority: str = ""        # the trust rules' reason for ``auth``, e.g. address-dkim
    sender_known: bool = False  # has corresponded before, or is in the recipient's calendar
    sender_local: bool = False  # is a local principal
    is_noise: bool = False      # Auto-Submitted, bulk, no-reply, bounce (INTEROP rule 17)
    start: datetime | None = None
    end: datetime | None = None

    @property
    def sender_domain(self) -> str:
        return domain_of(self.sender)


@dataclass(frozen=True)
class PinnedKey:
    """A partner's DKIM public key record, pinned: ``name`` is ``selector._domainkey.domain``."""

    name: str
    record: str

    @property
    def selector(self) -> str:
        return self.name.partition("._domainkey.")[0]

    @property
    def domain(self) -> str:
        return self.name.partition("._domainkey.")[2]


@dataclass(frozen=True)
class Partner:
    """Another organization: its domains, its pinned DKIM keys, what it may see and book.

    Where keys are pinned, the trust rules verify the partner's signatures against them
    only, so that trust does not depend on DNS alone.
    """

    name: str
    domains: tuple[Glob, ...]
    source: Source
    dkim_keys: tuple[PinnedKey, ...] = ()
    freebusy: bool = False
    book_rooms: tuple[Glob, ...] = ()
    freebusy_token: str = field(default="", repr=False)

    def covers(self, domain: str) -> bool:
        return _any(self.domains, domain)


@dataclass(frozen=True)
class Conditions:
    """What a rule matches; an empty tuple or None matches anything."""

    method: tuple[str, ...] = ()
    component: tuple[str, ...] = ()
    sender_domain: tuple[Glob, ...] = ()
    sender: tuple[Glob, ...] = ()
    recipient: tuple[Glob, ...] = ()
    recipient_kind: tuple[Kind, ...] = ()
    auth: tuple[Auth, ...] = ()
    authority: tuple[Glob, ...] = ()
    partner: bool | tuple[str, ...] | None = None  # any partner, none, or one of these names
    sender_known: bool | None = None
    sender_local: bool | None = None
    noise: bool | None = None

    def matches(self, facts: Facts, partner: Partner | None) -> bool:
        return (
            _listed(self.method, facts.method.upper())
            and _listed(self.component, facts.component.upper())
            and _listed(self.recipient_kind, facts.recipient_kind)
            and _listed(self.auth, facts.auth)
            and (not self.sender_domain or _any(self.sender_domain, facts.sender_domain))
            and (not self.sender or _any(self.sender, facts.sender))
            and (not self.recipient or _any(self.recipient, facts.recipient))
            and (not self.authority or _any(self.authority, facts.authority))
            and _is(self.sender_known, facts.sender_known)
            and _is(self.sender_local, facts.sender_local)
            and _is(self.noise, facts.is_noise)
            and self._partner_matches(partner)
        )

    def _partner_matches(self, partner: Partner | None) -> bool:
        if isinstance(self.partner, tuple):
            return partner is not None and partner.name in self.partner
        return _is(self.partner, partner is not None)


def _listed(allowed: tuple[str, ...], value: str) -> bool:
    return not allowed or value in allowed


def _is(wanted: bool | None, value: bool) -> bool:
    return wanted is None or wanted == value


@dataclass(frozen=True)
class Rule:
    """One named rule; ``notify_sender`` (reject only) asks for a notice where the caller deems it safe."""

    name: str
    conditions: Conditions
    action: Action
    source: Source
    notify_sender: bool = False
    description: str = ""


@dataclass(frozen=True)
class Decision:
    """The action for one message and recipient, the rule (or section) that chose it, and why."""

    action: Action
    rule: str
    reason: str
    source: Source
    notify_sender: bool = False


@dataclass(frozen=True)
class Room:
    """Booking rules for the rooms and resources matching ``rooms``; the first such section applies.

    Who may book: local principals (``local``), senders of ``domains``, and partners whose
    ``book_rooms`` names the room; always authenticated. A request that breaks a rule
    gets ``otherwise`` (auto-decline, hold or reject) with a named reason.
    """

    name: str
    rooms: tuple[Glob, ...]
    source: Source
    local: bool = True
    domains: tuple[Glob, ...] = ()
    max_duration: timedelta | None = None
    booking_window: timedelta | None = None  # how far ahead a booking may start
    otherwise: Action = Action.AUTO_DECLINE

    def problem(self, facts: Facts, now: datetime | None) -> str:
        """The reason this booking breaks the time rules, or ''."""
        if self.max_duration is not None:
            if facts.start is None or facts.end is None:
                return BOOKING_TIMES_UNKNOWN
            if facts.end - facts.start > self.max_duration:
                return BOOKING_TOO_LONG
        if self.booking_window is not None:
            if facts.start is None or now is None:
                return BOOKING_TIMES_UNKNOWN
            if facts.start > now + self.booking_window:
                return BOOKING_TOO_FAR_AHEAD
        return ""


@dataclass(frozen=True)
class Rate:
    """At most ``count`` messages from one sender domain in ``period``."""

    count: int
    period: timedelta


@dataclass(frozen=True)
class Measures:
    """The sizes of one message that limits apply to."""

    message_bytes: int = 0
    mime_depth: int = 0
    parts: int = 0
    components: int = 0
    attendees: int = 0


LIMIT_REASONS = {
    "max_message_bytes": "message-too-large",
    "max_mime_depth": TOO_DEEP,
    "max_parts": TOO_MANY_PARTS,
    "max_components": "too-many-components",
    "max_attendees": "too-many-attendees",
}
RATE_REASON = "sender-domain-rate"


@dataclass(frozen=True)
class Limits:
    """Bounds on one message and on each sender domain's rate; None is unbounded."""

    source: Source
    max_message_bytes: int | None = None
    max_mime_depth: int | None = None
    max_parts: int | None = None
    max_components: int | None = None
    max_attendees: int | None = None
    rate: Rate | None = None
    action: Action = Action.HOLD

    def exceeded(self, measures: Measures) -> str:
        """The reason of the first limit the message breaks, or ''."""
        for limit, reason in LIMIT_REASONS.items():
            bound = getattr(self, limit)
            if bound is not None and getattr(measures, limit.removeprefix("max_")) > bound:
                return reason
        return ""


@dataclass(frozen=True)
class FreeBusy:
    """Who gets free/busy: by mail (authenticated senders only), and over the HTTP URL."""

    local: bool = False           # local principals asking by mail
    domains: tuple[Glob, ...] = ()  # authenticated senders of these domains
    url: FreeBusyUrl = FreeBusyUrl.OFF


@dataclass(frozen=True)
class Policy:
    """Everything the policy files say; ``default`` decides when no rule matches."""

    rules: tuple[Rule, ...]
    default: Decision
    partners: tuple[Partner, ...] = ()
    limits: Limits = Limits(BUILT_IN)
    private_events: PrivateEvents = PrivateEvents.BUSY_ONLY
    freebusy: FreeBusy = FreeBusy()
    rooms: tuple[Room, ...] = ()
    # The trust outcomes for which Reefknot's own DKIM check (DNS lookups) is worth making.
    verify_dkim_for: frozenset[Auth] = frozenset({Auth.UNAUTHENTICATED, Auth.REFUSED})

    @property
    def is_builtin(self) -> bool:
        """Whether this is the built-in roles check of an installation without policy files."""
        return self.default.source == BUILT_IN

    def decide(self, facts: Facts, now: datetime | None = None) -> Decision:
        """The first matching rule's action, else the default; auto-accept goes through the room rules."""
        partner = self.partner_for(facts.sender_domain)
        for rule in self.rules:
            if rule.conditions.matches(facts, partner):
                decision = Decision(rule.action, rule.name, rule.name, rule.source, rule.notify_sender)
                if rule.action is Action.AUTO_ACCEPT:
                    return self._book(facts, partner, decision, now)
                return decision
        return self.default

    def _book(self, facts: Facts, partner: Partner | None, accept: Decision, now: datetime | None) -> Decision:
        room = self.room_for(facts.recipient)
        allowed = facts.auth in AUTHENTICATED and (
            (facts.sender_local and (room is None or room.local))
            or (room is not None and _any(room.domains, facts.sender_domain))
            or (partner is not None and _any(partner.book_rooms, facts.recipient))
        )
        problem = "" if allowed else NOT_ALLOWED_TO_BOOK
        if room is None:
            return accept if allowed else Decision(Action.AUTO_DECLINE, accept.rule, problem, accept.source)
        problem = problem or room.problem(facts, now)
        return Decision(room.otherwise, room.name, problem, room.source) if problem else accept

    def room_for(self, address: str) -> Room | None:
        """The first ``[[room]]`` section naming a room or resource, if any."""
        return next((r for r in self.rooms if _any(r.rooms, address)), None)

    def partner_for(self, domain: str) -> Partner | None:
        """The partner a sender domain belongs to, if any."""
        return next((p for p in self.partners if p.covers(domain)), None)

    def pinned_keys(self, domain: str) -> tuple[PinnedKey, ...] | None:
        """A partner domain's pinned DKIM keys; None when the domain has none pinned (DNS decides)."""
        partner = self.partner_for(domain)
        keys = tuple(k for k in partner.dkim_keys if k.domain == domain.lower()) if partner else ()
        return keys or None

    def check_limits(self, measures: Measures) -> Decision | None:
        """A decision naming the first limit the message breaks, or None."""
        reason = self.limits.exceeded(measures)
        return Decision(self.limits.action, "limits", reason, self.limits.source) if reason else None

    def check_rate(self, recent: int) -> Decision | None:
        """``recent``: messages from the sender's domain within the rate period, this one included."""
        rate = self.limits.rate
        if rate is None or recent <= rate.count:
            return None
        return Decision(self.limits.action, "limits", RATE_REASON, self.limits.source)

    def may_receive_freebusy(self, facts: Facts) -> bool:
        """Whether a VFREEBUSY request by mail gets an answer."""
        if facts.auth not in AUTHENTICATED or facts.is_noise:
            return False
        partner = self.partner_for(facts.sender_domain)
        return (
            (partner is not None and partner.freebusy)
            or (facts.sender_local and self.freebusy.local)
            or _any(self.freebusy.domains, facts.sender_domain)
        )

    def freebusy_url_reader(self, token: str) -> str | None:
        """Who may read the HTTP free/busy URL with this token: 'public', a partner's name, or None."""
        if self.freebusy.url is FreeBusyUrl.PUBLIC:
            return "public"
        if self.freebusy.url is FreeBusyUrl.OFF or not token:
            return None
        for partner in self.partners:
            if partner.freebusy_token and hmac.compare_digest(partner.freebusy_token.encode(), token.encode()):
                return partner.name
        return None

    def private_handling(self, facts: Facts, classification: str) -> PrivateEvents:
        """How to store an object with this CLASS: private ones from outside follow ``private_events``."""
        if facts.sender_local or classification.upper() not in PRIVATE_CLASSES:
            return PrivateEvents.KEEP
        return self.private_events


def builtin_policy() -> Policy:
    """The policy of an installation that names no policy files: the RFC 5546 roles, checked against the claimed sender.

    A sender that plays the role its method needs, by its From or Sender (the address,
    its EMAIL, its SENT-BY, a relay, a reply token), is applied even when nothing proves
    it, so that a first installation and ``reefknot demo`` work; proof is what policy
    files are for. A sender that contradicts its role (a REPLY for another attendee, a
    CANCEL or REQUEST not from the organizer, a changed ORGANIZER) is held for the
    operator, who may still release it. Only a refusal is worth a DKIM check: a relay
    may yet speak for the role, while an unproven claim is applied either way.
    """
    rule = Rule(BUILTIN_ROLES, Conditions(auth=(Auth.REFUSED,)), Action.HOLD, BUILT_IN,
                description="hold mail whose sender does not play the iTIP role its method needs")
    default = Decision(Action.APPLY, BUILTIN_DEFAULT, BUILTIN_DEFAULT, BUILT_IN)
    return Policy(rules=(rule,), default=default, verify_dkim_for=frozenset({Auth.REFUSED}))
