"""Who a message is proven to come from: the mail's authenticated addresses and what proves each (RFC 7489 §3.1).

From data only: DKIM signatures that verified (``gateway.adapters.dkim``), trusted
Authentication-Results (``gateway.core.trust.authresults``), a reply token and the configured
calendar relays become ``SenderEvidence`` (``gather_evidence``), and the From, Sender and
envelope addresses that evidence authenticates (``authenticated_identities``). DKIM, SPF
and DMARC vouch for a domain, not a person: whoever may send as bar.example may claim
any address there. Not for verifying signatures, nor for deciding whether an address
stands for the iTIP role a method needs (``gateway.core.trust.authority``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from publicsuffixlist import PublicSuffixList

from gateway.core.addresses import domain_of, normalize_address
from gateway.core.trust.authresults import MethodResult, dkim_domain, domain_in, passing
from gateway.core.trust.patterns import Glob

# The Public Suffix List as the publicsuffixlist package ships it, read once at import from
# its own data file (no network, no update at run time). Its private section counts: each
# registration under github.io or eu.org is an organization of its own. A name under a
# suffix the list does not know (foo.example) is treated as under a one-label suffix.
_PSL = PublicSuffixList()


class Role(StrEnum):
    """The iTIP role a method must come from (here because a Relay speaks for either)."""

    ORGANIZER = "organizer"
    ATTENDEE = "attendee"


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


def organizational_domain(domain: str) -> str:
    """The registered domain under its public suffix (``bar.co.uk``, ``bigcorp.com.sa``); a suffix is its own."""
    name = domain.lower().rstrip(".")
    return _PSL.privatesuffix(name) or name


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
