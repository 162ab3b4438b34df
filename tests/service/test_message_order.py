"""Mail delivered out of order never brings a cancelled meeting back, on SQLite and PostgreSQL.

Through ``reefknot ingest`` and the store: the CANCEL that arrives first is remembered
for a UID that was never stored, the REQUEST that arrives after it is recorded stale,
and the memory is forgotten once no older message can still be on its way.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gateway.core.calendar.ical import Version
from gateway.core.itip.ordering import SchedulingState
from gateway.core.itip.types import Stored
from gateway.store import calendars, directory
from gateway.store.db import Database
from tests.conftest import NOW
from tests.peers.cli import Reefknot, imip_mail

BOB, CAROL, UID = "bob@foo.example", "carol@bar.example", "late-invite@bar.example"


def message(method: str, sequence: int, stamp: str, extra: str = "") -> str:
    return (
        f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Bar//Bar//EN\nMETHOD:{method}\nBEGIN:VEVENT\nUID:{UID}\n"
        f"DTSTAMP:{stamp}\nSEQUENCE:{sequence}\n{extra}ORGANIZER:mailto:{CAROL}\n"
        f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{BOB}\nEND:VEVENT\nEND:VCALENDAR\n"
    )


REQUEST = message("REQUEST", 0, "20260601T090000Z", "DTSTART:20270710T090000Z\nDTEND:20270710T100000Z\nSUMMARY:Review\n")


def ingest(run: Reefknot, tmp_path: Path, name: str, method: str, text: str) -> None:
    run("ingest", "--recipient", BOB, "--sender", CAROL, str(imip_mail(tmp_path, name, CAROL, BOB, text, method)))


def test_a_cancel_that_overtakes_its_invitation_keeps_the_invitation_out(reefknot: Reefknot, tmp_path: Path) -> None:
    ingest(reefknot, tmp_path, "cancel", "CANCEL", message("CANCEL", 1, "20260601T100000Z", "STATUS:CANCELLED\n"))
    ingest(reefknot, tmp_path, "request", "REQUEST", REQUEST)
    outcomes = [(line["method"], line["outcome"]) for line in reefknot.json_lines("inbox", BOB)]
    assert outcomes == [("CANCEL", "not-found"), ("REQUEST", "stale")]
    assert "VEVENT" not in reefknot("calendar", "export", BOB)


def test_a_cancel_with_the_version_of_the_update_it_cancels_cancels_it(reefknot: Reefknot, tmp_path: Path) -> None:
    ingest(reefknot, tmp_path, "request", "REQUEST", REQUEST)
    tie = REQUEST.replace("METHOD:REQUEST", "METHOD:CANCEL").replace("SUMMARY:Review\n", "SUMMARY:Review\nSTATUS:CANCELLED\n")
    ingest(reefknot, tmp_path, "cancel", "CANCEL", tie)
    outcomes = [(line["method"], line["outcome"]) for line in reefknot.json_lines("inbox", BOB)]
    assert outcomes == [("REQUEST", "applied"), ("CANCEL", "applied")]
    assert "STATUS:CANCELLED" in reefknot("calendar", "export", BOB)


def test_the_memory_of_a_vanished_uid_is_kept_for_its_lifetime_and_then_forgotten(db: Database) -> None:
    remembered = SchedulingState().with_instance("", Version(3, NOW), cancelled=True)
    with db.transaction() as session:
        bob = directory.add_principal(session, BOB, now=NOW)
        calendars.load_object(session, bob.id, UID)
        calendars.save_object(session, bob.id, UID, Stored(None, remembered), NOW)
    with db.transaction() as session:
        assert calendars.load_object(session, bob.id, UID) == Stored(None, remembered)
    later = NOW + calendars.TOMBSTONE_LIFETIME + timedelta(days=1)
    with db.transaction() as session:  # any later tombstone of the principal sweeps the expired ones
        calendars.load_object(session, bob.id, "other@bar.example")
        calendars.save_object(session, bob.id, "other@bar.example", Stored(None, remembered), later)
    with db.transaction() as session:
        assert calendars.load_object(session, bob.id, UID) == Stored()
