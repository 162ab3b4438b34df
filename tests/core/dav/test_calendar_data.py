"""calendar-data in a REPORT, table-driven: what clients ask for, what is refused, and the part written (RFC 4791 §9.6)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, Component

from gateway.core.calendar.ical import dt_value, parse_calendar
from gateway.core.dav.calendar_data import (
    CalendarDataSpec,
    CompSpec,
    PropSpec,
    parse_calendar_data,
    render_calendar_data,
)
from gateway.core.dav.filter_tree import TimeRange
from gateway.core.dav.xml import CALDAV, DavError, parse_body, qname

CAL = 'xmlns:C="urn:ietf:params:xml:ns:caldav"'
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def spec_of(xml: str) -> CalendarDataSpec:
    return parse_calendar_data(parse_body(xml.encode()))


def data(inner: str = "", attributes: str = "") -> str:
    return f"<C:calendar-data {CAL} {attributes}>{inner}</C:calendar-data>"


# --- reading what is asked for -----------------------------------------------------------------

MARCH = TimeRange(at("20260301T000000"), at("20260401T000000"))
RFC_EXAMPLE = (  # RFC 4791 §7.8.1, as Apple Calendar and Evolution write it
    '<C:comp name="VCALENDAR"><C:prop name="VERSION"/><C:comp name="VEVENT"><C:prop name="SUMMARY"/>'
    '<C:prop name="UID"/><C:prop name="DTSTART"/><C:prop name="DTEND"/><C:prop name="DURATION"/>'
    '<C:prop name="RRULE"/><C:prop name="RDATE"/><C:prop name="EXRULE"/><C:prop name="EXDATE"/>'
    '<C:prop name="RECURRENCE-ID"/></C:comp><C:comp name="VTIMEZONE"/></C:comp>'
)
EXAMPLE_SPEC = CompSpec("VCALENDAR", (PropSpec("VERSION"),), (
    CompSpec("VEVENT", tuple(PropSpec(n) for n in (
        "SUMMARY", "UID", "DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXRULE", "EXDATE", "RECURRENCE-ID")), ()),
    CompSpec("VTIMEZONE"),
))

SPECS = {
    "no-element": (None, CalendarDataSpec()),
    "empty-element-caldav-library": (data(), CalendarDataSpec()),
    "content-type-and-version-given": (data(attributes='content-type="text/calendar; charset=utf-8" version="2.0"'),
                                       CalendarDataSpec()),
    "allprop-and-allcomp-is-the-whole": (data('<C:comp name="VCALENDAR"><C:allprop/><C:allcomp/></C:comp>'),
                                         CalendarDataSpec()),
    "empty-vcalendar-comp-is-the-whole": (data('<C:comp name="VCALENDAR"/>'), CalendarDataSpec()),
    "rfc-partial-retrieval": (data(RFC_EXAMPLE), CalendarDataSpec(EXAMPLE_SPEC)),
    "allprop-with-some-comps": (data('<C:comp name="VCALENDAR"><C:allprop/><C:comp name="vevent">'
                                     '<C:prop name="uid"/><C:prop name="summary" novalue="yes"/></C:comp></C:comp>'),
                                CalendarDataSpec(CompSpec("VCALENDAR", None, (
                                    CompSpec("VEVENT", (PropSpec("UID"), PropSpec("SUMMARY", True)), ()),)))),
    "expand-thunderbird-style": (data('<C:expand start="20260301T000000Z" end="20260401T000000Z"/>'),
                                 CalendarDataSpec(expand=MARCH)),
    "limit-recurrence-set": (data('<C:limit-recurrence-set start="20260301T000000Z" end="20260401T000000Z"/>'),
                             CalendarDataSpec(limit_recurrence_set=MARCH)),
    "limit-freebusy-set-read": (data('<C:limit-freebusy-set start="20260301T000000Z" end="20260401T000000Z"/>'),
                                CalendarDataSpec(limit_freebusy_set=MARCH)),
}


@pytest.mark.parametrize(("xml", "expected"), SPECS.values(), ids=SPECS.keys())
def test_a_calendar_data_request_reads_as_its_spec(xml: str | None, expected: CalendarDataSpec) -> None:
    assert (spec_of(xml) if xml is not None else parse_calendar_data(None)) == expected


REFUSED = {
    "jcal-media-type": (data(attributes='content-type="application/calendar+json"'), 403, "supported-calendar-data"),
    "icalendar-version-3": (data(attributes='version="3.0"'), 403, "supported-calendar-data"),
    "expand-without-end": (data('<C:expand start="20260301T000000Z"/>'), 400, ""),
    "expand-not-utc": (data('<C:expand start="20260301T000000" end="20260401T000000"/>'), 400, ""),
    "expand-and-limit": (data('<C:expand start="20260301T000000Z" end="20260401T000000Z"/>'
                              '<C:limit-recurrence-set start="20260301T000000Z" end="20260401T000000Z"/>'), 400, ""),
    "two-comps": (data('<C:comp name="VCALENDAR"/><C:comp name="VCALENDAR"/>'), 400, ""),
    "outermost-comp-not-vcalendar": (data('<C:comp name="VEVENT"/>'), 400, ""),
    "comp-without-name": (data('<C:comp name="VCALENDAR"><C:comp/></C:comp>'), 400, ""),
    "allprop-and-prop": (data('<C:comp name="VCALENDAR"><C:allprop/><C:prop name="VERSION"/></C:comp>'), 400, ""),
    "novalue-maybe": (data('<C:comp name="VCALENDAR"><C:prop name="VERSION" novalue="maybe"/></C:comp>'), 400, ""),
}


@pytest.mark.parametrize(("xml", "status", "condition"), REFUSED.values(), ids=REFUSED.keys())
def test_a_calendar_data_request_is_refused(xml: str, status: int, condition: str) -> None:
    with pytest.raises(DavError) as refused:
        spec_of(xml)
    assert (refused.value.status, refused.value.condition) == (status, qname(CALDAV, condition) if condition else "")


# --- writing the part ------------------------------------------------------------------------

# Mondays at 09:00 Berlin from 2 March 2026, six of them; DST starts on 29 March (08:00Z, then 07:00Z).
# 16 March is moved to Wednesday 18 March, 23 March is excluded, Thursday 26 March is added.
SERIES = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:STANDARD
DTSTART:19701025T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:series
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:20260302T090000
DTEND;TZID=Europe/Berlin:20260302T100000
RRULE:FREQ=WEEKLY;COUNT=6
EXDATE;TZID=Europe/Berlin:20260323T090000
RDATE;TZID=Europe/Berlin:20260326T090000
SUMMARY:Standup
DESCRIPTION:Every Monday
BEGIN:VALARM
ACTION:DISPLAY
TRIGGER:-PT10M
DESCRIPTION:soon
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:series
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20260316T090000
DTSTART;TZID=Europe/Berlin:20260318T140000
DTEND;TZID=Europe/Berlin:20260318T150000
SUMMARY:Planning
END:VEVENT
END:VCALENDAR
"""

BIRTHDAYS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:birthday
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20250310
DTEND;VALUE=DATE:20250311
RRULE:FREQ=YEARLY
SUMMARY:Birthday
END:VEVENT
END:VCALENDAR
"""

INSTANT = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:instant
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:20260310T090000
SUMMARY:Reminder
END:VEVENT
END:VCALENDAR
"""


def rendered(text: str, xml: str, zone: ZoneInfo | None = None) -> Calendar:
    out = render_calendar_data(text, parse_calendar(text), spec_of(xml), zone or UTC)
    return Calendar.from_ical(out)


def value(component: Component, name: str) -> object:
    return dt_value(component.get(name)) if name in component else None


def instances(calendar: Calendar) -> list[tuple[object, object, object, str]]:
    return [(value(c, "RECURRENCE-ID"), value(c, "DTSTART"), value(c, "DTEND"), str(c.get("SUMMARY")))
            for c in calendar.walk("VEVENT")]


def test_the_whole_object_is_the_stored_text_unchanged() -> None:
    text = SERIES.replace("SUMMARY:Standup", "summary:Standup\nX-ODD;x-param=1:kept as written")
    assert render_calendar_data(text, parse_calendar(text), spec_of(data())) is text


EXPANDED = [
    (at("20260302T080000"), at("20260302T080000"), at("20260302T090000"), "Standup"),
    (at("20260309T080000"), at("20260309T080000"), at("20260309T090000"), "Standup"),
    (at("20260316T080000"), at("20260318T130000"), at("20260318T140000"), "Planning"),
    (at("20260326T080000"), at("20260326T080000"), at("20260326T090000"), "Standup"),
    (at("20260330T070000"), at("20260330T070000"), at("20260330T080000"), "Standup"),
]
EXPANSIONS = {
    "series-across-dst": (SERIES, "20260301T000000Z", "20260401T000000Z", EXPANDED),
    "series-in-its-own-vtimezone": (SERIES.replace("Europe/Berlin", "Mitteleuropa"), "20260301T000000Z",
                                    "20260401T000000Z", EXPANDED),
    "override-by-its-own-time": (SERIES, "20260318T130000Z", "20260318T133000Z", EXPANDED[2:3]),
    "not-the-moved-instance": (SERIES, "20260316T000000Z", "20260317T000000Z", []),
    "not-the-excluded-instance": (SERIES, "20260323T000000Z", "20260324T000000Z", []),
    "dates-stay-dates": (BIRTHDAYS, "20260101T000000Z", "20280101T000000Z", [
        (date(2026, 3, 10), date(2026, 3, 10), date(2026, 3, 11), "Birthday"),
        (date(2027, 3, 10), date(2027, 3, 10), date(2027, 3, 11), "Birthday"),
    ]),
    "an-instant-at-the-start": (INSTANT, "20260310T080000Z", "20260310T090000Z", [
        (None, at("20260310T080000"), None, "Reminder"),
    ]),
}


@pytest.mark.parametrize(("text", "start", "end", "expected"), EXPANSIONS.values(), ids=EXPANSIONS.keys())
def test_expand_writes_each_instance_in_utc(text: str, start: str, end: str, expected: list[object]) -> None:
    out = rendered(text, data(f'<C:expand start="{start}" end="{end}"/>'))
    assert instances(out) == expected


@pytest.mark.parametrize("tzid", ["Europe/Berlin", "Mitteleuropa"], ids=["iana-zone", "own-vtimezone"])
def test_an_expanded_instance_has_no_recurrence_and_no_zone(tzid: str) -> None:
    out = rendered(SERIES.replace("Europe/Berlin", tzid), data('<C:expand start="20260301T000000Z" end="20260401T000000Z"/>'))
    assert not out.walk("VTIMEZONE")
    for event in out.walk("VEVENT"):
        assert not {"RRULE", "RDATE", "EXDATE", "EXRULE"} & set(event)
    times = [line for line in out.to_ical().decode().splitlines() if line.startswith(("DTSTART", "DTEND", "RECURRENCE"))]
    assert len(times) == 15
    assert all(":" in line and line.endswith("Z") and "TZID" not in line for line in times), times
    assert [len(e.walk("VALARM")) for e in out.walk("VEVENT")] == [1, 1, 0, 1, 1]


def test_expand_writes_floating_times_in_the_default_zone() -> None:
    text = INSTANT.replace("DTSTART;TZID=Europe/Berlin:20260310T090000", "DTSTART:20260310T090000\nRRULE:FREQ=DAILY")
    out = rendered(text, data('<C:expand start="20260311T000000Z" end="20260312T000000Z"/>'), BERLIN)
    assert instances(out) == [(at("20260311T080000"), at("20260311T080000"), None, "Reminder")]


LIMITS = {
    "override-out-of-range-dropped": ("20260325T000000Z", "20260401T000000Z", ["Standup"]),
    "override-in-range-kept": ("20260318T000000Z", "20260319T000000Z", ["Standup", "Planning"]),
    "override-of-an-instance-in-range-kept": ("20260316T000000Z", "20260317T000000Z", ["Standup", "Planning"]),
}


@pytest.mark.parametrize(("start", "end", "summaries"), LIMITS.values(), ids=LIMITS.keys())
def test_limit_recurrence_set_keeps_the_master_and_the_overrides_in_range(
    start: str, end: str, summaries: list[str]
) -> None:
    out = rendered(SERIES, data(f'<C:limit-recurrence-set start="{start}" end="{end}"/>'))
    assert [str(e["SUMMARY"]) for e in out.walk("VEVENT")] == summaries
    assert "RRULE" in out.walk("VEVENT")[0]


def shape(component: Component) -> list[object]:
    """A component as its name, property names and subcomponents, in order."""
    if component.name == "VTIMEZONE":
        return [component.name, str(component["TZID"]), [shape(c) for c in component.subcomponents]]
    return [component.name, sorted(component), [shape(c) for c in component.subcomponents]]


PARTS = {
    "rfc-partial-retrieval": (data(RFC_EXAMPLE), ["VCALENDAR", ["VERSION"], [
        ["VTIMEZONE", "written from the zone database", []],
        ["VEVENT", ["DTEND", "DTSTART", "EXDATE", "RDATE", "RRULE", "SUMMARY", "UID"], []],
        ["VEVENT", ["DTEND", "DTSTART", "RECURRENCE-ID", "SUMMARY", "UID"], []],
    ]]),
    "events-without-their-zone": (data('<C:comp name="VCALENDAR"><C:comp name="VEVENT"><C:prop name="UID"/>'
                                       "</C:comp></C:comp>"), ["VCALENDAR", [], [
        ["VEVENT", ["UID"], []], ["VEVENT", ["UID"], []]]]),
    "all-of-each-event-but-no-alarm": (data('<C:comp name="VCALENDAR"><C:prop name="PRODID"/>'
                                            '<C:comp name="VEVENT"><C:allprop/></C:comp></C:comp>'),
                                       ["VCALENDAR", ["PRODID"], [
        ["VEVENT", ["DESCRIPTION", "DTEND", "DTSTAMP", "DTSTART", "EXDATE", "RDATE", "RRULE", "SUMMARY", "UID"], []],
        ["VEVENT", ["DTEND", "DTSTAMP", "DTSTART", "RECURRENCE-ID", "SUMMARY", "UID"], []]]]),
    "alarms-under-uids": (data('<C:comp name="VCALENDAR"><C:comp name="VEVENT"><C:prop name="UID"/><C:allcomp/>'
                               "</C:comp></C:comp>"), ["VCALENDAR", [], [
        ["VEVENT", ["UID"], [["VALARM", ["ACTION", "DESCRIPTION", "TRIGGER"], []]]], ["VEVENT", ["UID"], []]]]),
}


@pytest.mark.parametrize(("xml", "expected"), PARTS.values(), ids=PARTS.keys())
def test_a_partial_object_holds_what_was_named(xml: str, expected: list[object]) -> None:
    out = rendered(SERIES, xml)
    for zone in out.walk("VTIMEZONE"):  # its observances vary with the zone database
        assert (str(zone["TZID"]), len(zone.subcomponents) > 1) == ("Europe/Berlin", True)
        zone.clear()
        zone["TZID"] = "written from the zone database"
        zone.subcomponents = []
    assert shape(out) == expected


def test_novalue_keeps_the_property_without_its_value() -> None:
    out = rendered(SERIES, data('<C:comp name="VCALENDAR"><C:comp name="VEVENT"><C:prop name="UID"/>'
                                '<C:prop name="DTSTART" novalue="yes"/></C:comp></C:comp>'))
    lines = [line for line in out.to_ical().decode().splitlines() if line.startswith("DTSTART")]
    assert lines == ["DTSTART;TZID=Europe/Berlin:", "DTSTART;TZID=Europe/Berlin:"]


def test_expand_and_a_partial_object_together() -> None:
    out = rendered(SERIES, data('<C:comp name="VCALENDAR"><C:comp name="VEVENT"><C:prop name="RECURRENCE-ID"/>'
                                '</C:comp></C:comp><C:expand start="20260309T000000Z" end="20260310T000000Z"/>'))
    assert shape(out) == ["VCALENDAR", [], [["VEVENT", ["RECURRENCE-ID"], []]]]
    assert value(out.walk("VEVENT")[0], "RECURRENCE-ID") == at("20260309T080000")
