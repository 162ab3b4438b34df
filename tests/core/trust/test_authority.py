"""The trust rules: which sender may send which iTIP method, and as whom (INTEROP rules 8–11)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from icalendar import Calendar

from gateway.core.calendar.ical import components_of, parse_calendar
from gateway.core.itip.messages import ItipMessage, read_itip
from gateway.core.mail.calendarparts import CalendarPart
from gateway.core.model import Method
from gateway.core.trust.authority import (
    NO_ATTENDEE,
    NO_ORGANIZER,
    NOT_ATTENDEE,
    NOT_ORGANIZER,
    ORGANIZER_CHANGED,
    REPLY_FOR_ANOTHER_ATTENDEE,
    UNAUTHENTICATED,
    Aliases,
    Authority,
    Basis,
    authorize_itip,
    decide_authority,
    no_aliases,
    stored_organizer_of,
)
from gateway.core.trust.authresults import trusted_results
from gateway.core.trust.evidence import (
    Mechanism,
    Relay,
    Role,
    SenderEvidence,
    aligned,
    authenticated_identities,
    gather_evidence,
    organizational_domain,
)
from gateway.core.trust.patterns import address_pattern
from gateway.core.trust.policy import Auth
from gateway.settings.policy import load_relays
from tests.peers.paths import POLICIES

RELAYS = load_relays(POLICIES / "relays.toml")
UID = "evt-1@bar.example"
GOOGLE_ENVELOPE = "3xyz-calendar@calendar-server.bounces.google.com"
ORGANIZER_METHODS = ("PUBLISH", "REQUEST", "ADD", "CANCEL", "DECLINECOUNTER")
ATTENDEE_METHODS = ("REPLY", "COUNTER", "REFRESH")


def vevent(*lines: str, uid: str = UID, recurrence_id: str = "") -> str:
    instance = f"RECURRENCE-ID:{recurrence_id}\r\n" if recurrence_id else ""
    body = "".join(line + "\r\n" for line in lines)
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\n{instance}DTSTAMP:20260601T090000Z\r\n"
        f"DTSTART:20260610T100000Z\r\nDTEND:20260610T110000Z\r\nSUMMARY:Review\r\n{body}END:VEVENT\r\n"
    )


def calendar(method: str, *events: str) -> Calendar:
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
    return parse_calendar(head + (f"METHOD:{method}\r\n" if method else "") + "".join(events) + "END:VCALENDAR\r\n")


def invitation(method: str, organizer: str = "ORGANIZER:mailto:carol@bar.example") -> Calendar:
    """Carol at bar.example invites the local users Alice and Bob."""
    return calendar(method, vevent(organizer, "ATTENDEE:mailto:alice@foo.example", "ATTENDEE:mailto:bob@foo.example"))


def answer(method: str, attendee: str = "ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@bar.example") -> Calendar:
    """An answer to Alice's (local) event by one outside attendee."""
    return calendar(method, vevent("ORGANIZER:mailto:alice@foo.example", attendee))


def dkim(from_address: str | None, *domains: str, **more: str) -> SenderEvidence:
    """Evidence of a mail From ``from_address`` whose signatures of ``domains`` verified."""
    return SenderEvidence(from_address, dkim_domains=frozenset(domains), **more)


def aliases_of(table: dict[str, set[str]]) -> Aliases:
    def lookup(address: str) -> Iterable[str]:
        return table.get(address, set())
    return lookup


@dataclass(frozen=True)
class Case:
    method: str
    message: Calendar = field(repr=False)
    evidence: SenderEvidence
    auth: Auth
    reason: str
    identity: str = ""
    proof: str = ""
    stored: Calendar | None = field(default=None, repr=False)
    aliases: Aliases = no_aliases


def decide(case: Case) -> Authority:
    return decide_authority(
        Method(case.method), UID, components_of(case.message), stored_organizer_of(case.stored),
        case.evidence, RELAYS, case.aliases,
    )


def every_method() -> dict[str, Case]:
    """For every method: from its role, from someone else, from an unauthenticated From claiming the role."""
    cases: dict[str, Case] = {}
    for method in ORGANIZER_METHODS:
        cases |= {
            f"{method}-from-the-organizer": Case(
                method, invitation(method), dkim("carol@bar.example", "bar.example"),
                Auth.PASS, "address-dkim", "carol@bar.example", "dkim bar.example"),
            f"{method}-from-an-attendee": Case(
                method, invitation(method), dkim("bob@foo.example", "foo.example"), Auth.REFUSED, NOT_ORGANIZER),
            f"{method}-spoofed-organizer": Case(
                method, invitation(method), dkim("carol@bar.example"),
                Auth.UNAUTHENTICATED, UNAUTHENTICATED, "carol@bar.example"),
            f"{method}-changing-the-organizer": Case(
                method, invitation(method, "ORGANIZER:mailto:eve@evil.example"),
                dkim("eve@evil.example", "evil.example"), Auth.REFUSED, ORGANIZER_CHANGED,
                stored=invitation("REQUEST")),
        }
    for method in ATTENDEE_METHODS:
        other = REPLY_FOR_ANOTHER_ATTENDEE if method == "REPLY" else NOT_ATTENDEE
        cases |= {
            f"{method}-from-the-attendee": Case(
                method, answer(method), dkim("carol@bar.example", "bar.example"),
                Auth.PASS, "address-dkim", "carol@bar.example", "dkim bar.example"),
            f"{method}-from-someone-else": Case(
                method, answer(method), dkim("dave@baz.example", "baz.example"), Auth.REFUSED, other),
            f"{method}-spoofed-attendee": Case(
                method, answer(method), dkim("carol@bar.example"),
                Auth.UNAUTHENTICATED, UNAUTHENTICATED, "carol@bar.example"),
        }
    return cases


EVERY_METHOD = every_method()


@pytest.mark.parametrize("case", EVERY_METHOD.values(), ids=EVERY_METHOD.keys())
def test_every_method_needs_its_role(case: Case) -> None:
    decision = decide(case)
    assert (decision.auth, decision.reason) == (case.auth, case.reason)
    assert decision.allowed is (case.auth in (Auth.PASS, Auth.RELAY, Auth.TOKEN))
    if case.identity:
        assert decision.identity == case.identity
    if case.proof:
        assert decision.proof == case.proof


ICLOUD_TOKEN = "ORGANIZER;CN=Dana;EMAIL=dana@icloud.com:mailto:2_GEZDGNBVGY3TQOJQGEZDGNBVGY@imip.me.com"
ICLOUD_ME = "ORGANIZER;EMAIL=dana@me.com:mailto:2_GEZDGNBVGY3TQOJQGEZDGNBVGY@imip.me.com"
BOSS_WITH_SECRETARY = 'ORGANIZER;SENT-BY="mailto:sec@bar.example":mailto:boss@bar.example'
EVOLUTION_ATTENDEE = 'ATTENDEE;PARTSTAT=ACCEPTED;SENT-BY="MAILTO:carol@home.example":MAILTO:Carol@Bar.Example'
CAROL_ALIASES = aliases_of({"carol@bar.example": {"c.smith@bar-mail.example"}})

ICLOUD_INVITATION = Case("REQUEST", invitation("REQUEST", ICLOUD_TOKEN), dkim("dana@icloud.com", "icloud.com"),
                         Auth.PASS, "email-dkim", "dana@icloud.com", "dkim icloud.com")

IDENTITY_CASES = [
    pytest.param(ICLOUD_INVITATION, id="icloud-token-organizer-with-email"),
    pytest.param(Case("CANCEL", invitation("CANCEL", ICLOUD_ME), dkim("dana@me.com", "icloud.com"),
                      Auth.RELAY, "email-relay", "dana@me.com", "relay apple-icloud"),
                 id="icloud-token-organizer-me-com-signed-by-icloud"),
    pytest.param(Case("CANCEL", invitation("CANCEL", ICLOUD_TOKEN), dkim("eve@icloud.com", "icloud.com"),
                      Auth.REFUSED, NOT_ORGANIZER), id="another-icloud-user-cannot-cancel-for-the-token"),
    pytest.param(Case("REQUEST", invitation("REQUEST", "ORGANIZER:mailto:dana@icloud.com"),
                      dkim("dana@icloud.com", "icloud.com"), Auth.PASS, "email-dkim", "dana@icloud.com",
                      stored=invitation("REQUEST", ICLOUD_TOKEN)),
                 id="icloud-update-naming-the-person-instead-of-the-token"),
    pytest.param(Case("REPLY", answer("REPLY", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:erin@gmail.com"),
                      dkim("erin@gmail.com", "google.com", envelope_sender=GOOGLE_ENVELOPE),
                      Auth.RELAY, "address-relay", "erin@gmail.com", "relay google-calendar"),
                 id="google-relay-reply-from-gmail"),
    pytest.param(Case("REPLY", answer("REPLY", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:frank@example.org"),
                      dkim("frank@example.org", "google.com", envelope_sender=GOOGLE_ENVELOPE),
                      Auth.RELAY, "address-relay", "frank@example.org", "relay google-calendar"),
                 id="google-workspace-reply-via-the-calendar-server"),
    pytest.param(Case("REPLY", answer("REPLY", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:frank@example.org"),
                      dkim("frank@example.org", "google.com", envelope_sender="frank@example.org"),
                      Auth.UNAUTHENTICATED, UNAUTHENTICATED, "frank@example.org"),
                 id="google-signature-outside-the-calendar-server-vouches-for-nobody"),
    pytest.param(Case("REPLY", answer("REPLY", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:frank@example.org"),
                      dkim("eve@gmail.com", "google.com", envelope_sender=GOOGLE_ENVELOPE),
                      Auth.REFUSED, REPLY_FOR_ANOTHER_ATTENDEE),
                 id="google-relay-vouches-only-for-its-from"),
    pytest.param(Case("REQUEST", invitation("REQUEST", "ORGANIZER:mailto:c_abc123@group.calendar.google.com"),
                      dkim("grace@gmail.com", "google.com", envelope_sender=GOOGLE_ENVELOPE),
                      Auth.RELAY, "address-relay", "c_abc123@group.calendar.google.com", "relay google-calendar"),
                 id="google-shared-calendar-organizer"),
    pytest.param(Case("REQUEST", invitation("REQUEST", "ORGANIZER:mailto:c_abc123@group.calendar.google.com"),
                      dkim("grace@gmail.com", "gmail.com"), Auth.REFUSED, NOT_ORGANIZER),
                 id="google-shared-calendar-needs-the-calendar-server"),
    pytest.param(Case("REQUEST", invitation("REQUEST", BOSS_WITH_SECRETARY), dkim("sec@bar.example", "bar.example"),
                      Auth.PASS, "sent-by-dkim", "sec@bar.example"), id="organizer-sent-by-on-a-new-object"),
    pytest.param(Case("CANCEL", invitation("CANCEL", BOSS_WITH_SECRETARY), dkim("sec@bar.example", "bar.example"),
                      Auth.PASS, "sent-by-dkim", "sec@bar.example",
                      stored=invitation("REQUEST", BOSS_WITH_SECRETARY)), id="organizer-sent-by-known-from-the-store"),
    pytest.param(Case("CANCEL", invitation("CANCEL", 'ORGANIZER;SENT-BY="mailto:eve@evil.example":mailto:boss@bar.example'),
                      dkim("eve@evil.example", "evil.example"), Auth.REFUSED, NOT_ORGANIZER,
                      stored=invitation("REQUEST", "ORGANIZER:mailto:boss@bar.example")),
                 id="a-message-cannot-appoint-its-own-delegate"),
    pytest.param(Case("REPLY", answer("REPLY", EVOLUTION_ATTENDEE), dkim("carol@home.example", "home.example"),
                      Auth.PASS, "sent-by-dkim", "carol@home.example"),
                 id="evolution-attendee-sent-by"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("c.smith@bar-mail.example", "bar-mail.example"),
                      Auth.PASS, "alias-dkim", "c.smith@bar-mail.example", aliases=CAROL_ALIASES),
                 id="reply-from-a-directory-alias"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("c.smith@bar-mail.example", "bar-mail.example"),
                      Auth.REFUSED, REPLY_FOR_ANOTHER_ATTENDEE), id="unknown-alias-is-someone-else"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("carol@bar.example", token_attendee="carol@bar.example", token_uid=UID),
                      Auth.TOKEN, "address-token", "carol@bar.example", "token"), id="reply-token"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("c.smith@bar-mail.example", token_attendee="carol@bar.example",
                                                   token_uid=UID),
                      Auth.TOKEN, "address-token", "carol@bar.example"), id="reply-token-from-an-unknown-address"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("carol@bar.example", token_attendee="carol@bar.example",
                                                   token_uid="another-event"),
                      Auth.UNAUTHENTICATED, UNAUTHENTICATED), id="reply-token-of-another-event"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("eve@evil.example", token_attendee="dave@bar.example", token_uid=UID),
                      Auth.REFUSED, REPLY_FOR_ANOTHER_ATTENDEE), id="reply-token-of-another-attendee"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("carol@bar.example", dmarc="fail"),
                      Auth.UNAUTHENTICATED, UNAUTHENTICATED, "carol@bar.example"), id="spoofed-reply-failing-dmarc"),
    pytest.param(Case("REPLY", answer("REPLY", "ATTENDEE;PARTSTAT=DECLINED:mailto:dave@bar.example"),
                      dkim("carol@bar.example", "bar.example"), Auth.REFUSED, REPLY_FOR_ANOTHER_ATTENDEE),
                 id="reply-changing-another-attendee-of-the-same-domain"),
    pytest.param(Case("REPLY", calendar("REPLY",
                                        vevent("ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@bar.example"),
                                        vevent("ATTENDEE;PARTSTAT=DECLINED:mailto:dave@bar.example",
                                               recurrence_id="20260617T100000Z")),
                      dkim("carol@bar.example", "bar.example"), Auth.REFUSED, REPLY_FOR_ANOTHER_ATTENDEE),
                 id="reply-naming-two-attendees-in-two-instances"),
    pytest.param(Case("COUNTER", calendar("COUNTER", vevent("ORGANIZER:mailto:alice@foo.example",
                                                            "ATTENDEE:mailto:dave@bar.example",
                                                            "ATTENDEE:mailto:carol@bar.example")),
                      dkim("carol@bar.example", "bar.example"), Auth.PASS, "address-dkim", "carol@bar.example"),
                 id="counter-from-one-of-its-attendees"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("carol@bar.example", spf_domain="bar.example"),
                      Auth.PASS, "address-spf", "carol@bar.example", "spf bar.example"), id="spf-aligned"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("carol@bar.example", dmarc="pass"),
                      Auth.PASS, "address-dmarc", "carol@bar.example", "dmarc bar.example"), id="dmarc-pass"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("carol@bar.example", "mail.bar.example"),
                      Auth.PASS, "address-dkim", "carol@bar.example", "dkim mail.bar.example"),
                 id="subdomain-signature-is-aligned"),
    pytest.param(Case("REPLY", answer("REPLY", "ATTENDEE:mailto:carol@victim.co.uk"), dkim("carol@victim.co.uk", "evil.co.uk"),
                      Auth.UNAUTHENTICATED, UNAUTHENTICATED), id="public-suffix-is-not-an-organization"),
    pytest.param(Case("REPLY", answer("REPLY"), dkim("list@lists.example", "lists.example", sender_header="carol@bar.example",
                                                   envelope_sender="carol@bar.example", spf_domain="bar.example"),
                      Auth.PASS, "address-spf", "carol@bar.example"), id="list-rewrote-from-sender-authenticated"),
    pytest.param(Case("REQUEST", calendar("REQUEST", vevent("ATTENDEE:mailto:alice@foo.example")),
                      dkim("carol@bar.example", "bar.example"), Auth.REFUSED, NO_ORGANIZER), id="no-organizer"),
    pytest.param(Case("REFRESH", calendar("REFRESH", vevent("ORGANIZER:mailto:alice@foo.example")),
                      dkim("carol@bar.example", "bar.example"), Auth.REFUSED, NO_ATTENDEE), id="no-attendee"),
    pytest.param(Case("CANCEL", invitation("CANCEL", "ORGANIZER:mailto:CAROL@BAR.EXAMPLE"),
                      dkim("carol@bar.example", "bar.example"), Auth.PASS, "address-dkim",
                      stored=invitation("REQUEST")), id="organizer-compared-case-insensitively"),
    pytest.param(Case("CANCEL", calendar("CANCEL", vevent("ATTENDEE:mailto:alice@foo.example")),
                      dkim("carol@bar.example", "bar.example"), Auth.PASS, "address-dkim",
                      stored=invitation("REQUEST")), id="stored-organizer-when-the-message-names-none"),
]


@pytest.mark.parametrize("case", IDENTITY_CASES)
def test_identities_of_real_senders(case: Case) -> None:
    decision = decide(case)
    assert (decision.auth, decision.reason) == (case.auth, case.reason), decision.detail
    if case.identity:
        assert decision.identity == case.identity
    if case.proof:
        assert decision.proof == case.proof


def test_an_allowed_decision_names_the_party_and_how() -> None:
    decision = decide(ICLOUD_INVITATION)
    assert decision.role is Role.ORGANIZER and decision.basis is Basis.EMAIL
    assert decision.party == "2_gezdgnbvgy3tqojqgezdgnbvgy@imip.me.com"
    assert "dana@icloud.com (email of 2_gezdgnbvgy3tqojqgezdgnbvgy@imip.me.com)" in decision.detail


def test_a_refusal_says_who_tried() -> None:
    case = Case("CANCEL", invitation("CANCEL"), dkim("bob@foo.example", "foo.example"), Auth.REFUSED, NOT_ORGANIZER)
    decision = decide(case)
    assert decision.party == "carol@bar.example" and "bob@foo.example" in decision.detail


def test_unauthenticated_mentions_a_failed_dmarc() -> None:
    decision = decide(Case("REPLY", answer("REPLY"), dkim("carol@bar.example", dmarc="fail"), Auth.UNAUTHENTICATED, ""))
    assert decision.basis is Basis.ADDRESS and "dmarc=fail" in decision.detail


def itip(calendar_text: str) -> ItipMessage:
    message = read_itip(CalendarPart(calendar_text, "text/calendar", None, None, "1"))
    assert isinstance(message, ItipMessage)
    return message


def test_authorize_itip_takes_a_message_from_mail_and_the_stored_copy() -> None:
    text = invitation("CANCEL", "ORGANIZER:mailto:eve@evil.example").to_ical().decode()
    stored = invitation("REQUEST")
    refused = authorize_itip(itip(text), stored, dkim("eve@evil.example", "evil.example"), RELAYS)
    allowed = authorize_itip(itip(text), None, dkim("eve@evil.example", "evil.example"), RELAYS)
    assert (refused.auth, refused.reason) == (Auth.REFUSED, ORGANIZER_CHANGED)
    assert (allowed.auth, allowed.reason) == (Auth.PASS, "address-dkim")


def test_evidence_is_gathered_from_trusted_results_and_our_own_verification() -> None:
    results = trusted_results(
        [
            "mx.foo.example; dkim=pass header.d=Bar.Example; dkim=fail header.d=baz.example",
            "mx.foo.example; spf=pass smtp.mailfrom=<bounce@Bar.Example>",
            "mx.foo.example; dmarc=pass header.from=bar.example",
            "evil.example; dkim=pass header.d=victim.example",
        ],
        frozenset({"mx.foo.example"}),
    )
    evidence = gather_evidence(
        from_address="Carol@Bar.Example", envelope_sender="MAILTO:bounce@bar.example", results=results,
        verified_dkim_domains=["Partner.Example."], token_attendee="mailto:Carol@bar.example", token_uid=UID,
    )
    assert evidence == SenderEvidence(
        from_address="carol@bar.example", envelope_sender="bounce@bar.example",
        dkim_domains=frozenset({"bar.example", "partner.example"}), spf_domain="bar.example", dmarc="pass",
        token_attendee="carol@bar.example", token_uid=UID,
    )


def test_a_dmarc_result_for_another_domain_is_not_the_from_domain_s() -> None:
    results = trusted_results(["mx.foo.example; dmarc=pass header.from=evil.example"], frozenset({"mx.foo.example"}))
    assert gather_evidence(from_address="carol@bar.example", results=results).dmarc is None
    assert gather_evidence(from_address=None, results=results).dmarc is None


def test_authenticated_identities_lists_each_address_once_with_its_strongest_proof() -> None:
    evidence = dkim("carol@bar.example", "bar.example", dmarc="pass", envelope_sender="bounce@bar.example",
                    sender_header="carol@bar.example", spf_domain="bar.example")
    found = authenticated_identities(evidence)
    assert [(v.address, v.mechanism) for v in found] == [
        ("carol@bar.example", Mechanism.DMARC), ("bounce@bar.example", Mechanism.DKIM),
    ]
    assert authenticated_identities(dkim("carol@bar.example")) == ()


@pytest.mark.parametrize(
    ("domain", "organization"),
    [("bar.example", "bar.example"), ("mx.eu.bar.example", "bar.example"), ("mail.bar.co.uk", "bar.co.uk"),
     ("Bar.Com.AU.", "bar.com.au"), ("localhost", "localhost")],
)
def test_organizational_domain(domain: str, organization: str) -> None:
    assert organizational_domain(domain) == organization


def test_alignment_is_relaxed_but_not_across_organizations() -> None:
    assert aligned("mail.bar.example", "bar.example")
    assert not aligned("bar.example", "notbar.example")
    assert not aligned("a.co.uk", "b.co.uk")


def test_a_relay_speaking_for_service_addresses_must_name_its_envelope() -> None:
    with pytest.raises(ValueError, match="envelope_senders"):
        Relay("careless", frozenset({"icloud.com"}), organizers=(address_pattern("*@imip.me.com"),))


def test_no_relays_means_no_relay_authentication() -> None:
    evidence = dkim("erin@gmail.com", "google.com", envelope_sender=GOOGLE_ENVELOPE)
    message = answer("REPLY", "ATTENDEE:mailto:erin@gmail.com")
    decision = decide_authority(Method.REPLY, UID, components_of(message), None, evidence)
    assert decision.auth is Auth.UNAUTHENTICATED
