"""The CalDAV benchmark's workload as data: the seeded calendar's objects and the request bodies a client sends.

Builders only; nothing here opens a socket or reads the clock (the anchor date is passed
in). Objects are iCalendar (RFC 5545) with a Europe/Berlin VTIMEZONE, lines folded at
75 octets; the REPORT bodies are written as DAVx5 (dav4jvm) writes them: sync-collection
(RFC 6578 §3.2), calendar-query with expand and calendar-multiget (RFC 4791 §7.8, §7.9).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from xml.sax.saxutils import escape

ZONE = "Europe/Berlin"
PRODID = "-//Reefknot bench//caldav_sync//EN"
ORGANIZER = "alice@foo.example"
LOCAL_ATTENDEES = tuple(f"bob{n}@foo.example" for n in range(1, 6))
OUTSIDE_ATTENDEES = tuple(f"x{n}@other.example" for n in range(1, 6))
SERIES_SHARE = 0.10
UPCOMING = (1, 61)  # new events fall in the next two months, as most invitations do

VTIMEZONE = [
    "BEGIN:VTIMEZONE", f"TZID:{ZONE}",
    "BEGIN:DAYLIGHT", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "TZNAME:CEST", "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "END:DAYLIGHT",
    "BEGIN:STANDARD", "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "TZNAME:CET", "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "END:STANDARD",
    "END:VTIMEZONE",
]
SUMMARIES = (
    "Team stand-up", "Quarterly planning", "1:1 with Bob", "Design review: booking flow", "Dentist",
    "Lunch with Carol", "Customer call – Müller GmbH", "Sprint retrospective", "Interview (backend)",
    "Board meeting", "Yoga", "Release 4.2 go/no-go", "Architecture sync", "Budget review, Q3",
)
LOCATIONS = (
    "Room 4.12, Hauptstraße 5, 10827 Berlin", "Zoom: https://zoom.example/j/81234567890",
    "Café Einstein, Kurfürstenstraße 58", "Room Spree (3rd floor)", "", "Praxis Dr. Weiß, Torstraße 12",
)
DESCRIPTIONS = (
    "Agenda:\n1. Status of the migration\n2. Open issues, risks\n3. Next steps\n\nNotes go to the shared doc.",
    "Please bring the printed contract; parking is behind the building, code 4711.",
    ("Dial-in: +49 30 1234567, PIN 998877#\nJoin from a browser: https://meet.example/abc-defg-hij\n"
     "If you cannot attend, send a delegate or your update by mail beforehand."),
    "",
    ("Quarterly numbers, the hiring plan and the office move. The slides are attached to the invitation; "
     "read them before the meeting, so that we can use the time for questions."),
)
DAYS = ("MO", "TU", "WE", "TH", "FR")


@dataclass(frozen=True)
class CalendarObject:
    """One calendar object resource: its file name in the collection and its iCalendar text."""

    name: str
    text: str


def fold(line: str) -> list[str]:
    """RFC 5545 §3.1: lines of at most 75 octets, continuations starting with a space, never splitting a character."""
    out, current = [], ""
    for char in line:
        if len((current + char).encode()) > 75:
            out.append(current)
            current = " " + char
        else:
            current += char
    return out + [current]


def text_value(value: str) -> str:
    """RFC 5545 §3.3.11 TEXT escaping."""
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def local_time(value: datetime) -> str:
    return f"TZID={ZONE}:{value:%Y%m%dT%H%M%S}"


def wrap(components: list[list[str]]) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN", *VTIMEZONE]
    for component in components:
        lines.extend(component)
    lines.append("END:VCALENDAR")
    return "".join(part + "\r\n" for line in lines for part in fold(line))


def vevent(rng: random.Random, uid: str, start: datetime, minutes: int, stamp: datetime, extra: list[str],
           all_day: bool = False) -> list[str]:
    """One VEVENT with the properties calendar programs write, and an alarm on some."""
    if all_day:
        times = [f"DTSTART;VALUE=DATE:{start:%Y%m%d}", f"DTEND;VALUE=DATE:{start + timedelta(days=1):%Y%m%d}"]
    else:
        times = [f"DTSTART;{local_time(start)}", f"DTEND;{local_time(start + timedelta(minutes=minutes))}"]
    lines = [
        "BEGIN:VEVENT", f"UID:{uid}", f"DTSTAMP:{stamp:%Y%m%dT%H%M%SZ}", f"CREATED:{stamp:%Y%m%dT%H%M%SZ}",
        f"LAST-MODIFIED:{stamp:%Y%m%dT%H%M%SZ}", *times, "SEQUENCE:0",
        f"SUMMARY:{text_value(rng.choice(SUMMARIES))}",
    ]
    location, description = rng.choice(LOCATIONS), rng.choice(DESCRIPTIONS)
    if location:
        lines.append(f"LOCATION:{text_value(location)}")
    if description:
        lines.append(f"DESCRIPTION:{text_value(description)}")
    lines += ["STATUS:CONFIRMED", "TRANSP:OPAQUE" if not all_day else "TRANSP:TRANSPARENT", "CLASS:PUBLIC", *extra]
    if rng.random() < 0.4:
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:Reminder", "TRIGGER:-PT15M", "END:VALARM"]
    return lines + ["END:VEVENT"]


def new_uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def single_event(rng: random.Random, anchor: date, uid: str, stamp: datetime, extra: Sequence[str] = (),
                 days: tuple[int, int] = (-365, 366)) -> str:
    """A single event on a day in ``days`` from ``anchor`` (a year either side); one in twenty lasts all day."""
    day = datetime.combine(anchor, datetime.min.time()) + timedelta(days=rng.randrange(*days))
    if rng.random() < 0.05:
        return wrap([vevent(rng, uid, day, 0, stamp, list(extra), all_day=True)])
    start = day + timedelta(hours=rng.randrange(8, 18), minutes=rng.choice((0, 0, 15, 30, 45)))
    return wrap([vevent(rng, uid, start, rng.choice((30, 45, 60, 60, 90, 120)), stamp, list(extra))])


def weekly_series(rng: random.Random, anchor: date, uid: str, stamp: datetime) -> str:
    """A weekly series begun in the last year: open-ended, by COUNT or by UNTIL, some with an EXDATE and a moved instance."""
    first = datetime.combine(anchor, datetime.min.time()) + timedelta(days=rng.randrange(-365, 30))
    start = first + timedelta(hours=rng.randrange(8, 18), minutes=rng.choice((0, 30)))
    if start.weekday() >= 5:
        start += timedelta(days=7 - start.weekday())
    until = f";UNTIL={start + timedelta(weeks=rng.randrange(10, 80)):%Y%m%dT%H%M%SZ}"
    rule = f"RRULE:FREQ=WEEKLY;BYDAY={DAYS[start.weekday()]}" + rng.choice(("", ";COUNT=20", ";COUNT=52", until))
    skipped = start + timedelta(weeks=3)
    moved = start + timedelta(weeks=5)
    master = vevent(rng, uid, start, 30 if rng.random() < 0.5 else 60, stamp, [rule, f"EXDATE;{local_time(skipped)}"])
    components = [master]
    if rng.random() < 0.3:
        components.append(vevent(rng, uid, moved + timedelta(hours=2), 60, stamp, [f"RECURRENCE-ID;{local_time(moved)}"]))
    return wrap(components)


def seed_objects(count: int, anchor: date, seed: int = 1) -> list[CalendarObject]:
    """The seeded calendar: ``count`` objects, one in ten a weekly series, the rest single events."""
    rng = random.Random(seed)
    stamp = datetime.combine(anchor, datetime.min.time()) - timedelta(days=400)
    series = int(count * SERIES_SHARE)
    objects = []
    for n in range(count):
        uid = new_uid(rng)
        text = weekly_series(rng, anchor, uid, stamp) if n < series else single_event(rng, anchor, uid, stamp)
        objects.append(CalendarObject(f"{uid}.ics", text))
    rng.shuffle(objects)
    return objects


def changed_object(original: CalendarObject, n: int) -> CalendarObject:
    """The same object as a client writes it after an edit: new SUMMARY, SEQUENCE and LAST-MODIFIED."""
    text = original.text.replace("SEQUENCE:0", f"SEQUENCE:{n + 1}", 1)
    head, _, rest = text.partition("SUMMARY:")
    _, _, rest = rest.partition("\r\n")
    while rest.startswith(" "):
        _, _, rest = rest.partition("\r\n")
    return CalendarObject(original.name, f"{head}SUMMARY:Edited {n}\r\n{rest}")


def plain_event(rng: random.Random, anchor: date, stamp: datetime) -> CalendarObject:
    """A new event of Alice's own, without attendees."""
    uid = new_uid(rng)
    return CalendarObject(f"{uid}.ics", single_event(rng, anchor, uid, stamp, days=UPCOMING))


def meeting_event(rng: random.Random, anchor: date, stamp: datetime) -> CalendarObject:
    """An event Alice organizes, with five attendees of her own domain and five from another."""
    uid = new_uid(rng)
    people = [f"ORGANIZER;CN=Alice:mailto:{ORGANIZER}"]
    for address in LOCAL_ATTENDEES + OUTSIDE_ATTENDEES:
        name = address.split("@")[0].capitalize()
        people.append(f"ATTENDEE;CN={name};CUTYPE=INDIVIDUAL;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT;"
                      f"RSVP=TRUE:mailto:{address}")
    return CalendarObject(f"{uid}.ics", single_event(rng, anchor, uid, stamp, people, UPCOMING))


XML_HEAD = "<?xml version='1.0' encoding='UTF-8' ?>"


def sync_collection(token: str = "") -> bytes:
    """RFC 6578 §3.2: the changes since ``token`` (all members when empty), with their ETags."""
    token_element = f"<sync-token>{escape(token)}</sync-token>" if token else "<sync-token />"
    return (f'{XML_HEAD}<sync-collection xmlns="DAV:">{token_element}<sync-level>1</sync-level>'
            "<prop><getetag /></prop></sync-collection>").encode()


def calendar_query_expanded(start: datetime, end: datetime) -> bytes:
    """RFC 4791 §7.8 with §9.6.5 expand: each VEVENT overlapping [start, end), recurrences expanded, as data."""
    span = f'start="{start:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"'
    return (f'{XML_HEAD}<CAL:calendar-query xmlns="DAV:" xmlns:CAL="urn:ietf:params:xml:ns:caldav">'
            f"<prop><getetag /><CAL:calendar-data><CAL:expand {span} /></CAL:calendar-data></prop>"
            '<CAL:filter><CAL:comp-filter name="VCALENDAR"><CAL:comp-filter name="VEVENT">'
            f"<CAL:time-range {span} /></CAL:comp-filter></CAL:comp-filter></CAL:filter>"
            "</CAL:calendar-query>").encode()


def calendar_multiget(hrefs: list[str]) -> bytes:
    """RFC 4791 §7.9, with the properties DAVx5 asks for."""
    members = "".join(f"<href>{escape(href)}</href>" for href in hrefs)
    return (f'{XML_HEAD}<CAL:calendar-multiget xmlns="DAV:" xmlns:CAL="urn:ietf:params:xml:ns:caldav">'
            "<prop><getcontenttype /><getetag /><CAL:schedule-tag /><CAL:calendar-data /></prop>"
            f"{members}</CAL:calendar-multiget>").encode()


def mkcalendar() -> bytes:
    """RFC 4791 §5.3.1: a calendar for events."""
    return (f'{XML_HEAD}<CAL:mkcalendar xmlns="DAV:" xmlns:CAL="urn:ietf:params:xml:ns:caldav"><set><prop>'
            "<displayname>Default</displayname><CAL:supported-calendar-component-set>"
            '<CAL:comp name="VEVENT" /></CAL:supported-calendar-component-set></prop></set></CAL:mkcalendar>').encode()


def propfind_resourcetype() -> bytes:
    return f'{XML_HEAD}<propfind xmlns="DAV:"><prop><resourcetype /></prop></propfind>'.encode()
