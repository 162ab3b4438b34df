"""Policy decisions from data: first match wins, the default, each condition, rooms, limits, free/busy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.model import Kind
from gateway.core.trust.patterns import address_pattern, domain_pattern, slug_pattern
from gateway.core.trust.policy import (
    Action,
    Auth,
    Conditions,
    Decision,
    Facts,
    FreeBusy,
    FreeBusyUrl,
    Limits,
    Measures,
    Partner,
    PinnedKey,
    Policy,
    PrivateEvents,
    Rate,
    Room,
    Rule,
    Source,
    builtin_policy,
)

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
HERE = Source("test.toml", 1)
DEFAULT = Decision(Action.HOLD, "default", "default", Source("test.toml", 2))
TOKEN = "a-long-random-token-for-bar"
BAR = Partner(
    "bar", (domain_pattern("bar.example"),), HERE,
    dkim_keys=(PinnedKey("cal._domainkey.bar.example", "v=DKIM1; k=ed25519; p=AAAA"),),
    freebusy=True, book_rooms=(address_pattern("room-*@foo.example"),), freebusy_token=TOKEN,
)


def facts(**changes: object) -> Facts:
    values: dict[str, object] = {
        "method": "REQUEST", "component": "VEVENT", "sender": "carol@bar.example", "recipient": "alice@foo.example",
        "auth": Auth.PASS,
    }
    values.update(changes)
    return Facts(**values)  # type: ignore[arg-type]


def rule(name: str, action: Action = Action.APPLY, **conditions: object) -> Rule:
    return Rule(name, Conditions(**conditions), action, Source("test.toml", 10))  # type: ignore[arg-type]


def policy(*rules: Rule, **settings: object) -> Policy:
    return Policy(tuple(rules), DEFAULT, **settings)  # type: ignore[arg-type]


def test_the_first_matching_rule_decides_and_is_named() -> None:
    chosen = policy(
        rule("replies", method=("REPLY",)),
        rule("unauthenticated", Action.HOLD, auth=(Auth.UNAUTHENTICATED,)),
        rule("everything", Action.REJECT),
    ).decide(facts(method="REPLY", auth=Auth.UNAUTHENTICATED))
    assert (chosen.action, chosen.rule, chosen.reason) == (Action.APPLY, "replies", "replies")
    assert chosen.source == Source("test.toml", 10)


def test_no_matching_rule_gives_the_explicit_default() -> None:
    assert policy(rule("replies", method=("REPLY",))).decide(facts()) == DEFAULT


@pytest.mark.parametrize(("auth", "action", "rule_name"), [
    (Auth.PASS, Action.APPLY, "builtin-default"),
    (Auth.RELAY, Action.APPLY, "builtin-default"),
    (Auth.TOKEN, Action.APPLY, "builtin-default"),
    (Auth.UNAUTHENTICATED, Action.APPLY, "builtin-default"),  # the From plays the role; nothing proves it
    (Auth.REFUSED, Action.HOLD, "builtin-roles"),             # the sender does not play the role
])
def test_the_built_in_policy_holds_only_a_sender_outside_its_role(auth: Auth, action: Action, rule_name: str) -> None:
    chosen = builtin_policy().decide(facts(auth=auth))
    assert (chosen.action, chosen.rule) == (action, rule_name)


def test_the_built_in_policy_is_known_as_such_and_verifies_dkim_only_for_a_refusal() -> None:
    assert builtin_policy().is_builtin and not policy().is_builtin
    assert builtin_policy().verify_dkim_for == {Auth.REFUSED}
    assert policy().verify_dkim_for == {Auth.UNAUTHENTICATED, Auth.REFUSED}


def test_notify_sender_travels_with_the_decision() -> None:
    refused = Rule("refused", Conditions(auth=(Auth.REFUSED,)), Action.REJECT, HERE, notify_sender=True)
    assert policy(refused).decide(facts(auth=Auth.REFUSED)).notify_sender is True


@pytest.mark.parametrize(("conditions", "matching", "other"), [
    ({"method": ("REQUEST", "CANCEL")}, {"method": "cancel"}, {"method": "REPLY"}),
    ({"component": ("VTODO",)}, {"component": "vtodo"}, {"component": "VEVENT"}),
    ({"sender_domain": (domain_pattern("Bar.Example"),)}, {"sender": "x@BAR.example"}, {"sender": "x@baz.example"}),
    ({"sender": (address_pattern("carol@bar.example"),)}, {"sender": "Carol@Bar.Example"}, {"sender": "dan@bar.example"}),
    ({"recipient": (address_pattern("room-*@foo.example"),)}, {"recipient": "room-r@foo.example"},
     {"recipient": "alice@foo.example"}),
    ({"recipient_kind": (Kind.ROOM,)}, {"recipient_kind": Kind.ROOM}, {"recipient_kind": Kind.INDIVIDUAL}),
    ({"auth": (Auth.PASS, Auth.RELAY)}, {"auth": Auth.RELAY}, {"auth": Auth.TOKEN}),
    ({"authority": (slug_pattern("*-dkim"),)}, {"authority": "sent-by-dkim"}, {"authority": "address-dmarc"}),
    ({"partner": True}, {"sender": "x@bar.example"}, {"sender": "x@baz.example"}),
    ({"partner": False}, {"sender": "x@baz.example"}, {"sender": "x@bar.example"}),
    ({"partner": ("bar",)}, {"sender": "x@bar.example"}, {"sender": "x@baz.example"}),
    ({"sender_known": True}, {"sender_known": True}, {"sender_known": False}),
    ({"sender_local": False}, {"sender_local": False}, {"sender_local": True}),
    ({"noise": True}, {"is_noise": True}, {"is_noise": False}),
])
def test_each_condition_matches_its_fact(
    conditions: dict[str, object], matching: dict[str, object], other: dict[str, object]
) -> None:
    checked = policy(rule("only-this", Action.REJECT, **conditions), partners=(BAR,))
    assert checked.decide(facts(**matching)).rule == "only-this"
    assert checked.decide(facts(**other)) == DEFAULT


def test_all_conditions_of_a_rule_must_hold() -> None:
    both = policy(rule("both", method=("REPLY",), auth=(Auth.PASS,)))
    assert both.decide(facts(method="REPLY")).rule == "both"
    assert both.decide(facts(method="REPLY", auth=Auth.UNAUTHENTICATED)) == DEFAULT


def test_a_subdomain_pattern_matches_subdomains_only() -> None:
    pattern = domain_pattern("*.partner.example")
    assert pattern.matches("mail.partner.example") and pattern.matches("a.b.PARTNER.example")
    assert not pattern.matches("partner.example") and not pattern.matches("evilpartner.example")


@pytest.mark.parametrize("text", ["*partner.example", "partner", "part*ner.example", "bar.example/x", ""])
def test_a_domain_pattern_that_could_widen_trust_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bad domain pattern"):
        domain_pattern(text)


@pytest.mark.parametrize("text", ["room-*", "room@*bar.example", "a b@foo.example", "[x]@foo.example"])
def test_a_bad_address_pattern_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        address_pattern(text)


def test_an_address_pattern_globs_the_local_part() -> None:
    pattern = address_pattern("Room-?@*.Foo.Example")
    assert pattern.matches("room-a@hq.foo.example")
    assert not pattern.matches("room-ab@hq.foo.example") and not pattern.matches("room-a@foo.example")


ROOM = "room-r@foo.example"
MEETING_ROOMS = Room(
    "meeting-rooms", (address_pattern("room-*@foo.example"),), Source("test.toml", 30),
    domains=(domain_pattern("baz.example"),), max_duration=timedelta(hours=4), booking_window=timedelta(days=90),
)
BOOKINGS = rule("room-bookings", Action.AUTO_ACCEPT, recipient_kind=(Kind.ROOM,))


def booking(sender: str, hours: float = 1, days_ahead: float = 7, **changes: object) -> Facts:
    start = NOW + timedelta(days=days_ahead)
    values: dict[str, object] = {"recipient": ROOM, "recipient_kind": Kind.ROOM, "sender": sender,
                                 "start": start, "end": start + timedelta(hours=hours)}
    values.update(changes)
    return facts(**values)


@pytest.mark.parametrize(("sender", "changes", "action", "reason"), [
    ("bob@foo.example", {"sender_local": True}, Action.AUTO_ACCEPT, "room-bookings"),
    ("carol@bar.example", {}, Action.AUTO_ACCEPT, "room-bookings"),        # partner, book_rooms
    ("erin@baz.example", {}, Action.AUTO_ACCEPT, "room-bookings"),         # a listed domain
    ("mallory@qux.example", {}, Action.AUTO_DECLINE, "not-allowed-to-book"),
    ("carol@bar.example", {"auth": Auth.UNAUTHENTICATED}, Action.AUTO_DECLINE, "not-allowed-to-book"),
    ("carol@bar.example", {"hours": 5}, Action.AUTO_DECLINE, "booking-too-long"),
    ("carol@bar.example", {"days_ahead": 91}, Action.AUTO_DECLINE, "booking-too-far-ahead"),
    ("carol@bar.example", {"end": None}, Action.AUTO_DECLINE, "booking-times-unknown"),
])
def test_auto_accept_goes_through_the_room_rules(
    sender: str, changes: dict[str, object], action: Action, reason: str
) -> None:
    checked = policy(BOOKINGS, partners=(BAR,), rooms=(MEETING_ROOMS,))
    decision = checked.decide(booking(sender, **changes), NOW)  # type: ignore[arg-type]
    assert (decision.action, decision.reason) == (action, reason)


def test_a_refused_booking_names_the_room_section_and_its_action() -> None:
    holding = Room("held-rooms", (address_pattern("room-*@foo.example"),), Source("test.toml", 40),
                   local=False, otherwise=Action.HOLD)
    decision = policy(BOOKINGS, rooms=(holding,)).decide(booking("bob@foo.example", sender_local=True), NOW)
    assert decision == Decision(Action.HOLD, "held-rooms", "not-allowed-to-book", Source("test.toml", 40))


def test_without_a_room_section_only_local_principals_and_partners_may_book() -> None:
    checked = policy(BOOKINGS, partners=(BAR,))
    assert checked.decide(booking("bob@foo.example", sender_local=True, hours=30)).action is Action.AUTO_ACCEPT
    assert checked.decide(booking("carol@bar.example")).action is Action.AUTO_ACCEPT
    refused = checked.decide(booking("erin@baz.example"))
    assert (refused.action, refused.rule, refused.reason) == (Action.AUTO_DECLINE, "room-bookings",
                                                               "not-allowed-to-book")


def test_a_partner_books_only_the_rooms_it_is_granted() -> None:
    checked = policy(BOOKINGS, partners=(BAR,))
    assert checked.decide(booking("carol@bar.example", recipient="boardroom@foo.example")).action is (
        Action.AUTO_DECLINE)


LIMITS = Limits(Source("test.toml", 50), max_message_bytes=1000, max_mime_depth=3, max_parts=10,
                max_components=20, max_attendees=5, rate=Rate(100, timedelta(hours=1)))


@pytest.mark.parametrize(("measures", "reason"), [
    (Measures(message_bytes=1001), "message-too-large"),
    (Measures(mime_depth=4), "mime-too-deep"),
    (Measures(parts=11), "mime-too-many-parts"),
    (Measures(components=21), "too-many-components"),
    (Measures(attendees=6), "too-many-attendees"),
])
def test_each_limit_has_its_reason(measures: Measures, reason: str) -> None:
    decision = policy(limits=LIMITS).check_limits(measures)
    assert decision == Decision(Action.HOLD, "limits", reason, Source("test.toml", 50))


def test_a_message_at_the_limits_passes_and_no_limit_means_unbounded() -> None:
    at_limits = Measures(message_bytes=1000, mime_depth=3, parts=10, components=20, attendees=5)
    assert policy(limits=LIMITS).check_limits(at_limits) is None
    assert policy().check_limits(Measures(message_bytes=10**9, attendees=10**6)) is None


def test_the_domain_rate_counts_this_message_too() -> None:
    checked = policy(limits=LIMITS)
    assert checked.check_rate(100) is None
    over = checked.check_rate(101)
    assert over is not None and (over.action, over.reason) == (Action.HOLD, "sender-domain-rate")
    assert policy().check_rate(10**6) is None


@pytest.mark.parametrize(("changes", "allowed"), [
    ({}, True),                                        # partner with freebusy = true
    ({"auth": Auth.UNAUTHENTICATED}, False),
    ({"is_noise": True}, False),
    ({"sender": "erin@baz.example"}, True),            # listed domain
    ({"sender": "mallory@qux.example"}, False),
    ({"sender": "bob@foo.example", "sender_local": True}, False),
])
def test_who_receives_free_busy_by_mail(changes: dict[str, object], allowed: bool) -> None:
    checked = policy(partners=(BAR,), freebusy=FreeBusy(domains=(domain_pattern("baz.example"),)))
    assert checked.may_receive_freebusy(facts(component="VFREEBUSY", **changes)) is allowed


def test_local_principals_receive_free_busy_when_allowed() -> None:
    local = facts(sender="bob@foo.example", sender_local=True)
    assert policy(freebusy=FreeBusy(local=True)).may_receive_freebusy(local)


@pytest.mark.parametrize(("url", "token", "reader"), [
    (FreeBusyUrl.OFF, TOKEN, None),
    (FreeBusyUrl.PUBLIC, "", "public"),
    (FreeBusyUrl.TOKEN, TOKEN, "bar"),
    (FreeBusyUrl.TOKEN, TOKEN + "x", None),
    (FreeBusyUrl.TOKEN, "", None),
])
def test_the_free_busy_url(url: FreeBusyUrl, token: str, reader: str | None) -> None:
    assert policy(partners=(BAR,), freebusy=FreeBusy(url=url)).freebusy_url_reader(token) == reader


@pytest.mark.parametrize(("setting", "sender_local", "classification", "handling"), [
    (PrivateEvents.BUSY_ONLY, False, "PRIVATE", PrivateEvents.BUSY_ONLY),
    (PrivateEvents.EXCLUDE, False, "confidential", PrivateEvents.EXCLUDE),
    (PrivateEvents.EXCLUDE, False, "PUBLIC", PrivateEvents.KEEP),
    (PrivateEvents.EXCLUDE, True, "PRIVATE", PrivateEvents.KEEP),
])
def test_private_events_from_outside_follow_the_setting(
    setting: PrivateEvents, sender_local: bool, classification: str, handling: PrivateEvents
) -> None:
    checked = policy(private_events=setting)
    assert checked.private_handling(facts(sender_local=sender_local), classification) is handling


def test_pinned_keys_are_found_by_the_signing_domain() -> None:
    checked = policy(partners=(BAR,))
    (key,) = checked.pinned_keys("BAR.example") or ()
    assert (key.selector, key.domain) == ("cal", "bar.example")
    assert checked.pinned_keys("baz.example") is None
