"""A VFREEBUSY POSTed to the scheduling outbox (``gateway.service.caldav.outbox``), on SQLite and PostgreSQL: one
answer per attendee, with the request status that says whether, and why not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from icalendar import Component, vPeriod

from gateway.core.calendar.ical import parse_calendar
from gateway.core.dav.xml import parse_body
from gateway.service.caldav import outbox
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from tests.service.test_caldav_tree import (
    ALICE,
    BOB,
    CAROL,
    ROOM,
    People,
    add_people,
    c,
    calendar,
    d,
    obj,
    plain,
    put,
    refusal,
    run,
)

OUTBOX = calendar(ALICE, "outbox")
Periods = list[tuple[datetime, datetime]]


@pytest.fixture
def people(db: Database) -> People:
    found = add_people(db)
    put(db, found.bob, obj(BOB, "busy.ics"), plain("bob-busy", start="20260710T080000Z", end="20260710T090000Z"))
    put(db, found.alice, obj(ALICE, "busy.ics"), plain("alice-busy", start="20260711T080000Z",
                                                     end="20260711T093000Z"))
    return found


def question(*attendees: str, organizer: str = ALICE, method: str = "REQUEST") -> bytes:
    lines = "".join(f"ATTENDEE:mailto:{a}\r\n" for a in attendees)
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
            f"METHOD:{method}\r\nBEGIN:VFREEBUSY\r\nUID:fb-1\r\nDTSTAMP:20260601T080000Z\r\n"
            "DTSTART:20260706T000000Z\r\nDTEND:20260713T000000Z\r\n"
            f"ORGANIZER:mailto:{organizer}\r\n{lines}END:VFREEBUSY\r\nEND:VCALENDAR\r\n").encode()


def post(db: Database, actor: PrincipalRef, body: bytes, *, local_may_see: bool,
         href: str = OUTBOX) -> dict[str, tuple[str, Periods]]:
    """Each recipient's request status and the busy periods its VFREEBUSY gives."""
    answer = run(db, actor, href, lambda s, r: outbox.post_freebusy(s, r, body, local_may_see))
    root = parse_body(answer.encode())
    assert root is not None and root.tag == c("schedule-response")
    out = {}
    for response in root.findall(c("response")):
        recipient = response.findtext(f"{c('recipient')}/{d('href')}") or ""
        data = response.findtext(c("calendar-data"))
        periods: Periods = []
        if data:
            (reply,) = parse_calendar(data).walk("VFREEBUSY")
            periods = [(p.dt[0].astimezone(UTC), p.dt[1].astimezone(UTC)) for p in _periods(reply)]
        out[recipient] = ((response.findtext(c("request-status")) or "").split(";")[0], periods)
    return out


def _periods(reply: Component) -> list[vPeriod]:
    found = reply.get("FREEBUSY")
    props = found if isinstance(found, list) else [found] if found is not None else []
    return [period for prop in props for period in getattr(prop, "dts", [prop])]


BOBS = [(datetime(2026, 7, 10, 8, tzinfo=UTC), datetime(2026, 7, 10, 9, tzinfo=UTC))]
ALICES = [(datetime(2026, 7, 11, 8, tzinfo=UTC), datetime(2026, 7, 11, 9, 30, tzinfo=UTC))]


@pytest.mark.parametrize(("local_may_see", "expected"), [
    (True, {f"mailto:{BOB}": ("2.0", BOBS), f"mailto:{ALICE}": ("2.0", ALICES), f"mailto:{ROOM}": ("2.0", []),
            f"mailto:{CAROL}": ("5.3", [])}),
    (False, {f"mailto:{BOB}": ("3.8", []), f"mailto:{ALICE}": ("2.0", ALICES), f"mailto:{ROOM}": ("3.8", []),
             f"mailto:{CAROL}": ("5.3", [])}),
], ids=["local-may-see", "only-ones-own"])
def test_each_attendee_gets_busy_time_or_the_reason_why_not(db: Database, people: People, local_may_see: bool,
                                                            expected: dict[str, tuple[str, Periods]]) -> None:
    assert post(db, people.alice, question(BOB, ALICE, ROOM, CAROL), local_may_see=local_may_see) == expected


def test_a_question_asked_in_anothers_name_is_refused(db: Database, people: People) -> None:
    refused = refusal(db, people.alice, OUTBOX, lambda s, r: outbox.post_freebusy(
        s, r, question(BOB, organizer=BOB), True))
    assert (refused.status, refused.condition) == (403, c("organizer-allowed"))


def test_a_question_by_an_alias_of_the_principal_is_answered(db: Database, people: People) -> None:
    answers = post(db, people.alice, question(BOB, organizer="a.smith@foo.example"), local_may_see=True)
    assert answers == {f"mailto:{BOB}": ("2.0", BOBS)}


@pytest.mark.parametrize(("href", "body", "status"), [
    (calendar(ALICE), question(BOB), 405),
    (OUTBOX, question(BOB, method="PUBLISH"), 403),
    (OUTBOX, b"not iCalendar", 400),
], ids=["not-the-outbox", "not-a-request", "not-icalendar"])
def test_a_post_that_is_no_freebusy_question_to_the_outbox_is_refused(db: Database, people: People, href: str,
                                                                     body: bytes, status: int) -> None:
    assert refusal(db, people.alice, href, lambda s, r: outbox.post_freebusy(s, r, body, True)).status == status
