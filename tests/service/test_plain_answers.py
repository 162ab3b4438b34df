"""Plain-language email answers to a reply address (``gateway.service.plain_answers``) becoming the attendee's REPLY.

Alice's invitation to Carol and Dave is in the real store (SQLite and PostgreSQL) with
a reply token per attendee; an answer mail is queued in intake and handed to
``apply_plain_answer`` with the route its reply address names. The organizer's copy and
inbox say what became of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy.orm import Session

from gateway.core.calendar.ical import components_of, find_attendee, parse_calendar, partstat_of
from gateway.core.itip.types import Stored
from gateway.core.mail.calendarparts import parse_mail
from gateway.core.mail.envelope import Envelope
from gateway.core.mail.replyaddress import reply_address
from gateway.core.model import Outcome
from gateway.service.plain_answers import apply_plain_answer
from gateway.service.routing import Route, token_route
from gateway.store import calendars, directory, inbox, intake, replytokens
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from tests.conftest import NOW

ALICE, CAROL, DAVE, FRANK = "alice@foo.example", "carol@bar.example", "dave@baz.example", "frank@baz.example"
UID = "lunch@foo.example"
REPLY_DOMAIN = "reply.foo.example"
EVENT = f"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Plain//EN
BEGIN:VEVENT
UID:{UID}
DTSTAMP:20260601T080000Z
SEQUENCE:0
DTSTART:20260710T100000Z
DTEND:20260710T110000Z
SUMMARY:Team lunch
ORGANIZER:mailto:{ALICE}
ATTENDEE;PARTSTAT=ACCEPTED:mailto:{ALICE}
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{CAROL}
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{DAVE}
END:VEVENT
END:VCALENDAR
"""


def invited(session: Session) -> tuple[PrincipalRef, str]:
    """Alice's copy of the lunch stored; the reply address of her invitation to Carol (Dave has his own)."""
    alice = directory.add_principal(session, ALICE, NOW, name="Alice")
    calendars.load_object(session, alice.id, UID)
    calendars.save_object(session, alice.id, UID, Stored(parse_calendar(EVENT)), NOW)
    carol = replytokens.issue(session, alice.id, UID, CAROL, NOW + timedelta(days=60), NOW)
    dave = replytokens.issue(session, alice.id, UID, DAVE, NOW + timedelta(days=60), NOW)
    assert carol != dave
    return alice, reply_address(carol, REPLY_DOMAIN)


def answer(session: Session, to: str, subject: str, body: str, now: datetime = NOW, sender: str = FRANK,
           message_id: str = "<answer-1@baz.example>") -> inbox.InboxRecord:
    """An answer mail from ``sender`` to the reply address ``to``, through intake to ``apply_plain_answer``."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"], message["Message-ID"] = sender, to, subject, message_id
    message.set_content(body)
    raw = bytes(message)
    (row,) = intake.enqueue_many(session, [(raw, Envelope(sender, (to,), "test"), message_id)], now)
    route = token_route(session, to, now)
    assert isinstance(route, Route)
    return apply_plain_answer(session, route, parse_mail(raw), raw, row.id, now)


def partstat(session: Session, alice: PrincipalRef, attendee: str) -> str:
    stored = calendars.load_object(session, alice.id, UID).calendar
    assert stored is not None
    prop = find_attendee(components_of(stored)[0], attendee)
    assert prop is not None
    return partstat_of(prop)


def test_a_plain_accept_becomes_the_reply_of_the_attendee_the_token_names(db: Database) -> None:
    with db.transaction() as session:
        alice, address = invited(session)
        line = answer(session, address, "Re: Invitation: Team lunch", "Accept – see you there.\n\nFrank\n")
        assert (line.outcome, line.reason, line.sender) == (Outcome.APPLIED, "plain-answer", CAROL)
    with db.transaction() as session:
        assert partstat(session, alice, CAROL) == "ACCEPTED"  # Carol's, though Frank wrote it
        assert partstat(session, alice, DAVE) == "NEEDS-ACTION"
        (entry,) = inbox.list_entries(session, alice.id)
        assert (entry.method, entry.uid, entry.outcome) == ("REPLY", UID, Outcome.APPLIED.value)
        assert f"{CAROL} answered ACCEPTED by plain email" in entry.detail


def test_a_decline_in_the_subject_declines_and_an_answer_about_a_vanished_event_finds_nothing(db: Database) -> None:
    with db.transaction() as session:
        alice, address = invited(session)
        line = answer(session, address, "Decline", "")
        assert (line.outcome, line.reason) == (Outcome.APPLIED, "plain-answer")
        assert f"{CAROL} answered DECLINED" in line.detail
        assert partstat(session, alice, CAROL) == "DECLINED"
        gone = replytokens.issue(session, alice.id, "gone@foo.example", CAROL, None, NOW)
        lost = answer(session, reply_address(gone, REPLY_DOMAIN), "Accept", "", message_id="<answer-2@baz.example>")
        assert (lost.outcome, lost.reason, lost.uid) == (Outcome.NOT_FOUND, "unknown-object", "gone@foo.example")
        assert [e.outcome for e in inbox.list_entries(session, alice.id)] == ["applied", "not-found"]


def test_the_same_plain_answer_delivered_twice_is_applied_once(db: Database) -> None:
    with db.transaction() as session:
        alice, address = invited(session)
        first = answer(session, address, "Re: lunch", "Maybe, if I can make it\n")
        again = answer(session, address, "Re: lunch", "Maybe, if I can make it\n")
        assert (first.outcome, again.outcome, again.reason) == (Outcome.APPLIED, Outcome.DUPLICATE, "already-processed")
        assert partstat(session, alice, CAROL) == "TENTATIVE"
        assert [e.outcome for e in inbox.list_entries(session, alice.id)] == ["applied", "duplicate"]


def test_an_unclear_answer_is_recorded_with_what_was_written_and_changes_nothing(db: Database) -> None:
    with db.transaction() as session:
        alice, address = invited(session)
        line = answer(session, address, "Re: lunch", "Can we move it to Thursday?\n")
        assert (line.outcome, line.reason) == (Outcome.RECORDED, "unclear-plain-answer")
        assert "Can we move it to Thursday?" in line.detail
        assert partstat(session, alice, CAROL) == "NEEDS-ACTION"
        (entry,) = inbox.list_entries(session, alice.id)
        assert entry.reason == "unclear-plain-answer"


def test_an_answer_after_the_token_expired_is_ignored(db: Database) -> None:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW)
        calendars.load_object(session, alice.id, UID)
        calendars.save_object(session, alice.id, UID, Stored(parse_calendar(EVENT)), NOW)
        token = replytokens.issue(session, alice.id, UID, DAVE, NOW + timedelta(days=1), NOW)
        line = answer(session, reply_address(token, REPLY_DOMAIN), "Accept", "Accept\n", now=NOW + timedelta(days=2))
        assert (line.outcome, line.reason, line.sender) == (Outcome.IGNORED, "reply-token-expired", DAVE)
        assert partstat(session, alice, DAVE) == "NEEDS-ACTION"
