"""Every real-sender fixture in tests/data/mail/ through the whole intake path, with its right behaviour.

The manifest says what each message is (method, UID, bounce, TNEF, noise); this checks
what Reefknot makes of it: applied for the local recipients exactly once per calendar,
bounces never applied, TNEF held as unreadable, plain mail and forwards not applied (a
forward whose sender is not the organizer is held by the built-in roles check).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator

import pytest

from gateway.core.mail.envelope import Envelope
from gateway.service import processing
from gateway.store import calendars, directory, inbox
from gateway.store.db import Database
from gateway.store.intake import IntakeState
from tests.conftest import NOW
from tests.peers.corpus_site import LOCAL, MAIL, corpus_database

MANIFEST = tomllib.loads((MAIL / "manifest.toml").read_text())


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = corpus_database(tmp_path_factory.mktemp("corpus"), NOW)
    yield db
    db.dispose()


def _expected_state(case: dict[str, object]) -> tuple[IntakeState, str | None]:
    if case["bounce"]:
        return IntakeState.IGNORED, "unmatched-delivery-report"  # none of these bounces returns mail sent from here
    if case["tnef"] and not case["calendar_parts"]:
        return IntakeState.HELD, "tnef-invitation"
    if not case["calendar_parts"]:
        return IntakeState.IGNORED, "no-calendar-part"
    if not case["method"]:
        return IntakeState.IGNORED, "not-itip"
    if "held" in case:
        return IntakeState.HELD, str(case["held"])
    return IntakeState.DONE, None


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fixture_ends_where_its_manifest_says(corpus_db: Database, name: str) -> None:
    case = MANIFEST[name]
    raw = (MAIL / name).read_bytes()
    receipt = processing.ingest_message(corpus_db, raw, Envelope("", LOCAL, "ingest"), NOW)
    state, reason = _expected_state(case)
    assert receipt.state is state
    assert reason is None or receipt.reason == reason

    with corpus_db.transaction() as session:
        lines = [
            line for address in LOCAL
            for line in inbox.list_entries(session, directory.resolve(session, address).id)  # type: ignore[union-attr]
            if line.intake_id == receipt.intake_id
        ]
    if state is IntakeState.DONE:
        # one line per local recipient for each distinct calendar: the same calendar sent twice counts once
        assert len(lines) == len(LOCAL) * int(case["calendar_parts"])  # type: ignore[call-overload]
        assert {(line.method, line.uid) for line in lines} == {(case["method"], case["uid"])}
    elif reason in ("tnef-invitation", "not-itip"):
        # recorded for each recipient, so the owner sees what arrived, but nothing applied
        outcome = "unreadable" if reason == "tnef-invitation" else "ignored"
        assert {(line.outcome, line.reason) for line in lines} == {(outcome, reason)}
    elif "held" in case:
        # held for each recipient with the authority's reason, nothing applied
        assert len(lines) == len(LOCAL) and {line.outcome for line in lines} == {"held"}
        assert {line.reason for line in lines} == {"not-organizer"}
    else:
        assert lines == []


def test_a_bounce_never_applies_the_request_it_carries(corpus_db: Database) -> None:
    case = MANIFEST["bounce-dsn-with-our-request.eml"]
    with corpus_db.transaction() as session:
        for address in LOCAL:
            principal = directory.resolve(session, address)
            assert principal is not None
            assert calendars.list_objects(session, principal.id, str(case["uid"])) == []
