"""Applying one intake message (``gateway.service.inbound``): where it ends, and why, by its ordered step tables.

Each test queues real mail in intake on SQLite and PostgreSQL and runs
``process_message`` on it: the intake state and reason, the recipients' inbox lines
and stored calendars say which step of ``MAIL_STEPS`` or ``RECIPIENT_STEPS`` settled it.
"""

from __future__ import annotations

from dataclasses import replace
from email.message import EmailMessage

from sqlalchemy.orm import Session

from gateway.core.calendar.ical import attendees_of, components_of
from gateway.core.mail.envelope import Envelope
from gateway.core.model import Method
from gateway.core.trust.policy import PrivateEvents, builtin_policy
from gateway.service.inbound import ANSWERS, MAIL_STEPS, RECIPIENT_STEPS, STORED, process_message
from gateway.service.trust import Trust
from gateway.store import calendars, directory, inbox, intake
from gateway.store.db import Database
from gateway.store.intake import IntakeState, Queued
from tests.conftest import NOW
from tests.peers.corpus_site import MAIL

ALICE, BOB, CAROL, ERIN = "alice@foo.example", "bob@foo.example", "carol@bar.example", "erin@baz.example"


def invitation(uid: str, *attendees: str, extra: str = "") -> str:
    lines = "".join(f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{a}\n" for a in attendees)
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Bar//Client//EN\nMETHOD:REQUEST\nBEGIN:VEVENT\n"
        f"UID:{uid}\nDTSTAMP:20260601T080000Z\nSEQUENCE:0\nDTSTART:20260710T080000Z\nDTEND:20260710T090000Z\n"
        f"SUMMARY:Board meeting\nLOCATION:Room 4\nDESCRIPTION:Agenda attached\n{extra}"
        f"ORGANIZER;CN=Carol:mailto:{CAROL}\n{lines}END:VEVENT\nEND:VCALENDAR\n"
    )


def calendar_mail(name: str, to: str, calendar: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = CAROL, to, f"Invitation: {name}"
    message["Message-ID"] = f"<{name}@bar.example>"
    message.set_content("See the invitation.")
    message.add_alternative(calendar.replace("\n", "\r\n").encode(), maintype="text", subtype="calendar",
                            params={"method": "REQUEST", "charset": "utf-8"})
    return bytes(message)


def queued(session: Session, raw: bytes, *recipients: str, sender: str = CAROL) -> Queued:
    (row,) = intake.enqueue_many(session, [(raw, Envelope(sender, recipients, "test"), "<m@test>")], NOW)
    return row


def recorded(session: Session, row: Queued) -> tuple[str, str]:
    """The state and reason the intake row was finished with, as stored."""
    for state in IntakeState:
        for message in intake.list_in_state(session, state):
            if message.id == row.id:
                return message.state, message.reason
    raise AssertionError(f"intake {row.id} not found")


def lines(session: Session, address: str) -> list[tuple[str, str]]:
    principal = directory.resolve(session, address)
    assert principal is not None
    return [(e.outcome, e.reason) for e in inbox.list_entries(session, principal.id)]


def test_mail_without_a_calendar_part_is_ignored_as_no_calendar_part(db: Database) -> None:
    with db.transaction() as session:
        directory.add_principal(session, ALICE, NOW)
        row = queued(session, (MAIL / "plain-no-calendar.eml").read_bytes(), ALICE, sender=BOB)
        result = process_message(session, row, NOW)
        assert (result.state, result.reason) == (IntakeState.IGNORED, "no-calendar-part")
    with db.transaction() as session:
        assert recorded(session, row) == ("ignored", "no-calendar-part")
        assert lines(session, ALICE) == []


def test_an_outlook_tnef_invitation_is_held_and_recorded_unreadable_for_its_recipient(db: Database) -> None:
    with db.transaction() as session:
        directory.add_principal(session, ALICE, NOW)
        row = queued(session, (MAIL / "tnef-only.eml").read_bytes(), ALICE)
        result = process_message(session, row, NOW)
        assert (result.state, result.reason) == (IntakeState.HELD, "tnef-invitation")
        assert "TNEF" in result.detail
    with db.transaction() as session:
        assert recorded(session, row) == ("held", "tnef-invitation")
        assert lines(session, ALICE) == [("unreadable", "tnef-invitation")]


def test_an_invitation_for_no_local_recipient_is_ignored_and_without_an_envelope_its_attendees_count(
    db: Database,
) -> None:
    with db.transaction() as session:
        directory.add_principal(session, BOB, NOW)
        raw = calendar_mail("elsewhere", ERIN, invitation("elsewhere@bar.example", ERIN, BOB))
        result = process_message(session, queued(session, raw, ERIN), NOW)
        assert (result.state, result.reason) == (IntakeState.IGNORED, "no-local-recipient")
        assert lines(session, BOB) == []
        strangers = calendar_mail("strangers", ERIN, invitation("strangers@bar.example", ERIN))
        result = process_message(session, queued(session, strangers), NOW)
        assert (result.state, result.reason) == (IntakeState.IGNORED, "no-local-recipient")
        named = process_message(session, queued(session, raw), NOW)  # no envelope: Bob is an attendee
        assert named.state is IntakeState.DONE
        assert lines(session, BOB) == [("applied", "")]


def test_the_same_invitation_twice_is_applied_once_and_recorded_as_already_processed(db: Database) -> None:
    with db.transaction() as session:
        bob = directory.add_principal(session, BOB, NOW)
        raw = calendar_mail("twice", BOB, invitation("twice@bar.example", BOB))
        first = process_message(session, queued(session, raw, BOB), NOW)
        again = process_message(session, queued(session, raw, BOB), NOW)
        assert (first.state, again.state) == (IntakeState.DONE, IntakeState.DONE)
        assert lines(session, BOB) == [("applied", ""), ("duplicate", "already-processed")]
        assert calendars.load_object(session, bob.id, "twice@bar.example").calendar is not None


def test_a_private_invitation_from_outside_is_kept_as_busy_time_only_or_left_out_as_the_policy_says(
    db: Database,
) -> None:
    busy = Trust(policy=replace(builtin_policy(), private_events=PrivateEvents.BUSY_ONLY))
    exclude = Trust(policy=replace(builtin_policy(), private_events=PrivateEvents.EXCLUDE))
    with db.transaction() as session:
        bob = directory.add_principal(session, BOB, NOW)
        kept = calendar_mail("private", BOB, invitation("private@bar.example", BOB, ERIN, extra="CLASS:PRIVATE\n"))
        assert process_message(session, queued(session, kept, BOB), NOW, busy).state is IntakeState.DONE
        left = calendar_mail("secret", BOB, invitation("secret@bar.example", BOB, extra="CLASS:CONFIDENTIAL\n"))
        # the recipient step settles Bob's copy; the intake message itself is done, like a duplicate
        assert process_message(session, queued(session, left, BOB), NOW, exclude).state is IntakeState.DONE
    with db.transaction() as session:
        stored = calendars.load_object(session, bob.id, "private@bar.example").calendar
        assert stored is not None
        (component,) = components_of(stored)
        assert str(component["SUMMARY"]) == "Busy"
        assert "LOCATION" not in component and "DESCRIPTION" not in component
        assert attendees_of(component) == [BOB]  # Bob's own line only; Erin's is gone
        assert component["DTSTART"].to_ical().decode() == "20260710T080000Z"
        (applied, excluded) = inbox.list_entries(session, bob.id)
        assert (applied.outcome, applied.detail) == ("applied", "stored as busy time only")
        assert (excluded.outcome, excluded.reason) == ("ignored", "private-event-excluded")
        assert calendars.load_object(session, bob.id, "secret@bar.example").calendar is None


def test_the_step_tables_run_in_the_documented_order_and_each_recipient_step_states_its_methods() -> None:
    assert [name for name, _ in MAIL_STEPS] == ["bounce", "plain answer", "no calendar", "recipients", "limits"]
    assert [name for name, _, _ in RECIPIENT_STEPS] == [
        "judge", "hold or reject", "duplicate", "free/busy answer", "token reply", "privacy", "apply", "inbox",
        "room answer", "deliver",
    ]
    methods = {name: applies_to for name, applies_to, _ in RECIPIENT_STEPS}
    assert methods["free/busy answer"] == {Method.REQUEST}
    assert methods["token reply"] == ANSWERS == {Method.REPLY, Method.COUNTER, Method.REFRESH}
    assert methods["privacy"] == STORED == {Method.REQUEST, Method.ADD, Method.PUBLISH}
    for name in ("judge", "hold or reject", "duplicate", "apply", "inbox", "room answer", "deliver"):
        assert methods[name] == frozenset(Method), name
    assert all(callable(step) for _, step in MAIL_STEPS) and all(callable(step) for _, _, step in RECIPIENT_STEPS)
