"""Values that cannot be read as their type: read leniently into canonical RFC 5545 form, or held as invalid-value.

Through ``read_itip`` (the core, table-driven), through ``reefknot ingest`` (the inbox and
the quarantine name the reason), and on the way out: ``calendar export`` and the calendar
feed leave out a stored object that is not valid iCalendar, and what they send parses
strictly. ``strict_problems`` is this module's own reading of RFC 5545's value grammar,
independent of the code under test.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from icalendar import Calendar

from gateway.core.calendar.export import check_object, export_objects
from gateway.core.calendar.ical import components_of, serialize_calendar
from gateway.core.itip.messages import ItipMessage, PartProblem, read_itip
from gateway.core.itip.types import Stored
from gateway.core.mail.calendarparts import CalendarPart
from gateway.core.model import Outcome
from gateway.edges.http import HttpFace
from gateway.service.trust import Trust
from gateway.settings.config import Listener
from gateway.store import calendars, directory
from gateway.store.db import Database
from tests.peers.cli import Reefknot, imip_mail
from tests.peers.servers import LOOPBACK, free_port
from tests.core.calendar.test_freebusy import WINDOWS_ZONE

NOW = datetime(2026, 6, 2, 12, 0, tzinfo=timezone.utc)
BASE = {
    "UID": "UID:{uid}",
    "DTSTAMP": "DTSTAMP:20260601T080000Z",
    "DTSTART": "DTSTART:20260710T080000Z",
    "DTEND": "DTEND:20260710T090000Z",
    "ORGANIZER": "ORGANIZER:mailto:carol@bar.example",
    "ATTENDEE": "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:alice@foo.example",
    "SUMMARY": "SUMMARY:Values",
}

# --- an independent strict reading of RFC 5545 §3.3.4, §3.3.5, §3.3.10, §3.8.7.2 ---------------

DATE, DATE_TIME, UTC = r"\d{8}", r"\d{8}T\d{6}Z?", r"\d{8}T\d{6}Z"
ZONED_OR_DATE = ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID", "EXDATE", "RDATE")
UTC_ONLY = ("DTSTAMP", "CREATED", "LAST-MODIFIED", "COMPLETED")
PARAM_VALUE = r'(?:"[^"]*"|[^";:,]*)'
LINE = re.compile(
    rf"(?P<name>[A-Za-z0-9-]+)(?P<params>(?:;[A-Za-z0-9-]+={PARAM_VALUE}(?:,{PARAM_VALUE})*)*):(?P<value>.*)"
)


def strict_problems(text: str) -> list[str]:
    """Every line of ``text`` whose date-time, RRULE UNTIL or SEQUENCE value breaks RFC 5545, and every
    scheduling component without UID or DTSTAMP."""
    problems: list[str] = []
    if text and not text.endswith("\r\n") or "\n" in text.replace("\r\n", ""):
        problems.append("lines do not end in CRLF")
    stack: list[set[str]] = []
    for line in re.sub(r"\r\n[ \t]", "", text).split("\r\n")[:-1]:
        match = LINE.fullmatch(line)
        if match is None:
            problems.append(f"not a content line: {line!r}")
            continue
        name, params, value = match["name"].upper(), match["params"].upper(), match["value"]
        if name == "BEGIN":
            stack.append(set())
        elif name == "END":
            seen = stack.pop()
            if value.upper() in ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY") and not {"UID", "DTSTAMP"} <= seen:
                problems.append(f"{value} without UID or DTSTAMP")
        elif stack:
            stack[-1].add(name)
        problems.extend(f"{name}: {value!r}" for item in _items(name, params, value) if not _valid(*item))
    return problems


def _items(name: str, params: str, value: str) -> list[tuple[str, str]]:
    if name in UTC_ONLY:
        return [(UTC, value)]
    if name in ZONED_OR_DATE and "VALUE=PERIOD" not in params:
        grammar = DATE if "VALUE=DATE;" in params + ";" else DATE_TIME
        return [(grammar, v) for v in value.split(",")]
    if name == "RRULE":
        return [(DATE + "|" + DATE_TIME, p[6:]) for p in value.split(";") if p.upper().startswith("UNTIL=")]
    if name == "SEQUENCE":
        return [(r"\d+", value)]
    return []


def _valid(grammar: str, value: str) -> bool:
    if re.fullmatch(grammar, value) is None:
        return False
    try:
        datetime.strptime(value[:15], "%Y%m%dT%H%M%S" if "T" in value else "%Y%m%d")
    except ValueError:
        return grammar == r"\d+"
    return True


def test_the_strict_reading_refuses_what_it_should() -> None:
    good = "BEGIN:VEVENT\r\nUID:a\r\nDTSTAMP:20260601T080000Z\r\nDTSTART;VALUE=DATE:20260701\r\nEND:VEVENT\r\n"
    assert strict_problems(good) == []
    for bad in ("DTSTART:2026-07-01T08:00:00", "DTSTART;VALUE=DATE:20260701T080000", "DTSTAMP:20260601T080000",
                "DTEND:20260230T080000Z", "SEQUENCE:x", "RRULE:FREQ=DAILY;UNTIL=2026-07-01"):
        assert strict_problems(good.replace("DTSTART;VALUE=DATE:20260701", bad)), bad
    assert strict_problems(good.replace("DTSTAMP:20260601T080000Z\r\n", ""))


# --- the core: read_itip ----------------------------------------------------------------------


def calendar_text(uid: str, *lines: str, method: str = "REQUEST") -> str:
    """A one-event REQUEST: the base lines, each replaced by a given line of the same property."""
    given = {re.split("[;:]", line, maxsplit=1)[0].upper() for line in lines}
    if "DURATION" in given:
        given.add("DTEND")
    body = [v.format(uid=uid) for k, v in BASE.items() if k not in given] + [*lines]
    return "\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//T//T//EN", f"METHOD:{method}",
                      "BEGIN:VEVENT", *body, "END:VEVENT", "END:VCALENDAR", ""])


def read(text: str, *, sent: datetime | None = None, now: datetime | None = NOW) -> ItipMessage | PartProblem:
    return read_itip(CalendarPart(text.replace("\n", "\r\n"), "text/calendar", None, None, "1"), sent=sent, now=now)


@dataclass(frozen=True)
class Lenient:
    sent: tuple[str, ...]
    canonical: tuple[str, ...]


LENIENT = {
    "iso-date-basic-time": Lenient(("DTSTART:2026-07-10T080000Z",), ("DTSTART:20260710T080000Z",)),
    "iso-extended-zoned": Lenient(
        ("DTSTART;TZID=Europe/Berlin:2026-07-10T10:00:00", "DTEND;TZID=Europe/Berlin:2026-07-10T11:00:00"),
        ("DTSTART;TZID=Europe/Berlin:20260710T100000", "DTEND;TZID=Europe/Berlin:20260710T110000"),
    ),
    "iso-extended-floating": Lenient(("DTSTART:2026-07-10T08:00:00", "DTEND:2026-07-10T09:00:00"),
                                     ("DTSTART:20260710T080000", "DTEND:20260710T090000")),
    "utc-offset-read-as-utc": Lenient(("DTSTART:2026-07-10T10:00:00+02:00",), ("DTSTART:20260710T080000Z",)),
    "time-without-seconds": Lenient(("DTSTART:20260710T0800Z",), ("DTSTART:20260710T080000Z",)),
    "fractional-seconds": Lenient(("DTEND:20260710T090000.000Z",), ("DTEND:20260710T090000Z",)),
    "date-without-value-date": Lenient(("DTSTART:20260710", "DTEND:20260711"),
                                       ("DTSTART;VALUE=DATE:20260710", "DTEND;VALUE=DATE:20260711")),
    "iso-date-with-value-date": Lenient(("DTSTART;VALUE=DATE:2026-07-10", "DTEND;VALUE=DATE:2026-07-11"),
                                        ("DTSTART;VALUE=DATE:20260710", "DTEND;VALUE=DATE:20260711")),
    "dtstamp-iso-extended": Lenient(("DTSTAMP:2026-06-01T08:00:00Z",), ("DTSTAMP:20260601T080000Z",)),
    "dtstamp-date-as-midnight-utc": Lenient(("DTSTAMP:20260601",), ("DTSTAMP:20260601T000000Z",)),
    "dtstamp-floating-as-utc": Lenient(("DTSTAMP:20260601T080000",), ("DTSTAMP:20260601T080000Z",)),
    "dtstamp-zoned-in-utc": Lenient(("DTSTAMP;TZID=Europe/Berlin:20260601T100000",), ("DTSTAMP:20260601T080000Z",)),
    "last-modified-iso-date": Lenient(("LAST-MODIFIED:2026-06-01",), ("LAST-MODIFIED:20260601T000000Z",)),
    "rrule-until-iso": Lenient(("RRULE:FREQ=WEEKLY;UNTIL=2026-07-31T08:00:00Z",),
                               ("RRULE:FREQ=WEEKLY;UNTIL=20260731T080000Z",)),
    "exdate-iso-list": Lenient(("RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:2026-07-17T08:00:00Z,20260724T080000Z"),
                               ("EXDATE:20260717T080000Z,20260724T080000Z",)),
    "recurrence-id-iso": Lenient(("RECURRENCE-ID:2026-07-10T08:00:00Z",), ("RECURRENCE-ID:20260710T080000Z",)),
    "windows-zone-iso": Lenient(("DTSTART;TZID=W. Europe Standard Time:2026-07-10T10:00:00",),
                                ("DTSTART;TZID=W. Europe Standard Time:20260710T100000",)),
    "geo-with-comma": Lenient(("GEO:52.52,13.405",), ("GEO:52.52;13.405",)),
}


@pytest.mark.parametrize("name", LENIENT)
def test_a_value_with_one_clear_meaning_is_read_and_rewritten_canonically(name: str) -> None:
    case = LENIENT[name]
    text = calendar_text(name, *case.sent)
    if any("W. Europe" in line for line in case.sent):
        text = text.replace("BEGIN:VEVENT", WINDOWS_ZONE + "\nBEGIN:VEVENT")
    message = read(text)
    assert isinstance(message, ItipMessage), message
    written = serialize_calendar(message.calendar)
    assert set(case.canonical) <= set(written.split("\r\n")), written
    assert strict_problems(written) == []


def test_a_windows_zone_value_read_leniently_keeps_its_instant() -> None:
    text = calendar_text("w", "DTSTART;TZID=W. Europe Standard Time:2026-07-10T10:00:00")
    message = read(text.replace("BEGIN:VEVENT", WINDOWS_ZONE + "\nBEGIN:VEVENT"))
    assert isinstance(message, ItipMessage)
    (event,) = components_of(message.calendar)
    assert event["DTSTART"].dt.astimezone(timezone.utc) == datetime(2026, 7, 10, 8, 0, tzinfo=timezone.utc)


HELD = {
    "seven-digit-time": ("DTSTART:20260710T0800000Z", "DTSTART"),
    "dtstamp-seven-digit-time": ("DTSTAMP:20260601T1257000", "DTSTAMP"),
    "dtstamp-words": ("DTSTAMP:yesterday", "DTSTAMP"),
    "thirtieth-of-february": ("DTEND:20260230T090000Z", "DTEND"),
    "value-date-with-a-time": ("DTSTART;VALUE=DATE:20260710T080000", "DTSTART"),
    "value-date-time-with-a-date": ("DTSTART;VALUE=DATE-TIME:20260710", "DTSTART"),
    "iso-time-with-value-date": ("DTSTART;VALUE=DATE:2026-07-10T08:00:00", "DTSTART"),
    "utc-offset-and-tzid": ("DTSTART;TZID=Europe/Berlin:2026-07-10T10:00:00+02:00", "DTSTART"),
    "sequence-in-words": ("SEQUENCE:two", "SEQUENCE"),
    "duration-without-p": ("DURATION:1H", "DURATION"),
    "rrule-count-in-words": ("RRULE:FREQ=DAILY;COUNT=x", "RRULE"),
    "exdate-words": ("EXDATE:tomorrow", "EXDATE"),
    "recurrence-id-half-iso": ("RECURRENCE-ID:2026-07-10T08", "RECURRENCE-ID"),
}


@pytest.mark.parametrize("name", HELD)
def test_a_value_that_cannot_be_read_names_the_property_and_is_not_applied(name: str) -> None:
    line, prop = HELD[name]
    problem = read(calendar_text(name, line))
    assert isinstance(problem, PartProblem), serialize_calendar(problem.calendar)
    assert (problem.outcome, problem.reason, problem.method, problem.uid) == (
        Outcome.REJECTED, "invalid-value", "REQUEST", name)
    assert problem.detail.startswith(f"{prop} in "), problem.detail


def test_every_unreadable_value_is_counted_in_the_detail() -> None:
    problem = read(calendar_text("two", "SEQUENCE:two", "DTEND:20260230T090000Z"))
    assert isinstance(problem, PartProblem) and problem.detail.endswith("and 1 more")


SENT = datetime(2026, 6, 2, 9, 30, 15, tzinfo=timezone(timedelta(hours=2)))


@pytest.mark.parametrize(
    ("sent", "now", "stamp"),
    [
        (SENT, NOW, "DTSTAMP:20260602T073015Z"),  # the mail's Date, in UTC
        (NOW + timedelta(days=3), NOW, "DTSTAMP:20260602T120000Z"),  # a Date in the future: the time of reading
        (None, NOW.replace(microsecond=123456), "DTSTAMP:20260602T120000Z"),  # no Date: the time of reading
        (None, None, "DTSTAMP:19700101T000000Z"),  # neither: the epoch, which every stamped version follows
    ],
)
def test_a_missing_dtstamp_is_the_mails_date_never_later_than_now(
    sent: datetime | None, now: datetime | None, stamp: str
) -> None:
    text = calendar_text("no-stamp").replace("DTSTAMP:20260601T080000Z\n", "")
    message = read(text, sent=sent, now=now)
    assert isinstance(message, ItipMessage)
    written = serialize_calendar(message.calendar)
    assert stamp in written.split("\r\n") and strict_problems(written) == []
    assert f"no DTSTAMP: {stamp[8:12]}-" in message.note


def test_a_dtstamp_that_is_there_is_kept_and_not_noted() -> None:
    message = read(calendar_text("stamped"), sent=SENT)
    assert isinstance(message, ItipMessage) and message.note == ""
    assert "DTSTAMP:20260601T080000Z" in serialize_calendar(message.calendar)


# --- the core: what leaves --------------------------------------------------------------------


def broken_object(uid: str) -> str:
    """A stored object that only icalendar's raw reading keeps: a seven-digit time stays as written."""
    return calendar_text(uid, "DTSTART:20260710T0800000Z", method="").replace("METHOD:\n", "")


def test_an_export_leaves_out_an_object_that_is_not_valid_and_names_it() -> None:
    good = calendar_text("good", method="").replace("METHOD:\n", "")
    no_stamp = good.replace("UID:good", "UID:no-stamp").replace("DTSTAMP:20260601T080000Z\n", "")
    export = export_objects([good, broken_object("bad"), no_stamp, "BEGIN:VCALENDAR\nBEGIN:VEVENT\n"])
    assert [(o.uid, o.reason) for o in export.left_out] == [
        ("bad", "invalid-value"), ("no-stamp", "missing-dtstamp"), ("", "not-icalendar")]
    assert export.left_out[0].detail.startswith("DTSTART in VEVENT")
    assert [str(c["UID"]) for c in components_of(export.calendar)] == ["good"]
    assert strict_problems(serialize_calendar(export.calendar)) == []


def test_free_busy_that_is_not_valid_fails_the_check() -> None:
    text = ("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\nMETHOD:REPLY\nBEGIN:VFREEBUSY\nUID:fb\nDTSTAMP:20260601T080000Z\n"
            "DTSTART:20260601T000000Z\nDTEND:20260608T000000Z\nEND:VFREEBUSY\nEND:VCALENDAR\n").replace("\n", "\r\n")
    assert check_object(Calendar.from_ical(text)) is None
    problem = check_object(Calendar.from_ical(text.replace("DTSTAMP:20260601T080000Z\r\n", "")))
    assert problem is not None and (problem.uid, problem.reason) == ("fb", "missing-dtstamp")


# --- end to end: reefknot ingest, inbox, quarantine, export -----------------------------------


def dated(path: Path, date: str) -> Path:
    path.write_bytes(f"Date: {date}\r\n".encode() + path.read_bytes())
    return path


@pytest.mark.parametrize("name", ["seven-digit-time", "value-date-with-a-time", "sequence-in-words"])
def test_ingest_holds_an_unreadable_value_and_the_inbox_names_it(reefknot: Reefknot, tmp_path: Path, name: str) -> None:
    line, prop = HELD[name]
    mail = imip_mail(tmp_path, name, "carol@bar.example", "alice@foo.example", calendar_text(name, line), "REQUEST")
    assert "held (invalid-value)" in reefknot("ingest", "--recipient", "alice@foo.example", str(mail))
    (entry,) = reefknot.json_lines("inbox", "alice@foo.example")
    assert (entry["outcome"], entry["reason"], entry["uid"]) == ("rejected", "invalid-value", name)
    assert entry["detail"].startswith(f"{prop} in VEVENT")
    assert "invalid-value" in reefknot("inbox", "alice@foo.example")
    (held,) = reefknot.json_lines("quarantine")
    assert held["reason"] == "invalid-value"
    assert f"UID:{name}" not in reefknot("calendar", "export", "alice@foo.example")


def test_ingest_stores_lenient_values_canonically_and_the_export_parses_strictly(
    reefknot: Reefknot, tmp_path: Path
) -> None:
    lines = ("DTSTAMP:2026-06-01T08:00:00Z", "DTSTART;TZID=Europe/Berlin:2026-07-10T10:00:00",
             "DTEND;TZID=Europe/Berlin:2026-07-10T11:00", "RRULE:FREQ=WEEKLY;UNTIL=2026-07-31T08:00:00Z",
             "EXDATE;TZID=Europe/Berlin:2026-07-17T10:00:00")
    mail = imip_mail(tmp_path, "lenient", "carol@bar.example", "alice@foo.example",
                     calendar_text("lenient", *lines), "REQUEST")
    assert "done" in reefknot("ingest", "--recipient", "alice@foo.example", str(mail))
    (entry,) = reefknot.json_lines("inbox", "alice@foo.example")
    assert entry["outcome"] == "applied", entry
    exported = reefknot("calendar", "export", "alice@foo.example", "--uid", "lenient")
    assert strict_problems(exported) == []
    assert {"DTSTAMP:20260601T080000Z", "DTSTART;TZID=Europe/Berlin:20260710T100000",
            "DTEND;TZID=Europe/Berlin:20260710T110000", "RRULE:FREQ=WEEKLY;UNTIL=20260731T080000Z",
            "EXDATE;TZID=Europe/Berlin:20260717T100000"} <= set(exported.split("\r\n"))


def test_ingest_stamps_a_request_without_dtstamp_with_the_mails_date(reefknot: Reefknot, tmp_path: Path) -> None:
    text = calendar_text("unstamped").replace("DTSTAMP:20260601T080000Z\n", "")
    mail = imip_mail(tmp_path, "unstamped", "carol@bar.example", "alice@foo.example", text, "REQUEST")
    reefknot("ingest", "--recipient", "alice@foo.example", str(dated(mail, "Mon, 01 Jun 2026 10:15:00 +0200")))
    (entry,) = reefknot.json_lines("inbox", "alice@foo.example")
    assert entry["outcome"] == "applied" and "no DTSTAMP: 2026-06-01T08:15:00Z used" in entry["detail"]
    exported = reefknot("calendar", "export", "alice@foo.example", "--uid", "unstamped")
    assert "DTSTAMP:20260601T081500Z" in exported.split("\r\n") and strict_problems(exported) == []


def store_broken_object(database_url: str, owner: str, uid: str) -> None:
    """What an older version, or a hand edit of the database, may have left: written past every check."""
    database = Database(database_url)
    try:
        with database.transaction() as session:
            principal = directory.resolve(session, owner)
            assert principal is not None
            calendar = Calendar.from_ical(broken_object(uid).replace("\n", "\r\n"))
            calendars.save_object(session, principal.id, uid, Stored(calendar), NOW)
    finally:
        database.dispose()


def test_calendar_export_leaves_out_a_stored_object_that_is_not_valid(
    reefknot: Reefknot, tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good.ics"
    good.write_text(calendar_text("good", method="").replace("METHOD:\n", ""))
    reefknot("event", "put", "--as", "alice@foo.example", str(good))
    store_broken_object(database_url, "alice@foo.example", "broken")
    with caplog.at_level(logging.ERROR):
        exported = reefknot("calendar", "export", "alice@foo.example")
    assert "UID:good" in exported and "UID:broken" not in exported and strict_problems(exported) == []
    assert any("broken: invalid-value (DTSTART in VEVENT" in r.getMessage() for r in caplog.records)
    reefknot("calendar", "export", "alice@foo.example", "--uid", "broken", expect=65)


def test_the_calendar_feed_leaves_out_a_stored_object_that_is_not_valid(
    reefknot: Reefknot, tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good.ics"
    good.write_text(calendar_text("good", method="").replace("METHOD:\n", ""))
    reefknot("event", "put", "--as", "alice@foo.example", str(good))
    store_broken_object(database_url, "alice@foo.example", "broken")
    path = "/calendars/" + reefknot("users", "feed", "alice@foo.example").strip().split("/calendars/", 1)[1]
    with caplog.at_level(logging.ERROR):
        status, text = asyncio.run(fetch_from_face(database_url, path))
    assert status == 200 and "UID:good" in text and "UID:broken" not in text
    assert strict_problems(text) == []
    assert any("feed of alice@foo.example left out broken: invalid-value" in r.getMessage() for r in caplog.records)


async def fetch_from_face(database_url: str, path: str) -> tuple[int, str]:
    """GET ``path`` from a real HTTP face on a loopback port."""
    database, port = Database(database_url), free_port()
    face = HttpFace(database, Trust)
    await face.start(Listener(host=LOOPBACK, port=port))
    try:
        async with aiohttp.ClientSession() as client, client.get(f"http://{LOOPBACK}:{port}{path}") as answer:
            return answer.status, await answer.text()
    finally:
        await face.close()
        database.dispose()
