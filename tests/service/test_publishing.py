"""What leaves for calendar programs (gateway.service.publishing): calendar export, the token feed, free/busy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from icalendar import Calendar

from gateway.core.calendar.ical import serialize_calendar
from gateway.service import publishing
from gateway.service.events import put_event
from gateway.service.publishing import UnknownCalendarUser
from gateway.store import directory
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from tests.conftest import NOW

ALICE, BOB = "alice@foo.example", "bob@foo.example"
HOUR = timedelta(hours=1)


def event(uid: str, organizer: str, start: datetime, end: datetime) -> str:
    """A local principal's own event (no attendees: nothing to deliver), in UTC."""
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//Test//EN\nBEGIN:VEVENT\n"
        f"UID:{uid}\nDTSTAMP:20260601T080000Z\nDTSTART:{start:%Y%m%dT%H%M%SZ}\nDTEND:{end:%Y%m%dT%H%M%SZ}\n"
        f"SUMMARY:Meeting {uid}\nORGANIZER:mailto:{organizer}\nEND:VEVENT\nEND:VCALENDAR\n"
    )


@pytest.fixture
def people(db: Database) -> tuple[PrincipalRef, PrincipalRef]:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW, name="Alice", aliases=("a.smith@foo.example",))
        bob = directory.add_principal(session, BOB, NOW, name="Bob")
    return alice, bob


def put(db: Database, owner: PrincipalRef, uid: str, start: datetime, end: datetime) -> None:
    with db.transaction() as session:
        put_event(session, owner, event(uid, owner.address, start, end), NOW)


def events_in(calendar: Calendar) -> dict[str, str]:
    """UID → SUMMARY of each VEVENT, read back from the serialized text."""
    parsed = Calendar.from_ical(serialize_calendar(calendar))
    return {str(e["UID"]): str(e["SUMMARY"]) for e in parsed.walk("VEVENT")}


def vfreebusy_in(calendar: Calendar) -> Any:
    """The one VFREEBUSY, read back from the serialized text (its properties of any value type)."""
    (component,) = Calendar.from_ical(serialize_calendar(calendar)).walk("VFREEBUSY")
    return component


def busy_in(calendar: Calendar) -> list[tuple[datetime, datetime]]:
    """The FREEBUSY periods of the one VFREEBUSY."""
    component = vfreebusy_in(calendar)
    values = component.get("FREEBUSY", [])
    return [value.dt for value in (values if isinstance(values, list) else [values])]


def test_calendar_export_holds_the_principals_objects_and_with_a_uid_only_that_one(
    db: Database, people: tuple[PrincipalRef, PrincipalRef]
) -> None:
    alice, bob = people
    start = NOW + timedelta(days=3)
    put(db, alice, "standup", start, start + HOUR)
    put(db, alice, "review", start + 2 * HOUR, start + 3 * HOUR)
    put(db, bob, "bobs-own", start, start + HOUR)
    with db.reading() as session:
        whole = publishing.calendar_export(session, alice.id)
        one = publishing.calendar_export(session, alice.id, "review")
        none = publishing.calendar_export(session, alice.id, "bobs-own")
    assert events_in(whole.calendar) == {"standup": "Meeting standup", "review": "Meeting review"}
    assert whole.left_out == ()
    assert events_in(one.calendar) == {"review": "Meeting review"}
    assert events_in(none.calendar) == {}


def test_calendar_feed_opens_the_calendar_only_with_the_principals_current_token(
    db: Database, people: tuple[PrincipalRef, PrincipalRef]
) -> None:
    alice, bob = people
    put(db, alice, "planning", NOW + HOUR, NOW + 2 * HOUR)
    with db.transaction() as session:
        token = directory.feed_token(session, alice.id)
        bobs_token = directory.feed_token(session, bob.id)
    assert token and token != bobs_token
    assert events_in(publishing.calendar_feed(db, ALICE, token).calendar) == {"planning": "Meeting planning"}
    assert events_in(publishing.calendar_feed(db, "A.Smith@foo.example", token).calendar) == {
        "planning": "Meeting planning"}  # an alias, any case, opens the same feed
    for address, wrong in [(ALICE, token + "x"), (ALICE, ""), (ALICE, bobs_token), ("nobody@foo.example", token)]:
        with pytest.raises(UnknownCalendarUser):
            publishing.calendar_feed(db, address, wrong)
    with db.transaction() as session:
        renewed = directory.feed_token(session, alice.id, renew=True)
    assert renewed != token
    with pytest.raises(UnknownCalendarUser):
        publishing.calendar_feed(db, ALICE, token)
    assert "planning" in events_in(publishing.calendar_feed(db, ALICE, renewed).calendar)


def test_freebusy_of_one_principal_is_its_busy_time_in_the_window_with_it_as_organizer(
    db: Database, people: tuple[PrincipalRef, PrincipalRef]
) -> None:
    alice, _ = people
    start, end = NOW, NOW + timedelta(days=7)
    meeting = (NOW + timedelta(days=1), NOW + timedelta(days=1) + HOUR)
    put(db, alice, "inside", *meeting)
    put(db, alice, "outside", end + HOUR, end + 2 * HOUR)
    put(db, alice, "straddling", end - HOUR, end + HOUR)
    published = publishing.freebusy_of(db, [ALICE], start, end, NOW)
    assert busy_in(published) == [meeting, (end - HOUR, end)]  # clipped to the window
    component = vfreebusy_in(published)
    assert str(component["ORGANIZER"]).lower() == f"mailto:{ALICE}"
    assert (component["DTSTART"].dt, component["DTEND"].dt) == (start, end)


def test_freebusy_of_several_addresses_merges_their_busy_time_and_names_each_as_attendee(
    db: Database, people: tuple[PrincipalRef, PrincipalRef]
) -> None:
    alice, bob = people
    first = NOW + timedelta(days=1)
    put(db, alice, "alices", first, first + 2 * HOUR)
    put(db, bob, "bobs", first + HOUR, first + 3 * HOUR)  # overlaps Alice's
    put(db, bob, "later", first + 5 * HOUR, first + 6 * HOUR)
    published = publishing.freebusy_of(db, ["a.smith@foo.example", BOB], NOW, NOW + timedelta(days=2), NOW)
    assert busy_in(published) == [(first, first + 3 * HOUR), (first + 5 * HOUR, first + 6 * HOUR)]
    component = vfreebusy_in(published)
    assert sorted(str(a).lower() for a in component["ATTENDEE"]) == [f"mailto:{ALICE}", f"mailto:{BOB}"]
    assert "ORGANIZER" not in component


def test_freebusy_of_an_unknown_address_or_of_nobody_raises_unknown_calendar_user(
    db: Database, people: tuple[PrincipalRef, PrincipalRef]
) -> None:
    window = (NOW, NOW + timedelta(days=1), NOW)
    with pytest.raises(UnknownCalendarUser) as raised:
        publishing.freebusy_of(db, [ALICE, "nobody@foo.example", "carol@bar.example"], *window)
    assert str(raised.value) == "nobody@foo.example, carol@bar.example"  # the missing ones, not Alice
    with pytest.raises(UnknownCalendarUser):
        publishing.freebusy_of(db, [], *window)


def test_freebusy_of_reads_addresses_as_the_directory_does(
    db: Database, people: tuple[PrincipalRef, PrincipalRef]
) -> None:
    alice, _ = people
    first = NOW + timedelta(days=1)
    put(db, alice, "alices", first, first + HOUR)
    published = publishing.freebusy_of(db, [f" MAILTO:{ALICE.upper()}"], NOW, NOW + timedelta(days=2), NOW)
    assert busy_in(published) == [(first, first + HOUR)]
