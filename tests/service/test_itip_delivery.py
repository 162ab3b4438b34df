"""Delivering iTIP messages (``gateway.service.itip_delivery``): applied for local principals, queued for the rest.

Against the real store on SQLite and PostgreSQL: ``apply_for`` changes one principal's
copy, ``deliver`` applies a message to each local recipient (a room answering its own
invitation, the answer applied in turn) and queues an outbox row for everyone else,
``queue_outbound`` gives each outside recipient its reply token and what it was sent last.
"""

from __future__ import annotations

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.ical import components_of, find_attendee, parse_calendar, partstat_of
from gateway.core.itip.types import Stored
from gateway.core.model import Kind, Method, OutgoingMessage, Outcome
from gateway.service.itip_delivery import apply_for, books_itself, deliver, queue_outbound
from gateway.store import calendars, directory, inbox, outbox, replytokens
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from tests.conftest import NOW

ALICE, BOB, ROOM, CAROL = "alice@foo.example", "bob@foo.example", "room-r@foo.example", "carol@bar.example"
UID = "planning@foo.example"


def event(method: str | None, organizer: str, *attendees: str, sequence: int = 0, summary: str = "Planning") -> str:
    lines = [f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{a}" for a in attendees]
    return "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Test//Delivery//EN", *([f"METHOD:{method}"] if method else []),
        "BEGIN:VEVENT", f"UID:{UID}", "DTSTAMP:20260601T080000Z", f"SEQUENCE:{sequence}",
        "DTSTART:20260710T080000Z", "DTEND:20260710T090000Z", f"SUMMARY:{summary}", f"ORGANIZER:mailto:{organizer}",
        *lines, "END:VEVENT", "END:VCALENDAR", "",
    ])


def request(organizer: str, *attendees: str, sequence: int = 0, summary: str = "Planning") -> OutgoingMessage:
    calendar = parse_calendar(event("REQUEST", organizer, *attendees, sequence=sequence, summary=summary))
    return OutgoingMessage(Method.REQUEST, UID, organizer, tuple(attendees), calendar)


def partstat(session: Session, principal: PrincipalRef, attendee: str) -> str:
    stored = calendars.load_object(session, principal.id, UID).calendar
    assert stored is not None, f"{principal.address} has no copy of {UID}"
    (component,) = components_of(stored)
    prop = find_attendee(component, attendee)
    assert prop is not None, f"{attendee} not in {principal.address}'s copy"
    return partstat_of(prop)


def store_organizer_copy(session: Session, organizer: PrincipalRef, *attendees: str) -> None:
    calendars.load_object(session, organizer.id, UID)
    calendars.save_object(session, organizer.id, UID, Stored(parse_calendar(event(None, organizer.address, *attendees))),
                          NOW)


def test_apply_for_stores_an_invitation_in_the_attendees_calendar(db: Database) -> None:
    with db.transaction() as session:
        bob = directory.add_principal(session, BOB, NOW)
        message = request(CAROL, BOB)
        result = apply_for(session, bob, Method.REQUEST, UID, message.calendar, NOW)
        assert (result.outcome, result.changed) == (Outcome.APPLIED, True)
    with db.transaction() as session:
        assert partstat(session, bob, BOB) == "NEEDS-ACTION"
        stored = calendars.load_object(session, bob.id, UID).calendar
        assert isinstance(stored, Calendar)
        assert str(components_of(stored)[0]["SUMMARY"]) == "Planning"


def test_apply_for_keeps_the_stored_copy_when_an_older_invitation_arrives(db: Database) -> None:
    with db.transaction() as session:
        bob = directory.add_principal(session, BOB, NOW)
        apply_for(session, bob, Method.REQUEST, UID, request(CAROL, BOB, sequence=2, summary="Newer").calendar, NOW)
        older = apply_for(session, bob, Method.REQUEST, UID, request(CAROL, BOB, sequence=1, summary="Older").calendar,
                          NOW)
        assert (older.outcome, older.changed) == (Outcome.STALE, False)
    with db.transaction() as session:
        stored = calendars.load_object(session, bob.id, UID).calendar
        assert stored is not None and str(components_of(stored)[0]["SUMMARY"]) == "Newer"


def test_deliver_applies_for_local_recipients_and_queues_the_others(db: Database) -> None:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW)
        bob = directory.add_principal(session, BOB, NOW)
        store_organizer_copy(session, alice, BOB, CAROL)
        applied = deliver(session, [request(ALICE, BOB, CAROL)], NOW)
        assert [(a.principal.id, a.result.outcome) for a in applied] == [(bob.id, Outcome.APPLIED)]
    with db.transaction() as session:
        assert partstat(session, bob, BOB) == "NEEDS-ACTION"
        lines = [(e.method, e.sender, e.outcome) for e in inbox.list_entries(session, bob.id)]
        assert lines == [("REQUEST", ALICE, Outcome.APPLIED.value)]
        (row,) = outbox.list_messages(session)
        assert (row.method, row.uid, row.sender, row.recipient) == ("REQUEST", UID, ALICE, CAROL)
        assert f"UID:{UID}" in row.ical and row.reply_token
        assert inbox.list_entries(session, alice.id) == []


def test_a_room_invited_answers_at_once_and_its_reply_reaches_the_organizer(db: Database) -> None:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW)
        room = directory.add_principal(session, ROOM, NOW, kind=Kind.ROOM)
        store_organizer_copy(session, alice, ROOM)
        applied = deliver(session, [request(ALICE, ROOM)], NOW)
        assert [(a.principal.id, a.result.outcome) for a in applied] == [
            (room.id, Outcome.APPLIED), (alice.id, Outcome.APPLIED),
        ]
        assert books_itself(room, Method.REQUEST, applied[0].result)
        assert not books_itself(room, Method.REPLY, applied[0].result)
        assert not books_itself(alice, Method.REQUEST, applied[0].result)
    with db.transaction() as session:
        assert partstat(session, room, ROOM) == "ACCEPTED"
        assert partstat(session, alice, ROOM) == "ACCEPTED"
        assert [e.method for e in inbox.list_entries(session, alice.id)] == ["REPLY"]
        assert outbox.list_messages(session) == []


def test_queue_outbound_issues_the_reply_token_and_keeps_what_was_sent_before(db: Database) -> None:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW)
        first, second = request(ALICE, CAROL), request(ALICE, CAROL, sequence=1, summary="Moved")
        queue_outbound(session, first, CAROL, NOW)
        queue_outbound(session, second, CAROL, NOW)
        queue_outbound(session, request("dave@baz.example", CAROL), CAROL, NOW)  # not a local sender
        old, new, foreign = outbox.list_messages(session)
        assert old.reply_token and old.reply_token == new.reply_token
        found = replytokens.find(session, old.reply_token, NOW)
        assert found is not None and (found.principal_id, found.uid, found.address) == (alice.id, UID, CAROL)
        assert old.previous_ical == "" and new.previous_ical == old.ical
        assert "SUMMARY:Moved" in new.ical
        assert foreign.reply_token == "" and foreign.sender == "dave@baz.example"
        assert old.message_id != new.message_id and old.message_id.endswith("@foo.example>")
