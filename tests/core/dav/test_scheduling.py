"""CalDAV scheduling rules, table-driven: Schedule-Tag, attendee changes, EXDATE declines, the SCHEDULE-* parameters."""

from __future__ import annotations

from textwrap import dedent

import pytest
from icalendar import Calendar

from gateway.core.calendar.ical import (
    parse_calendar,
    serialize_calendar,
)
from gateway.core.dav.scheduling import (
    attendee_change_refusal,
    schedule_tag_of,
)
from gateway.core.itip.replies import apply_reply
from gateway.core.itip.types import Recipient, Stored
from gateway.core.model import Outcome

BOB = "bob@example.com"
CAROL = "carol@example.com"
SECOND = "20240115T090000Z"  # the series' second instance

MASTER = """\
BEGIN:VEVENT
UID:weekly@example.com
DTSTAMP:20240101T000000Z
DTSTART:20240108T090000Z
DTEND:20240108T100000Z
RRULE:FREQ=WEEKLY;COUNT=4
SEQUENCE:0
SUMMARY:Planning
ORGANIZER;CN=Olga:mailto:olga@example.com
ATTENDEE;PARTSTAT=ACCEPTED:mailto:olga@example.com
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.com
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:carol@example.com
END:VEVENT
"""

OVERRIDE = """\
BEGIN:VEVENT
UID:weekly@example.com
DTSTAMP:20240102T000000Z
RECURRENCE-ID:20240115T090000Z
DTSTART:20240115T090000Z
DTEND:20240115T100000Z
SEQUENCE:0
SUMMARY:Planning
ORGANIZER;CN=Olga:mailto:olga@example.com
ATTENDEE;PARTSTAT=ACCEPTED:mailto:olga@example.com
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.com
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:carol@example.com
END:VEVENT
"""

MOVED_OVERRIDE = OVERRIDE.replace("DTSTART:20240115T090000Z", "DTSTART:20240115T110000Z").replace(
    "DTEND:20240115T100000Z", "DTEND:20240115T120000Z"
)


def wrap(*components: str) -> str:
    return "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//EN\n" + "".join(components) + "END:VCALENDAR\n"


BASE = wrap(MASTER)
WITH_MOVED = wrap(MASTER, MOVED_OVERRIDE)


def edit(text: str, *changes: tuple[str, str]) -> str:
    """``text`` with each (old, new) replaced; an old text that is not there is a broken test."""
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return text


def read(text: str) -> Calendar:
    return parse_calendar(dedent(text))


BOB_LINE = "ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.com"
CAROL_LINE = "ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:carol@example.com"
ALARM = "BEGIN:VALARM\nACTION:DISPLAY\nDESCRIPTION:Soon\nTRIGGER:-PT15M\nEND:VALARM\nEND:VEVENT\n"
WITH_ALARM = ("END:VEVENT\n", ALARM)
EXCLUDE_SECOND = ("SEQUENCE:0", f"SEQUENCE:0\nEXDATE:{SECOND}")
EXCLUDE_LAST = ("SEQUENCE:0", "SEQUENCE:0\nEXDATE:20240129T090000Z")
DELEGATED = (
    'ATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO="mailto:dave@example.com":mailto:bob@example.com\n'
    'ATTENDEE;PARTSTAT=NEEDS-ACTION;DELEGATED-FROM="mailto:bob@example.com":mailto:dave@example.com'
)


def in_master(old: str, new: str) -> str:
    """The base calendar with one change to its master."""
    return wrap(edit(MASTER, (old, new)))


# --- Schedule-Tag (RFC 6638 §3.2.10) ----------------------------------------------------

BOB_ANSWERED = "ATTENDEE;PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0;X-RESPONSE-COMMENT=ok:mailto:bob@example.com"
BOB_DECLINED_ONE = "ATTENDEE;PARTSTAT=DECLINED;SCHEDULE-STATUS=2.0:mailto:bob@example.com"
REORDERED = wrap(
    "BEGIN:VEVENT\n"
    "SUMMARY:Plann\n ing\n"  # folded
    "ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:MAILTO:Carol@Example.com\n"
    "ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:bob@example.com\n"
    "ATTENDEE;PARTSTAT=ACCEPTED:mailto:olga@example.com\n"
    "ORGANIZER;CN=Olga:mailto:olga@example.com\n"
    "SEQUENCE:0\n"
    "RRULE:COUNT=4;FREQ=WEEKLY\n"
    "DURATION:PT1H\n"
    "DTSTART;TZID=Europe/Berlin:20240108T100000\n"
    "DTSTAMP:20240301T000000Z\n"
    "UID:weekly@example.com\n"
    "END:VEVENT\n"
)

TAG_KEPT = [
    pytest.param(
        in_master(BOB_LINE, BOB_ANSWERED),
        id="partstat-merged-from-a-reply",
    ),
    pytest.param(
        wrap(MASTER, edit(OVERRIDE, (BOB_LINE, BOB_DECLINED_ONE))),
        id="instance-override-carrying-only-a-partstat",
    ),
    pytest.param(REORDERED, id="properties-reordered-folded-and-the-same-instant-in-another-zone"),
    pytest.param(
        in_master(
            "DTSTAMP:20240101T000000Z",
            "DTSTAMP:20240301T000000Z\nLAST-MODIFIED:20240301T000000Z\n"
            "X-MOZ-LASTACK:20240301T000000Z\nTRANSP:TRANSPARENT",
        ),
        id="stamps-transp-and-client-state",
    ),
    pytest.param(wrap(edit(MASTER, WITH_ALARM)), id="alarm-added"),
    pytest.param(in_master(BOB_LINE, DELEGATED), id="delegation-merged-from-a-reply"),
]

TAG_CHANGED = [
    pytest.param(in_master("DTSTART:20240108T090000Z", "DTSTART:20240108T080000Z"), id="dtstart-moved"),
    pytest.param(in_master("DTEND:20240108T100000Z", "DTEND:20240108T103000Z"), id="dtend-moved"),
    pytest.param(in_master("SUMMARY:Planning", "SUMMARY:Retro"), id="summary-changed"),
    pytest.param(in_master(CAROL_LINE, CAROL_LINE + "\nATTENDEE:mailto:dave@example.com"), id="attendee-added"),
    pytest.param(in_master(CAROL_LINE + "\n", ""), id="attendee-removed"),
    pytest.param(in_master("SEQUENCE:0", "SEQUENCE:1"), id="sequence-bumped"),
    pytest.param(in_master("COUNT=4", "COUNT=5"), id="rrule-changed"),
    pytest.param(in_master(CAROL_LINE, CAROL_LINE.replace(";RSVP", ";ROLE=OPT-PARTICIPANT;RSVP")), id="role-changed"),
    pytest.param(in_master(CAROL_LINE, CAROL_LINE.replace(";RSVP", ";SCHEDULE-AGENT=CLIENT;RSVP")), id="agent-changed"),
    pytest.param(wrap(MASTER, MOVED_OVERRIDE), id="override-moves-an-instance"),
    pytest.param(wrap(MASTER, edit(OVERRIDE, ("SUMMARY:Planning", "SUMMARY:Extra"))), id="override-renames-an-instance"),
]


@pytest.mark.parametrize("text", TAG_KEPT)
def test_schedule_tag_ignores_what_replies_and_clients_write(text: str) -> None:
    assert schedule_tag_of(read(text)) == schedule_tag_of(read(BASE))


@pytest.mark.parametrize("text", TAG_CHANGED)
def test_schedule_tag_changes_with_what_the_organizer_decides(text: str) -> None:
    assert schedule_tag_of(read(text)) != schedule_tag_of(read(BASE))


def reply(attendee_line: str, recurrence: str = "") -> str:
    return wrap(
        "BEGIN:VEVENT\nUID:weekly@example.com\nDTSTAMP:20240201T000000Z\nSEQUENCE:0\n"
        f"{recurrence}ORGANIZER:mailto:olga@example.com\n{attendee_line}\nEND:VEVENT\n"
    ).replace("VERSION:2.0\n", "VERSION:2.0\nMETHOD:REPLY\n")


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(reply("ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.com"), id="series-accepted"),
        pytest.param(
            reply("ATTENDEE;PARTSTAT=DECLINED:mailto:bob@example.com", f"RECURRENCE-ID:{SECOND}\n"),
            id="one-instance-declined",
        ),
        pytest.param(
            reply('ATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO="mailto:dave@example.com":mailto:bob@example.com'),
            id="delegated",
        ),
    ],
)
def test_schedule_tag_survives_the_reply_merge(message: str) -> None:
    """The organizer's tag after ``apply_reply`` wrote an answer into its copy (RFC 6638 §3.2.10)."""
    stored = Stored(read(BASE))
    result = apply_reply(read(message), stored, Recipient("olga@example.com"))
    assert result.outcome is Outcome.APPLIED and result.stored.calendar is not None
    assert serialize_calendar(result.stored.calendar) != serialize_calendar(read(BASE))
    assert schedule_tag_of(result.stored.calendar) == schedule_tag_of(read(BASE))


def test_schedule_tag_is_a_short_hex_digest_that_does_not_mutate() -> None:
    calendar = read(BASE)
    before = serialize_calendar(calendar)
    tag = schedule_tag_of(calendar)
    assert len(tag) == 16 and int(tag, 16) >= 0
    assert serialize_calendar(calendar) == before
    assert schedule_tag_of(read(BASE)) == tag


# --- attendee changes (RFC 6638 §3.2.2.1) -------------------------------------------------

BOB_ACCEPTS = "ATTENDEE;PARTSTAT=ACCEPTED;RSVP=FALSE;CN=Bob:mailto:bob@example.com"
PRIVATE = "SUMMARY:Planning\nTRANSP:TRANSPARENT\nX-MOZ-LASTACK:20240301T000000Z\nCATEGORIES:Work"
LAST_EXCLUDED = in_master(*EXCLUDE_LAST)
OVERRIDE_OF_LAST = edit(OVERRIDE, ("20240115T09", "20240129T09"), ("20240115T10", "20240129T10"))


def change(old: str, new: str, *rest: str, id: str, attendee: str = BOB) -> object:
    return pytest.param(old, new, attendee, *rest, id=id)


ALLOWED = [
    change(BASE, in_master(BOB_LINE, BOB_ACCEPTS), id="own-partstat"),
    change(BASE, in_master(BOB_LINE, BOB_ACCEPTS), attendee="MAILTO:Bob@Example.com", id="own-partstat-any-case"),
    change(BASE, wrap(edit(MASTER, WITH_ALARM)), id="valarm-added"),
    change(BASE, in_master("SUMMARY:Planning", PRIVATE), id="transp-categories-and-x-properties"),
    change(BASE, wrap(MASTER, edit(OVERRIDE, (BOB_LINE, BOB_ACCEPTS))), id="own-instance-accepted-as-an-override"),
    change(BASE, in_master(*EXCLUDE_SECOND), id="exdate-added"),
    change(WITH_MOVED, in_master(*EXCLUDE_SECOND), id="exdate-added-and-its-override-dropped"),
    change(BASE, in_master(BOB_LINE, DELEGATED), id="own-delegation"),
    change(BASE, in_master("DTEND:20240108T100000Z", "DURATION:PT1H"), id="end-written-as-a-duration"),
    change(BASE, in_master("SEQUENCE:0\n", ""), id="sequence-omitted"),
]

OTHER_ROLE = "ATTENDEE;ROLE=CHAIR;PARTSTAT=ACCEPTED:mailto:bob@example.com"
CAROL_ACCEPTS = "ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@example.com"
EVE_ADDED = CAROL_LINE + "\nATTENDEE:mailto:eve@example.com"

REFUSED = [
    change(BASE, in_master("T090000Z\nDTEND", "T080000Z\nDTEND"), "DTSTART changed (master)", id="dtstart-moved"),
    change(BASE, in_master("SUMMARY:Planning", "SUMMARY:Mine"), "SUMMARY changed (master)", id="summary-changed"),
    change(BASE, in_master(CAROL_LINE, CAROL_ACCEPTS), f"ATTENDEE {CAROL} changed (master)", id="others-partstat"),
    change(BASE, in_master(CAROL_LINE + "\n", ""), f"ATTENDEE {CAROL} removed (master)", id="attendee-removed"),
    change(BASE, in_master(BOB_LINE + "\n", ""), f"ATTENDEE {BOB} removed (master)", id="own-attendee-removed"),
    change(BASE, in_master(BOB_LINE, OTHER_ROLE), f"ATTENDEE {BOB} changed (master)", id="own-role-changed"),
    change(BASE, in_master(CAROL_LINE, EVE_ADDED), "ATTENDEE eve@example.com added (master)", id="attendee-added"),
    change(WITH_MOVED, BASE, f"instance {SECOND} removed", id="component-removed"),
    change(WITH_MOVED, wrap(MOVED_OVERRIDE), "master removed", id="master-removed"),
    change(BASE, in_master("UID:weekly", "UID:other"), "UID changed (master)", id="uid-changed"),
    change(BASE, in_master("SEQUENCE:0", "SEQUENCE:3"), "SEQUENCE raised (master)", id="sequence-raised"),
    change(LAST_EXCLUDED, BASE, "EXDATE removed (master)", id="exdate-removed"),
    change(BASE, WITH_MOVED, f"DTSTART changed (instance {SECOND})", id="override-moves-an-instance"),
    change(
        LAST_EXCLUDED, wrap(edit(MASTER, EXCLUDE_LAST), OVERRIDE_OF_LAST), "instance 20240129T090000Z added",
        id="override-of-an-excluded-instance",
    ),
    change(BASE, wrap(MASTER, MASTER), "two components for one instance", id="master-twice"),
]


@pytest.mark.parametrize(("old", "new", "attendee"), ALLOWED)
def test_attendee_may_change(old: str, new: str, attendee: str) -> None:
    assert attendee_change_refusal(read(old), read(new), attendee) is None


@pytest.mark.parametrize(("old", "new", "attendee", "detail"), REFUSED)
def test_attendee_may_not_change(old: str, new: str, attendee: str, detail: str) -> None:
    assert attendee_change_refusal(read(old), read(new), attendee) == detail
