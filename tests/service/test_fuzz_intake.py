"""Fuzzing the whole intake path: damaged real-world mail and made-up iCalendar never crash or hang it.

Every input must end applied, ignored or held with a named reason; a processing
failure (the catch-all that keeps a message queued after an unexpected error) is a
bug. The inputs are the real-sender fixtures with bytes flipped, cut, repeated and
spliced, and calendars assembled from iCalendar fragments. A run takes a minute or two
by default; ``REEFKNOT_FUZZ_EXAMPLES=20000 pytest tests/service/test_fuzz_intake.py`` runs longer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.mail.envelope import Envelope
from gateway.service import processing
from gateway.store.db import Database
from gateway.store.intake import IntakeState
from tests.conftest import NOW
from tests.peers.corpus_site import LOCAL, corpus_database
from tests.peers.corpus_site import MAIL as CORPUS

MAIL = sorted(CORPUS.glob("*.eml"))
EXAMPLES = int(os.environ.get("REEFKNOT_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])

FRAGMENTS = [
    "BEGIN:VCALENDAR", "END:VCALENDAR", "BEGIN:VEVENT", "END:VEVENT", "BEGIN:VTIMEZONE", "END:VTIMEZONE",
    "BEGIN:VTODO", "END:VTODO", "BEGIN:VFREEBUSY", "END:VFREEBUSY", "BEGIN:VALARM", "END:VALARM",
    "VERSION:2.0", "METHOD:REQUEST", "METHOD:REPLY", "METHOD:CANCEL", "METHOD:COUNTER", "METHOD:REFRESH",
    "METHOD:ADD", "METHOD:DECLINECOUNTER", "METHOD:PUBLISH", "UID:fuzz-1", "UID:", "SEQUENCE:1",
    "SEQUENCE:99999999999", "SEQUENCE:-1", "DTSTAMP:20260101T000000Z", "DTSTAMP:garbage",
    "DTSTART:20260710T100000Z", "DTSTART;TZID=Europe/Berlin:20260710T100000", "DTSTART;TZID=Nowhere:20260710",
    "DTSTART;VALUE=DATE:20260710", "DTEND:20260710T090000Z", "DURATION:PT1H", "DURATION:P-1D",
    "RRULE:FREQ=WEEKLY;COUNT=5", "RRULE:FREQ=SECONDLY", "RRULE:FREQ=DAILY;UNTIL=20250101", "RRULE:BYDAY=XX",
    "RRULE:FREQ=DAILY;COUNT=1000000000", "RRULE:FREQ=MINUTELY", "RRULE:FREQ=HOURLY;INTERVAL=0",
    "RRULE:FREQ=SECONDLY;BYMONTH=12;BYMONTHDAY=31;BYHOUR=23", "RRULE:FREQ=MONTHLY;BYMONTHDAY=31;BYSETPOS=-1",
    "RRULE:FREQ=YEARLY;BYWEEKNO=53;BYDAY=TH;COUNT=99999", "DTSTART:00010101T000000Z",
    "RDATE:" + ",".join(f"2026{m:02d}{d:02d}T090000Z" for m in range(1, 13) for d in range(1, 29)) * 4,
    "EXDATE:20260717T100000Z", "RDATE;VALUE=PERIOD:20260801T100000Z/PT1H", "RECURRENCE-ID:20260717T100000Z",
    "RECURRENCE-ID;RANGE=THISANDFUTURE:20260717T100000Z", "ORGANIZER:mailto:erin@baz.example",
    "ORGANIZER;SENT-BY=\"mailto:x@y\":mailto:alice@foo.example", "ORGANIZER:invalid:nomail",
    "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@foo.example", "ATTENDEE:mailto:bob@foo.example",
    "ATTENDEE;CUTYPE=ROOM:mailto:room-r@foo.example", "ATTENDEE;DELEGATED-TO=\"mailto:bob@foo.example\":x",
    "ATTENDEE", "SUMMARY:Fuzz", "SUMMARY:\u00e9\u0000\u202e", "CLASS:PRIVATE", "STATUS:CANCELLED",
    "FREEBUSY:20260710T100000Z/PT1H", "TZID:Europe/Berlin", "X-FOO;X=\"a\":b", " folded continuation",
    "\t", "", ":", ";;;", "BEGIN:", "END:",
]


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = corpus_database(tmp_path_factory.mktemp("fuzz"), NOW)
    yield db
    db.dispose()


def _ends_with_a_reason(db: Database, raw: bytes) -> None:
    receipt = processing.ingest_message(db, raw, Envelope("erin@baz.example", LOCAL, "ingest"), NOW)
    assert receipt.reason != "processing-failed", raw[:2000]
    assert receipt.state in (IntakeState.DONE, IntakeState.IGNORED, IntakeState.HELD)
    assert receipt.state is IntakeState.DONE or receipt.reason


@st.composite
def damaged_mail(draw: st.DrawFn) -> bytes:
    data = bytearray(MAIL[draw(st.integers(0, len(MAIL) - 1))].read_bytes())
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        change = draw(st.sampled_from(["flip", "cut", "repeat", "insert", "truncate"]))
        if change == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif change == "cut":
            del data[at:at + draw(st.integers(1, 200))]
        elif change == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 400))] * draw(st.integers(1, 5))
        elif change == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b"\n\n", b"--", b"=?utf-8?b?", b"\x00", b"\xff\xfe",
                                                b"Content-Type: multipart/mixed; boundary=x\r\n", b"=\r\n"]))
        else:
            del data[at:]
    return bytes(data)


@st.composite
def made_up_calendar_mail(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=60))
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    method = draw(st.sampled_from(["REQUEST", "REPLY", "CANCEL", "BOGUS", ""]))
    body = newline.join(lines).encode("utf-8", "surrogatepass")
    header = (
        f"From: erin@baz.example\r\nTo: alice@foo.example\r\nSubject: fuzz\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/calendar; method={method}; charset=utf-8\r\n\r\n"
    ).encode()
    return header + body


@FUZZ
@given(raw=damaged_mail())
def test_damaged_real_world_mail_ends_applied_or_recorded_with_a_reason(fuzz_db: Database, raw: bytes) -> None:
    _ends_with_a_reason(fuzz_db, raw)


@FUZZ
@given(raw=made_up_calendar_mail())
def test_made_up_calendars_end_applied_or_recorded_with_a_reason(fuzz_db: Database, raw: bytes) -> None:
    _ends_with_a_reason(fuzz_db, raw)
