"""iTIP validation (gateway.core.itip.validate), driven by scenario files.

- ``data/itip-invalid/<rule>[--<variant>].ics``: breaks exactly the rule named before ``--``.
- ``data/itip-valid-quirks/*.ics``: real-world-shaped messages that bend RFC 5546 and must pass.
- ``data/itip-valid-rfc5546/*.ics``: RFC 5546 §4's well-formed example messages; must pass.

The method of each file is its body's METHOD, as ``resolve_method`` finds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from icalendar import Calendar

from gateway.core.calendar.ical import method_of, parse_calendar
from gateway.core.itip.validate import (
    MAX_ATTENDEES,
    MAX_COMPONENTS,
    RESTRICTIONS,
    ItipError,
    resolve_method,
    validate_itip,
)
from gateway.core.model import Method
from tests.peers.paths import DATA

INVALID = sorted((DATA / "itip-invalid").glob("*.ics"))
QUIRKS = sorted((DATA / "itip-valid-quirks").glob("*.ics"))
RFC_EXAMPLES = sorted((DATA / "itip-valid-rfc5546").glob("*.ics"))


def load(path: Path) -> tuple[Calendar, Method]:
    calendar = parse_calendar(path.read_text(encoding="utf-8"))
    method, _ = resolve_method(None, method_of(calendar))
    assert method is not None, f"{path.name} has no METHOD"
    return calendar, method


def expected_rule(path: Path) -> str:
    return path.stem.split("--")[0]


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.mark.parametrize("path", RFC_EXAMPLES, ids=ids(RFC_EXAMPLES))
def test_rfc5546_example_messages_are_valid(path: Path) -> None:
    validate_itip(*load(path))


@pytest.mark.parametrize("path", QUIRKS, ids=ids(QUIRKS))
def test_real_world_quirks_are_forgiven(path: Path) -> None:
    validate_itip(*load(path))


@pytest.mark.parametrize("path", INVALID, ids=ids(INVALID))
def test_each_invalid_scenario_breaks_the_rule_in_its_name(path: Path) -> None:
    calendar, method = load(path)
    with pytest.raises(ItipError) as caught:
        validate_itip(calendar, method)
    assert caught.value.rule == expected_rule(path), caught.value.detail


def test_every_component_rule_has_a_scenario() -> None:
    rules = {expected_rule(p) for p in INVALID}
    assert rules >= {
        "no-scheduling-component",
        "mixed-component-types",
        "method-not-allowed-for-component",
        "uid-mismatch",
        "duplicate-instance",
        "missing-uid",
        "missing-organizer",
        "missing-dtstart",
        "missing-dtend",
        "missing-attendee",
        "reply-needs-exactly-one-attendee",
        "refresh-needs-exactly-one-attendee",
        "recurrence-id-not-allowed",
        "duplicate-property",
        "dtend-and-duration",
        "due-and-duration",
        "end-before-start",
    }


@pytest.mark.parametrize(
    ("component", "allowed"),
    [
        ("VEVENT", set(Method)),
        ("VTODO", set(Method)),
        ("VJOURNAL", {Method.PUBLISH, Method.ADD, Method.CANCEL}),
        ("VFREEBUSY", {Method.PUBLISH, Method.REQUEST, Method.REPLY}),
    ],
)
def test_the_table_allows_exactly_rfc5546s_methods_per_component(component: str, allowed: set[Method]) -> None:
    assert {method for kind, method in RESTRICTIONS if kind == component} == allowed


# --- limits -------------------------------------------------------------------------


def event(uid: str, attendees: int = 1, instance: int | None = None) -> str:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20240301T090000Z",
        "DTSTART:20240305T140000Z",
        "ORGANIZER:mailto:alice@example.com",
    ]
    if instance is not None:
        month, day, hour = instance // 28 % 12 + 1, instance % 28 + 1, instance // 336
        lines.append(f"RECURRENCE-ID:2024{month:02d}{day:02d}T{hour:02d}0000Z")
    lines += [f"ATTENDEE:mailto:guest{n}@example.org" for n in range(attendees)]
    return "\n".join([*lines, "END:VEVENT"])


def request(*events: str) -> Calendar:
    return parse_calendar("\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "METHOD:REQUEST", *events, "END:VCALENDAR"]))


def rule_of(calendar: Calendar, method: Method = Method.REQUEST, **limits: int) -> str | None:
    try:
        validate_itip(calendar, method, **limits)
    except ItipError as error:
        return error.rule
    return None


@pytest.mark.parametrize(
    ("components", "limit", "rule"),
    [
        (3, 3, None),
        (4, 3, "too-many-components"),
        (MAX_COMPONENTS, MAX_COMPONENTS, None),
        (MAX_COMPONENTS + 1, MAX_COMPONENTS, "too-many-components"),
    ],
)
def test_component_count_is_limited(components: int, limit: int, rule: str | None) -> None:
    instances = (event("series@example.com", instance=n) for n in range(components - 1))
    calendar = request(event("series@example.com"), *instances)
    assert rule_of(calendar, max_components=limit) == rule


def test_the_default_component_limit_is_1000() -> None:
    calendar = request(event("series@example.com"), *(event("series@example.com", instance=n) for n in range(1000)))
    assert rule_of(calendar) == "too-many-components"


@pytest.mark.parametrize(
    ("attendees", "limit", "rule"),
    [
        (2, 2, None),
        (3, 2, "too-many-attendees"),
        (MAX_ATTENDEES, MAX_ATTENDEES, None),
        (MAX_ATTENDEES + 1, MAX_ATTENDEES, "too-many-attendees"),
    ],
)
def test_attendee_count_is_limited(attendees: int, limit: int, rule: str | None) -> None:
    assert rule_of(request(event("big@example.com", attendees=attendees)), max_attendees=limit) == rule


def test_the_default_attendee_limit_is_5000() -> None:
    assert rule_of(request(event("big@example.com", attendees=5001))) == "too-many-attendees"


# --- specific forgiveness, stated once more as properties ------------------------------


def test_attendees_inside_a_valarm_never_count_for_a_reply() -> None:
    calendar, method = load(DATA / "itip-valid-quirks" / "google-reply-with-valarm-attendee.ics")
    validate_itip(calendar, method)
    assert method is Method.REPLY


def test_a_request_of_only_instances_needs_no_master() -> None:
    calendar = request(event("series@example.com", instance=3), event("series@example.com", instance=4))
    assert rule_of(calendar) is None


def test_validation_does_not_change_the_calendar() -> None:
    calendar, method = load(DATA / "itip-valid-quirks" / "outlook-reply-without-organizer.ics")
    before = calendar.to_ical()
    validate_itip(calendar, method)
    assert calendar.to_ical() == before


def test_google_counter_sent_as_reply_validates_as_counter() -> None:
    calendar = parse_calendar((DATA / "itip-valid-quirks" / "google-counter.ics").read_text(encoding="utf-8"))
    method, note = resolve_method("REPLY", method_of(calendar))
    assert method is Method.COUNTER and note is not None
    validate_itip(calendar, method)


def test_an_error_carries_its_rule_and_detail() -> None:
    error = ItipError("missing-uid", "VEVENT no UID")
    assert (error.rule, error.detail, str(error)) == ("missing-uid", "VEVENT no UID", "missing-uid: VEVENT no UID")
    assert str(ItipError("uid-mismatch")) == "uid-mismatch"


# --- resolve_method -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "body", "method", "noted"),
    [
        ("REQUEST", "REQUEST", Method.REQUEST, False),
        ("REPLY", "COUNTER", Method.COUNTER, True),
        ("CANCEL", "REQUEST", Method.REQUEST, True),
        ("REQUEST", None, Method.REQUEST, False),
        (None, "REPLY", Method.REPLY, False),
        (None, None, None, False),
        ("", "", None, False),
        ("", "REPLY", Method.REPLY, False),
        ("  ", None, None, False),
        ('"request"', "REQUEST", Method.REQUEST, False),
        ("'Reply' ", "reply", Method.REPLY, False),
        ("REQUEST;", None, Method.REQUEST, False),
        (" cancel\t", None, Method.CANCEL, False),
        ("DeclineCounter", "DECLINECOUNTER", Method.DECLINECOUNTER, False),
        ("publish", " Publish ", Method.PUBLISH, False),
        ("X-BOGUS", "REQUEST", Method.REQUEST, True),
    ],
)
def test_resolve_method(declared: str | None, body: str | None, method: Method | None, noted: bool) -> None:
    found, note = resolve_method(declared, body)
    assert found is method
    assert (note is not None) is noted


def test_the_mismatch_note_names_both_methods() -> None:
    _, note = resolve_method("REPLY", "COUNTER")
    assert note is not None and "REPLY" in note and "COUNTER" in note


@pytest.mark.parametrize(
    ("declared", "body"),
    [("FOO", None), (None, "X-PROPOSE"), ("REQUEST", "BOGUS"), ("POLLSTATUS", "")],
)
def test_an_unknown_method_that_would_be_used_is_an_error(declared: str | None, body: str | None) -> None:
    with pytest.raises(ItipError) as caught:
        resolve_method(declared, body)
    assert caught.value.rule == "unknown-method"
