"""Local edits through ``gateway.service.events`` on SQLite and PostgreSQL: put, reply and delete, with what they deliver."""

from __future__ import annotations

import pytest
from icalendar import Calendar

from gateway.core.calendar.ical import attendee_properties, components_of, method_of, parse_calendar, partstat_of
from gateway.core.itip.edits import EditError
from gateway.core.model import Kind, Method, Outcome, PartStat
from gateway.service import events
from gateway.store import calendars, directory, inbox, outbox
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from gateway.store.outbox import OutboxState
from tests.conftest import NOW
from tests.peers.cli import EVENT

ALICE, BOB, CAROL = "alice@foo.example", "bob@foo.example", "carol@bar.example"

OUTSIDE_INVITATION = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Test//EN
BEGIN:VEVENT
UID:outside
DTSTAMP:20260601T080000Z
DTSTART:20260710T100000Z
DTEND:20260710T110000Z
SUMMARY:Carol's review
ORGANIZER:mailto:carol@bar.example
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@foo.example
END:VEVENT
END:VCALENDAR
"""


def attendee_lines(*addresses: str) -> str:
    return "\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in addresses)


def principals(db: Database) -> tuple[PrincipalRef, PrincipalRef]:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW, name="Alice", kind=Kind.INDIVIDUAL)
        bob = directory.add_principal(session, BOB, NOW, name="Bob", kind=Kind.INDIVIDUAL)
    return alice, bob


def copy_of(db: Database, principal: PrincipalRef, uid: str) -> Calendar | None:
    with db.transaction() as session:
        return calendars.load_object(session, principal.id, uid).calendar


def attendee_params(calendar: Calendar, address: str) -> dict[str, str]:
    (prop,) = [p for c in components_of(calendar) for p in attendee_properties(c) if str(p).lower() == f"mailto:{address}"]
    return {name: str(value) for name, value in prop.params.items()}


def test_putting_an_event_applies_the_invitation_to_a_local_attendee_and_queues_it_for_an_outside_one(
    db: Database,
) -> None:
    alice, bob = principals(db)
    with db.transaction() as session:
        change = events.put_event(session, alice, EVENT.format(uid="u-put", attendees=attendee_lines(BOB, CAROL)), NOW)
    assert change.uid == "u-put"
    assert sorted((m.method, m.recipients) for m in change.messages) == [
        (Method.REQUEST, (BOB,)), (Method.REQUEST, (CAROL,))
    ]
    assert [(a.principal.address, a.result.outcome) for a in change.applied] == [(BOB, Outcome.APPLIED)]

    bobs = copy_of(db, bob, "u-put")
    assert bobs is not None and method_of(bobs) is None
    assert attendee_params(bobs, BOB)["PARTSTAT"] == PartStat.NEEDS_ACTION
    with db.transaction() as session:
        assert [(e.method, e.sender, e.outcome) for e in inbox.list_entries(session, bob.id)] == [
            ("REQUEST", ALICE, Outcome.APPLIED.value)
        ]
        (row,) = outbox.list_messages(session)
    assert (row.method, row.uid, row.sender, row.recipient, row.state) == (
        "REQUEST", "u-put", ALICE, CAROL, OutboxState.QUEUED
    )
    assert row.reply_token and row.next_attempt_at == NOW
    queued = parse_calendar(row.ical)
    assert method_of(queued) == "REQUEST"
    assert {str(p) for p in attendee_properties(components_of(queued)[0])} == {
        f"mailto:{a}" for a in (ALICE, BOB, CAROL)
    }


def test_a_reply_from_a_local_attendee_is_applied_to_the_organizers_copy(db: Database) -> None:
    alice, bob = principals(db)
    with db.transaction() as session:
        events.put_event(session, alice, EVENT.format(uid="u-reply", attendees=attendee_lines(BOB)), NOW)
    with db.transaction() as session:
        change = events.reply_event(session, bob, "u-reply", PartStat.ACCEPTED, NOW, comment="see you there")
    assert [(m.method, m.sender, m.recipients) for m in change.messages] == [(Method.REPLY, BOB, (ALICE,))]
    assert [(a.principal.address, a.result.outcome) for a in change.applied] == [(ALICE, Outcome.APPLIED)]

    alices = copy_of(db, alice, "u-reply")
    assert alices is not None
    params = attendee_params(alices, BOB)
    assert (params["PARTSTAT"], params["SCHEDULE-STATUS"]) == ("ACCEPTED", "2.0")
    assert params["X-RESPONSE-COMMENT"] == "see you there"
    bobs = copy_of(db, bob, "u-reply")
    assert bobs is not None and attendee_params(bobs, BOB)["PARTSTAT"] == "ACCEPTED"
    with db.transaction() as session:
        assert outbox.list_messages(session) == []  # everyone is local: nothing to mail


def test_a_local_attendee_declining_an_outside_invitation_queues_a_reply_to_the_organizer(db: Database) -> None:
    _alice, bob = principals(db)
    with db.transaction() as session:
        assert events.put_event(session, bob, OUTSIDE_INVITATION, NOW).messages == ()  # an attendee's put sends nothing
    with db.transaction() as session:
        change = events.reply_event(session, bob, "outside", PartStat.DECLINED, NOW)
    assert change.applied == ()
    with db.transaction() as session:
        (row,) = outbox.list_messages(session)
    assert (row.method, row.sender, row.recipient, row.state) == ("REPLY", BOB, CAROL, OutboxState.QUEUED)
    reply = parse_calendar(row.ical)
    (event,) = components_of(reply)
    assert method_of(reply) == "REPLY"
    assert [(str(p), partstat_of(p)) for p in attendee_properties(event)] == [(f"mailto:{BOB}", "DECLINED")]
    bobs = copy_of(db, bob, "outside")
    assert bobs is not None and attendee_params(bobs, BOB)["PARTSTAT"] == "DECLINED"


def test_deleting_an_event_removes_the_organizers_copy_and_cancels_every_attendee(db: Database) -> None:
    alice, bob = principals(db)
    with db.transaction() as session:
        events.put_event(session, alice, EVENT.format(uid="u-del", attendees=attendee_lines(BOB, CAROL)), NOW)
    with db.transaction() as session:
        change = events.delete_event(session, alice, "u-del", NOW)
    assert sorted((m.method, m.recipients) for m in change.messages) == [
        (Method.CANCEL, (BOB,)), (Method.CANCEL, (CAROL,))
    ]
    assert copy_of(db, alice, "u-del") is None
    bobs = copy_of(db, bob, "u-del")
    assert bobs is not None
    assert [str(c["STATUS"]) for c in components_of(bobs)] == ["CANCELLED"]
    with db.transaction() as session:
        rows = outbox.list_messages(session)
        assert [e.method for e in inbox.list_entries(session, bob.id)] == ["REQUEST", "CANCEL"]
    assert [(r.method, r.recipient, r.state) for r in rows] == [
        ("REQUEST", CAROL, OutboxState.QUEUED), ("CANCEL", CAROL, OutboxState.QUEUED)
    ]
    cancel = parse_calendar(rows[1].ical)
    assert method_of(cancel) == "CANCEL"
    assert [(str(c["STATUS"]), int(c["SEQUENCE"])) for c in components_of(cancel)] == [("CANCELLED", 1)]
    assert rows[1].previous_ical == rows[0].ical  # the mail can say what changed since the invitation


def test_changes_that_cannot_be_made_raise_an_edit_error_with_a_named_reason(db: Database) -> None:
    alice, bob = principals(db)
    with db.transaction() as session, pytest.raises(EditError) as unknown_reply:
        events.reply_event(session, bob, "nowhere", PartStat.ACCEPTED, NOW)
    with db.transaction() as session, pytest.raises(EditError) as unknown_delete:
        events.delete_event(session, alice, "nowhere", NOW)
    two_uids = EVENT.format(uid="a", attendees="") + EVENT.format(uid="b", attendees="")
    two_uids = two_uids.replace("END:VCALENDAR\nBEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//Test//EN\n", "")
    with db.transaction() as session, pytest.raises(EditError) as mixed:
        events.put_event(session, alice, two_uids, NOW)
    assert (unknown_reply.value.reason, unknown_delete.value.reason, mixed.value.reason) == (
        "unknown-object", "unknown-object", "one-uid-per-object"
    )
    with db.transaction() as session:
        assert calendars.list_objects(session, alice.id) == [] and outbox.list_messages(session) == []
