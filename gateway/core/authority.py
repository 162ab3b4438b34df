"""Who sent a scheduling message, and whether that sender may do what it asks (RFC 5546 §3, INTEROP rules 8–11).

Two questions, answered from data only. Which addresses of the mail are authenticated
(``authenticated_identities``), and does one of them stand for the iTIP role the method
needs (``decide_authority``, ``authorize_itip``): the organizer for PUBLISH, REQUEST,
ADD, CANCEL and DECLINECOUNTER, the attendee named for REPLY, COUNTER and REFRESH. The
evidence comes from DKIM verification and trusted Authentication-Results
(``gather_evidence``), reply tokens and configured calendar relays; finding it is the
caller's job. A ``From:`` that merely equals the role is not enough (INTEROP rule 10).
DKIM, SPF and DMARC vouch for a domain, not a person: whoever may send as bar.example
may claim any address there. Not for verifying signatures (``gateway.mailauth``), nor
for choosing what becomes of an unauthenticated message (``gateway.core.policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from icalendar import Calendar, Component

from gateway.core.addresses import domain_of, normalize_address
from gateway.core.authresults import MethodResult, dkim_domain, domain_in, passing
from gateway.core.ical import attendee_properties, components_of
from gateway.core.itip.messages import ItipMessage
from gateway.core.model import Method
from gateway.core.policy import AUTHENTICATED, Auth, Glob

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

# Two-label public suffixes under which each registration is its own organization.
# A short list, not the Public Suffix List: a domain under a suffix missing here is
# grouped with its siblings (a.github.io aligns with b.github.io).
TWO_LABEL_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "ltd.uk", "plc.uk", "me.uk", "net.uk", "sch.uk", "nhs.uk",
    "com.au", "net.au", "org.au", "edu.au", "gov.au", "id.au",
    "co.nz", "net.nz", "org.nz", "ac.nz", "govt.nz",
    "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp",
    "co.za", "org.za", "ac.za", "gov.za",
    "com.br", "net.br", "org.br", "gov.br",
    "com.cn", "net.cn", "org.cn", "gov.cn", "edu.cn",
    "com.mx", "com.ar", "com.tr", "com.tw", "com.hk", "com.sg", "com.my", "com.ph", "com.vn",
    "co.in", "net.in", "org.in", "ac.in", "gov.in",
    "co.kr", "or.kr", "ac.kr", "co.il", "ac.il", "co.id", "co.th", "ac.th",
    "co.at", "or.at", "com.pl", "com.ua", "com.es", "com.pt", "com.gr", "com.ru",
})

Aliases = Callable[[str], Iterable[str]]


def no_aliases(address: str) -> Iterable[str]:
    """The alias lookup for a caller without a directory."""
    return ()


class Role(StrEnum):
    """The iTIP role a method must come from."""

    ORGANIZER = "organizer"
    ATTENDEE = "attendee"


class Basis(StrEnum):
    """Which of the role's identities the sender matched."""

    ADDRESS = "address"  # the ORGANIZER or ATTENDEE value itself
    EMAIL = "email"      # its EMAIL parameter (iCloud organizes from 2_…@imip.me.com tokens)
    SENT_BY = "sent-by"  # a delegate named in SENT-BY
    ALIAS = "alias"      # another address of the same person, from the directory


class Mechanism(StrEnum):
    """What authenticated an address."""

    DMARC = "dmarc"
    DKIM = "dkim"
    SPF = "spf"
    RELAY = "relay"
    TOKEN = "token"


@dataclass(frozen=True)
class SenderEvidence:
    """What is known about who sent one mail. Addresses and domains are normalized (lower case).

    ``dkim_domains`` holds the ``d=`` of every signature that verified (our own check or a
    trusted Authentication-Results); ``spf_domain`` the envelope domain SPF passed for;
    ``dmarc`` the DMARC result for the From domain (None: not evaluated). A valid reply
    token in the recipient address names the attendee (``token_attendee``) of one event
    (``token_uid``).
    """

    from_address: str | None
    envelope_sender: str | None = None
    sender_header: str | None = None
    dkim_domains: frozenset[str] = frozenset()
    spf_domain: str | None = None
    dmarc: str | None = None
    token_attendee: str | None = None
    token_uid: str | None = None

    @property
    def claimed(self) -> tuple[str, ...]:
        """The author addresses the headers claim: From, then Sender."""
        return tuple(a for a in (self.from_address, self.sender_header) if a)


@dataclass(frozen=True)
class Verified:
    """One authenticated address and what authenticated it: a domain, or a relay's name."""

    address: str
    mechanism: Mechanism
    source: str

    def __str__(self) -> str:
        return f"{self.mechanism.value} {self.source}" if self.source else self.mechanism.value


@dataclass(frozen=True)
class Relay:
    """A calendar service that sends iMIP for its users, authenticated by its own DKIM domain.

    When one of ``dkim_domains`` verified and, if ``envelope_senders`` is given, the envelope
    sender matches one, the relay vouches for the From address when it matches ``senders``,
    and speaks for organizer and attendee addresses matching ``organizers`` and
    ``attendees`` whoever the From is. Service addresses need ``envelope_senders``: a DKIM
    domain that also signs its users' ordinary mail would otherwise let any of them speak
    for every such address.
    """

    name: str
    dkim_domains: frozenset[str]
    envelope_senders: tuple[Glob, ...] = ()
    senders: tuple[Glob, ...] = ()
    organizers: tuple[Glob, ...] = ()
    attendees: tuple[Glob, ...] = ()

    def __post_init__(self) -> None:
        if (self.organizers or self.attendees) and not self.envelope_senders:
            raise ValueError(f"relay {self.name}: organizers and attendees need envelope_senders")

    def vouches(self, evidence: SenderEvidence) -> bool:
        """Whether this mail comes from the relay."""
        if not self.dkim_domains & evidence.dkim_domains:
            return False
        envelope = evidence.envelope_sender or ""
        return not self.envelope_senders or any(p.matches(envelope) for p in self.envelope_senders)

    def speaks_for(self, role: Role, address: str) -> bool:
        patterns = self.organizers if role is Role.ORGANIZER else self.attendees
        return any(p.matches(address) for p in patterns)


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


def organizational_domain(domain: str) -> str:
    """The last two labels, or three under a two-label public suffix (``bar.co.uk``)."""
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if ".".join(labels[-2:]) in TWO_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def aligned(domain: str, other: str) -> bool:
    """Relaxed alignment (RFC 7489 §3.1): the same organizational domain."""
    return organizational_domain(domain) == organizational_domain(other)


def gather_evidence(
    *,
    from_address: str | None,
    envelope_sender: str | None = None,
    sender_header: str | None = None,
    results: Iterable[MethodResult] = (),
    verified_dkim_domains: Iterable[str] = (),
    token_attendee: str | None = None,
    token_uid: str | None = None,
) -> SenderEvidence:
    """SenderEvidence from our own DKIM verification and the results of trusted Authentication-Results."""
    results = list(results)
    sender = normalize_address(from_address)
    dkim = {d for d in (domain_in(v) for v in verified_dkim_domains) if d}
    dkim |= {d for d in (dkim_domain(r) for r in passing(results, "dkim")) if d}
    spf = next((d for d in (domain_in(r.prop("smtp.mailfrom")) for r in passing(results, "spf")) if d), None)
    return SenderEvidence(
        from_address=sender,
        envelope_sender=normalize_address(envelope_sender),
        sender_header=normalize_address(sender_header),
        dkim_domains=frozenset(dkim),
        spf_domain=spf,
        dmarc=_dmarc_for(sender, results),
        token_attendee=normalize_address(token_attendee),
        token_uid=token_uid,
    )


def _dmarc_for(sender: str | None, results: list[MethodResult]) -> str | None:
    """The DMARC result for the From domain: pass when any check passed for it, else the first result."""
    if sender is None:
        return None
    mine = [
        r for r in results
        if r.method == "dmarc" and domain_in(r.prop("header.from")) in (None, domain_of(sender))
    ]
    if any(r.passed for r in mine):
        return "pass"
    return mine[0].result if mine else None


def authenticated_identities(evidence: SenderEvidence, relays: Sequence[Relay] = ()) -> tuple[Verified, ...]:
    """The mail's addresses (From, Sender, envelope sender) that are authenticated, each once, strongest proof first.

    An address is authenticated when DMARC passed and it is the From address; when its
    domain is aligned with the ``d=`` of a verified DKIM signature; when its domain is
    aligned with the domain SPF passed for; or, for the From address only, when a relay
    that vouches for the mail lists it among its ``senders``.
    """
    found: dict[str, Verified] = {}
    for address in (evidence.from_address, evidence.sender_header, evidence.envelope_sender):
        if address and address not in found:
            proof = _authenticate(address, evidence, relays)
            if proof is not None:
                found[address] = proof
    return tuple(found.values())


def _authenticate(address: str, evidence: SenderEvidence, relays: Sequence[Relay]) -> Verified | None:
    domain = domain_of(address)
    if address == evidence.from_address and evidence.dmarc == "pass":
        return Verified(address, Mechanism.DMARC, domain)
    signer = next((d for d in sorted(evidence.dkim_domains) if aligned(domain, d)), None)
    if signer is not None:
        return Verified(address, Mechanism.DKIM, signer)
    if evidence.spf_domain and aligned(domain, evidence.spf_domain):
        return Verified(address, Mechanism.SPF, evidence.spf_domain)
    if address == evidence.from_address:
        for relay in relays:
            if relay.vouches(evidence) and any(p.matches(address) for p in relay.senders):
                return Verified(address, Mechanism.RELAY, relay.name)
    return None


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
