"""Free/busy from the store through ``gateway.service.freebusy``, on SQLite and PostgreSQL: windows, busy time, answers.

Alice organizes meetings with ``events.put_event`` and invites Bob; their busy time is
read back, published together, and answered to Erin's VFREEBUSY REQUEST by mail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from gateway.core.calendar.freebusy import BusyPeriod, FbType
from gateway.core.calendar.ical import (
    components_of,
    method_of,
    organizer_of,
    parse_calendar,
)
from gateway.core.model import Kind, Method, Outcome, PartStat
from gateway.service import events, freebusy
from gateway.store import directory
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from tests.conftest import NOW

ALICE, BOB, ERIN = "alice@foo.example", "bob@foo.example", "erin@baz.example"
DAY = datetime(2026, 7, 10, tzinfo=UTC)


def meeting(uid: str, start: str, end: str, *attendees: str) -> str:
    lines = "".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}\n" for a in attendees)
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//Test//EN\nBEGIN:VEVENT\n"
        f"UID:{uid}\nDTSTAMP:20260601T080000Z\nDTSTART:20260710T{start}Z\nDTEND:20260710T{end}Z\n"
        f"SUMMARY:{uid}\nORGANIZER:mailto:{ALICE}\nATTENDEE;PARTSTAT=ACCEPTED:mailto:{ALICE}\n{lines}"
        "END:VEVENT\nEND:VCALENDAR\n"
    )


def request(*attendees: str, start: str = "20260710T000000Z", end: str = "20260711T000000Z") -> Calendar:
    lines = "".join(f"ATTENDEE:mailto:{a}\n" for a in attendees)
    return parse_calendar(
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//Test//EN\nMETHOD:REQUEST\nBEGIN:VFREEBUSY\n"
        f"UID:fb-1\nDTSTAMP:20260601T080000Z\nDTSTART:{start}\nDTEND:{end}\nORGANIZER:mailto:{ERIN}\n{lines}"
        "END:VFREEBUSY\nEND:VCALENDAR\n"
    )


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def freebusy_values(calendar: Calendar) -> list[tuple[datetime, datetime, str]]:
    (component,) = components_of(calendar)
    value = component.get("FREEBUSY", [])
    return [(p.dt[0], p.dt[1], str(p.params["FBTYPE"])) for p in (value if isinstance(value, list) else [value])]


@pytest.fixture
def people(db: Database) -> tuple[PrincipalRef, PrincipalRef]:
    """Alice meets alone 08-09, with Bob 10-11 (Bob has not answered) and 12-13 (Bob declines)."""
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW, kind=Kind.INDIVIDUAL)
        bob = directory.add_principal(session, BOB, NOW, kind=Kind.INDIVIDUAL)
    with db.transaction() as session:
        events.put_event(session, alice, meeting("alone", "080000", "090000"), NOW)
        events.put_event(session, alice, meeting("together", "100000", "110000", BOB), NOW)
        events.put_event(session, alice, meeting("declined", "120000", "130000", BOB), NOW)
    with db.transaction() as session:
        events.reply_event(session, bob, "declined", PartStat.DECLINED, NOW)
    return alice, bob


def test_a_window_defaults_to_six_weeks_from_now_and_reads_basic_extended_and_zoned_forms() -> None:
    assert freebusy.read_window(None, None, NOW) == (NOW, NOW + timedelta(days=42))
    start, end = freebusy.read_window("20260710T080000Z", "2026-07-10T12:00:00+02:00", NOW)
    assert (start, end) == (at(8), at(10))
    assert end.tzinfo == UTC
    assert freebusy.read_window("2026-07-10T08:00:00", None, NOW) == (at(8), at(8) + timedelta(days=42))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-07-10T10:00:00Z", "2026-07-10T10:00:00Z", "end must be after start"),
        ("2026-07-10T00:00:00Z", "2027-07-12T00:00:00Z", "the window may be at most 366 days"),
        ("next tuesday", None, "start: not an ISO 8601 date-time: next tuesday"),
    ],
)
def test_a_window_that_cannot_be_answered_says_why(start: str, end: str | None, message: str) -> None:
    with pytest.raises(freebusy.WindowError) as error:
        freebusy.read_window(start, end, NOW)
    assert str(error.value) == message


def test_busy_time_is_read_from_the_calendar_by_each_principals_answer_and_clipped_to_the_window(
    db: Database, people: tuple[PrincipalRef, PrincipalRef],
) -> None:
    alice, bob = people
    with db.transaction() as session:
        alices = freebusy.busy_of(session, alice, at(8, 30), at(23))
        bobs = freebusy.busy_of(session, bob, DAY, DAY + timedelta(days=1))
        without = freebusy.busy_of(session, alice, DAY, DAY + timedelta(days=1), except_uid="together")
    assert alices == [BusyPeriod(at(8, 30), at(9)), BusyPeriod(at(10), at(11)), BusyPeriod(at(12), at(13))]
    assert bobs == [BusyPeriod(at(10), at(11), FbType.BUSY_TENTATIVE)]  # not answered: tentative; declined: free
    assert without == [BusyPeriod(at(8), at(9)), BusyPeriod(at(12), at(13))]


def test_the_published_free_busy_merges_several_principals_and_names_each_of_them(
    db: Database, people: tuple[PrincipalRef, PrincipalRef],
) -> None:
    alice, bob = people
    with db.transaction() as session:
        together = freebusy.published(session, [alice, bob], DAY, DAY + timedelta(days=1), NOW)
        bob_alone = freebusy.published(session, [bob], DAY, DAY + timedelta(days=1), NOW)
    assert method_of(together) is None
    (component,) = components_of(together)
    assert component.name == "VFREEBUSY"
    assert sorted(str(a) for a in component["ATTENDEE"]) == [f"mailto:{ALICE}", f"mailto:{BOB}"]
    assert (component["DTSTART"].dt, component["DTEND"].dt) == (DAY, DAY + timedelta(days=1))
    assert freebusy_values(together) == [(at(8), at(9), "BUSY"), (at(10), at(11), "BUSY"), (at(12), at(13), "BUSY")]
    assert organizer_of(components_of(bob_alone)[0]) == BOB
    assert freebusy_values(bob_alone) == [(at(10), at(11), "BUSY-TENTATIVE")]


def test_a_free_busy_request_by_mail_is_answered_only_when_it_asks_about_the_principal_and_is_allowed(
    db: Database, people: tuple[PrincipalRef, PrincipalRef],
) -> None:
    alice, _bob = people
    with db.transaction() as session:
        answered = freebusy.answer_by_mail(session, alice, request(ALICE), True, NOW)
        refused = freebusy.answer_by_mail(session, alice, request(ALICE), False, NOW)
        elsewhere = freebusy.answer_by_mail(session, alice, request(BOB), True, NOW)
        broken = freebusy.answer_by_mail(session, alice, request(), True, NOW)
        empty = freebusy.answer_by_mail(session, alice, request(ALICE, end="20260709T000000Z"), True, NOW)
    assert (answered.outcome, answered.reason, answered.detail) == (Outcome.ANSWERED, "freebusy-answered", f"to {ERIN}")
    assert answered.reply is not None
    assert (answered.reply.method, answered.reply.sender, answered.reply.recipients) == (Method.REPLY, ALICE, (ERIN,))
    assert answered.reply.uid == "fb-1"
    reply = answered.reply.calendar
    assert method_of(reply) == "REPLY"
    (component,) = components_of(reply)
    assert (organizer_of(component), str(component["ATTENDEE"])) == (ERIN, f"mailto:{ALICE}")
    assert freebusy_values(reply) == [(at(8), at(9), "BUSY"), (at(10), at(11), "BUSY"), (at(12), at(13), "BUSY")]

    assert (refused.outcome, refused.reason, refused.reply) == (Outcome.RECORDED, "freebusy-not-allowed", None)
    assert (elsewhere.outcome, elsewhere.reason, elsewhere.detail, elsewhere.reply) == (
        Outcome.IGNORED, "not-asked", f"asked about {BOB}", None
    )
    assert (broken.outcome, broken.reason, broken.reply) == (Outcome.REJECTED, "missing-attendee", None)
    assert (empty.outcome, empty.reason) == (Outcome.REJECTED, "empty-window")


def test_only_a_calendar_with_a_vfreebusy_is_a_free_busy_question() -> None:
    assert freebusy.is_freebusy(request(ALICE))
    assert not freebusy.is_freebusy(parse_calendar(meeting("plain", "080000", "090000")))
