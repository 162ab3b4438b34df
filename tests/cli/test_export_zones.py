"""``calendar export`` and outgoing iMIP keep the VTIMEZONE a sender gave, an IANA zone's too; only a TZID without one gets one written.

The sender's definitions here say what no generated one can: Berlin's rules change in
2040 (after the 2038 that generated definitions stop at), and Outlook's Windows zone name
comes with its own rules. They are compared as observances, not as text.
"""

from __future__ import annotations

from pathlib import Path

from icalendar import Calendar, Component

from gateway.core.calendar.ical import parse_calendar, timezones_of
from gateway.store import outbox
from gateway.store.db import Database
from tests.peers.cli import Reefknot, imip_mail

ALICE, CAROL, ERIN = "alice@foo.example", "carol@bar.example", "erin@baz.example"

BERLIN_UNTIL_2040 = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
X-LIC-LOCATION:Europe/Berlin
BEGIN:DAYLIGHT
TZNAME:CEST
DTSTART:19810329T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU;UNTIL=20390327T010000Z
END:DAYLIGHT
BEGIN:STANDARD
TZNAME:CET
DTSTART:19961027T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU;UNTIL=20391030T010000Z
END:STANDARD
BEGIN:STANDARD
TZNAME:CET
DTSTART:20400101T000000
TZOFFSETFROM:+0100
TZOFFSETTO:+0100
END:STANDARD
END:VTIMEZONE
"""

W_EUROPE = """BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
"""


def invitation(uid: str, organizer: str, attendee: str, *, method: str = "", zones: str = BERLIN_UNTIL_2040 + W_EUROPE
               ) -> str:
    """A yearly series to 2055: starting in Outlook's zone, ending in Berlin's, and one more in Tokyo (no definition)."""
    return (
        f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//Test//EN\n{method}{zones}"
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20260601T080000Z\n"
        "DTSTART;TZID=W. Europe Standard Time:20260710T100000\n"
        "DTEND;TZID=Europe/Berlin:20260710T110000\n"
        "RRULE:FREQ=YEARLY;COUNT=30\nSUMMARY:Yearly review\n"
        "EXDATE;TZID=Asia/Tokyo:20300710T170000\n"
        f"ORGANIZER:mailto:{organizer}\n"
        f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{organizer}\n"
        f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{attendee}\n"
        "END:VEVENT\nEND:VCALENDAR\n"
    )


def observances(zone: Component) -> set[tuple[object, ...]]:
    """What a VTIMEZONE says: each observance's kind, start, offsets and rules."""
    return {
        (sub.name, sub.decoded("DTSTART"), sub.decoded("TZOFFSETFROM"), sub.decoded("TZOFFSETTO"),
         sub["RRULE"].to_ical() if "RRULE" in sub else None)
        for sub in zone.subcomponents
    }


def zones_of(text: str) -> dict[str, Component]:
    return {str(zone["TZID"]): zone for zone in Calendar.from_ical(text).walk("VTIMEZONE")}


def sent_zones() -> dict[str, Component]:
    given = Calendar.from_ical(f"BEGIN:VCALENDAR\n{BERLIN_UNTIL_2040}{W_EUROPE}END:VCALENDAR\n".replace("\n", "\r\n"))
    return {str(zone["TZID"]): zone for zone in given.walk("VTIMEZONE")}


def assert_kept_as_sent(exported: dict[str, Component]) -> None:
    given = sent_zones()
    for tzid in ("Europe/Berlin", "W. Europe Standard Time"):
        assert observances(exported[tzid]) == observances(given[tzid]), tzid
    assert "Asia/Tokyo" in exported  # a TZID that came without a definition still gets one


def test_export_keeps_the_vtimezones_that_arrived_in_an_invitation(reefknot: Reefknot, tmp_path: Path) -> None:
    mail = imip_mail(tmp_path, "zones", ERIN, ALICE, invitation("u-zones", ERIN, ALICE, method="METHOD:REQUEST\n"),
                     "REQUEST")
    assert "done" in reefknot("ingest", "--recipient", ALICE, "--sender", ERIN, str(mail))
    exported = zones_of(reefknot("calendar", "export", ALICE, "--uid", "u-zones"))
    assert_kept_as_sent(exported)
    assert "2038" not in str(exported["Europe/Berlin"].get("COMMENT", ""))


def test_export_keeps_the_vtimezones_of_an_object_put(reefknot: Reefknot, tmp_path: Path) -> None:
    path = tmp_path / "put.ics"
    path.write_text(invitation("u-put", ALICE, CAROL))
    reefknot("event", "put", "--as", ALICE, str(path))
    assert_kept_as_sent(zones_of(reefknot("calendar", "export", ALICE, "--uid", "u-put")))
    assert_kept_as_sent(zones_of(reefknot("calendar", "export", ALICE)))  # the whole calendar, too


def test_outgoing_imip_carries_the_stored_vtimezones(reefknot: Reefknot, tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "put.ics"
    path.write_text(invitation("u-out", ALICE, CAROL))
    reefknot("event", "put", "--as", ALICE, str(path))
    db = Database(database_url)
    try:
        with db.transaction() as session:
            (row,) = outbox.list_messages(session)
    finally:
        db.dispose()
    assert_kept_as_sent({str(z["TZID"]): z for z in timezones_of(parse_calendar(row.ical))})
