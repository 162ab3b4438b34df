"""Retention: raw bytes of handled messages, old inbox lines and finished outbox rows are forgotten; nothing else is."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from gateway.core.mail.envelope import Envelope
from gateway.core.model import Outcome
from gateway.service import processing, retention
from gateway.service.handoff import HandedOn, already_delivered, message_digest
from gateway.settings.config import RetentionOptions
from gateway.store import inbox
from gateway.store.db import Database
from gateway.store.directory import add_principal
from gateway.store.intake import IntakeState
from gateway.store.outbox import OutboxState
from gateway.store.schema import IntakeMessage, OutboxMessage
from tests.conftest import NOW

KEEP = RetentionOptions(raw_messages=timedelta(days=7), inbox=timedelta(days=30), outbox=timedelta(days=30))


def raw_of(db: Database) -> dict[int, bytes]:
    with db.reading() as session:
        return {row.id: row.raw for row in session.execute(select(IntakeMessage.id, IntakeMessage.raw))}


def test_raw_bytes_of_handled_messages_go_after_their_age_and_held_ones_stay(db: Database) -> None:
    with db.transaction() as session:
        add_principal(session, "alice@foo.example", NOW)
    envelope = Envelope("erin@baz.example", ("alice@foo.example",), "ingest")
    handled = processing.ingest_message(db, b"Subject: hello\r\n\r\nno calendar\r\n", envelope, NOW)
    held = processing.ingest_message(db, b"Subject: x\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n",
                                     envelope, NOW)
    assert handled.state is IntakeState.IGNORED and held.state is IntakeState.HELD
    assert retention.prune(db, NOW + timedelta(days=6), KEEP).raw_messages == 0
    pruned = retention.prune(db, NOW + timedelta(days=8), KEEP)
    assert pruned.raw_messages == 1
    kept = raw_of(db)
    assert kept[handled.intake_id] == b"" and kept[held.intake_id] != b""
    assert retention.prune(db, NOW + timedelta(days=9), KEEP).raw_messages == 0  # once is enough


def test_old_inbox_lines_and_finished_outbox_rows_go_and_queued_rows_stay(db: Database) -> None:
    with db.transaction() as session:
        alice = add_principal(session, "alice@foo.example", NOW)
        inbox.record(session, inbox.InboxRecord(alice.id, "REQUEST", "u1", "carol@bar.example",
                                                Outcome.APPLIED), NOW)
        for state in (OutboxState.SENT, OutboxState.QUEUED):
            session.add(OutboxMessage(created_at=NOW, method="REQUEST", uid=f"u-{state}", sender="alice@foo.example",
                                      recipient="carol@bar.example", ical="", message_id=f"<{state}@foo.example>",
                                      state=state.value, attempts=1, next_attempt_at=NOW,
                                      finished_at=NOW if state is OutboxState.SENT else None))
    pruned = retention.prune(db, NOW + timedelta(days=31), KEEP)
    assert (pruned.inbox_lines, pruned.outbox_rows) == (1, 1)
    with db.reading() as session:
        assert inbox.count_entries(session, alice.id) == 0
        assert [r.state for r in session.scalars(select(OutboxMessage))] == [OutboxState.QUEUED.value]


def test_mail_the_mailboxes_have_keeps_no_bytes_once_it_is_found_to_hold_nothing_and_handoffs_are_forgotten(
    db: Database,
) -> None:
    with db.transaction() as session:
        add_principal(session, "alice@foo.example", NOW)
    envelope = Envelope("erin@baz.example", ("alice@foo.example",), "lmtp")
    plain = b"Subject: lunch?\r\n\r\nno calendar\r\n"
    handed = HandedOn(message_digest(envelope.sender, plain), ("alice@foo.example",))
    (intake_id,) = processing.take_in(db, [(plain, envelope)], NOW, handed_on=[handed])
    (receipt,) = processing.process_queued(db, NOW)
    assert (receipt.intake_id, receipt.state) == (intake_id, IntakeState.IGNORED)
    assert raw_of(db)[intake_id] == b""  # at once, not after raw_messages
    assert already_delivered(db, handed.digest, ["Alice@foo.example", "bob@foo.example"]) == {"alice@foo.example"}
    assert retention.prune(db, NOW + timedelta(days=9), KEEP).handoffs == 0
    assert retention.prune(db, NOW + timedelta(days=11), KEEP).handoffs == 1
    assert already_delivered(db, handed.digest, ["alice@foo.example"]) == set()
