"""Read-modify-write of calendar objects is serialized: no lost updates, no double-booked room, with several processes.

On a real PostgreSQL and on SQLite, with real processes: the intake queue is filled
first, then several processes (each with several processor threads) drain it at once,
as ``reefknot serve`` processes sharing one database do.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from email.message import EmailMessage

from gateway.core.calendar.ical import components_of, find_attendee, partstat_of
from gateway.core.mail.envelope import Envelope
from gateway.core.model import Kind
from gateway.service import events
from gateway.service.processing import process_queued, take_in
from gateway.store import calendars, directory, intake
from gateway.store.db import Database
from gateway.store.intake import IntakeState

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
ALICE = "alice@foo.example"
UID = "all-hands@foo.example"
GUESTS = [f"guest{n}@bar.example" for n in range(60)]


def _invitation(attendees: list[str], uid: str = UID, start: str = "20260710T100000Z",
                end: str = "20260710T110000Z", organizer: str = ALICE, rrule: str = "") -> str:
    lines = "\n".join(f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{a}" for a in attendees)
    recurrence = f"RRULE:{rrule}\n" if rrule else ""
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//Test//EN\nBEGIN:VEVENT\n"
        f"UID:{uid}\nDTSTAMP:20260601T080000Z\nDTSTART:{start}\nDTEND:{end}\n{recurrence}"
        f"SUMMARY:Meeting\nORGANIZER:mailto:{organizer}\n{lines}\nEND:VEVENT\nEND:VCALENDAR\n"
    )


def _reply_mail(guest: str, partstat: str) -> bytes:
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bar//Bar//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n"
        f"UID:{UID}\r\nDTSTAMP:20260602T080000Z\r\nSEQUENCE:0\r\nORGANIZER:mailto:{ALICE}\r\n"
        f"ATTENDEE;PARTSTAT={partstat}:mailto:{guest}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = guest, ALICE, f"{partstat}: Meeting"
    mail["Message-ID"] = f"<reply-{guest}>"
    mail.set_content(calendar, subtype="calendar", params={"method": "REPLY"})
    return bytes(mail)


def _drain(url: str, threads: int) -> int:
    """One processor process: ``threads`` processors draining the shared queue until it is empty."""
    db = Database(url)

    def work() -> int:
        done = 0
        while batch := process_queued(db, NOW, limit=4):
            done += len(batch)
        return done

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: work(), range(threads)))
    db.dispose()
    return total


def _run_processes(url: str, processes: int, threads: int) -> int:
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        return sum(pool.starmap(_drain, [(url, threads)] * processes))


def test_replies_applied_at_once_by_several_processes_are_all_on_the_organizers_copy(database_url: str) -> None:
    db = Database(database_url)
    db.upgrade()
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, now=NOW)
    with db.transaction() as session:
        events.put_event(session, directory.resolve(session, ALICE), _invitation(GUESTS), NOW)
    answers = {guest: ("ACCEPTED", "DECLINED", "TENTATIVE")[n % 3] for n, guest in enumerate(GUESTS)}
    for guest, partstat in answers.items():
        take_in(db, [(_reply_mail(guest, partstat), Envelope(guest, (ALICE,), "test"))], NOW)

    applied = _run_processes(database_url, processes=3, threads=2)

    assert applied == len(GUESTS)
    with db.reading() as session:
        (component,) = components_of(calendars.load_object(session, alice.id, UID).calendar)
        found = {guest: partstat_of(find_attendee(component, guest)) for guest in GUESTS}
        assert not intake.list_in_state(session, IntakeState.QUEUED)
    assert found == answers
    db.dispose()


def _book(url: str, organizer: str, uid: str) -> str:
    """One process: ``organizer`` puts a meeting in room R at the contested hour; the room's answer."""
    db = Database(url)
    with db.transaction() as session:
        actor = directory.resolve(session, organizer)
        events.put_event(session, actor, _invitation(["room-r@foo.example"], uid=uid, organizer=organizer), NOW)
    with db.reading() as session:
        room = directory.resolve(session, "room-r@foo.example")
        (component,) = components_of(calendars.load_object(session, room.id, uid).calendar)
        answer = partstat_of(find_attendee(component, "room-r@foo.example"))
    db.dispose()
    return answer


def test_processes_booking_one_room_for_the_same_hour_get_exactly_one_acceptance(database_url: str) -> None:
    db = Database(database_url)
    db.upgrade()
    organizers = [f"organizer{n}@foo.example" for n in range(6)]
    with db.transaction() as session:
        directory.add_principal(session, "room-r@foo.example", kind=Kind.ROOM, now=NOW)
        for organizer in organizers:
            directory.add_principal(session, organizer, now=NOW)
    db.dispose()
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(organizers)) as pool:
        answers = pool.starmap(_book, [(database_url, o, f"booking-{n}@foo.example") for n, o in enumerate(organizers)])
    assert sorted(answers) == ["ACCEPTED"] + ["DECLINED"] * (len(organizers) - 1)
