"""Running apply-engine scenarios from ``tests/data/itip/<name>/``: messages in order, then checks.

A scenario directory holds ``case.toml`` and the iCalendar files it names. The format:

    description = "what is tested and why"
    recipient = "bob@foo.example"          # the local principal whose copy is changed
    aliases = ["robert@foo.example"]       # optional
    stored = "stored.ics"                  # optional starting copy, as if applied before

    [[step]]                               # applied in order
    message = "01-request.ics"
    outcome = "applied"                    # an Outcome value
    reason = "…"                           # optional: the named reason
    answers = ["REQUEST carol@bar.example"]  # optional: METHOD RECIPIENT of each answer produced

    [[expect]]                             # checks of the final copy, one instance each
    instance = ""                          # "" the master, else an instance key (20260708T080000Z)
    absent = false                         # true: this instance must not be stored
    sequence = 2
    status = "CANCELLED"
    summary = "Planning"
    dtstart = "2026-07-01T08:00:00Z"       # the instant (UTC) or the date
    partstat = { "carol@bar.example" = "ACCEPTED" }
    comment = { "carol@bar.example" = "Running late" }
    rsvp = { "carol@bar.example" = false }
    params = { "carol@bar.example" = { "SCHEDULE-STATUS" = "2.0" } }
    attendees = ["alice@foo.example", "carol@bar.example"]   # the exact set
    exdates = ["20260708T080000Z"]         # instance keys that must be excluded
    rdates = ["20260801T080000Z"]
    properties = { "X-MICROSOFT-SKYPETEAMSMEETINGURL" = "https://…" }

    [final]
    instances = ["", "20260708T080000Z"]   # the exact set of stored instance keys
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from icalendar import Calendar, Component

from gateway.core.calendar.ical import (
    as_utc,
    attendees_of,
    components_of,
    find_attendee,
    method_of,
    parse_calendar,
    sequence_of,
    start_of,
    version_of,
)
from gateway.core.calendar.instances import date_values, instance_key, recurrence_key_of
from gateway.core.itip.apply import apply_itip
from gateway.core.itip.ordering import SchedulingState
from gateway.core.itip.types import ApplyResult, Recipient, Stored
from gateway.core.itip.validate import resolve_method, validate_itip
from tests.peers.paths import DATA

SCENARIOS = DATA / "itip"
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)


@dataclass
class Run:
    """A scenario's final copy and the result of each step."""

    stored: Stored
    results: list[ApplyResult]


def scenario_names() -> list[str]:
    return sorted(p.name for p in SCENARIOS.iterdir() if (p / "case.toml").exists())


def load_case(name: str) -> dict[str, Any]:
    return tomllib.loads((SCENARIOS / name / "case.toml").read_text())


def seeded(calendar: Calendar) -> Stored:
    """A stored copy as if each of its components had been applied (its versions remembered)."""
    state = SchedulingState()
    for component in components_of(calendar):
        state = state.with_instance(recurrence_key_of(component), version_of(component))
    return Stored(calendar, state)


def apply_file(path: Path, stored: Stored, recipient: Recipient, now: datetime = NOW) -> ApplyResult:
    """Parse, validate and apply one message file, as the mail flow does."""
    message = parse_calendar(path.read_text())
    method, _note = resolve_method(None, method_of(message))
    assert method is not None, f"{path.name} has no METHOD"
    validate_itip(message, method)
    return apply_itip(message, method, stored, recipient, now)


def run_scenario(name: str, order: list[str] | None = None) -> Run:
    """Apply a scenario's steps (optionally in another order) and return the final copy."""
    case = load_case(name)
    directory = SCENARIOS / name
    recipient = Recipient(case["recipient"], frozenset(case.get("aliases", [])))
    stored = seeded(parse_calendar((directory / case["stored"]).read_text())) if "stored" in case else Stored()
    results = []
    for file in order or [step["message"] for step in case["step"]]:
        result = apply_file(directory / file, stored, recipient)
        if result.changed:
            stored = result.stored
        results.append(result)
    return Run(stored, results)


def instances(stored: Stored) -> dict[str, Component]:
    return {recurrence_key_of(c): c for c in stored.components}


def _utc_text(value: datetime | date) -> str:
    value = as_utc(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ" if value.tzinfo else "%Y-%m-%dT%H:%M:%S")
    return value.isoformat()


def describe(component: Component) -> dict[str, Any]:
    """The facts a scenario can check, read from one stored component."""
    facts: dict[str, Any] = {
        "sequence": sequence_of(component),
        "status": str(component.get("STATUS", "")).upper(),
        "summary": str(component.get("SUMMARY", "")),
        "attendees": sorted(attendees_of(component)),
        "exdates": sorted(instance_key(d) for d in date_values(component, "EXDATE")),
        "rdates": sorted(instance_key(d) for d in date_values(component, "RDATE")),
    }
    start = start_of(component)
    facts["dtstart"] = _utc_text(start) if start is not None else ""
    return facts


def check_expectation(stored: Stored, expect: dict[str, Any]) -> list[str]:
    """Every difference between one [[expect]] table and the stored copy, as readable lines."""
    key = expect.get("instance", "")
    component = instances(stored).get(key)
    if expect.get("absent"):
        return [] if component is None else [f"instance {key!r} should be absent"]
    if component is None:
        return [f"instance {key!r} missing; stored: {sorted(instances(stored))}"]
    facts = describe(component)
    problems = []
    for name in ("sequence", "status", "summary", "dtstart", "exdates", "rdates", "attendees"):
        if name in expect:
            wanted = sorted(expect[name]) if isinstance(expect[name], list) else expect[name]
            if facts[name] != wanted:
                problems.append(f"{key or 'master'} {name}: {facts[name]!r} != {wanted!r}")
    problems += _attendee_checks(component, key, expect)
    for name, value in expect.get("properties", {}).items():
        if str(component.get(name, "")) != value:
            problems.append(f"{key or 'master'} {name}: {component.get(name)!r} != {value!r}")
    return problems


def _attendee_checks(component: Component, key: str, expect: dict[str, Any]) -> list[str]:
    problems = []
    checks = {
        "partstat": lambda p: str(p.params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
        "comment": lambda p: str(p.params.get("X-RESPONSE-COMMENT", "")),
        "rsvp": lambda p: str(p.params.get("RSVP", "FALSE")).upper() == "TRUE",
    }
    for name, read in checks.items():
        for address, wanted in expect.get(name, {}).items():
            prop = find_attendee(component, address)
            got = read(prop) if prop is not None else None
            if got != wanted:
                problems.append(f"{key or 'master'} {name} of {address}: {got!r} != {wanted!r}")
    for address, params in expect.get("params", {}).items():
        prop = find_attendee(component, address)
        for param, wanted in params.items():
            got = str(prop.params.get(param, "")) if prop is not None else None
            if got != wanted:
                problems.append(f"{key or 'master'} {param} of {address}: {got!r} != {wanted!r}")
    return problems
