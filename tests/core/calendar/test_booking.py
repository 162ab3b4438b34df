"""The room's booking decision, table-driven: a request, the room's busy time, the rules, the answer.

Requests are iCalendar text parsed as mail delivers them; the REPLY and the stored copy
are serialized, read back and checked property by property.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar, Component

from gateway.core.calendar.booking import (
    Booking,
    BookingError,
    BookingRules,
    Decline,
    apply_booking,
    booking_horizon,
    decide_booking,
)
from gateway.core.calendar.freebusy import BusyPeriod, busy_periods
from gateway.core.calendar.ical import (
    attendees_of,
    components_of,
    find_attendee,
    method_of,
    organizer_of,
    parse_calendar,
    partstat_of,
    sequence_of,
    serialize_calendar,
)
from gateway.core.calendar.instances import MASTER, recurrence_key_of
from gateway.core.itip.plan import plan_itip
from gateway.core.model import PartStat

ROOM = "room-4.12@foo.example"
ROOMS = frozenset({ROOM, "boardroom@foo.example"})
NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
RULES = BookingRules(max_duration=timedelta(hours=4), booking_window=timedelta(days=60))
ACCEPTED, DECLINED = PartStat.ACCEPTED, PartStat.DECLINED


def z(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def vevent(start: str, end: str, *lines: str, room: str = ROOM) -> str:
    return "\n".join([
        "BEGIN:VEVENT", "UID:booking-1@bar.example", "DTSTAMP:20250220T000000Z", "SEQUENCE:2",
        f"DTSTART;TZID=Europe/Berlin:{start}", f"DTEND;TZID=Europe/Berlin:{end}", "SUMMARY:Planning",
        "ORGANIZER;CN=Bob:mailto:bob@bar.example", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@bar.example",
        "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:carol@foo.example",
        f"ATTENDEE;CUTYPE=ROOM;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{room}", *lines, "END:VEVENT",
    ])


def request(*components: str) -> Calendar:
    return parse_calendar("\n".join(
        ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Test//EN", "METHOD:REQUEST", *components, "END:VCALENDAR", ""]))


def busy(*spans: tuple[str, str], fbtype: str = "BUSY") -> list[BusyPeriod]:
    return [BusyPeriod(z(a), z(b), fbtype) for a, b in spans]


SINGLE = vevent("20250310T090000", "20250310T100000")  # 08:00-09:00 UTC
WEEKLY = vevent("20250310T090000", "20250310T100000", "RRULE:FREQ=WEEKLY;COUNT=4")  # 10, 17, 24, 31 March


@dataclass(frozen=True)
class Case:
    name: str
    components: tuple[str, ...]
    busy: list[BusyPeriod]
    partstat: PartStat
    reason: str = ""
    declined: tuple[str, ...] = ()
    rules: BookingRules = RULES
    reasons: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("free-slot-accepted", (SINGLE,), [], ACCEPTED),
    Case("other-day-busy-accepted", (SINGLE,), busy(("2025-03-11 08:00", "2025-03-11 09:00")), ACCEPTED),
    Case("touching-busy-is-no-clash", (SINGLE,), busy(("2025-03-10 07:00", "2025-03-10 08:00"),
                                                      ("2025-03-10 09:00", "2025-03-10 10:00")), ACCEPTED),
    Case("clash-declined", (SINGLE,), busy(("2025-03-10 08:30", "2025-03-10 08:45")), DECLINED, "clash",
         reasons={MASTER: "clash"}),
    Case("tentative-busy-clashes-too", (SINGLE,),
         busy(("2025-03-10 07:30", "2025-03-10 08:01"), fbtype="BUSY-TENTATIVE"), DECLINED, "clash"),
    Case("too-long-declined", (vevent("20250310T090000", "20250310T140000"),), [], DECLINED, "booking-too-long"),
    Case("outside-booking-window-declined", (vevent("20250610T090000", "20250610T100000"),), [], DECLINED,
         "booking-too-far-ahead"),
    Case("unbounded-rules-accept", (vevent("20251210T090000", "20251211T100000"),), [], ACCEPTED, rules=BookingRules()),
    Case("cancelled-request-declined", (vevent("20250310T090000", "20250310T100000", "STATUS:CANCELLED"),), [],
         DECLINED, "cancelled"),
    Case("series-free-accepted", (WEEKLY,), [], ACCEPTED),
    Case("series-one-clash-declines-that-instance", (WEEKLY,), busy(("2025-03-17 08:00", "2025-03-17 12:00")),
         ACCEPTED, declined=("20250317T080000Z",), reasons={"20250317T080000Z": "clash", "20250310T080000Z": ""}),
    Case("series-after-dst-change-clashes-at-new-utc-time", (WEEKLY,), busy(("2025-03-31 07:30", "2025-03-31 07:45")),
         ACCEPTED, declined=("20250331T070000Z",)),
    Case("series-all-clashing-declined", (WEEKLY,), busy(("2025-03-01 00:00", "2025-04-30 00:00")), DECLINED, "clash"),
    Case("series-beyond-window-declines-late-instances", (WEEKLY,), [], ACCEPTED,
         declined=("20250324T080000Z", "20250331T070000Z"), rules=BookingRules(booking_window=timedelta(days=20)),
         reasons={"20250324T080000Z": "booking-too-far-ahead"}),
    Case("series-starting-beyond-window-declined", (WEEKLY,), [], DECLINED, "booking-too-far-ahead",
         rules=BookingRules(booking_window=timedelta(days=5))),
    Case("moved-override-judged-at-its-new-time", (
        WEEKLY, vevent("20250318T150000", "20250318T160000", "RECURRENCE-ID;TZID=Europe/Berlin:20250317T090000")),
         busy(("2025-03-18 14:00", "2025-03-18 15:00")), ACCEPTED, declined=("20250317T080000Z",)),
    Case("override-away-from-a-clash-accepted", (
        WEEKLY, vevent("20250318T150000", "20250318T160000", "RECURRENCE-ID;TZID=Europe/Berlin:20250317T090000")),
         busy(("2025-03-17 08:00", "2025-03-17 09:00")), ACCEPTED),
    Case("cancelled-override-is-not-answered", (
        WEEKLY, vevent("20250317T090000", "20250317T100000", "RECURRENCE-ID;TZID=Europe/Berlin:20250317T090000",
                       "STATUS:CANCELLED")),
         busy(("2025-03-17 08:00", "2025-03-17 09:00")), ACCEPTED, reasons={"20250317T080000Z": "cancelled"}),
    Case("instance-only-request", (
        vevent("20250318T150000", "20250318T160000", "RECURRENCE-ID;TZID=Europe/Berlin:20250317T090000"),),
         busy(("2025-03-18 14:30", "2025-03-18 15:30")), DECLINED, "all-instances-declined",
         declined=("20250317T080000Z",)),
    Case("instance-without-the-room-is-not-judged", (
        WEEKLY, vevent("20250317T090000", "20250317T100000", "RECURRENCE-ID;TZID=Europe/Berlin:20250317T090000",
                       room="someone-else@foo.example")),
         busy(("2025-03-17 08:00", "2025-03-17 09:00")), ACCEPTED),
    Case("room-by-its-alias", (vevent("20250310T090000", "20250310T100000", room="Boardroom@Foo.example"),),
         busy(("2025-03-10 08:00", "2025-03-10 09:00")), DECLINED, "clash"),
]


def decide(case: Case) -> Booking:
    horizon_end = NOW + timedelta(days=365)
    return decide_booking(request(*case.components), ROOMS, case.busy, case.rules, NOW, horizon_end)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_room_decision(case: Case) -> None:
    booking = decide(case)
    assert (booking.partstat, booking.reason) == (case.partstat, case.reason)
    assert booking.declined_instances == case.declined
    reasons = {d.key: d.reason for d in booking.decisions}
    assert {key: reasons.get(key) for key in case.reasons} == case.reasons


def room_reply(request: Calendar, booking: Booking) -> Calendar | None:
    """The REPLY the room sends, planned as the service plans it: from the request to the room's answered copy."""
    plan = plan_itip(request, apply_booking(request, booking.attendee, booking), booking.attendee, NOW)
    assert len(plan.messages) <= 1
    return plan.messages[0].calendar if plan.messages else None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_room_reply_carries_the_decision(case: Case) -> None:
    booking = decide(case)
    sent = room_reply(request(*case.components), booking)
    if case.reason == Decline.CANCELLED:  # nobody answers a cancelled event (RFC 5546 §3.2.5): the copy only
        assert sent is None and booking.partstat == DECLINED
        return
    assert sent is not None
    reply = parse_calendar(serialize_calendar(sent))
    assert method_of(reply) == "REPLY"
    answered = {recurrence_key_of(c): c for c in components_of(reply)}
    assert sorted(answered) == sorted(key for key, _ in booking.answers)
    for key, partstat in booking.answers:
        component = answered[key]
        assert attendees_of(component) == [booking.attendee]
        assert partstat_of(find_attendee(component, booking.attendee)) == partstat
        assert organizer_of(component) == "bob@bar.example"
        assert component["DTSTAMP"].dt == NOW and sequence_of(component) == 2
    assert {k for k, p in booking.answers if k != MASTER and p == DECLINED} == set(case.declined)


def test_weekly_series_with_one_clash_replies_master_and_one_override() -> None:
    case = next(c for c in CASES if c.name == "series-one-clash-declines-that-instance")
    booking = decide(case)
    sent = room_reply(request(WEEKLY), booking)
    assert sent is not None
    reply = parse_calendar(serialize_calendar(sent))
    master, override = components_of(reply)
    assert partstat_of(find_attendee(master, ROOM)) == ACCEPTED and "RRULE" in master
    assert override["RECURRENCE-ID"].dt.astimezone(UTC) == z("2025-03-17 08:00")
    assert override["DTSTART"].dt.astimezone(UTC) == z("2025-03-17 08:00")
    assert partstat_of(find_attendee(override, ROOM)) == DECLINED and "RRULE" not in override
    assert "RSVP" not in find_attendee(master, ROOM).params


def test_stored_copy_keeps_everyone_and_sets_the_room() -> None:
    case = next(c for c in CASES if c.name == "series-one-clash-declines-that-instance")
    booking = decide(case)
    stored = parse_calendar(serialize_calendar(apply_booking(request(WEEKLY), ROOM, booking)))
    components: dict[str, Component] = {recurrence_key_of(c): c for c in components_of(stored)}
    assert method_of(stored) is None
    assert sorted(components) == [MASTER, "20250317T080000Z"]
    assert len(attendees_of(components[MASTER])) == 3
    assert partstat_of(find_attendee(components[MASTER], ROOM)) == ACCEPTED
    assert partstat_of(find_attendee(components["20250317T080000Z"], ROOM)) == DECLINED
    assert partstat_of(find_attendee(components[MASTER], "carol@foo.example")) == PartStat.NEEDS_ACTION


def test_request_is_not_changed() -> None:
    original = request(WEEKLY)
    before = serialize_calendar(original)
    booking = decide_booking(original, ROOMS, busy(("2025-03-17 08:00", "2025-03-17 09:00")), RULES, NOW,
                             NOW + timedelta(days=365))
    room_reply(original, booking)
    apply_booking(original, ROOM, booking)
    assert serialize_calendar(original) == before


def test_past_instances_are_not_judged() -> None:
    later = NOW + timedelta(days=20)  # after the 10 and 17 March instances
    booking = decide_booking(request(WEEKLY), ROOMS, busy(("2025-03-10 08:00", "2025-03-10 09:00")), RULES, later,
                             later + timedelta(days=365))
    assert [d.key for d in booking.decisions] == ["20250324T080000Z", "20250331T070000Z"]
    assert booking.partstat == ACCEPTED


def test_endless_series_is_judged_up_to_the_horizon() -> None:
    endless = vevent("20250310T090000", "20250310T100000", "RRULE:FREQ=WEEKLY")
    booking = decide_booking(request(endless), ROOMS, [], RULES, NOW, z("2025-04-01 00:00"))
    assert len(booking.decisions) == 4


def test_room_not_invited_cannot_be_answered() -> None:
    with pytest.raises(BookingError) as caught:
        decide_booking(request(vevent("20250310T090000", "20250310T100000", room="other@foo.example")), ROOMS, [],
                       RULES, NOW, NOW + timedelta(days=30))
    assert caught.value.reason == "room-not-invited"


def test_horizon_spans_the_instances_judged() -> None:
    assert booking_horizon(request(WEEKLY), ROOMS, NOW, NOW + timedelta(days=365)) == (
        z("2025-03-10 08:00"), z("2025-03-31 08:00"))


def test_decision_against_the_rooms_own_calendar() -> None:
    """The busy time comes from the room's other objects; this UID's own copy is left out by the caller."""
    other = parse_calendar("\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Test//EN", "BEGIN:VEVENT", "UID:other@bar.example",
        "DTSTAMP:20250220T000000Z", "DTSTART;TZID=Europe/Berlin:20250324T093000",
        "DTEND;TZID=Europe/Berlin:20250324T110000", "ORGANIZER:mailto:dave@bar.example",
        f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{ROOM}", "END:VEVENT", "END:VCALENDAR", ""]))
    horizon = booking_horizon(request(WEEKLY), ROOMS, NOW, NOW + timedelta(days=365))
    assert horizon is not None
    room_busy = busy_periods([other], ROOMS, *horizon)
    booking = decide_booking(request(WEEKLY), ROOMS, room_busy, RULES, NOW, NOW + timedelta(days=365))
    assert (booking.partstat, booking.declined_instances) == (ACCEPTED, ("20250324T080000Z",))
