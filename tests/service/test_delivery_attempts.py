"""Outbound deliveries in the store through ``gateway.service.delivery_attempts``, on SQLite and PostgreSQL.

Alice, a local organizer, invites outside attendees with ``events.put_event``; the rows
it queues are claimed, attempted and dropped here, and Alice's copy is read back for
each attendee's SCHEDULE-STATUS.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.core.itip.schedulestatus import ScheduleStatus, schedule_statuses
from gateway.core.mail.replyaddress import TokenAddress, read_token_address
from gateway.core.mail.retry import Attempt, AttemptResult, RetryPolicy
from gateway.core.model import Kind, PartStat
from gateway.service import delivery_attempts, events
from gateway.settings.config import Config, OutboundOptions
from gateway.store import calendars, directory, outbox
from gateway.store.db import Database
from gateway.store.outbox import OutboxNotFound, OutboxRecord, OutboxState
from tests.conftest import NOW
from tests.peers.cli import EVENT

ALICE, BOB, CAROL, DAVE = "alice@foo.example", "bob@foo.example", "carol@bar.example", "dave@baz.example"
REPLY_DOMAIN = "reply.foo.example"
LEASE = timedelta(minutes=2)
POLICY = RetryPolicy(minimum=timedelta(minutes=5), maximum=timedelta(hours=1), lifetime=timedelta(days=5))


@pytest.fixture
def site(db: Database) -> Database:
    with db.transaction() as session:
        directory.add_principal(session, ALICE, NOW, name="Alice", kind=Kind.INDIVIDUAL)
        directory.add_principal(session, BOB, NOW, name="Bob", kind=Kind.INDIVIDUAL)
    return db


def invite(db: Database, uid: str, *attendees: str) -> list[OutboxRecord]:
    """Alice invites the attendees; the outbox rows of the invitations, by id."""
    lines = "\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in attendees)
    with db.transaction() as session:
        alice = directory.resolve(session, ALICE)
        assert alice is not None
        events.put_event(session, alice, EVENT.format(uid=uid, attendees=lines), NOW)
        return [r for r in outbox.list_messages(session) if r.uid == uid]


def row(db: Database, outbox_id: int) -> OutboxRecord:
    with db.transaction() as session:
        return outbox.get(session, outbox_id)


def status(db: Database, uid: str, attendee: str) -> set[str]:
    """The attendee's SCHEDULE-STATUS values on Alice's copy."""
    with db.transaction() as session:
        alice = directory.resolve(session, ALICE)
        assert alice is not None
        stored = calendars.load_object(session, alice.id, uid)
        assert stored.calendar is not None
        return schedule_statuses(stored.calendar, attendee)


def test_a_claimed_row_counts_an_attempt_and_is_held_off_other_senders_until_its_lease_ends(site: Database) -> None:
    (queued,) = invite(site, "u-claim", CAROL)
    assert queued.attempts == 0 and queued.claimed_until is None
    (claimed,) = delivery_attempts.claim_due(site, NOW, NOW + LEASE, 10)
    assert (claimed.id, claimed.attempts, claimed.claimed_until) == (queued.id, 1, NOW + LEASE)
    assert row(site, queued.id).claimed_until == NOW + LEASE  # committed in a transaction of its own
    assert delivery_attempts.claim_due(site, NOW + LEASE / 2, NOW + 2 * LEASE, 10) == []
    (again,) = delivery_attempts.claim_due(site, NOW + 2 * LEASE, NOW + 3 * LEASE, 10)
    assert (again.id, again.attempts) == (queued.id, 2)  # a sender that died mid-attempt still moved the backoff on


def test_a_flush_claims_queued_rows_after_an_id_and_counts_no_attempt_for_one_not_yet_due(site: Database) -> None:
    carol, dave = invite(site, "u-flush", CAROL, DAVE)
    delivery_attempts.claim_due(site, NOW, NOW + LEASE, 1)
    deferred = delivery_attempts.record_attempt(site, carol.id, Attempt(AttemptResult.DEFERRED, "451 4.3.0 later"),
                                                POLICY, NOW)
    assert (deferred.state, deferred.next_attempt_at) == (OutboxState.QUEUED, NOW + timedelta(minutes=5))
    assert delivery_attempts.claim_due(site, NOW + LEASE, NOW + 2 * LEASE, 10) == [row(site, dave.id)]  # carol: not due
    assert delivery_attempts.claim_queued(site, NOW, NOW + LEASE, 10, after_id=dave.id) == []
    early, lease_until = NOW + timedelta(minutes=3), NOW + timedelta(minutes=4)  # dave is still held
    (forced,) = delivery_attempts.claim_queued(site, early, lease_until, 10, after_id=0)
    assert (forced.id, forced.attempts, forced.next_attempt_at) == (carol.id, 1, NOW + timedelta(minutes=5))
    assert forced.claimed_until == lease_until


def test_each_attempt_moves_the_row_and_sets_the_attendees_schedule_status_on_the_organizers_copy(
    site: Database,
) -> None:
    carol, dave = invite(site, "u-attempt", CAROL, DAVE)
    assert status(site, "u-attempt", CAROL) == {""}
    delivery_attempts.claim_due(site, NOW, NOW + LEASE, 10)
    sent = delivery_attempts.record_attempt(site, carol.id, Attempt(AttemptResult.DELIVERED, "250 2.0.0 Ok"),
                                            POLICY, NOW)
    bad = delivery_attempts.record_attempt(site, dave.id, Attempt(AttemptResult.BAD_ADDRESS, "550 5.1.1 unknown"),
                                           POLICY, NOW)
    assert (sent.state, sent.schedule_status, sent.recipient) == (OutboxState.SENT, ScheduleStatus.SENT, CAROL)
    assert (bad.state, bad.schedule_status, bad.detail) == (
        OutboxState.FAILED, ScheduleStatus.INVALID_USER, "bad-address: 550 5.1.1 unknown"
    )
    assert (row(site, carol.id).state, row(site, carol.id).finished_at) == (OutboxState.SENT, NOW)
    assert row(site, dave.id).last_error == "bad-address: 550 5.1.1 unknown"
    assert status(site, "u-attempt", CAROL) == {"1.1"} and status(site, "u-attempt", DAVE) == {"3.7"}
    assert status(site, "u-attempt", ALICE) == {""}  # the organizer's own line is left alone


def test_an_attempt_on_a_row_no_longer_claimed_leaves_what_the_operator_did(site: Database) -> None:
    (carol,) = invite(site, "u-meanwhile", CAROL)
    delivery_attempts.claim_due(site, NOW, NOW + LEASE, 10)
    with site.transaction() as session:
        delivery_attempts.drop_message(session, carol.id, NOW)
    late = delivery_attempts.record_attempt(site, carol.id, Attempt(AttemptResult.DELIVERED, "250 ok"), POLICY, NOW)
    assert (late.state, late.schedule_status) == (OutboxState.DROPPED, None)
    assert row(site, carol.id).state is OutboxState.DROPPED
    assert status(site, "u-meanwhile", CAROL) == {"5.1"}  # dropped while queued: not delivered


def test_dropping_a_failed_row_keeps_its_status_and_a_sent_row_cannot_be_dropped(site: Database) -> None:
    carol, dave = invite(site, "u-drop", CAROL, DAVE)
    delivery_attempts.claim_due(site, NOW, NOW + LEASE, 10)
    delivery_attempts.record_attempt(site, carol.id, Attempt(AttemptResult.BAD_ADDRESS, "550 5.1.1"), POLICY, NOW)
    delivery_attempts.record_attempt(site, dave.id, Attempt(AttemptResult.DELIVERED, "250 ok"), POLICY, NOW)
    with site.transaction() as session:
        delivery_attempts.drop_message(session, carol.id, NOW)
    with site.transaction() as session, pytest.raises(OutboxNotFound):
        delivery_attempts.drop_message(session, dave.id, NOW)
    assert (row(site, carol.id).state, row(site, dave.id).state) == (OutboxState.DROPPED, OutboxState.SENT)
    assert row(site, carol.id).last_error == "bad-address: 550 5.1.1"
    assert status(site, "u-drop", CAROL) == {"3.7"} and status(site, "u-drop", DAVE) == {"1.1"}


def test_only_the_organizers_own_messages_leave_a_schedule_status_and_the_envelope_names_the_row(
    site: Database,
) -> None:
    (request,) = invite(site, "u-own", CAROL)
    outside = EVENT.format(uid="u-theirs", attendees=f"ATTENDEE;RSVP=TRUE:mailto:{BOB}").replace(
        "mailto:alice@foo.example", f"mailto:{CAROL}")
    with site.transaction() as session:
        bob = directory.resolve(session, BOB)
        assert bob is not None
        events.put_event(session, bob, outside, NOW)
        events.reply_event(session, bob, "u-theirs", PartStat.ACCEPTED, NOW)
        (reply,) = outbox.list_messages(session, states=(OutboxState.QUEUED,))[1:]
        assert reply.method == "REPLY"
        assert not delivery_attempts.update_schedule_status(session, reply, ScheduleStatus.NOT_DELIVERED, NOW)
        assert delivery_attempts.update_schedule_status(session, request, ScheduleStatus.NOT_DELIVERED, NOW)
        assert not delivery_attempts.update_schedule_status(session, request, ScheduleStatus.NOT_DELIVERED, NOW)
    assert status(site, "u-own", CAROL) == {"5.1"}

    envelope = delivery_attempts.envelope_sender(request, REPLY_DOMAIN)
    assert envelope == f"bounce+{request.id}.{request.reply_token}@{REPLY_DOMAIN}"
    assert read_token_address(envelope) == TokenAddress(request.reply_token, request.id)
    assert delivery_attempts.envelope_sender(request, "") == ALICE
    policy = delivery_attempts.retry_policy(Config(outbound=OutboundOptions(retry_min=60.0, retry_max=600.0,
                                                                           lifetime=3600.0)))
    assert policy == RetryPolicy(timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=1))
