"""Whether the sender of a scheduling message may do what it asks (RFC 5546 §3, INTEROP rules 8–11).

Decides from data only whether one of the mail's authenticated addresses stands for the
iTIP role the method needs (``decide_authority``, ``authorize_itip``): the organizer for
PUBLISH, REQUEST, ADD, CANCEL and DECLINECOUNTER, the attendee named for REPLY, COUNTER
and REFRESH. Which addresses are authenticated, and by what (DKIM, SPF, DMARC, reply
tokens, configured calendar relays), is ``gateway.core.trust.evidence``'s to say; finding the
evidence is the caller's job. A ``From:`` that merely equals the role is not enough
(INTEROP rule 10). Not for verifying signatures (``gateway.adapters.dkim``), nor for choosing
what becomes of an unauthenticated message (``gateway.core.trust.policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from icalendar import Calendar, Component

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import attendee_properties, components_of
from gateway.core.itip.messages import ItipMessage
from gateway.core.model import Method
from gateway.core.trust.evidence import (
    Mechanism,
    Relay,
    Role,
    SenderEvidence,
    Verified,
    authenticated_identities,
)
from gateway.core.trust.policy import AUTHENTICATED, Auth

ORGANIZER_METHODS = frozenset(
    {Method.PUBLISH, Method.REQUEST, Method.ADD, Method.CANCEL, Method.DECLINECOUNTER}
)

UNAUTHENTICATED = "unauthenticated"
NOT_ORGANIZER = "not-organizer"
NOT_ATTENDEE = "not-attendee"
REPLY_FOR_ANOTHER_ATTENDEE = "reply-for-another-attendee"
ORGANIZER_CHANGED = "organizer-changed"
NO_ORGANIZER = "no-organizer"
NO_ATTENDEE = "no-attendee"

Aliases = Callable[[str], Iterable[str]]


def no_aliases(address: str) -> Iterable[str]:
    """The alias lookup for a caller without a directory."""
    return ()


class Basis(StrEnum):
    """Which of the role's identities the sender matched."""

    ADDRESS = "address"  # the ORGANIZER or ATTENDEE value itself
    EMAIL = "email"      # its EMAIL parameter (iCloud organizes from 2_…@imip.me.com tokens)
    SENT_BY = "sent-by"  # a delegate named in SENT-BY
    ALIAS = "alias"      # another address of the same person, from the directory


@dataclass(frozen=True)
class Party:
    """A calendar user as a message names it: its address, its EMAIL parameter, its SENT-BY."""

    address: str
    email: str | None = None
    sent_by: str | None = None

    @property
    def names(self) -> frozenset[str]:
        """The addresses that are this user (SENT-BY is a delegate, not the user)."""
        return frozenset(a for a in (self.address, self.email) if a)


@dataclass(frozen=True)
class Authority:
    """The decision: ``auth`` (pass, relay, token, unauthenticated, refused) and a kebab-case ``reason``.

    Allowed: ``reason`` is ``<basis>-<mechanism>`` (``address-dkim``, ``email-dmarc``,
    ``sent-by-spf``, ``alias-token``, ``address-relay``), ``identity`` the role identity
    the sender matched and ``party`` the organizer or attendee it stands for. Otherwise
    ``reason`` says why (``unauthenticated``: the From claims the role, nothing proves it).
    """

    auth: Auth
    reason: str
    role: Role
    party: str = ""
    identity: str = ""
    basis: Basis | None = None
    proof: str = ""
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.auth in AUTHENTICATED


def party_of(prop: object) -> Party | None:
    """The Party an ORGANIZER or ATTENDEE property names; None when it names no email address."""
    if prop is None:
        return None
    params = getattr(prop, "params", {})
    email = normalize_address(params.get("EMAIL"))
    address = normalize_address(prop) or email
    if address is None:
        return None
    return Party(address, email, normalize_address(params.get("SENT-BY")))


def stored_organizer_of(stored: Calendar | None) -> Party | None:
    """The organizer of a stored object, from its first component that names one."""
    if stored is None:
        return None
    parties = (party_of(c.get("ORGANIZER")) for c in components_of(stored))
    return next((p for p in parties if p is not None), None)


def authorize_itip(
    message: ItipMessage, stored: Calendar | None, evidence: SenderEvidence,
    relays: Sequence[Relay] = (), aliases: Aliases = no_aliases,
) -> Authority:
    """``decide_authority`` for a message read from mail and the recipient's stored copy (None: new)."""
    components = components_of(message.calendar)
    return decide_authority(
        message.method, message.uid, components, stored_organizer_of(stored), evidence, relays, aliases
    )


def decide_authority(
    method: Method, uid: str, components: Sequence[Component], stored_organizer: Party | None,
    evidence: SenderEvidence, relays: Sequence[Relay] = (), aliases: Aliases = no_aliases,
) -> Authority:
    """Whether the sender may send this message, and as whom.

    Organizer methods must come from the organizer: of the stored object when there is
    one (a message naming another organizer is refused, ``organizer-changed``; only the
    stored SENT-BY counts, so a message cannot appoint its own delegate), else of the
    message. Attendee methods must come from an attendee they name; a REPLY answers for
    exactly one attendee. ``aliases`` gives the other addresses of a person (INTEROP rule 11).
    """
    context = _Context(uid, evidence, tuple(relays), aliases)
    if method in ORGANIZER_METHODS:
        return _organizer_authority(components, stored_organizer, context)
    return _attendee_authority(method, components, context)


@dataclass(frozen=True)
class _Context:
    uid: str
    evidence: SenderEvidence
    relays: tuple[Relay, ...]
    aliases: Aliases


@dataclass(frozen=True)
class _Claim:
    address: str
    basis: Basis
    party: str


def _organizer_authority(components: Sequence[Component], stored: Party | None, context: _Context) -> Authority:
    named = [p for p in (party_of(c.get("ORGANIZER")) for c in components) if p is not None]
    authority = stored or (named[0] if named else None)
    if authority is None:
        return _refused(Role.ORGANIZER, NO_ORGANIZER, "", "the message names no organizer")
    strangers = sorted({p.address for p in named if not p.names & authority.names})
    if strangers:
        detail = f"{', '.join(strangers)} is not the organizer {authority.address}"
        return _refused(Role.ORGANIZER, ORGANIZER_CHANGED, authority.address, detail)
    claims = _claims([authority], context.aliases)
    return _match(Role.ORGANIZER, claims, context) or _unmatched(Role.ORGANIZER, claims, context, NOT_ORGANIZER)


def _attendee_authority(method: Method, components: Sequence[Component], context: _Context) -> Authority:
    named = (party_of(a) for c in components for a in attendee_properties(c))
    parties = list(dict.fromkeys(p for p in named if p is not None))
    if not parties:
        return _refused(Role.ATTENDEE, NO_ATTENDEE, "", "the message names no attendee")
    addresses = sorted({p.address for p in parties})
    if method is Method.REPLY and len(addresses) > 1:
        detail = f"one reply answers for {', '.join(addresses)}"
        return _refused(Role.ATTENDEE, REPLY_FOR_ANOTHER_ATTENDEE, "", detail)
    claims = _claims(parties, context.aliases)
    refusal = REPLY_FOR_ANOTHER_ATTENDEE if method is Method.REPLY else NOT_ATTENDEE
    return _match(Role.ATTENDEE, claims, context) or _unmatched(Role.ATTENDEE, claims, context, refusal)


def _claims(parties: Sequence[Party], aliases: Aliases) -> list[_Claim]:
    """Every identity that may speak for the parties, most direct first."""
    claims: dict[str, _Claim] = {}
    for party in parties:
        for address, basis in ((party.address, Basis.ADDRESS), (party.email, Basis.EMAIL), (party.sent_by, Basis.SENT_BY)):
            if address:
                claims.setdefault(address, _Claim(address, basis, party.address))
    for party in parties:
        for alias in (normalize_address(a) for name in sorted(party.names) for a in aliases(name)):
            if alias:
                claims.setdefault(alias, _Claim(alias, Basis.ALIAS, party.address))
    return sorted(claims.values(), key=lambda c: list(Basis).index(c.basis))


def _match(role: Role, claims: list[_Claim], context: _Context) -> Authority | None:
    """The first claim that an authenticated address, the reply token or a relay stands for."""
    evidence = context.evidence
    verified = {v.address: v for v in authenticated_identities(evidence, context.relays)}
    for claim in claims:
        if claim.address in verified:
            return _allowed(role, claim, verified[claim.address])
    if role is Role.ATTENDEE and evidence.token_attendee and evidence.token_uid == context.uid:
        for claim in claims:
            if claim.address == evidence.token_attendee and claim.basis is not Basis.SENT_BY:
                return _allowed(role, claim, Verified(claim.address, Mechanism.TOKEN, ""))
    for relay in (r for r in context.relays if r.vouches(evidence)):
        for claim in claims:
            if claim.basis in (Basis.ADDRESS, Basis.EMAIL) and relay.speaks_for(role, claim.address):
                return _allowed(role, claim, Verified(claim.address, Mechanism.RELAY, relay.name))
    return None


def _unmatched(role: Role, claims: list[_Claim], context: _Context, refusal: str) -> Authority:
    """Unauthenticated when the From or Sender claims the role; refused otherwise."""
    evidence = context.evidence
    claimed = next((c for a in evidence.claimed for c in claims if c.address == a), None)
    if claimed is None:
        who = ", ".join(evidence.claimed) or "an unknown sender"
        party = claims[0].party
        return _refused(role, refusal, party, f"{who} does not speak for the {role.value} {party}")
    detail = f"{claimed.address} claims to be the {role.value} {claimed.party}; nothing authenticates it"
    detail += f" (dmarc={evidence.dmarc})" if evidence.dmarc else ""
    return Authority(
        Auth.UNAUTHENTICATED, UNAUTHENTICATED, role, claimed.party, claimed.address, claimed.basis, detail=detail
    )


def _allowed(role: Role, claim: _Claim, proof: Verified) -> Authority:
    auth = {Mechanism.RELAY: Auth.RELAY, Mechanism.TOKEN: Auth.TOKEN}.get(proof.mechanism, Auth.PASS)
    relation = "" if claim.basis is Basis.ADDRESS else f" ({claim.basis.value} of {claim.party})"
    return Authority(
        auth, f"{claim.basis.value}-{proof.mechanism.value}", role, claim.party, claim.address, claim.basis,
        str(proof), f"{claim.address}{relation} authenticated by {proof}",
    )


def _refused(role: Role, reason: str, party: str, detail: str) -> Authority:
    return Authority(Auth.REFUSED, reason, role, party, detail=detail)
