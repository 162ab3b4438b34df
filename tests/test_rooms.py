"""Rooms through the ``reefknot`` command, on SQLite and PostgreSQL: updates and cancellations, booking rules, free/busy.

Alice and Bob book Room 4 from the same server; Erin asks from outside by mail. The
room's answers are read from the organizers' copies and from the outbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.ical import parse_calendar
from tests.cli import Reefknot, imip_mail

ALICE, BOB, ROOM, ERIN = "alice@foo.example", "bob@foo.example", "room-4@foo.example", "erin@baz.example"


def event(uid: str, organizer: str, start: str, end: str, *, sequence: int = 0, method: str = "") -> str:
    return (
        f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//Test//EN\n{f'METHOD:{method}' + chr(10) if method else ''}"
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20261120T0{sequence}0000Z\nSEQUENCE:{sequence}\n"
        f"DTSTART;TZID=Europe/Berlin:{start}\nDTEND;TZID=Europe/Berlin:{end}\nSUMMARY:{uid}\n"
        f"ORGANIZER:mailto:{organizer}\nATTENDEE;PARTSTAT=ACCEPTED:mailto:{organizer}\n"
        f"ATTENDEE;CUTYPE=ROOM;RSVP=TRUE:mailto:{ROOM}\nEND:VEVENT\nEND:VCALENDAR\n"
    )


@pytest.fixture
def run(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Reefknot:
    (tmp_path / "rooms.toml").write_text(
        'default = "apply"\n\n[[room]]\nname = "meeting-rooms"\nrooms = ["room-*@foo.example"]\n'
        'domains = ["baz.example"]\nmax_duration = "2h"\n'
    )
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n\n[policy]\nfiles = ["rooms.toml"]\n')
    reefknot = Reefknot(config, capsys)
    for address, kind in ((ALICE, "individual"), (BOB, "individual"), (ROOM, "room")):
        reefknot("users", "add", address, "--kind", kind)
    return reefknot


def put(run: Reefknot, tmp_path: Path, actor: str, text: str) -> None:
    path = tmp_path / "event.ics"
    path.write_text(text)
    run("event", "put", "--as", actor, str(path))


def test_a_moved_meeting_is_judged_again_and_a_cancelled_one_frees_the_room(run: Reefknot, tmp_path: Path) -> None:
    put(run, tmp_path, ALICE, event("alices", ALICE, "20270412T100000", "20270412T110000"))
    put(run, tmp_path, BOB, event("bobs", BOB, "20270412T120000", "20270412T130000"))
    assert (run.partstat(ALICE, "alices", ROOM), run.partstat(BOB, "bobs", ROOM)) == ("ACCEPTED", "ACCEPTED")

    put(run, tmp_path, BOB, event("bobs", BOB, "20270412T103000", "20270412T113000", sequence=1))
    assert run.partstat(BOB, "bobs", ROOM) == "DECLINED"  # moved onto Alice's booking

    run("event", "delete", "--as", ALICE, "alices")
    put(run, tmp_path, BOB, event("bobs", BOB, "20270412T101500", "20270412T111500", sequence=2))
    assert run.partstat(BOB, "bobs", ROOM) == "ACCEPTED"  # Alice's cancellation freed the slot


def test_the_booking_rules_decline_what_is_too_long_and_answer_outside_organizers_by_mail(
    run: Reefknot, tmp_path: Path
) -> None:
    put(run, tmp_path, ALICE, event("long", ALICE, "20270412T090000", "20270412T120000"))
    assert run.partstat(ALICE, "long", ROOM) == "DECLINED"
    assert "too-long" in run("calendar", "export", ALICE, "--uid", "long")  # the room's comment says why

    mail = imip_mail(tmp_path, "erins", ERIN, ROOM,
                     event("erins", ERIN, "20270413T090000", "20270413T100000", method="REQUEST"), "REQUEST")
    run("ingest", "--recipient", ROOM, "--sender", ERIN, str(mail))
    (reply,) = [r for r in run.json_lines("outbox") if r["recipients"] == [ERIN]]
    assert (reply["method"], reply["uid"]) == ("REPLY", "erins")
    assert run.partstat(ROOM, "erins", ROOM) == "ACCEPTED"


def test_reefknot_freebusy_prints_the_busy_time_of_several_principals_together(run: Reefknot, tmp_path: Path) -> None:
    put(run, tmp_path, ALICE, event("a1", ALICE, "20270412T100000", "20270412T110000"))
    put(run, tmp_path, BOB, event("b1", BOB, "20270412T103000", "20270412T120000"))
    text = run("freebusy", ALICE, BOB, "--start", "2027-04-12T00:00:00Z", "--end", "2027-04-13T00:00:00Z")
    (vfreebusy,) = parse_calendar(text).walk("VFREEBUSY")
    attendees = vfreebusy.get("ATTENDEE")
    assert sorted(str(a).lower() for a in attendees) == [f"mailto:{ALICE}", f"mailto:{BOB}"]
    busy = vfreebusy.get("FREEBUSY")
    busy = busy if isinstance(busy, list) else [busy]
    assert [b.to_ical().decode() for b in busy] == ["20270412T080000Z/20270412T100000Z"]  # 10:00-12:00 Berlin, merged
    run("freebusy", ALICE, "--start", "2027-04-13T00:00:00Z", "--end", "2027-04-12T00:00:00Z", expect=64)
