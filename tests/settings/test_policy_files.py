"""The shipped policy files decide as their comments say; a bad file is named by file, line and rule."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.core.model import Kind
from gateway.core.trust.policy import (
    Action,
    Auth,
    Facts,
    FreeBusyUrl,
    Measures,
    Policy,
    PrivateEvents,
)
from gateway.settings.config import ConfigError
from gateway.settings.policy import policy_files, read_policy_files
from gateway.settings.reader import SettingError
from tests.peers.paths import POLICIES

SHIPPED = POLICIES
DEFAULT_TOML, STRICT_TOML = SHIPPED / "default.toml", SHIPPED / "strict.toml"
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TOKEN = "0123456789abcdef0123456789abcdef"


def facts(method: str = "REQUEST", auth: Auth = Auth.PASS, **changes: object) -> Facts:
    values: dict[str, object] = {"component": "VEVENT", "sender": "carol@bar.example",
                                 "recipient": "alice@foo.example", "authority": "address-dkim"}
    values.update(changes)
    return Facts(method, auth=auth, **values)  # type: ignore[arg-type]


def room_request(sender: str, hours: float = 1, days_ahead: float = 7, **changes: object) -> Facts:
    start = NOW + timedelta(days=days_ahead)
    values: dict[str, object] = {"sender": sender, "recipient": "room-r@foo.example", "recipient_kind": Kind.ROOM,
                                 "start": start, "end": start + timedelta(hours=hours)}
    return facts(**{**values, **changes})  # type: ignore[arg-type]


@pytest.fixture
def partners(tmp_path: Path) -> Path:
    """partners.example.toml copied into place as the comments say, with its token file."""
    path = tmp_path / "partners.toml"
    shutil.copy(SHIPPED / "partners.example.toml", path)
    (tmp_path / "bar.freebusy-token").write_text(TOKEN + "\n")
    return path


# -- default.toml --------------------------------------------------------------------

@pytest.mark.parametrize(("method", "auth", "action", "rule"), [
    ("REPLY", Auth.UNAUTHENTICATED, Action.HOLD, "unauthenticated-held"),  # a spoofed reply
    ("REQUEST", Auth.UNAUTHENTICATED, Action.HOLD, "unauthenticated-held"),
    ("REPLY", Auth.REFUSED, Action.REJECT, "refused-identity"),
    ("CANCEL", Auth.REFUSED, Action.REJECT, "refused-identity"),
    ("REQUEST", Auth.PASS, Action.APPLY, "organizer-messages"),
    ("CANCEL", Auth.RELAY, Action.APPLY, "organizer-messages"),
    ("ADD", Auth.PASS, Action.APPLY, "organizer-messages"),
    ("REPLY", Auth.PASS, Action.APPLY, "attendee-replies"),
    ("REPLY", Auth.TOKEN, Action.APPLY, "attendee-replies"),
    ("COUNTER", Auth.RELAY, Action.APPLY, "attendee-replies"),
    ("REQUEST", Auth.TOKEN, Action.HOLD, "default"),  # a reply token does not make an organizer
    ("PUBLISH", Auth.PASS, Action.HOLD, "default"),
])
def test_default_toml_applies_authenticated_roles_and_holds_the_rest(
    method: str, auth: Auth, action: Action, rule: str
) -> None:
    decision = read_policy_files([DEFAULT_TOML]).policy.decide(facts(method, auth))
    assert (decision.action, decision.rule) == (action, rule)
    assert decision.notify_sender is False


def test_default_toml_names_where_each_decision_was_made() -> None:
    policy = read_policy_files([DEFAULT_TOML]).policy
    lines = DEFAULT_TOML.read_text().splitlines()
    spoofed = policy.decide(facts("REPLY", Auth.UNAUTHENTICATED))
    assert spoofed.source.file == str(DEFAULT_TOML) and lines[spoofed.source.line - 1] == "[[rule]]"
    assert 'name = "unauthenticated-held"' in lines[spoofed.source.line]
    fallback = policy.decide(facts("PUBLISH"))
    assert lines[fallback.source.line - 1] == 'default = "hold"'


def test_default_toml_lets_only_local_principals_book_rooms() -> None:
    policy = read_policy_files([DEFAULT_TOML]).policy
    local = policy.decide(room_request("bob@foo.example", sender_local=True), NOW)
    stranger = policy.decide(room_request("carol@bar.example"), NOW)
    spoofed = policy.decide(room_request("bob@foo.example", sender_local=True, auth=Auth.UNAUTHENTICATED), NOW)
    assert (local.action, local.rule) == (Action.AUTO_ACCEPT, "room-bookings")
    assert (stranger.action, stranger.reason) == (Action.AUTO_DECLINE, "not-allowed-to-book")
    assert (spoofed.action, spoofed.rule) == (Action.HOLD, "unauthenticated-held")


def test_default_toml_gives_no_free_busy_and_keeps_private_events_busy_only() -> None:
    policy = read_policy_files([DEFAULT_TOML]).policy
    assert not policy.may_receive_freebusy(facts(component="VFREEBUSY"))
    assert not policy.may_receive_freebusy(facts(component="VFREEBUSY", sender="bob@foo.example", sender_local=True))
    assert policy.freebusy.url is FreeBusyUrl.OFF and policy.freebusy_url_reader(TOKEN) is None
    assert policy.private_handling(facts(), "PRIVATE") is PrivateEvents.BUSY_ONLY


def test_default_toml_limits() -> None:
    policy = read_policy_files([DEFAULT_TOML]).policy
    assert policy.check_limits(Measures(message_bytes=10 * 2**20, attendees=500)) is None
    too_many = policy.check_limits(Measures(attendees=501))
    assert too_many is not None and (too_many.action, too_many.reason) == (Action.HOLD, "too-many-attendees")
    assert policy.limits.rate is not None and policy.limits.rate.period == timedelta(hours=1)


# -- strict.toml and partners.example.toml ---------------------------------------------

def strict_with_partners(partners: Path) -> Policy:
    return read_policy_files([STRICT_TOML, partners]).policy


@pytest.mark.parametrize(("changes", "action", "rule"), [
    ({}, Action.APPLY, "partner-dkim"),
    ({"method": "REPLY", "authority": "sent-by-dkim"}, Action.APPLY, "partner-dkim"),
    ({"authority": "address-dmarc"}, Action.HOLD, "outside-held"),
    ({"auth": Auth.RELAY, "authority": "address-relay"}, Action.HOLD, "outside-held"),
    ({"method": "REPLY", "auth": Auth.TOKEN, "authority": "address-token"}, Action.HOLD, "outside-held"),
    ({"sender": "erin@baz.example"}, Action.HOLD, "outside-held"),
    ({"sender": "bob@foo.example", "sender_local": True, "authority": "address-spf"}, Action.APPLY, "local-senders"),
    ({"auth": Auth.REFUSED}, Action.REJECT, "refused-identity"),
])
def test_strict_toml_applies_only_partners_signed_with_dkim(
    partners: Path, changes: dict[str, object], action: Action, rule: str
) -> None:
    decision = strict_with_partners(partners).decide(facts(**changes))  # type: ignore[arg-type]
    assert (decision.action, decision.rule) == (action, rule)


def test_strict_toml_alone_holds_every_outside_sender() -> None:
    decision = read_policy_files([STRICT_TOML]).policy.decide(facts())
    assert (decision.action, decision.rule) == (Action.HOLD, "outside-held")


def test_the_partner_example_pins_an_ed25519_key(partners: Path) -> None:
    policy = read_policy_files([DEFAULT_TOML, partners]).policy
    (key,) = policy.pinned_keys("bar.example") or ()
    assert key.selector == "cal2026" and "k=ed25519" in key.record
    assert policy.pinned_keys("baz.example") is None


def test_the_partner_example_opens_free_busy_to_the_partner_only(partners: Path) -> None:
    policy = read_policy_files([DEFAULT_TOML, partners]).policy
    assert policy.may_receive_freebusy(facts(component="VFREEBUSY"))
    assert not policy.may_receive_freebusy(facts(component="VFREEBUSY", auth=Auth.UNAUTHENTICATED))
    assert not policy.may_receive_freebusy(facts(component="VFREEBUSY", sender="erin@baz.example"))
    assert policy.freebusy_url_reader(TOKEN) == "bar" and policy.freebusy_url_reader("guess" * 8) is None
    assert policy.freebusy.local is False  # default.toml's setting, not overridden


@pytest.mark.parametrize(("hours", "days_ahead", "action", "reason"), [
    (4, 90, Action.AUTO_ACCEPT, "room-bookings"),
    (4.5, 7, Action.AUTO_DECLINE, "booking-too-long"),
    (1, 91, Action.AUTO_DECLINE, "booking-too-far-ahead"),
])
def test_the_partner_example_books_rooms_up_to_four_hours_within_ninety_days(
    partners: Path, hours: float, days_ahead: float, action: Action, reason: str
) -> None:
    decision = read_policy_files([DEFAULT_TOML, partners]).policy.decide(room_request("carol@bar.example", hours, days_ahead), NOW)
    assert (decision.action, decision.reason) == (action, reason)


def test_the_partner_example_may_not_book_other_rooms(partners: Path) -> None:
    request = room_request("carol@bar.example", recipient="boardroom@foo.example")
    assert read_policy_files([DEFAULT_TOML, partners]).policy.decide(request, NOW).reason == "not-allowed-to-book"


def test_a_directory_is_read_by_name_without_examples_and_beside_relays(tmp_path: Path) -> None:
    for name in ("default.toml", "partners.example.toml", "relays.toml"):
        if (SHIPPED / name).exists():
            shutil.copy(SHIPPED / name, tmp_path / name)
    (tmp_path / "relays.toml").write_text('[[relay]]\nname = "google-calendar"\ndkim_domains = ["google.com"]\n')
    (tmp_path / "00-first.toml").write_text('[[rule]]\nname = "first"\naction = "reject"\n')
    assert [p.name for p in policy_files([tmp_path])] == ["00-first.toml", "default.toml", "relays.toml"]
    policy = read_policy_files([tmp_path]).policy
    assert policy.partners == () and policy.rules[0].name == "first" and policy.decide(facts()).rule == "first"


def test_a_later_file_overrides_settings_and_adds_rules(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('default = "reject"\nprivate_events = "exclude"\n[limits]\nmax_attendees = 10\n'
                    '[[rule]]\nname = "publish"\nmethod = "PUBLISH"\naction = "apply"\n')
    policy = read_policy_files([DEFAULT_TOML, site]).policy
    assert policy.decide(facts("DECLINECOUNTER", Auth.TOKEN)).action is Action.REJECT
    assert (policy.default.source.file, policy.default.source.line) == (str(site), 1)
    assert policy.private_events is PrivateEvents.EXCLUDE
    assert policy.limits.max_attendees == 10 and policy.limits.max_parts == 200
    assert policy.decide(facts("PUBLISH")).rule == "publish"


# -- bad files -------------------------------------------------------------------------

GOOD_RULE = '[[rule]]\nname = "replies"\nmethod = ["REPLY"]\naction = "apply"\n'


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(*paths: Path) -> SettingError:
    with pytest.raises(SettingError) as caught:
        read_policy_files(paths).policy
    return caught.value


@pytest.mark.parametrize(("body", "line", "name", "message"), [
    ('[[rule]]\nname = "partners-free-busy"\nmethod = "REQUEST"\naction = "aply"\n', 6, "partners-free-busy",
     "unknown action 'aply' (expected apply, hold, reject, auto-accept, auto-decline)"),
    ('[[rule]]\nname = "typo"\nmethdo = ["REPLY"]\naction = "apply"\n', 5, "typo", "unknown key 'methdo'"),
    ('[[rule]]\nname = "widen"\nsender_domain = ["*partner.example"]\naction = "apply"\n', 5, "widen",
     "bad domain pattern '*partner.example'"),
    ('[[rule]]\nname = "who"\nsender = "room-*"\naction = "apply"\n', 5, "who", "bad address pattern 'room-*'"),
    ('[[rule]]\nname = "m"\nmethod = ["REQUEST", "RSVP"]\naction = "apply"\n', 5, "m", "unknown method 'RSVP'"),
    ('[[rule]]\nname = "k"\nauth = ["dkim"]\naction = "apply"\n', 5, "k", "unknown auth 'dkim'"),
    ('[[rule]]\nname = "n"\naction = "hold"\nnotify_sender = true\n', 6, "n", "notify_sender goes with"),
    ('[[rule]]\nname = "rooms"\naction = "auto-accept"\n', 5, "rooms", "auto-accept is for rooms"),
    ('[[rule]]\nname = "p"\npartner = ["nobody"]\naction = "apply"\n', 3, "p", "no partner named 'nobody'"),
    ('[[rule]]\nname = "Bad Name"\naction = "apply"\n', 4, "Bad Name", "must be kebab-case"),
    ('[[rule]]\nname = "no-action"\nmethod = ["REPLY"]\n', 4, "no-action", "no action"),
    ('[[room]]\nname = "long"\nrooms = ["room-*@foo.example"]\nmax_duration = "4 hours"\n', 6, "long",
     "bad duration '4 hours'"),
    ('[[room]]\nname = "w"\nrooms = ["room-*@foo.example"]\nbooking_window = 90\n', 6, "w", "bad duration 90"),
    ('[[room]]\nname = "o"\nrooms = ["r@foo.example"]\notherwise = "auto-accept"\n', 6, "o", "unknown otherwise"),
    ('[[partner]]\nname = "weak"\ndomains = ["bar.example"]\nfreebusy = true\nfreebusy_token = "short"\n', 7, "weak",
     "at least 20 characters"),
    ('[[partner]]\nname = "tok"\ndomains = ["bar.example"]\nfreebusy_token = "0123456789abcdefghijk"\n', 3, "tok",
     "needs freebusy = true"),
    ('[[partner]]\nname = "f"\ndomains = ["bar.example"]\nfreebusy = true\nfreebusy_token_file = "none"\n', 7,
     "f", "cannot read"),
    (('[[partner]]\nname = "key"\ndomains = ["bar.example"]\n[partner.dkim_keys]\n'
      '"s._domainkey.bar.example" = "v=DKIM1; k=ed25519; p=AAAA"\n'), 7, "key", "32-byte ed25519"),
    (('[[partner]]\nname = "other"\ndomains = ["bar.example"]\n[partner.dkim_keys]\n'
      '"s._domainkey.evil.example" = "v=DKIM1; k=ed25519; p=AAAA"\n'), 7, "other", "one of the partner's domains"),
])
def test_a_bad_section_is_named_by_file_line_and_name(
    tmp_path: Path, body: str, line: int, name: str, message: str
) -> None:
    path = write(tmp_path, 'default = "hold"\n\n' + body)
    error = error_of(path)
    assert (error.file, error.line, error.name) == (str(path), line, name)
    assert message in error.message
    assert str(error).startswith(f"{path}:{line}: ")


def test_the_error_reads_as_the_operator_needs_it(tmp_path: Path) -> None:
    path = write(tmp_path, 'default = "hold"\n[[rule]]\nname = "partners-free-busy"\naction = "aply"\n')
    assert str(error_of(path)) == (
        f"{path}:4: rule 'partners-free-busy': unknown action 'aply' "
        "(expected apply, hold, reject, auto-accept, auto-decline)"
    )


def test_the_second_of_two_rules_is_found_by_its_own_header(tmp_path: Path) -> None:
    path = write(tmp_path, 'default = "hold"\n' + GOOD_RULE + '\n[[rule]]\nname = "second"\naction = "nope"\n')
    error = error_of(path)
    assert (error.line, error.name) == (9, "second")


def test_a_policy_without_a_default_is_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_RULE)
    error = error_of(path)
    assert error.file == str(path) and "no default action" in error.message


@pytest.mark.parametrize(("text", "line", "message"), [
    ('default = "auto-accept"\n', 1, "unknown default 'auto-accept' (expected apply, hold, reject)"),
    ('default = "hold"\nprivate_events = "hide"\n', 2, "unknown private events 'hide'"),
    ('default = "hold"\n\n[limtis]\nmax_parts = 3\n', 3, "unknown key 'limtis'"),
    ('default = "hold"\n[limits]\nmax_parts = 0\n', 3, "max_parts must be a positive whole number"),
    ('default = "hold"\n[limits]\ndomain_rate = "lots"\n', 3, "bad domain_rate 'lots'"),
    ('default = "hold"\n[freebusy]\nurl = "open"\n', 3, "unknown url 'open'"),
    ('default = "hold"\n[freebusy]\nlocal = "yes"\n', 3, "local must be true or false"),
    ('default = "hold"\n[[rule]]\nname = "a"\naction = "apply"\n[[room]]\nname = "a"\nrooms = ["r@f.example"]\n',
     6, "the name is already used at"),
    ('default = "hold"\n[[rule]]\nname = "limits"\naction = "apply"\n', 3, "reserved"),
    ('default = "hold"\nrule = "x"\n', 2, "use [[rule]] for each rule"),
    ('default = "hold"\n[[rule]]\nname = "x"\naction = apply\n', 4, "invalid TOML"),
])
def test_bad_settings_are_named_by_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    error = error_of(path)
    assert (error.file, error.line) == (str(path), line)
    assert message in str(error)


def test_a_name_used_in_an_earlier_file_is_refused_with_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, 'default = "hold"\n' + GOOD_RULE, "a.toml")
    second = write(tmp_path, "\n" + GOOD_RULE, "b.toml")
    error = error_of(first, second)
    assert (error.file, error.line, error.name) == (str(second), 3, "replies")
    assert f"already used at {first}:2" in error.message


def test_a_missing_file_and_an_empty_list_are_errors(tmp_path: Path) -> None:
    assert "cannot read" in str(error_of(tmp_path / "missing.toml"))
    assert "no policy files" in str(error_of())


def test_a_policy_error_is_a_configuration_error() -> None:
    assert issubclass(SettingError, ConfigError)


# -- reload (SIGHUP) -------------------------------------------------------------------

def test_relays_in_a_policy_file_are_read_in_the_same_pass_and_their_errors_name_the_line(tmp_path: Path) -> None:
    relay = '[[relay]]\nname = "partner-cal"\ndkim_domains = ["cal.partner.example"]\n'
    files = read_policy_files([write(tmp_path, 'default = "hold"\n' + GOOD_RULE + relay)])
    assert [r.name for r in files.relays] == ["partner-cal"] and files.policy.rules[0].name == "replies"
    path = write(tmp_path, 'default = "hold"\n' + relay + 'senders = ["nobody"]\n')
    with pytest.raises(SettingError) as error:
        read_policy_files([path])
    assert (error.value.file, error.value.line, error.value.name) == (str(path), 5, "partner-cal")
    assert "senders: bad address pattern" in error.value.message
