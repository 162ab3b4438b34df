"""Free/busy, table-driven: each case is one stored object, a window and the busy time it must give.

Objects are written as iCalendar text and parsed as the store parses them; periods are
compared as exact UTC instants. The VFREEBUSY answers are serialized, read back and
checked property by property.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from icalendar import Component

from gateway.core.calendar.freebusy import (
    BusyPeriod,
    FreeBusyError,
    busy_periods,
    freebusy_reply,
    freebusy_result,
    merge_periods,
    read_freebusy_request,
)
from gateway.core.calendar.ical import (
    components_of,
    method_of,
    parse_calendar,
    serialize_calendar,
)
from gateway.core.calendar.recurrence import occurrences, read_times

OWNER = frozenset({"alice@foo.example", "a.smith@foo.example"})
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2025, 2, 1, 12, 0, tzinfo=UTC)
B, T = "BUSY", "BUSY-TENTATIVE"


def z(text: str) -> datetime:
    """A UTC instant from ``YYYY-MM-DD HH:MM``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def event(uid: str, *lines: str, start: str = "20250310T090000Z", end: str = "20250310T100000Z") -> str:
    times = [f"DTSTART:{start}", f"DTEND:{end}"] if ":" not in start else [start, end]
    return "\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20250101T000000Z", *times, *lines, "END:VEVENT"])


def calendar(*components: str) -> str:
    return "\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Test//EN", *components, "END:VCALENDAR", ""])


ORGANIZED_BY_BOB = "ORGANIZER:mailto:bob@bar.example"
BERLIN_WEEKLY = [
    "DTSTART;TZID=Europe/Berlin:20250317T090000",
    "DTEND;TZID=Europe/Berlin:20250317T100000",
]


WINDOWS_ZONE = """BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE"""


def attending(partstat: str, address: str = "alice@foo.example") -> list[str]:
    return [ORGANIZED_BY_BOB, f"ATTENDEE;PARTSTAT={partstat}:mailto:{address}"]


@dataclass(frozen=True)
class Case:
    name: str
    ics: str
    start: str
    end: str
    expected: list[tuple[str, str, str]]
    default_zone: tzinfo = UTC


CASES = [
    Case("accepted-is-busy", calendar(event("a", *attending("ACCEPTED"))), "2025-03-10 00:00", "2025-03-11 00:00",
         [("2025-03-10 09:00", "2025-03-10 10:00", B)]),
    Case("transparent-is-free", calendar(event("a", *attending("ACCEPTED"), "TRANSP:TRANSPARENT")),
         "2025-03-10 00:00", "2025-03-11 00:00", []),
    Case("cancelled-is-free", calendar(event("a", *attending("ACCEPTED"), "STATUS:CANCELLED")),
         "2025-03-10 00:00", "2025-03-11 00:00", []),
    Case("declined-is-free", calendar(event("a", *attending("DECLINED"))), "2025-03-10 00:00", "2025-03-11 00:00", []),
    Case("delegated-is-free", calendar(event("a", *attending("DELEGATED"))),
         "2025-03-10 00:00", "2025-03-11 00:00", []),
    Case("tentative-answer-is-tentative", calendar(event("a", *attending("TENTATIVE"))),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 10:00", T)]),
    Case("unanswered-is-tentative", calendar(event("a", *attending("NEEDS-ACTION"))),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 10:00", T)]),
    Case("no-partstat-is-unanswered", calendar(event("a", ORGANIZED_BY_BOB, "ATTENDEE:mailto:alice@foo.example")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 10:00", T)]),
    Case("tentative-status-is-tentative", calendar(event("a", *attending("ACCEPTED"), "STATUS:TENTATIVE")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 10:00", T)]),
    Case("organizer-is-busy", calendar(event("a", "ORGANIZER:mailto:alice@foo.example",
                                             "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:bob@bar.example")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 10:00", B)]),
    Case("organizer-listed-unanswered-is-busy", calendar(event(
        "a", "ORGANIZER:mailto:alice@foo.example", "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:alice@foo.example")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 10:00", B)]),
    Case("alias-in-any-case-answers", calendar(event("a", ORGANIZED_BY_BOB,
                                                     "ATTENDEE;PARTSTAT=DECLINED:MAILTO:A.Smith@Foo.Example")),
         "2025-03-10 00:00", "2025-03-11 00:00", []),
    Case("someone-else-declining-changes-nothing", calendar(event(
        "a", *attending("ACCEPTED"), "ATTENDEE;PARTSTAT=DECLINED:mailto:malice@foo.example")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 10:00", B)]),
    Case("own-event-without-people-is-busy", calendar(event("a")), "2025-03-10 00:00", "2025-03-11 00:00",
         [("2025-03-10 09:00", "2025-03-10 10:00", B)]),
    Case("private-is-busy-too", calendar(event("a", "CLASS:PRIVATE")), "2025-03-10 00:00", "2025-03-11 00:00",
         [("2025-03-10 09:00", "2025-03-10 10:00", B)]),
    Case("window-clips", calendar(event("a")), "2025-03-10 09:30", "2025-03-10 09:45",
         [("2025-03-10 09:30", "2025-03-10 09:45", B)]),
    Case("outside-window-is-nothing", calendar(event("a")), "2025-03-10 10:00", "2025-03-11 00:00", []),
    Case("duration-gives-the-end", calendar(event("a", "DURATION:PT90M", start="DTSTART:20250310T090000Z",
                                                  end="SUMMARY:no end")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 10:30", B)]),
    Case("no-end-takes-no-time", calendar(event("a", start="DTSTART:20250310T090000Z", end="SUMMARY:no end")),
         "2025-03-10 00:00", "2025-03-11 00:00", []),
    Case("other-zone-to-utc", calendar(event("a", start="DTSTART;TZID=America/New_York:20250310T090000",
                                             end="DTEND;TZID=America/New_York:20250310T100000")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 13:00", "2025-03-10 14:00", B)]),
    Case("floating-in-default-zone", calendar(event("a", start="DTSTART:20250310T090000", end="DTEND:20250310T100000")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 08:00", "2025-03-10 09:00", B)], BERLIN),
    Case("all-day-in-utc", calendar(event("a", start="DTSTART;VALUE=DATE:20250310", end="DTEND;VALUE=DATE:20250311")),
         "2025-03-01 00:00", "2025-04-01 00:00", [("2025-03-10 00:00", "2025-03-11 00:00", B)]),
    Case("all-day-from-local-midnight", calendar(event("a", start="DTSTART;VALUE=DATE:20250310",
                                                       end="DTEND;VALUE=DATE:20250311")),
         "2025-03-01 00:00", "2025-04-01 00:00", [("2025-03-09 23:00", "2025-03-10 23:00", B)], BERLIN),
    Case("all-day-without-end-is-one-day", calendar(event("a", start="DTSTART;VALUE=DATE:20250310", end="SUMMARY:x")),
         "2025-03-01 00:00", "2025-04-01 00:00", [("2025-03-09 23:00", "2025-03-10 23:00", B)], BERLIN),
    Case("all-day-over-dst-change", calendar(event("a", start="DTSTART;VALUE=DATE:20250329",
                                                   end="DTEND;VALUE=DATE:20250331")),
         "2025-03-01 00:00", "2025-04-01 00:00", [("2025-03-28 23:00", "2025-03-30 22:00", B)], BERLIN),
    Case("todo-and-journal-take-no-time", calendar(
        "BEGIN:VTODO\nUID:t\nDTSTAMP:20250101T000000Z\nDTSTART:20250310T090000Z\nDUE:20250310T100000Z\nEND:VTODO",
        "BEGIN:VJOURNAL\nUID:j\nDTSTAMP:20250101T000000Z\nDTSTART:20250310T090000Z\nEND:VJOURNAL"),
         "2025-03-10 00:00", "2025-03-11 00:00", []),
    # --- recurrence ---
    Case("weekly-berlin-keeps-local-time-over-spring-change", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;COUNT=4", start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1])),
         "2025-03-01 00:00", "2025-05-01 00:00", [
             ("2025-03-17 08:00", "2025-03-17 09:00", B), ("2025-03-24 08:00", "2025-03-24 09:00", B),
             ("2025-03-31 07:00", "2025-03-31 08:00", B), ("2025-04-07 07:00", "2025-04-07 08:00", B)]),
    Case("weekly-berlin-over-autumn-change", calendar(event(
        "w", "RRULE:FREQ=WEEKLY", start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1])),
         "2025-10-20 00:00", "2025-11-01 00:00", [
             ("2025-10-20 07:00", "2025-10-20 08:00", B), ("2025-10-27 08:00", "2025-10-27 09:00", B)]),
    Case("weekly-new-york-over-its-own-change", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;COUNT=3", start="DTSTART;TZID=America/New_York:20250303T090000",
        end="DTEND;TZID=America/New_York:20250303T093000")),
         "2025-03-01 00:00", "2025-04-01 00:00", [
             ("2025-03-03 14:00", "2025-03-03 14:30", B), ("2025-03-10 13:00", "2025-03-10 13:30", B),
             ("2025-03-17 13:00", "2025-03-17 13:30", B)]),
    Case("until-ends-the-series", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;UNTIL=20250324T080000Z", start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1])),
         "2025-03-01 00:00", "2025-05-01 00:00", [
             ("2025-03-17 08:00", "2025-03-17 09:00", B), ("2025-03-24 08:00", "2025-03-24 09:00", B)]),
    Case("exdate-removes-an-instance", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE;TZID=Europe/Berlin:20250324T090000",
        start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1])),
         "2025-03-01 00:00", "2025-05-01 00:00", [
             ("2025-03-17 08:00", "2025-03-17 09:00", B), ("2025-03-31 07:00", "2025-03-31 08:00", B)]),
    Case("exdate-in-utc-finds-the-local-instance", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE:20250324T080000Z", start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1])),
         "2025-03-01 00:00", "2025-05-01 00:00", [
             ("2025-03-17 08:00", "2025-03-17 09:00", B), ("2025-03-31 07:00", "2025-03-31 08:00", B)]),
    Case("rdate-adds-an-instance", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;COUNT=2", "RDATE;TZID=Europe/Berlin:20250320T150000",
        start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1])),
         "2025-03-01 00:00", "2025-05-01 00:00", [
             ("2025-03-17 08:00", "2025-03-17 09:00", B), ("2025-03-20 14:00", "2025-03-20 15:00", B),
             ("2025-03-24 08:00", "2025-03-24 09:00", B)]),
    Case("override-moves-an-instance-out-of-the-window", calendar(
        event("w", "RRULE:FREQ=WEEKLY;COUNT=3", start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1]),
        event("w", "RECURRENCE-ID;TZID=Europe/Berlin:20250324T090000",
              start="DTSTART;TZID=Europe/Berlin:20250402T090000", end="DTEND;TZID=Europe/Berlin:20250402T100000")),
         "2025-03-20 00:00", "2025-03-30 00:00", []),
    Case("override-moves-an-instance-into-the-window", calendar(
        event("w", "RRULE:FREQ=WEEKLY;COUNT=3", start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1]),
        event("w", "RECURRENCE-ID;TZID=Europe/Berlin:20250331T090000",
              start="DTSTART;TZID=Europe/Berlin:20250326T140000", end="DTEND;TZID=Europe/Berlin:20250326T150000")),
         "2025-03-25 00:00", "2025-03-30 00:00", [("2025-03-26 13:00", "2025-03-26 14:00", B)]),
    Case("cancelled-override-frees-its-instance", calendar(
        event("w", "RRULE:FREQ=WEEKLY;COUNT=3", start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1]),
        event("w", "RECURRENCE-ID:20250324T080000Z", "STATUS:CANCELLED",
              start=BERLIN_WEEKLY[0].replace("0317", "0324"), end=BERLIN_WEEKLY[1].replace("0317", "0324"))),
         "2025-03-20 00:00", "2025-03-30 00:00", []),
    Case("declined-instance-of-accepted-series", calendar(
        event("w", "RRULE:FREQ=WEEKLY;COUNT=2", *attending("ACCEPTED"), start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1]),
        event("w", "RECURRENCE-ID;TZID=Europe/Berlin:20250324T090000", *attending("DECLINED"),
              start=BERLIN_WEEKLY[0].replace("0317", "0324"), end=BERLIN_WEEKLY[1].replace("0317", "0324"))),
         "2025-03-01 00:00", "2025-04-01 00:00", [("2025-03-17 08:00", "2025-03-17 09:00", B)]),
    Case("orphan-override-is-busy-alone", calendar(
        event("w", "RECURRENCE-ID;TZID=Europe/Berlin:20250324T090000", *attending("ACCEPTED"),
              start="DTSTART;TZID=Europe/Berlin:20250324T110000", end="DTEND;TZID=Europe/Berlin:20250324T120000")),
         "2025-03-01 00:00", "2025-04-01 00:00", [("2025-03-24 10:00", "2025-03-24 11:00", B)]),
    Case("weekly-on-two-days-counts-from-dtstart", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=3", start="DTSTART:20250305T090000Z", end="DTEND:20250305T100000Z")),
         "2025-03-01 00:00", "2025-04-01 00:00", [
             ("2025-03-05 09:00", "2025-03-05 10:00", B), ("2025-03-10 09:00", "2025-03-10 10:00", B),
             ("2025-03-12 09:00", "2025-03-12 10:00", B)]),
    Case("every-other-day", calendar(event(
        "w", "RRULE:FREQ=DAILY;INTERVAL=2;COUNT=3", start="DTSTART:20250310T090000Z", end="DTEND:20250310T100000Z")),
         "2025-03-01 00:00", "2025-04-01 00:00", [
             ("2025-03-10 09:00", "2025-03-10 10:00", B), ("2025-03-12 09:00", "2025-03-12 10:00", B),
             ("2025-03-14 09:00", "2025-03-14 10:00", B)]),
    Case("monthly-second-tuesday-through-dateutil", calendar(event(
        "w", "RRULE:FREQ=MONTHLY;BYDAY=2TU;COUNT=3", start="DTSTART;TZID=Europe/Berlin:20250114T090000",
        end="DTEND;TZID=Europe/Berlin:20250114T100000")),
         "2025-02-01 00:00", "2025-06-01 00:00", [
             ("2025-02-11 08:00", "2025-02-11 09:00", B), ("2025-03-11 08:00", "2025-03-11 09:00", B)]),
    Case("old-series-reaches-the-window", calendar(event(
        "w", "RRULE:FREQ=WEEKLY", start="DTSTART;TZID=Europe/Berlin:20150302T090000",
        end="DTEND;TZID=Europe/Berlin:20150302T100000")),
         "2025-03-10 00:00", "2025-03-18 00:00", [
             ("2025-03-10 08:00", "2025-03-10 09:00", B), ("2025-03-17 08:00", "2025-03-17 09:00", B)]),
    Case("finished-series-gives-nothing", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;COUNT=10", start="DTSTART:20150302T090000Z", end="DTEND:20150302T100000Z")),
         "2025-03-01 00:00", "2025-04-01 00:00", []),
    Case("long-instance-begun-before-the-window", calendar(event(
        "w", "RRULE:FREQ=DAILY", start="DTSTART:20250301T220000Z", end="DTEND:20250302T020000Z")),
         "2025-03-10 00:00", "2025-03-10 01:00", [("2025-03-10 00:00", "2025-03-10 01:00", B)]),
    Case("all-day-series-from-local-midnight", calendar(event(
        "w", "RRULE:FREQ=WEEKLY;COUNT=2", start="DTSTART;VALUE=DATE:20250324", end="DTEND;VALUE=DATE:20250325")),
         "2025-03-01 00:00", "2025-04-30 00:00", [
             ("2025-03-23 23:00", "2025-03-24 23:00", B), ("2025-03-30 22:00", "2025-03-31 22:00", B)], BERLIN),
    Case("windows-zone-from-its-vtimezone", calendar(WINDOWS_ZONE, event(
        "w", "RRULE:FREQ=WEEKLY;COUNT=3", start="DTSTART;TZID=W. Europe Standard Time:20250324T090000",
        end="DTEND;TZID=W. Europe Standard Time:20250324T100000")),
         "2025-03-01 00:00", "2025-05-01 00:00", [
             ("2025-03-24 08:00", "2025-03-24 09:00", B), ("2025-03-31 07:00", "2025-03-31 08:00", B),
             ("2025-04-07 07:00", "2025-04-07 08:00", B)]),
    # --- merging ---
    Case("overlapping-and-touching-merge", calendar(
        event("a"), event("b", start="DTSTART:20250310T093000Z", end="DTEND:20250310T110000Z"),
        event("c", start="DTSTART:20250310T110000Z", end="DTEND:20250310T113000Z")),
         "2025-03-10 00:00", "2025-03-11 00:00", [("2025-03-10 09:00", "2025-03-10 11:30", B)]),
    Case("busy-wins-over-tentative", calendar(
        event("a", *attending("TENTATIVE"), start="DTSTART:20250310T090000Z", end="DTEND:20250310T120000Z"),
        event("b", *attending("ACCEPTED"), start="DTSTART:20250310T100000Z", end="DTEND:20250310T110000Z")),
         "2025-03-10 00:00", "2025-03-11 00:00", [
             ("2025-03-10 09:00", "2025-03-10 10:00", T), ("2025-03-10 10:00", "2025-03-10 11:00", B),
             ("2025-03-10 11:00", "2025-03-10 12:00", T)]),
]


def periods_of(case: Case, *, indexed: bool = False) -> list[tuple[str, str, str]]:
    parsed = parse_calendar(case.ics)
    source = read_times(parsed, case.default_zone) if indexed else parsed
    found = busy_periods([source], OWNER, z(case.start), z(case.end), case.default_zone)
    return [(f"{p.start:%Y-%m-%d %H:%M}", f"{p.end:%Y-%m-%d %H:%M}", p.fbtype) for p in found]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_busy_time_of_one_object(case: Case) -> None:
    assert periods_of(case) == case.expected


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_kept_times_give_the_same_busy_time(case: Case) -> None:
    assert periods_of(case, indexed=True) == case.expected


def test_periods_are_aware_utc() -> None:
    found = busy_periods([parse_calendar(calendar(event("a")))], OWNER, NOW, NOW + timedelta(days=60))
    assert [(p.start.utcoffset(), p.end.utcoffset()) for p in found] == [(timedelta(0), timedelta(0))]


def test_objects_merge_across_a_calendar() -> None:
    objects = [parse_calendar(calendar(event(f"e{n}", start=f"DTSTART:2025031{n}T090000Z",
                                             end=f"DTEND:2025031{n}T100000Z"))) for n in range(3)]
    objects.append(parse_calendar(calendar(event("x", start="DTSTART:20250310T093000Z", end="DTEND:20250310T103000Z"))))
    found = busy_periods(objects, OWNER, z("2025-03-01 00:00"), z("2025-04-01 00:00"))
    assert [(p.start, p.end) for p in found] == [
        (z("2025-03-10 09:00"), z("2025-03-10 10:30")),
        (z("2025-03-11 09:00"), z("2025-03-11 10:00")),
        (z("2025-03-12 09:00"), z("2025-03-12 10:00")),
    ]


def test_naive_window_is_refused() -> None:
    with pytest.raises(ValueError):
        busy_periods([], OWNER, datetime(2025, 3, 1), datetime(2025, 3, 2))


RULES = [
    "FREQ=WEEKLY",
    "FREQ=WEEKLY;INTERVAL=2",
    "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,TH,SA;COUNT=20",
    "FREQ=WEEKLY;BYDAY=SU,WE;WKST=SU;INTERVAL=2",
    "FREQ=WEEKLY;BYDAY=MO,FR;UNTIL=20250801T000000Z",
    "FREQ=WEEKLY;WKST=SU;INTERVAL=2",
    "FREQ=DAILY;COUNT=300",
    "FREQ=DAILY;INTERVAL=5",
    "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=80",
    "FREQ=DAILY;INTERVAL=2;BYDAY=MO,FR",
    "FREQ=MONTHLY;BYMONTHDAY=30;UNTIL=20250801T000000Z",
    "FREQ=YEARLY;BYMONTH=3,9;BYDAY=-1SU",
]


@pytest.mark.parametrize("rule", RULES)
def test_rules_match_dateutil(rule: str) -> None:
    """Rules give what dateutil gives in local time, also those computed by arithmetic, whatever their age."""
    ics = calendar(event("w", f"RRULE:{rule}", start="DTSTART;TZID=Europe/Berlin:20241030T083000",
                         end="DTEND;TZID=Europe/Berlin:20241030T090000"))
    start, end = z("2025-02-01 00:00"), z("2025-11-30 00:00")
    found = [o.start for o in occurrences(parse_calendar(ics), start, end)]
    until = rule.replace("UNTIL=20250801T000000Z", "UNTIL=20250801T020000")  # dateutil wants it local here
    expected = rrulestr(until, dtstart=datetime(2024, 10, 30, 8, 30)).between(
        datetime(2025, 1, 31), datetime(2025, 11, 30), inc=True)
    expected_utc = [e.replace(tzinfo=BERLIN).astimezone(UTC) for e in expected]
    assert found == [e for e in expected_utc if start < e + timedelta(minutes=30) and e < end]
    assert found


def test_occurrences_name_instances_by_key() -> None:
    ics = calendar(
        event("w", "RRULE:FREQ=WEEKLY;COUNT=3", start=BERLIN_WEEKLY[0], end=BERLIN_WEEKLY[1]),
        event("w", "RECURRENCE-ID;TZID=Europe/Berlin:20250324T090000",
              start="DTSTART;TZID=Europe/Berlin:20250325T090000", end="DTEND;TZID=Europe/Berlin:20250325T100000"))
    found = occurrences(parse_calendar(ics), z("2025-03-01 00:00"), z("2025-04-30 00:00"))
    assert [(o.key, o.start) for o in found] == [
        ("20250317T080000Z", z("2025-03-17 08:00")),
        ("20250324T080000Z", z("2025-03-25 08:00")),
        ("20250331T070000Z", z("2025-03-31 07:00")),
    ]
    assert "RECURRENCE-ID" in found[1].component and "RRULE" in found[0].component


def test_merge_periods_of_several_principals() -> None:
    alice = [BusyPeriod(z("2025-03-10 09:00"), z("2025-03-10 10:00"), T)]
    bob = [BusyPeriod(z("2025-03-10 09:30"), z("2025-03-10 11:00"), B),
           BusyPeriod(z("2025-03-10 11:00"), z("2025-03-10 12:00"), B)]
    assert merge_periods(alice + bob) == [
        BusyPeriod(z("2025-03-10 09:00"), z("2025-03-10 09:30"), T),
        BusyPeriod(z("2025-03-10 09:30"), z("2025-03-10 12:00"), B),
    ]


# --- VFREEBUSY ------------------------------------------------------------------------------

PERIODS = [
    BusyPeriod(z("2025-03-10 07:00"), z("2025-03-10 10:00"), B),  # begins before the window
    BusyPeriod(z("2025-03-10 11:00"), z("2025-03-10 12:00"), T),
]


def freebusy_values(component: Component) -> list[tuple[datetime, datetime, str]]:
    value = component.get("FREEBUSY")
    props = value if isinstance(value, list) else [value]
    return [(p.dt[0], p.dt[1], str(p.params["FBTYPE"])) for p in props]


def test_freebusy_reply_reads_back() -> None:
    reply = freebusy_reply("alice@foo.example", "bob@bar.example", z("2025-03-10 08:00"), z("2025-03-11 08:00"),
                           PERIODS, NOW, uid="fb-1@bar.example")
    back = parse_calendar(serialize_calendar(reply))
    [component] = components_of(back)
    assert method_of(back) == "REPLY" and component.name == "VFREEBUSY"
    assert str(component["UID"]) == "fb-1@bar.example"
    assert str(component["ORGANIZER"]).lower() == "mailto:bob@bar.example"
    assert str(component["ATTENDEE"]).lower() == "mailto:alice@foo.example"
    assert component["DTSTAMP"].dt == NOW
    assert (component["DTSTART"].dt, component["DTEND"].dt) == (z("2025-03-10 08:00"), z("2025-03-11 08:00"))
    assert freebusy_values(component) == [
        (z("2025-03-10 08:00"), z("2025-03-10 10:00"), B),
        (z("2025-03-10 11:00"), z("2025-03-10 12:00"), T),
    ]


def test_freebusy_text_is_utc_periods_without_value_parameter() -> None:
    text = serialize_calendar(freebusy_reply("alice@foo.example", "bob@bar.example", z("2025-03-10 08:00"),
                                             z("2025-03-11 08:00"), PERIODS, NOW))
    assert "FREEBUSY;FBTYPE=BUSY:20250310T080000Z/20250310T100000Z\r\n" in text
    assert "VALUE=PERIOD" not in text


def test_freebusy_reply_without_request_uid_gets_a_stable_one() -> None:
    def uid() -> str:
        reply = freebusy_reply("alice@foo.example", "bob@bar.example", z("2025-03-10 08:00"), z("2025-03-11 08:00"),
                               [], NOW)
        return str(components_of(reply)[0]["UID"])

    assert uid() == uid() and uid().startswith("freebusy-")


def test_freebusy_result_has_no_method_and_names_the_owner() -> None:
    result = freebusy_result(["alice@foo.example"], z("2025-03-10 08:00"), z("2025-03-11 08:00"), PERIODS, NOW)
    back = parse_calendar(serialize_calendar(result))
    [component] = components_of(back)
    assert method_of(back) is None
    assert str(component["ORGANIZER"]).lower() == "mailto:alice@foo.example" and "ATTENDEE" not in component
    assert len(freebusy_values(component)) == 2


def test_freebusy_result_of_several_owners_names_each() -> None:
    result = freebusy_result(["bob@foo.example", "alice@foo.example"], z("2025-03-10 08:00"),
                             z("2025-03-11 08:00"), PERIODS + PERIODS, NOW)
    [component] = components_of(parse_calendar(serialize_calendar(result)))
    owners = sorted(str(a).lower() for a in component["ATTENDEE"])
    assert owners == ["mailto:alice@foo.example", "mailto:bob@foo.example"]
    assert len(freebusy_values(component)) == 2


# --- reading a request ----------------------------------------------------------------------


def request(*lines: str) -> str:
    body = ["BEGIN:VFREEBUSY", "UID:fbq-1@bar.example", "DTSTAMP:20250301T000000Z",
            "ORGANIZER:mailto:Bob@Bar.example", "ATTENDEE:mailto:alice@foo.example",
            "ATTENDEE:MAILTO:carol@foo.example", *lines, "END:VFREEBUSY"]
    return calendar("METHOD:REQUEST", *body)


def test_read_freebusy_request() -> None:
    asked = read_freebusy_request(parse_calendar(request(
        "DTSTART;TZID=Europe/Berlin:20250310T000000", "DTEND:20250317T000000Z")))
    assert asked.organizer == "bob@bar.example"
    assert asked.attendees == ("alice@foo.example", "carol@foo.example")
    assert (asked.start, asked.end) == (z("2025-03-09 23:00"), z("2025-03-17 00:00"))
    assert asked.uid == "fbq-1@bar.example"


@pytest.mark.parametrize(("lines", "reason"), [
    (("DTEND:20250317T000000Z",), "missing-dtstart"),
    (("DTSTART:20250310T000000Z",), "missing-dtend"),
    (("DTSTART:20250310T000000Z", "DTEND:20250310T000000Z"), "empty-window"),
    (("DTSTART:20250310T000000Z", "DTEND:20250301T000000Z"), "empty-window"),
    (("DTSTART:20250310T000000Z", "DTEND:20260310T000000Z"), "window-too-long"),
])
def test_unanswerable_freebusy_requests_are_named(lines: tuple[str, ...], reason: str) -> None:
    with pytest.raises(FreeBusyError) as caught:
        read_freebusy_request(parse_calendar(request(*lines)), max_window=timedelta(days=93))
    assert caught.value.reason == reason


def test_a_calendar_without_vfreebusy_is_not_a_freebusy_request() -> None:
    with pytest.raises(FreeBusyError) as caught:
        read_freebusy_request(parse_calendar(calendar(event("a"))))
    assert caught.value.reason == "no-vfreebusy"
