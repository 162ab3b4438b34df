"""The planner, table-driven: each directory under tests/data/plan/ is one scenario.

A scenario holds ``old.ics`` (absent: a new object), ``new.ics`` (absent: a deletion) and
``case.toml`` (the actor, ``now``, and what must come out). Calendars are compared by
meaning: every outgoing message is written out, read back and checked property by
property, never as text.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timezone
from typing import Any

import pytest
from icalendar import Calendar, Component

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import (
    attendees_of,
    components_of,
    dtstamp_of,
    find_attendee,
    method_of,
    organizer_of,
    parse_calendar,
    partstat_of,
    sequence_of,
    serialize_calendar,
    timezones_of,
    uid_of,
)
from gateway.core.calendar.instances import (
    MASTER,
    date_values,
    instance_key,
    recurrence_key_of,
)
from gateway.core.itip.plan import (
    Plan,
    PlanError,
    build_refresh,
    build_reply,
    build_request,
    plan_itip,
)
from gateway.core.model import Method, OutgoingMessage
from tests.peers.paths import DATA

PLANS = DATA / "plan"
SCENARIOS = sorted(p.name for p in PLANS.iterdir() if (p / "case.toml").exists())
INTERNAL_PARAMETERS = ("SCHEDULE-AGENT", "SCHEDULE-STATUS", "SCHEDULE-FORCE-SEND")
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def load(scenario: str, name: str) -> Calendar | None:
    path = PLANS / scenario / name
    return parse_calendar(path.read_text(encoding="utf-8")) if path.exists() else None


def load_case(scenario: str) -> dict[str, Any]:
    with (PLANS / scenario / "case.toml").open("rb") as handle:
        return tomllib.load(handle)


def when(case: dict[str, Any]) -> datetime:
    value = case.get("now", NOW)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def run(scenario: str) -> tuple[dict[str, Any], Plan]:
    case = load_case(scenario)
    plan = plan_itip(load(scenario, "old.ics"), load(scenario, "new.ics"), case["actor"], when(case),
                     comment=case.get("comment"))
    return case, plan


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str) -> None:
    case = load_case(scenario)
    if "error" in case:
        with pytest.raises(PlanError) as raised:
            run(scenario)
        assert raised.value.reason == case["error"]
        return
    _case, plan = run(scenario)
    expected = case.get("messages", [])
    got = sorted((m.method.value, m.recipients) for m in plan.messages)
    assert got == sorted((e["method"], (e["recipient"],)) for e in expected), "messages differ"
    for message in plan.messages:
        check_invariants(message, case["actor"], when(case))
    for expectation in expected:
        check_message(find_message(plan, expectation), expectation)
    check_stored(plan.stored, case.get("stored", {}), when(case))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_inputs_are_not_mutated(scenario: str) -> None:
    case = load_case(scenario)
    old, new = load(scenario, "old.ics"), load(scenario, "new.ics")
    before = [c.to_ical() if c is not None else None for c in (old, new)]
    try:
        plan = plan_itip(old, new, case["actor"], when(case), comment=case.get("comment"))
    except PlanError:
        plan = None
    assert [c.to_ical() if c is not None else None for c in (old, new)] == before
    if plan is not None and plan.stored is not None:
        assert all(plan.stored is not c for c in (old, new))
        assert all(a is not b for a in components_of(plan.stored) for c in (old, new) if c for b in components_of(c))


def find_message(plan: Plan, expectation: dict[str, Any]) -> OutgoingMessage:
    matching = [m for m in plan.messages
                if m.method.value == expectation["method"] and m.recipients == (expectation["recipient"],)]
    assert len(matching) == 1
    return matching[0]


def reread(message: OutgoingMessage) -> Calendar:
    """The message as a receiver sees it: written out and parsed again."""
    return Calendar.from_ical(serialize_calendar(message.calendar))  # as on the wire, every VTIMEZONE kept


def check_invariants(message: OutgoingMessage, actor: str, now: datetime) -> None:
    """What every outgoing message must satisfy, whatever the scenario."""
    calendar = reread(message)
    assert method_of(calendar) == message.method.value
    assert calendar.get("PRODID") and str(calendar.get("VERSION")) == "2.0"
    assert message.sender == actor and len(message.recipients) == 1
    components = components_of(calendar)
    assert components and {uid_of(c) for c in components} == {message.uid}
    for component in components:
        assert dtstamp_of(component) == now
        assert not [s for s in component.subcomponents if s.name == "VALARM"], "alarms are private"
        for name, value in component.property_items(recursive=True, sorted=False):
            params = getattr(value, "params", {})
            assert not any(p in params for p in INTERNAL_PARAMETERS), f"{name} carries an internal parameter"
        if message.method in (Method.REQUEST, Method.CANCEL, Method.REPLY, Method.REFRESH):
            assert organizer_of(component)
    assert calendar.get_missing_tzids() == set(), "a TZID without its VTIMEZONE"
    if message.method in (Method.REPLY, Method.REFRESH):
        for component in components:
            assert attendees_of(component) == [message.sender], "a reply names exactly one attendee"


def check_message(message: OutgoingMessage, expectation: dict[str, Any]) -> None:
    calendar = reread(message)
    components = components_of(calendar)
    keys = [recurrence_key_of(c) for c in components]
    if "timezones" in expectation:
        zones = {str(tz.get("TZID")): tz for tz in timezones_of(calendar)}
        assert sorted(zones) == sorted(expectation["timezones"])
        for tzid, first in expectation.get("timezone_starts", {}).items():
            assert min(instance_key(start) for start in _observance_starts(zones[tzid])) == first
    if "keys" in expectation:
        assert sorted(keys) == sorted(expectation["keys"])
    subject = message.sender if message.method in (Method.REPLY, Method.REFRESH) else message.recipients[0]
    for component in components:
        check_component(component, expectation, subject)
    for per_component in expectation.get("components", []):
        component = components[keys.index(per_component["key"])]
        check_component(component, per_component, subject)


def check_component(component: Component, expected: dict[str, Any], subject: str) -> None:
    """The semantic checks a case may state, for one component."""
    if "attendees" in expected:
        assert sorted(attendees_of(component)) == sorted(expected["attendees"])
    if "sequence" in expected:
        assert sequence_of(component) == expected["sequence"]
    if "partstat" in expected:
        prop = find_attendee(component, subject)
        assert prop is not None and partstat_of(prop) == expected["partstat"]
    if "rsvp" in expected:
        prop = find_attendee(component, subject)
        assert prop is not None and str(prop.params.get("RSVP", "")).upper() == expected["rsvp"]
    if "status" in expected:
        assert str(component.get("STATUS", "")).upper() == expected["status"]
    if "summary" in expected:
        assert str(component.get("SUMMARY", "")) == expected["summary"]
    if "comment" in expected:
        assert str(component.get("COMMENT", "")) == expected["comment"]
    if "exdates" in expected and recurrence_key_of(component) == MASTER:
        assert exdates(component) == set(expected["exdates"])
    for name in expected.get("properties", []):
        assert name in component, f"{name} should be kept"
    for name in expected.get("absent", []):
        assert name not in component, f"{name} should not be there"
    for param in expected.get("attendee_params", []):
        prop = find_attendee(component, param["address"])
        assert prop is not None
        assert _param(prop.params.get(param["name"])) == _param(param["value"])


def _observance_starts(zone: Component) -> list[datetime]:
    return [s.get("DTSTART").dt for s in zone.subcomponents if s.get("DTSTART") is not None]


def _param(value: object) -> str:
    text = str(value or "").strip('"')
    return normalize_address(text) or text.upper()


def exdates(component: Component) -> set[str]:
    return {instance_key(v) for v in date_values(component, "EXDATE")}


def check_stored(stored: Calendar | None, expected: dict[str, Any], now: datetime) -> None:
    if expected.get("deleted"):
        assert stored is None
        return
    assert stored is not None
    stored = parse_calendar(serialize_calendar(stored))
    by_key = {recurrence_key_of(c): c for c in components_of(stored)}
    for component in by_key.values():
        for _name, value in component.property_items(recursive=True, sorted=False):
            assert "SCHEDULE-FORCE-SEND" not in getattr(value, "params", {}), "never stored (RFC 6638 §7.2)"
    for entry in expected.get("components", []):
        component = by_key[entry["key"]]
        if "sequence" in entry:
            assert sequence_of(component) == entry["sequence"]
        if "dtstamp_is_now" in entry:
            assert (dtstamp_of(component) == now) is entry["dtstamp_is_now"]
        if "status" in entry:
            assert str(component.get("STATUS", "")).upper() == entry["status"]
        if "exdates" in entry:
            assert exdates(component) == set(entry["exdates"])
        for address, partstat in entry.get("partstats", {}).items():
            prop = find_attendee(component, address)
            assert prop is not None and partstat_of(prop) == partstat, address
        for address, rsvp in entry.get("rsvp", {}).items():
            prop = find_attendee(component, address)
            assert prop is not None and str(prop.params.get("RSVP", "")).upper() == rsvp, address


# Direct tests of the builders and of properties no single scenario shows.

def test_build_request_answers_a_refresh_with_the_attendees_own_share() -> None:
    stored = load("new-series-override-without-attendee", "new.ics")
    assert stored is not None
    message = build_request(stored, "e@baz.example", NOW)
    assert message.method is Method.REQUEST and message.recipients == ("e@baz.example",)
    assert message.sender == "a@foo.example"
    check_invariants(message, "a@foo.example", NOW)
    components = components_of(reread(message))
    assert [recurrence_key_of(c) for c in components] == [MASTER]
    assert exdates(components[0]) == {"20250317T080000Z"}
    assert timezones_of(reread(message)), "the VTIMEZONE travels with the REQUEST"


def test_build_request_for_a_cancelled_object_is_its_cancel() -> None:
    stored = load("status-cancelled", "new.ics")
    assert stored is not None
    message = build_request(stored, "b@foo.example", NOW)
    assert message.method is Method.CANCEL
    assert str(components_of(message.calendar)[0].get("STATUS")) == "CANCELLED"


def test_build_request_refuses_a_stranger() -> None:
    stored = load("summary-change-keeps-answers", "new.ics")
    assert stored is not None
    with pytest.raises(PlanError) as raised:
        build_request(stored, "nobody@else.example", NOW)
    assert raised.value.reason == "attendee-not-in-event"


def test_build_reply_for_one_instance_not_yet_overridden() -> None:
    stored = load("attendee-declines-one-instance", "old.ics")
    assert stored is not None
    message = build_reply(stored, "b@foo.example", NOW, keys=["20250317T080000Z"], comment="Away")
    check_invariants(message, "b@foo.example", NOW)
    (component,) = components_of(reread(message))
    assert recurrence_key_of(component) == "20250317T080000Z"
    assert str(component.get("COMMENT")) == "Away" and "RRULE" not in component
    assert message.recipients == ("a@foo.example",)


def test_build_refresh_for_an_unknown_object() -> None:
    add = load("attendee-declines-one-instance", "old.ics")
    assert add is not None
    message = build_refresh(add, "b@foo.example", NOW)
    assert message.method is Method.REFRESH and message.recipients == ("a@foo.example",)
    check_invariants(message, "b@foo.example", NOW)
    (component,) = components_of(reread(message))
    assert "RECURRENCE-ID" not in component and "DTSTART" not in component
    assert uid_of(component) == message.uid


def test_build_reply_does_not_mutate_the_stored_object() -> None:
    stored = load("attendee-accepts", "new.ics")
    assert stored is not None
    before = stored.to_ical()
    build_reply(stored, "b@foo.example", NOW, comment="Yes")
    build_request(load("summary-change-keeps-answers", "new.ics") or Calendar(), "b@foo.example", NOW)
    assert stored.to_ical() == before


def test_naive_now_is_refused() -> None:
    new = load("summary-change-keeps-answers", "new.ics")
    with pytest.raises(ValueError):
        plan_itip(None, new, "a@foo.example", datetime(2025, 3, 1, 12, 0))


def test_every_scenario_directory_has_a_case() -> None:
    assert len(SCENARIOS) == len([p for p in PLANS.iterdir() if p.is_dir()])
