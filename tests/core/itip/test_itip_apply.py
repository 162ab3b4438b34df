"""The apply engine, table-driven from scenario directories under tests/data/itip/."""

from __future__ import annotations

import itertools

import pytest

from gateway.core.calendar.ical import parse_calendar, serialize_calendar
from gateway.core.itip.types import Recipient
from tests.peers.itip_scenarios import (
    SCENARIOS,
    apply_file,
    check_expectation,
    describe,
    instances,
    load_case,
    run_scenario,
    scenario_names,
    seeded,
)


@pytest.mark.parametrize("name", scenario_names())
def test_scenario(name: str) -> None:
    case = load_case(name)
    run = run_scenario(name)
    problems = []
    for index, (step, result) in enumerate(zip(case["step"], run.results), 1):
        got = (result.outcome.value, result.reason)
        wanted = (step["outcome"], step.get("reason", result.reason))
        if got != wanted:
            problems.append(f"step {index} ({step['message']}): {got} != {wanted} {result.detail}")
        if "answers" in step:
            answers = sorted(f"{m.method.value} {r}" for m in result.messages for r in m.recipients)
            if answers != sorted(step["answers"]):
                problems.append(f"step {index} answers: {answers} != {sorted(step['answers'])}")
    for expect in case.get("expect", []):
        problems += check_expectation(run.stored, expect)
    if "final" in case and sorted(instances(run.stored)) != sorted(case["final"]["instances"]):
        problems.append(f"instances: {sorted(instances(run.stored))} != {sorted(case['final']['instances'])}")
    assert problems == [], "\n".join(problems)


def _ordered_scenarios() -> list[str]:
    return [n for n in scenario_names() if load_case(n).get("order_independent")]


@pytest.mark.parametrize("name", _ordered_scenarios())
def test_final_state_does_not_depend_on_arrival_order(name: str) -> None:
    """Out-of-order delivery ends where in-order delivery ends (INTEROP rule 13)."""
    files = [step["message"] for step in load_case(name)["step"]]
    in_order = run_scenario(name).stored
    expected = _semantic(in_order.calendar)
    for order in itertools.islice(itertools.permutations(files), 24):
        assert _semantic(run_scenario(name, list(order)).stored.calendar) == expected, order


def _semantic(calendar: object) -> dict[str, str]:
    """A stored calendar as comparable facts per instance."""
    assert calendar is not None
    stored = seeded(parse_calendar(serialize_calendar(calendar)))  # type: ignore[arg-type]
    return {key: repr(describe(component)) for key, component in instances(stored).items()}


def test_applying_never_mutates_the_message_or_the_stored_copy() -> None:
    directory = SCENARIOS / "reply-accept"
    case = load_case("reply-accept")
    stored_text = (directory / case["stored"]).read_text()
    stored = seeded(parse_calendar(stored_text))
    before = serialize_calendar(stored.calendar)  # type: ignore[arg-type]
    result = apply_file(directory / case["step"][0]["message"], stored, Recipient(case["recipient"]))
    assert result.changed
    assert serialize_calendar(stored.calendar) == before  # type: ignore[arg-type]
