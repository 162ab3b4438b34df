"""Bounces of Reefknot's own mail through ``gateway.service.bounce_reports.record_bounce``, on SQLite and PostgreSQL.

Alice, a local organizer, invites outside attendees with ``events.put_event``; a bounce
comes back to a delivery's bounce address or names only its Message-ID, and the outbox
row, Alice's copy (SCHEDULE-STATUS) and Alice's inbox are read back.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.core.itip.schedulestatus import schedule_statuses
from gateway.core.mail.calendarparts import BounceReport
from gateway.core.mail.envelope import Envelope
from gateway.core.mail.replyaddress import bounce_address
from gateway.core.model import Kind, Outcome
from gateway.service.bounce_reports import (
    DELIVERY_FAILED,
    UNAUTHENTICATED_BOUNCE,
    record_bounce,
)
from gateway.service.routing import Route, routes_for
from gateway.store import calendars, directory, inbox, intake, outbox
from gateway.store.db import Database
from gateway.store.outbox import OutboxRecord, OutboxState
from gateway.store.schema import InboxEntry
from tests.conftest import NOW
from tests.service.test_delivery_attempts import invite

ALICE, CAROL, DAVE = "alice@foo.example", "carol@bar.example", "dave@baz.example"
DAEMON = "mailer-daemon@bar.example"
REPLY_DOMAIN = "reply.foo.example"


@dataclass(frozen=True)
class Reporters:
    """Who the bounce is proven to come from, as the trust judge would say."""

    addresses: frozenset[str] = frozenset()

    def authenticated_addresses(self) -> frozenset[str]:
        return self.addresses


@pytest.fixture
def site(db: Database) -> Database:
    with db.transaction() as session:
        directory.add_principal(session, ALICE, NOW, name="Alice", kind=Kind.INDIVIDUAL)
    return db


def failure(row: OutboxRecord | None = None, *, status: str = "5.1.1", actions: frozenset[str] = frozenset({"failed"}),
            ) -> BounceReport:
    recipients = ((row.recipient, status),) if row is not None and "failed" in actions else ()
    return BounceReport(row.message_id if row is not None else None, recipients, (), actions)


def bounce(db: Database, to: str, report: BounceReport, reporters: Reporters = Reporters()) -> str:
    """The bounce arrives from Carol's mail system for ``to``; the reason its intake message is closed with."""
    with db.transaction() as session:
        (queued,) = intake.enqueue_many(session, [(b"Subject: bounce\r\n\r\n", Envelope("", (to,), "smtp"), "<b@x>")],
                                        NOW)
        routes: list[Route] = routes_for(session, [to], NOW)
        return record_bounce(session, routes, report, DAEMON, queued.id, NOW, reporters)


def state(db: Database, row: OutboxRecord) -> OutboxRecord:
    with db.transaction() as session:
        return outbox.get(session, row.id)


def alices(db: Database, uid: str, attendee: str) -> tuple[set[str], list[InboxEntry]]:
    """The attendee's SCHEDULE-STATUS on Alice's copy, and Alice's inbox."""
    with db.transaction() as session:
        alice = directory.resolve(session, ALICE)
        assert alice is not None
        stored = calendars.load_object(session, alice.id, uid)
        assert stored.calendar is not None
        return schedule_statuses(stored.calendar, attendee), inbox.list_entries(session, alice.id)


def test_a_failure_sent_to_the_deliverys_bounce_address_fails_it_and_marks_the_attendee_5_1(site: Database) -> None:
    (carol,) = invite(site, "u-bounce", CAROL)
    to = bounce_address(carol.reply_token, carol.id, REPLY_DOMAIN)
    assert bounce(site, to, failure(carol)) == DELIVERY_FAILED
    failed = state(site, carol)
    assert (failed.state, failed.finished_at) == (OutboxState.FAILED, NOW)
    assert failed.last_error == f"bounced: to {CAROL}: {CAROL} 5.1.1 (reported by {DAEMON})"
    statuses, lines = alices(site, "u-bounce", CAROL)
    assert statuses == {"5.1"}
    assert [(e.method, e.uid, e.sender, e.outcome, e.reason) for e in lines] == [
        ("REQUEST", "u-bounce", DAEMON, Outcome.BOUNCED.value, DELIVERY_FAILED)
    ]
    assert lines[0].intake_id is not None and lines[0].ical == ""  # the returned calendar is never kept or applied


def test_a_delayed_warning_matches_its_delivery_but_changes_nothing(site: Database) -> None:
    (carol,) = invite(site, "u-delayed", CAROL)
    to = bounce_address(carol.reply_token, carol.id, REPLY_DOMAIN)
    assert bounce(site, to, failure(carol, status="4.4.7", actions=frozenset({"delayed"}))) == "delivery-delayed"
    assert state(site, carol) == carol
    assert alices(site, "u-delayed", CAROL) == ({""}, [])


def test_a_bounce_naming_only_our_message_id_is_recorded_but_changes_nothing_without_an_authenticated_reporter(
    site: Database,
) -> None:
    (carol,) = invite(site, "u-forged", CAROL)
    outsider = Reporters(frozenset({"postmaster@evil.example"}))
    assert bounce(site, ALICE, failure(carol), outsider) == UNAUTHENTICATED_BOUNCE
    assert state(site, carol).state is OutboxState.QUEUED
    statuses, lines = alices(site, "u-forged", CAROL)
    assert statuses == {""}
    ((outcome, reason, detail),) = [(e.outcome, e.reason, e.detail) for e in lines]
    assert (outcome, reason) == (Outcome.RECORDED.value, UNAUTHENTICATED_BOUNCE)
    assert detail.endswith("no authenticated reporter for bar.example or foo.example: the delivery stays queued")


def test_a_bounce_naming_our_message_id_from_the_attendees_authenticated_mail_system_fails_the_delivery(
    site: Database,
) -> None:
    carol, dave = invite(site, "u-vouched", CAROL, DAVE)
    assert bounce(site, ALICE, failure(carol), Reporters(frozenset({DAEMON}))) == DELIVERY_FAILED
    assert state(site, carol).state is OutboxState.FAILED
    assert state(site, dave).state is OutboxState.QUEUED  # the other attendee's delivery is another row
    statuses, lines = alices(site, "u-vouched", CAROL)
    assert statuses == {"5.1"} and alices(site, "u-vouched", DAVE)[0] == {""}
    assert [(e.outcome, e.reason) for e in lines] == [(Outcome.BOUNCED.value, DELIVERY_FAILED)]


def test_a_bounce_address_naming_another_partys_delivery_matches_nothing(site: Database) -> None:
    carol, dave = invite(site, "u-crossed", CAROL, DAVE)
    crossed = bounce_address(carol.reply_token, dave.id, REPLY_DOMAIN)  # Carol's token, Dave's delivery
    assert bounce(site, crossed, failure()) == "unmatched-delivery-report"
    assert bounce(site, ALICE, BounceReport("<never-sent@foo.example>", ((CAROL, "5.1.1"),), ())) == (
        "unmatched-delivery-report"
    )
    assert (state(site, carol), state(site, dave)) == (carol, dave)
    assert alices(site, "u-crossed", DAVE) == ({""}, [])
