"""Judging one message for one recipient: gathered facts in, one decision out; own DKIM only when it can help."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.core.itip.messages import ItipMessage, read_itip
from gateway.core.mail.calendarparts import CalendarPart
from gateway.core.model import Kind
from gateway.core.trust.evidence import SenderEvidence
from gateway.core.trust.judging import (
    Circumstances,
    Judgement,
    addresses_to_look_up,
    judge,
)
from gateway.core.trust.policy import (
    Action,
    Auth,
    Conditions,
    Decision,
    Policy,
    Rule,
    Source,
    builtin_policy,
)

NOW = datetime(2026, 6, 1, 9, tzinfo=UTC)
SOURCE = Source("test.toml", 1)
INVITATION = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//T//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u1\r\n"
    "DTSTAMP:20260601T080000Z\r\nDTSTART:20260610T100000Z\r\nDTEND:20260610T110000Z\r\n"
    "ORGANIZER;SENT-BY=\"mailto:assistant@bar.example\":mailto:carol@bar.example\r\n"
    "ATTENDEE:mailto:alice@foo.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
ALICE = Circumstances("alice@foo.example", Kind.INDIVIDUAL, None, principals={"alice@foo.example": frozenset()})


def invitation() -> ItipMessage:
    message = read_itip(CalendarPart(INVITATION, "text/calendar", None, None, "1"))
    assert isinstance(message, ItipMessage)
    return message


def holding_the_unauthenticated() -> Policy:
    rules = (Rule("proven", Conditions(auth=(Auth.PASS,)), Action.APPLY, SOURCE),)
    return Policy(rules, Decision(Action.HOLD, "default", "default", SOURCE))


class Verifier:
    """Our own DKIM check, counting how often it is asked."""

    def __init__(self, domains: frozenset[str]) -> None:
        self.domains, self.asked = domains, 0

    def __call__(self) -> SenderEvidence:
        self.asked += 1
        return SenderEvidence("carol@bar.example", dkim_domains=self.domains)


def decide(policy: Policy, evidence: SenderEvidence, verifier: Verifier, circumstances: Circumstances = ALICE,
           released: bool = False) -> Judgement:
    return judge(invitation(), circumstances, evidence, policy=policy, relays=(), now=NOW,
                 claimed="carol@bar.example", is_noise=False, released=released, with_own_dkim=verifier)


def test_the_store_is_asked_about_every_party_the_message_names_and_the_claimed_sender() -> None:
    wanted = addresses_to_look_up(invitation(), None, "someone@else.example")
    assert wanted == {"carol@bar.example", "assistant@bar.example", "alice@foo.example", "someone@else.example"}


def test_own_dkim_is_not_checked_when_the_trusted_headers_already_prove_the_organizer() -> None:
    verifier = Verifier(frozenset({"bar.example"}))
    judgement = decide(holding_the_unauthenticated(), SenderEvidence("carol@bar.example",
                                                                     dkim_domains=frozenset({"bar.example"})), verifier)
    assert (judgement.action, judgement.rule, verifier.asked) == (Action.APPLY, "proven", 0)


def test_own_dkim_is_checked_once_when_the_evidence_falls_short_and_then_decides() -> None:
    verifier = Verifier(frozenset({"bar.example"}))
    judgement = decide(holding_the_unauthenticated(), SenderEvidence("carol@bar.example"), verifier)
    assert (judgement.action, judgement.rule, verifier.asked) == (Action.APPLY, "proven", 1)
    assert judgement.authority is not None and judgement.authority.auth is Auth.PASS
    failing = Verifier(frozenset())
    held = decide(holding_the_unauthenticated(), SenderEvidence("carol@bar.example"), failing)
    assert (held.action, held.rule, failing.asked) == (Action.HOLD, "default", 1)
    assert held.facts is not None and held.facts.auth is Auth.UNAUTHENTICATED


def test_own_dkim_is_left_alone_when_the_policy_does_not_verify_for_that_outcome() -> None:
    verifier = Verifier(frozenset({"bar.example"}))  # the built-in check verifies only what would be refused
    judgement = decide(builtin_policy(), SenderEvidence("carol@bar.example"), verifier)
    assert verifier.asked == 0 and judgement.facts is not None and judgement.facts.auth is Auth.UNAUTHENTICATED


def test_facts_come_from_the_circumstances_and_a_released_message_is_applied() -> None:
    known = Circumstances("room-1@foo.example", Kind.ROOM, None, principals={"carol@bar.example": frozenset()},
                          known_organizers=frozenset({"carol@bar.example"}))
    judgement = decide(holding_the_unauthenticated(), SenderEvidence("carol@bar.example"), Verifier(frozenset()),
                       known, released=True)
    assert judgement.action is Action.APPLY and judgement.rule == "default"
    facts = judgement.facts
    assert facts is not None and (facts.sender_known, facts.sender_local, facts.recipient_kind) == (True, True, Kind.ROOM)
    assert (facts.start, facts.end) == (datetime(2026, 6, 10, 10, tzinfo=UTC), datetime(2026, 6, 10, 11, tzinfo=UTC))
