"""The intake service (gateway.service.processing): take in, process the queue, retry then hold, release and drop."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.core.mail.envelope import Envelope
from gateway.core.mail.mailbox import MailboxKey, MailboxPosition
from gateway.core.model import Outcome
from gateway.service import processing
from gateway.service.trust import Trust
from gateway.store import calendars, directory, inbox, intake, mailboxes
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from gateway.store.intake import IntakeNotFound, IntakeState
from gateway.store.schema import IntakeMessage
from tests.conftest import NOW
from tests.peers.cli import EVENT

ALICE, ERIN = "alice@foo.example", "erin@baz.example"


def invitation(uid: str, *, sender: str = ERIN) -> bytes:
    """Erin invites Alice (one iMIP REQUEST); ``sender`` is the From header, the organizer stays Erin."""
    calendar = EVENT.format(uid=uid, attendees=f"ATTENDEE;RSVP=TRUE:mailto:{ALICE}")
    calendar = calendar.replace(f"CN=Alice:mailto:{ALICE}", f"CN=Erin:mailto:{ERIN}")
    calendar = calendar.replace(f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{ALICE}", f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{ERIN}")
    calendar = calendar.replace("VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST").replace("\n", "\r\n")
    return (
        f"From: {sender}\r\nTo: {ALICE}\r\nSubject: Invitation {uid}\r\nMessage-ID: <{uid}@test>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REQUEST; charset="utf-8"\r\n\r\n{calendar}'
    ).encode()


def envelope(sender: str = ERIN, source: str = "smtp") -> Envelope:
    return Envelope(sender, (ALICE,), source)


@pytest.fixture
def alice(db: Database) -> PrincipalRef:
    with db.transaction() as session:
        return directory.add_principal(session, ALICE, NOW, name="Alice")


class ExplodingPolicy:
    """A stand-in policy with a bug: reading its limits raises, as any unexpected error in processing would."""

    @property
    def limits(self) -> object:
        raise RuntimeError("policy bug: limits unavailable")


EXPLODING_TRUST = Trust(policy=ExplodingPolicy())  # type: ignore[arg-type]


def row_of(db: Database, intake_id: int) -> IntakeMessage:
    with db.reading() as session:
        row = session.get(IntakeMessage, intake_id)
        assert row is not None
        return row


def stored_uids(db: Database, principal: PrincipalRef) -> list[str]:
    with db.reading() as session:
        return [text.split("UID:", 1)[1].split("\r\n", 1)[0] for text in calendars.list_objects(session, principal.id)]


def test_take_in_queues_messages_in_order_and_saves_the_mailbox_position_in_the_same_commit(db: Database) -> None:
    key = MailboxKey("imap.foo.example", "alice", "INBOX")
    messages = [(invitation(f"in-{n}"), envelope(source="imap")) for n in range(3)]
    ids = processing.take_in(db, messages, NOW, mailbox=(key, MailboxPosition(42, 17)))
    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) == 3
    for n, (intake_id, (raw, _)) in enumerate(zip(ids, messages, strict=True)):
        row = row_of(db, intake_id)
        assert (row.state, row.raw, row.source, row.envelope_sender) == (IntakeState.QUEUED, raw, "imap", ERIN)
        assert row.recipients == [ALICE] and row.sender_domain == "baz.example"
        assert row.message_id == f"<in-{n}@test>" and row.attempts == 0
    with db.reading() as session:
        assert mailboxes.load_position(session, key) == MailboxPosition(42, 17)
    assert processing.take_in(db, [], NOW) == []


def test_process_queued_takes_at_most_limit_messages_oldest_first_and_applies_them(
    db: Database, alice: PrincipalRef
) -> None:
    ids = processing.take_in(db, [(invitation(f"q-{n}"), envelope()) for n in range(3)], NOW)
    first = processing.process_queued(db, NOW, limit=2)
    assert [(r.intake_id, r.state, r.reason) for r in first] == [(i, IntakeState.DONE, "") for i in ids[:2]]
    assert row_of(db, ids[2]).state == IntakeState.QUEUED
    assert stored_uids(db, alice) == ["q-0", "q-1"]
    rest = processing.process_queued(db, NOW, limit=2)
    assert [(r.intake_id, r.state) for r in rest] == [(ids[2], IntakeState.DONE)]
    assert processing.process_queued(db, NOW) == []
    assert [row_of(db, i).state for i in ids] == [IntakeState.DONE] * 3
    assert stored_uids(db, alice) == ["q-0", "q-1", "q-2"]


def test_an_unexpected_error_keeps_the_message_queued_then_holds_it_as_processing_failed(
    db: Database, alice: PrincipalRef
) -> None:
    (intake_id,) = processing.take_in(db, [(invitation("fragile"), envelope())], NOW)
    for attempt in range(1, processing.MAX_ATTEMPTS):
        (receipt,) = processing.process_queued(db, NOW, trust=EXPLODING_TRUST)
        assert (receipt.intake_id, receipt.state, receipt.reason) == (intake_id, IntakeState.QUEUED, "processing-failed")
        row = row_of(db, intake_id)
        assert (row.state, row.attempts, row.claimed_until) == (IntakeState.QUEUED, attempt, None)
        assert row.detail == "RuntimeError: policy bug: limits unavailable"
    (last,) = processing.process_queued(db, NOW, trust=EXPLODING_TRUST)
    assert (last.state, last.reason) == (IntakeState.HELD, "processing-failed")
    row = row_of(db, intake_id)
    assert (row.state, row.reason, row.attempts) == (IntakeState.HELD, "processing-failed", processing.MAX_ATTEMPTS)
    assert processing.process_queued(db, NOW) == []  # held: not taken again
    assert stored_uids(db, alice) == []

    released = processing.release_held(db, intake_id, NOW)
    assert (released.intake_id, released.state) == (intake_id, IntakeState.DONE)
    assert stored_uids(db, alice) == ["fragile"]


def test_a_message_claimed_max_claims_times_without_an_outcome_is_held_as_worker_crashed(
    db: Database, alice: PrincipalRef
) -> None:
    (intake_id,) = processing.take_in(db, [(invitation("crasher"), envelope())], NOW)
    moment = NOW
    for _ in range(processing.MAX_CLAIMS):  # each processor dies after its claim; its lease runs out
        with db.transaction() as session:
            assert intake.claim_queued(session, moment, moment + processing.LEASE, 10) == [intake_id]
        assert processing.process_queued(db, moment) == []  # still leased to the dead processor
        moment += processing.LEASE + timedelta(seconds=1)
    (receipt,) = processing.process_queued(db, moment)
    assert (receipt.intake_id, receipt.state, receipt.reason) == (intake_id, IntakeState.HELD, processing.WORKER_CRASHED)
    row = row_of(db, intake_id)
    assert (row.state, row.reason, row.claims, row.claimed_until) == (IntakeState.HELD, "worker-crashed", 0, None)
    assert f"claimed {processing.MAX_CLAIMS} times" in row.detail
    assert stored_uids(db, alice) == []  # not processed again


def test_ingest_message_holds_a_sender_outside_its_role_and_release_held_applies_it_as_released(
    db: Database, alice: PrincipalRef
) -> None:
    mallory = "mallory@evil.example"
    receipt = processing.ingest_message(db, invitation("spoofed", sender=mallory), envelope(mallory), NOW)
    assert receipt.state == IntakeState.HELD and receipt.reason
    assert row_of(db, receipt.intake_id).reason == receipt.reason
    with db.reading() as session:
        (line,) = inbox.list_entries(session, alice.id)
        assert (line.uid, line.outcome, line.intake_id) == ("spoofed", Outcome.HELD, receipt.intake_id)
    assert stored_uids(db, alice) == []

    released = processing.release_held(db, receipt.intake_id, NOW + timedelta(minutes=1))
    assert (released.intake_id, released.state, released.reason) == (receipt.intake_id, IntakeState.DONE, "")
    assert row_of(db, receipt.intake_id).state == IntakeState.DONE
    assert stored_uids(db, alice) == ["spoofed"]
    with db.reading() as session:
        assert [e.outcome for e in inbox.list_entries(session, alice.id)] == [Outcome.HELD, Outcome.APPLIED]
    with pytest.raises(IntakeNotFound):  # no longer held
        processing.release_held(db, receipt.intake_id, NOW)


def test_drop_held_discards_the_content_keeps_the_record_and_tells_each_principal(
    db: Database, alice: PrincipalRef
) -> None:
    mallory = "mallory@evil.example"
    held = processing.ingest_message(db, invitation("dropped", sender=mallory), envelope(mallory), NOW)
    assert held.state == IntakeState.HELD
    later = NOW + timedelta(hours=1)
    processing.drop_held(db, held.intake_id, later)
    row = row_of(db, held.intake_id)
    assert (row.state, row.raw, row.reason, row.processed_at) == (IntakeState.DROPPED, b"", held.reason, later)
    with db.reading() as session:
        first, told = inbox.list_entries(session, alice.id)
    assert first.outcome == Outcome.HELD
    assert (told.uid, told.outcome, told.reason, told.intake_id) == (
        "dropped", Outcome.IGNORED, "dropped-by-operator", held.intake_id)
    assert told.detail == f"held as {first.reason}; dropped from quarantine"
    with pytest.raises(IntakeNotFound):
        processing.drop_held(db, held.intake_id, later)
    with pytest.raises(IntakeNotFound):
        processing.release_held(db, held.intake_id, later)


class PolicyFailingOnce:
    """The open policy, except that reading its limits raises once, at the ``fail_at``-th read (a bug met mid-group)."""

    def __init__(self, fail_at: int) -> None:
        self.reads, self.fail_at = 0, fail_at

    @property
    def limits(self) -> object:
        self.reads += 1
        if self.reads == self.fail_at:
            raise RuntimeError("policy bug: limits unavailable")
        return processing.OPEN_TRUST.policy.limits

    def __getattr__(self, name: str) -> object:
        return getattr(processing.OPEN_TRUST.policy, name)


def test_messages_applied_together_keep_their_own_outcomes_when_one_of_them_fails(
    db: Database, alice: PrincipalRef
) -> None:
    counting = PolicyFailingOnce(fail_at=0)
    processing.take_in(db, [(invitation("calibrate"), envelope())], NOW)
    processing.process_queued(db, NOW, trust=Trust(policy=counting))  # type: ignore[arg-type]
    reads_per_message = counting.reads

    ids = processing.take_in(db, [(invitation(f"g-{n}"), envelope()) for n in range(3)], NOW)
    failing = Trust(policy=PolicyFailingOnce(fail_at=reads_per_message + 1))  # type: ignore[arg-type]
    receipts = processing.process_queued(db, NOW, trust=failing, together=3)
    assert [(r.intake_id, r.state) for r in receipts] == [
        (ids[0], IntakeState.DONE), (ids[1], IntakeState.QUEUED), (ids[2], IntakeState.DONE)]
    assert (row_of(db, ids[1]).attempts, row_of(db, ids[1]).reason) == (1, "processing-failed")
    assert stored_uids(db, alice) == ["calibrate", "g-0", "g-2"]  # the failed one's work alone is undone
    (retried,) = processing.process_queued(db, NOW + processing.LEASE)
    assert (retried.intake_id, retried.state) == (ids[1], IntakeState.DONE)
    assert stored_uids(db, alice) == ["calibrate", "g-0", "g-1", "g-2"]


def test_a_group_whose_shared_commit_fails_is_applied_again_one_message_a_transaction(
    db: Database, alice: PrincipalRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = processing.take_in(db, [(invitation(f"c-{n}"), envelope()) for n in range(3)], NOW)
    sizes: list[int] = []
    real_group = processing._process_group

    def group(db_: Database, group_ids: list[int], *args: object):  # type: ignore[no-untyped-def]
        sizes.append(len(group_ids))
        if len(group_ids) > 1:
            with db_.transaction():
                raise OSError("disk I/O error at commit")  # what a failed commit raises out of the transaction
        return real_group(db_, group_ids, *args)

    monkeypatch.setattr(processing, "_process_group", group)
    receipts = processing.process_queued(db, NOW, together=3)
    assert sizes == [3, 1, 1, 1]
    assert [(r.intake_id, r.state) for r in receipts] == [(i, IntakeState.DONE) for i in ids]
    assert stored_uids(db, alice) == ["c-0", "c-1", "c-2"]
