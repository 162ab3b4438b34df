"""calendar-query filters, table-driven: bodies as clients send them, malformed ones, and RFC 4791 §9.7 and §9.9 judged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from gateway.core.calendar.ical import parse_calendar
from gateway.core.dav.filter_tree import (
    CompFilter,
    ParamFilter,
    PropFilter,
    TextMatch,
    TimeRange,
    parse_filter,
    time_range_of,
)
from gateway.core.dav.filters import instances_in_range, matches
from gateway.core.dav.xml import CALDAV, DavError, parse_body, qname

BERLIN = ZoneInfo("Europe/Berlin")
CAL = 'xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"'


def at(text: str) -> datetime:
    """``20260309T080000`` as aware UTC."""
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def span(start: str | None, end: str | None) -> TimeRange:
    return TimeRange(at(start) if start else None, at(end) if end else None)


def calendar(*components: str) -> Calendar:
    body = "\n".join(components)
    return parse_calendar(f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n{body}\nEND:VCALENDAR\n")


def vevent(*lines: str, uid: str = "one") -> str:
    return "\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", *lines, "END:VEVENT"])


def vtodo(*lines: str) -> str:
    return "\n".join(["BEGIN:VTODO", "UID:task", "DTSTAMP:20260101T000000Z", *lines, "END:VTODO"])


def events(
    time_range: TimeRange | None = None, prop_filters: tuple[PropFilter, ...] = (),
    comp_filters: tuple[CompFilter, ...] = (),
) -> CompFilter:
    """A filter on the VEVENTs of an object."""
    return under_calendar(CompFilter("VEVENT", False, time_range, prop_filters, comp_filters))


def under_calendar(*inner: CompFilter) -> CompFilter:
    return CompFilter("VCALENDAR", comp_filters=inner)


def filter_of(body: bytes) -> CompFilter:
    """The filter of a whole calendar-query body, read as the REPORT reads it."""
    root = parse_body(body)
    assert root is not None
    element = root.find(qname(CALDAV, "filter"))
    assert element is not None
    return parse_filter(element)


def query(filter_xml: str, prefix: str = "C") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><{prefix}:calendar-query xmlns:D="DAV:" '
        f'xmlns:{prefix}="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
        f"{filter_xml}</{prefix}:calendar-query>"
    ).encode()


# --- bodies as clients send them -------------------------------------------------------------

CLIENT_BODIES = {
    "davx5-events-since": (
        query('<CAL:filter><CAL:comp-filter name="VCALENDAR"><CAL:comp-filter name="VEVENT">'
              '<CAL:time-range start="20260201T000000Z"/></CAL:comp-filter></CAL:comp-filter></CAL:filter>', "CAL"),
        events(time_range=span("20260201T000000", None)),
    ),
    "davx5-tasks": (
        query('<CAL:filter><CAL:comp-filter name="VCALENDAR"><CAL:comp-filter name="VTODO"/>'
              "</CAL:comp-filter></CAL:filter>", "CAL"),
        under_calendar(CompFilter("VTODO")),
    ),
    "thunderbird-month": (
        query('<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
              '<C:time-range start="20260301T000000Z" end="20260401T000000Z"/>'
              "</C:comp-filter></C:comp-filter></C:filter>"),
        events(time_range=span("20260301T000000", "20260401T000000")),
    ),
    "apple-calendar-window": (
        query('<x0:filter><x0:comp-filter name="VCALENDAR"><x0:comp-filter name="VEVENT">'
              '<x0:time-range start="20260215T000000Z" end="20270215T000000Z"/>'
              "</x0:comp-filter></x0:comp-filter></x0:filter>", "x0"),
        events(time_range=span("20260215T000000", "20270215T000000")),
    ),
    "evolution-by-uid": (
        query('<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
              '<C:prop-filter name="UID"><C:text-match collation="i;octet" negate-condition="no">'
              "20260301-abc@example.org</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter></C:filter>"),
        events(prop_filters=(PropFilter("UID", text_match=TextMatch("20260301-abc@example.org", "i;octet")),)),
    ),
    "caldav-library-pending-todos": (
        query('<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VTODO">'
              '<C:prop-filter name="COMPLETED"><C:is-not-defined/></C:prop-filter>'
              '<C:prop-filter name="STATUS"><C:text-match negate-condition="yes">CANCELLED</C:text-match>'
              "</C:prop-filter></C:comp-filter></C:comp-filter></C:filter>"),
        under_calendar(CompFilter("VTODO", prop_filters=(
            PropFilter("COMPLETED", is_not_defined=True),
            PropFilter("STATUS", text_match=TextMatch("CANCELLED", negate=True)),
        ))),
    ),
    "rfc4791-attendee-partstat": (
        query('<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
              '<C:prop-filter name="ATTENDEE"><C:text-match collation="i;ascii-casemap">mailto:lisa@example.com'
              '</C:text-match><C:param-filter name="PARTSTAT"><C:text-match collation="i;ascii-casemap">'
              "NEEDS-ACTION</C:text-match></C:param-filter></C:prop-filter></C:comp-filter></C:comp-filter></C:filter>"),
        events(prop_filters=(PropFilter("ATTENDEE", text_match=TextMatch("mailto:lisa@example.com"),
                                        param_filters=(ParamFilter("PARTSTAT", text_match=TextMatch("NEEDS-ACTION")),)),)),
    ),
    "rfc4791-alarm-in-range": (
        query('<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:comp-filter name="VALARM">'
              '<C:time-range start="20060106T100000Z" end="20060107T100000Z"/></C:comp-filter></C:comp-filter>'
              "</C:comp-filter></C:filter>"),
        events(comp_filters=(CompFilter("VALARM", time_range=span("20060106T100000", "20060107T100000")),)),
    ),
    "lower-case-names-and-foreign-elements": (
        query('<C:filter><C:comp-filter name="vcalendar"><X:hint xmlns:X="urn:example:x"/>'
              '<C:comp-filter name="vevent"><C:prop-filter name="summary"/></C:comp-filter></C:comp-filter></C:filter>'),
        events(prop_filters=(PropFilter("SUMMARY"),)),
    ),
    "unicode-casemap-param-not-defined": (
        query('<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
              '<C:prop-filter name="ATTENDEE"><C:param-filter name="RSVP"><C:is-not-defined/></C:param-filter>'
              '</C:prop-filter><C:prop-filter name="LOCATION"><C:text-match collation="i;unicode-casemap">'
              "KÖLN</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter></C:filter>"),
        events(prop_filters=(
            PropFilter("ATTENDEE", param_filters=(ParamFilter("RSVP", is_not_defined=True),)),
            PropFilter("LOCATION", text_match=TextMatch("KÖLN", "i;unicode-casemap")),
        )),
    ),
}


@pytest.mark.parametrize(("body", "expected"), CLIENT_BODIES.values(), ids=CLIENT_BODIES.keys())
def test_a_client_filter_reads_as_its_tree(body: bytes, expected: CompFilter) -> None:
    assert filter_of(body) == expected


def vcal(inner: str) -> str:
    return f'<C:filter {CAL}><C:comp-filter name="VCALENDAR">{inner}</C:comp-filter></C:filter>'


MALFORMED = {
    "not-a-filter": (f'<C:comp-filter {CAL} name="VCALENDAR"/>', "valid-filter"),
    "no-comp-filter": (f"<C:filter {CAL}/>", "valid-filter"),
    "two-comp-filters": (f'<C:filter {CAL}><C:comp-filter name="VCALENDAR"/><C:comp-filter name="VCALENDAR"/></C:filter>',
                         "valid-filter"),
    "outermost-not-vcalendar": (f'<C:filter {CAL}><C:comp-filter name="VEVENT"/></C:filter>', "valid-filter"),
    "comp-filter-without-name": (vcal("<C:comp-filter/>"), "valid-filter"),
    "time-range-without-bounds": (vcal('<C:comp-filter name="VEVENT"><C:time-range/></C:comp-filter>'),
                                  "valid-filter"),
    "time-range-backwards": (vcal('<C:comp-filter name="VEVENT"><C:time-range start="20260302T000000Z" '
                                  'end="20260301T000000Z"/></C:comp-filter>'), "valid-filter"),
    "time-range-empty": (vcal('<C:comp-filter name="VEVENT"><C:time-range start="20260301T000000Z" '
                              'end="20260301T000000Z"/></C:comp-filter>'), "valid-filter"),
    "time-range-local-time": (vcal('<C:comp-filter name="VEVENT"><C:time-range start="20260301T000000"/>'
                                   "</C:comp-filter>"), "valid-filter"),
    "time-range-a-date": (vcal('<C:comp-filter name="VEVENT"><C:time-range end="20260301"/></C:comp-filter>'),
                          "valid-filter"),
    "two-time-ranges": (vcal('<C:comp-filter name="VEVENT"><C:time-range start="20260301T000000Z"/>'
                             '<C:time-range end="20260401T000000Z"/></C:comp-filter>'), "valid-filter"),
    "time-range-on-vtimezone": (vcal('<C:comp-filter name="VTIMEZONE"><C:time-range start="20260301T000000Z"/>'
                                     "</C:comp-filter>"), "valid-filter"),
    "is-not-defined-and-more": (vcal('<C:comp-filter name="VTODO"><C:is-not-defined/>'
                                     '<C:time-range start="20260301T000000Z"/></C:comp-filter>'), "valid-filter"),
    "time-range-and-text-match": (vcal('<C:comp-filter name="VEVENT"><C:prop-filter name="DTSTAMP">'
                                       '<C:time-range start="20260301T000000Z"/><C:text-match>x</C:text-match>'
                                       "</C:prop-filter></C:comp-filter>"), "valid-filter"),
    "negate-maybe": (vcal('<C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY">'
                          '<C:text-match negate-condition="maybe">x</C:text-match></C:prop-filter></C:comp-filter>'),
                     "valid-filter"),
    "unknown-caldav-element": (vcal('<C:comp-filter name="VEVENT"><C:prop-match name="SUMMARY"/></C:comp-filter>'),
                               "valid-filter"),
    "param-filter-without-name": (vcal('<C:comp-filter name="VEVENT"><C:prop-filter name="ATTENDEE">'
                                       "<C:param-filter/></C:prop-filter></C:comp-filter>"), "valid-filter"),
    "unsupported-collation": (vcal('<C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY">'
                                   '<C:text-match collation="i;basic">x</C:text-match></C:prop-filter>'
                                   "</C:comp-filter>"), "supported-collation"),
}


@pytest.mark.parametrize(("body", "condition"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_filter_is_refused_with_its_precondition(body: str, condition: str) -> None:
    root = parse_body(body.encode())
    assert root is not None
    with pytest.raises(DavError) as refused:
        parse_filter(root)
    assert refused.value.condition == qname(CALDAV, condition)
    assert refused.value.status == (403 if condition == "supported-collation" else 400)


# --- text-match, is-not-defined, param-filter -------------------------------------------------

TEXT_OBJECT = calendar(vevent(
    "DTSTART:20260310T090000Z", "DTEND:20260310T100000Z", "SUMMARY:Daily STANDUP", "LOCATION:ÄRGERLICH Köln",
    "DESCRIPTION:Lunch\\, with Bob", "CATEGORIES:WORK,TRAVEL",
    "ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:alice@foo.example",
    "ATTENDEE;PARTSTAT=ACCEPTED;DELEGATED-TO=\"mailto:carol@foo.example\",\"mailto:dan@foo.example\":mailto:bob@foo.example",
    "BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M", "DESCRIPTION:soon", "END:VALARM",
))

TEXT_CASES = {
    "ascii-casemap-folds-ascii": (PropFilter("SUMMARY", text_match=TextMatch("standup")), True),
    "ascii-casemap-leaves-umlauts": (PropFilter("LOCATION", text_match=TextMatch("ärgerlich")), False),
    "unicode-casemap-folds-umlauts": (PropFilter("LOCATION", text_match=TextMatch("ärgerlich köln", "i;unicode-casemap")),
                                      True),
    "octet-is-case-sensitive": (PropFilter("SUMMARY", text_match=TextMatch("standup", "i;octet")), False),
    "octet-exact-substring": (PropFilter("SUMMARY", text_match=TextMatch("y STAND", "i;octet")), True),
    "negated-present-substring": (PropFilter("SUMMARY", text_match=TextMatch("standup", negate=True)), False),
    "negated-absent-substring": (PropFilter("SUMMARY", text_match=TextMatch("retro", negate=True)), True),
    "negated-on-a-missing-property": (PropFilter("COMMENT", text_match=TextMatch("x", negate=True)), False),
    "text-is-unescaped": (PropFilter("DESCRIPTION", text_match=TextMatch("lunch, with")), True),
    "categories-as-a-list": (PropFilter("CATEGORIES", text_match=TextMatch("work,travel")), True),
    "empty-prop-filter-present": (PropFilter("SUMMARY"), True),
    "empty-prop-filter-absent": (PropFilter("COMMENT"), False),
    "is-not-defined-absent": (PropFilter("COMMENT", is_not_defined=True), True),
    "is-not-defined-present": (PropFilter("LOCATION", is_not_defined=True), False),
    "param-text-on-the-same-attendee": (PropFilter("ATTENDEE", text_match=TextMatch("alice"), param_filters=(
        ParamFilter("PARTSTAT", text_match=TextMatch("needs-action")),)), True),
    "param-text-on-another-attendee": (PropFilter("ATTENDEE", text_match=TextMatch("bob"), param_filters=(
        ParamFilter("PARTSTAT", text_match=TextMatch("NEEDS-ACTION")),)), False),
    "param-present": (PropFilter("ATTENDEE", text_match=TextMatch("bob"), param_filters=(
        ParamFilter("DELEGATED-TO"),)), True),
    "param-absent-on-bob": (PropFilter("ATTENDEE", text_match=TextMatch("bob"), param_filters=(
        ParamFilter("RSVP"),)), False),
    "param-not-defined": (PropFilter("ATTENDEE", text_match=TextMatch("alice"), param_filters=(
        ParamFilter("RSVP", is_not_defined=True),)), False),
    "param-not-defined-on-bob": (PropFilter("ATTENDEE", text_match=TextMatch("bob"), param_filters=(
        ParamFilter("RSVP", is_not_defined=True),)), True),
    "multi-valued-param-any-value": (PropFilter("ATTENDEE", param_filters=(
        ParamFilter("DELEGATED-TO", text_match=TextMatch("dan@")),)), True),
    "multi-valued-param-negated-needs-none": (PropFilter("ATTENDEE", text_match=TextMatch("bob"), param_filters=(
        ParamFilter("DELEGATED-TO", text_match=TextMatch("dan@", negate=True)),)), False),
    "prop-time-range-on-dtstamp": (PropFilter("DTSTAMP", time_range=span("20260101T000000", "20260102T000000")), True),
    "prop-time-range-misses-dtstamp": (PropFilter("DTSTAMP", time_range=span("20260102T000000", None)), False),
    "prop-time-range-on-text": (PropFilter("SUMMARY", time_range=span("20260101T000000", None)), False),
}


@pytest.mark.parametrize(("prop", "expected"), TEXT_CASES.values(), ids=TEXT_CASES.keys())
def test_a_prop_filter_judges_the_properties_of_the_event(prop: PropFilter, expected: bool) -> None:
    assert matches(TEXT_OBJECT, events(prop_filters=(prop,))) is expected


COMPONENT_CASES = {
    "vevent-present": (under_calendar(CompFilter("VEVENT")), True),
    "vtodo-absent": (under_calendar(CompFilter("VTODO")), False),
    "vtodo-not-defined": (under_calendar(CompFilter("VTODO", is_not_defined=True)), True),
    "vevent-not-defined": (under_calendar(CompFilter("VEVENT", is_not_defined=True)), False),
    "valarm-present": (events(comp_filters=(CompFilter("VALARM"),)), True),
    "valarm-not-defined": (events(comp_filters=(CompFilter("VALARM", is_not_defined=True),)),
                           False),
    "every-test-must-hold": (under_calendar(CompFilter("VEVENT"), CompFilter("VTODO")), False),
    "vcalendar-not-defined": (CompFilter("VCALENDAR", is_not_defined=True), False),
    "vcalendar-alone": (CompFilter("VCALENDAR"), True),
}


@pytest.mark.parametrize(("flt", "expected"), COMPONENT_CASES.values(), ids=COMPONENT_CASES.keys())
def test_a_comp_filter_judges_which_components_there_are(flt: CompFilter, expected: bool) -> None:
    assert matches(TEXT_OBJECT, flt) is expected


# --- time ranges over a recurring series (§9.9) ----------------------------------------------

# Mondays at 09:00 Berlin from 2 March 2026, six of them; DST starts on 29 March (08:00Z, then 07:00Z).
# 16 March is moved to Wednesday 18 March, 23 March is excluded, Thursday 26 March is added.
SERIES = calendar(
    vevent("DTSTART;TZID=Europe/Berlin:20260302T090000", "DTEND;TZID=Europe/Berlin:20260302T100000",
           "RRULE:FREQ=WEEKLY;COUNT=6", "EXDATE;TZID=Europe/Berlin:20260323T090000",
           "RDATE;TZID=Europe/Berlin:20260326T090000", "SUMMARY:Standup", uid="series"),
    vevent("RECURRENCE-ID;TZID=Europe/Berlin:20260316T090000", "DTSTART;TZID=Europe/Berlin:20260318T140000",
           "DTEND;TZID=Europe/Berlin:20260318T150000", "SUMMARY:Planning", uid="series"),
)

SERIES_CASES = {
    "a-plain-instance": (span("20260309T080000", "20260309T083000"), True),
    "override-moved-out-of-range": (span("20260316T070000", "20260316T100000"), False),
    "override-moved-into-range": (span("20260318T130000", "20260318T133000"), True),
    "exdate-removes-the-instance": (span("20260323T000000", "20260324T000000"), False),
    "rdate-adds-an-instance": (span("20260326T080000", "20260326T081500"), True),
    "range-ending-at-the-start": (span("20260309T070000", "20260309T080000"), False),
    "range-starting-at-the-end": (span("20260309T090000", "20260309T100000"), False),
    "after-dst-wall-clock-kept": (span("20260330T070000", "20260330T071500"), True),
    "after-dst-the-old-utc-hour": (span("20260330T083000", "20260330T090000"), False),
    "after-the-last-instance": (span("20260407T000000", None), False),
    "before-the-first-instance": (span(None, "20260302T080000"), False),
    "open-start-reaches-the-first": (span(None, "20260302T080001"), True),
    "open-end-from-the-last": (span("20260406T065959", None), True),
}


@pytest.mark.parametrize(("window", "expected"), SERIES_CASES.values(), ids=SERIES_CASES.keys())
def test_a_time_range_finds_the_instances_of_a_series(window: TimeRange, expected: bool) -> None:
    assert matches(SERIES, events(time_range=window)) is expected


SAME_COMPONENT = {
    "override-in-range-with-its-own-summary": ("20260318T130000", "Planning", True),
    "override-in-range-but-summary-of-master": ("20260318T130000", "Standup", False),
    "master-instance-with-master-summary": ("20260309T080000", "Standup", True),
    "master-instance-with-override-summary": ("20260309T080000", "Planning", False),
}


@pytest.mark.parametrize(("start", "summary", "expected"), SAME_COMPONENT.values(), ids=SAME_COMPONENT.keys())
def test_time_range_and_prop_filters_hold_for_the_same_component(start: str, summary: str, expected: bool) -> None:
    window = TimeRange(at(start), at(start) + timedelta(minutes=30))
    flt = events(time_range=window, prop_filters=(PropFilter("SUMMARY", text_match=TextMatch(summary)),))
    assert matches(SERIES, flt) is expected


def test_the_instances_of_a_series_keep_their_wall_clock_across_dst() -> None:
    found = instances_in_range(SERIES, "VEVENT", span("20260301T000000", "20260501T000000"))
    assert [(o.start, o.component.get("SUMMARY")) for o in found] == [
        (at("20260302T080000"), "Standup"), (at("20260309T080000"), "Standup"), (at("20260318T130000"), "Planning"),
        (at("20260326T080000"), "Standup"), (at("20260330T070000"), "Standup"), (at("20260406T070000"), "Standup"),
    ]


ALL_DAY = calendar(vevent("DTSTART;VALUE=DATE:20260310", "DTEND;VALUE=DATE:20260311"))
ALL_DAY_NO_END = calendar(vevent("DTSTART;VALUE=DATE:20260310"))
FLOATING = calendar(vevent("DTSTART:20260310T090000", "DTEND:20260310T100000"))
INSTANT = calendar(vevent("DTSTART:20260310T090000Z"))
INSTANT_BY_DTEND = calendar(vevent("DTSTART:20260310T090000Z", "DTEND:20260310T090000Z"))
FAR_AHEAD = calendar(vevent("DTSTART:20300310T090000Z", "DTEND:20300310T100000Z"))
YEARLY_SKIPPING = calendar(vevent("DTSTART:20260101T090000Z", "DTEND:20260101T100000Z", "RRULE:FREQ=YEARLY;COUNT=3",
                                  "EXDATE:20270101T090000Z"))
DAILY_INSTANT = calendar(vevent("DTSTART:20260310T090000Z", "DURATION:PT0S", "RRULE:FREQ=DAILY;COUNT=3"))

ZONED_CASES = {
    "all-day-in-berlin-starts-at-23z": (ALL_DAY, BERLIN, span("20260309T233000", "20260309T234500"), True),
    "all-day-in-utc-starts-at-0z": (ALL_DAY, UTC, span("20260309T233000", "20260309T234500"), False),
    "all-day-in-berlin-ends-at-23z": (ALL_DAY, BERLIN, span("20260310T230000", "20260311T000000"), False),
    "all-day-without-dtend-is-one-day": (ALL_DAY_NO_END, UTC, span("20260310T230000", "20260311T000000"), True),
    "all-day-without-dtend-not-two": (ALL_DAY_NO_END, UTC, span("20260311T000000", "20260311T010000"), False),
    "floating-read-in-berlin": (FLOATING, BERLIN, span("20260310T080000", "20260310T083000"), True),
    "floating-read-in-utc": (FLOATING, UTC, span("20260310T080000", "20260310T083000"), False),
    "instant-at-the-range-start": (INSTANT, UTC, span("20260310T090000", "20260310T093000"), True),
    "instant-at-the-range-end": (INSTANT, UTC, span("20260310T080000", "20260310T090000"), False),
    "instant-by-dtend-at-the-start": (INSTANT_BY_DTEND, UTC, span("20260310T090000", "20260310T093000"), True),
    "open-end-years-ahead": (FAR_AHEAD, UTC, span("20260101T000000", None), True),
    "open-end-past-a-skipped-year": (YEARLY_SKIPPING, UTC, span("20260601T000000", None), True),
    "open-end-after-the-series": (YEARLY_SKIPPING, UTC, span("20280101T100000", None), False),
    "recurring-instant-on-day-three": (DAILY_INSTANT, UTC, span("20260312T090000", "20260312T090001"), True),
    "recurring-instant-not-day-four": (DAILY_INSTANT, UTC, span("20260313T000000", None), False),
}


@pytest.mark.parametrize(("obj", "zone", "window", "expected"), ZONED_CASES.values(), ids=ZONED_CASES.keys())
def test_dates_floating_times_and_instants_in_a_time_range(
    obj: Calendar, zone: ZoneInfo, window: TimeRange, expected: bool
) -> None:
    assert matches(obj, events(time_range=window), zone) is expected


# --- VTODO, VJOURNAL, VALARM, VFREEBUSY (§9.9) -----------------------------------------------

TODO_CASES = {
    "start-duration-closed-at-the-end": (("DTSTART:20260310T100000Z", "DURATION:PT1H"),
                                         span("20260310T110000", "20260310T120000"), True),
    "start-duration-after-the-end": (("DTSTART:20260310T100000Z", "DURATION:PT1H"),
                                     span("20260310T110001", "20260310T120000"), False),
    "start-due-open-at-due": (("DTSTART:20260310T100000Z", "DUE:20260310T110000Z"),
                              span("20260310T110000", "20260310T120000"), False),
    "start-due-ending-at-start": (("DTSTART:20260310T100000Z", "DUE:20260310T110000Z"),
                                  span("20260310T090000", "20260310T100000"), False),
    "start-due-overlapping": (("DTSTART:20260310T100000Z", "DUE:20260310T110000Z"),
                              span("20260310T090000", "20260310T100001"), True),
    "start-equals-due-at-range-start": (("DTSTART:20260310T100000Z", "DUE:20260310T100000Z"),
                                        span("20260310T100000", "20260310T110000"), True),
    "start-only-at-the-start": (("DTSTART:20260310T100000Z",), span("20260310T100000", "20260310T110000"), True),
    "start-only-before": (("DTSTART:20260310T100000Z",), span("20260310T090000", "20260310T100000"), False),
    "due-only-closed-at-the-end": (("DUE:20260310T100000Z",), span("20260310T090000", "20260310T100000"), True),
    "due-only-open-at-the-start": (("DUE:20260310T100000Z",), span("20260310T100000", "20260310T110000"), False),
    "completed-and-created-between": (("CREATED:20260301T000000Z", "COMPLETED:20260305T000000Z"),
                                      span("20260302T000000", "20260303T000000"), True),
    "completed-and-created-after": (("CREATED:20260301T000000Z", "COMPLETED:20260305T000000Z"),
                                    span("20260306T000000", "20260307T000000"), False),
    "completed-only-at-the-end": (("COMPLETED:20260305T100000Z",), span("20260305T090000", "20260305T100000"), True),
    "completed-only-before": (("COMPLETED:20260305T100000Z",), span("20260305T080000", "20260305T090000"), False),
    "created-only-later-range": (("CREATED:20260301T000000Z",), span("20260228T000000", "20260302T000000"), True),
    "created-only-earlier-range": (("CREATED:20260301T000000Z",), span("20260201T000000", "20260215T000000"), False),
    "no-dates-match-any-range": ((), span("20000101T000000", "20000102T000000"), True),
    "recurring-second-week": (("DTSTART:20260302T100000Z", "DUE:20260302T110000Z", "RRULE:FREQ=WEEKLY;COUNT=3"),
                              span("20260309T103000", "20260309T104500"), True),
    "recurring-between-instances": (("DTSTART:20260302T100000Z", "DUE:20260302T110000Z", "RRULE:FREQ=WEEKLY;COUNT=3"),
                                    span("20260310T000000", "20260316T000000"), False),
}


@pytest.mark.parametrize(("lines", "window", "expected"), TODO_CASES.values(), ids=TODO_CASES.keys())
def test_a_vtodo_in_a_time_range_by_the_rfc_table(lines: tuple[str, ...], window: TimeRange, expected: bool) -> None:
    flt = under_calendar(CompFilter("VTODO", time_range=window))
    assert matches(calendar(vtodo(*lines)), flt) is expected


def vjournal(*lines: str) -> str:
    return "\n".join(["BEGIN:VJOURNAL", "UID:note", "DTSTAMP:20260101T000000Z", *lines, "END:VJOURNAL"])


def alarmed(*alarm: str, recurs: str = "") -> Calendar:
    lines = ["DTSTART:20260310T090000Z", "DTEND:20260310T100000Z", recurs, "BEGIN:VALARM", "ACTION:DISPLAY",
             "DESCRIPTION:soon", *alarm, "END:VALARM"]
    return calendar(vevent(*(line for line in lines if line)))


def alarm_filter(window: TimeRange) -> CompFilter:
    return events(comp_filters=(CompFilter("VALARM", time_range=window),))


OTHER_CASES = {
    "journal-timed-at-its-start": (calendar(vjournal("DTSTART:20260310T090000Z")), "VJOURNAL",
                                   span("20260310T090000", "20260310T090001"), True),
    "journal-timed-just-before": (calendar(vjournal("DTSTART:20260310T090000Z")), "VJOURNAL",
                                  span("20260310T080000", "20260310T090000"), False),
    "journal-dated-is-the-day": (calendar(vjournal("DTSTART;VALUE=DATE:20260310")), "VJOURNAL",
                                 span("20260310T230000", "20260311T000000"), True),
    "journal-undated-never": (calendar(vjournal("SUMMARY:x")), "VJOURNAL", span("20000101T000000", None), False),
    "freebusy-by-its-dates": (calendar("BEGIN:VFREEBUSY\nUID:fb\nDTSTART:20260310T000000Z\nDTEND:20260311T000000Z\n"
                                       "END:VFREEBUSY"), "VFREEBUSY", span("20260310T120000", "20260310T130000"), True),
    "freebusy-by-its-periods": (calendar("BEGIN:VFREEBUSY\nUID:fb\nFREEBUSY:20260310T090000Z/PT1H\nEND:VFREEBUSY"),
                                "VFREEBUSY", span("20260310T100000", "20260310T110000"), False),
    "freebusy-by-a-later-period": (calendar("BEGIN:VFREEBUSY\nUID:fb\nFREEBUSY:20260310T090000Z/PT1H,"
                                            "20260310T120000Z/20260310T130000Z\nEND:VFREEBUSY"),
                                   "VFREEBUSY", span("20260310T123000", "20260310T124500"), True),
}


@pytest.mark.parametrize(("obj", "name", "window", "expected"), OTHER_CASES.values(), ids=OTHER_CASES.keys())
def test_journals_and_free_busy_in_a_time_range(obj: Calendar, name: str, window: TimeRange, expected: bool) -> None:
    assert matches(obj, under_calendar(CompFilter(name, time_range=window))) is expected


ALARM_CASES = {
    "relative-to-the-start": (alarmed("TRIGGER:-PT15M"), span("20260310T084500", "20260310T085000"), True),
    "relative-not-later": (alarmed("TRIGGER:-PT15M"), span("20260310T085000", "20260310T090000"), False),
    "related-to-the-end": (alarmed("TRIGGER;RELATED=END:PT0S"), span("20260310T100000", "20260310T100500"), True),
    "absolute-trigger": (alarmed("TRIGGER;VALUE=DATE-TIME:20260310T080000Z"),
                         span("20260310T080000", "20260310T080100"), True),
    "a-repetition": (alarmed("TRIGGER:-PT15M", "REPEAT:2", "DURATION:PT5M"),
                     span("20260310T085500", "20260310T085600"), True),
    "past-the-repetitions": (alarmed("TRIGGER:-PT15M", "REPEAT:2", "DURATION:PT5M"),
                             span("20260310T085600", "20260310T090000"), False),
    "of-a-later-instance": (alarmed("TRIGGER:-PT15M", recurs="RRULE:FREQ=DAILY;COUNT=3"),
                            span("20260312T084500", "20260312T084600"), True),
    "after-the-last-instance": (alarmed("TRIGGER:-PT15M", recurs="RRULE:FREQ=DAILY;COUNT=3"),
                                span("20260313T084500", "20260313T084600"), False),
}


@pytest.mark.parametrize(("obj", "window", "expected"), ALARM_CASES.values(), ids=ALARM_CASES.keys())
def test_an_alarm_in_a_time_range_by_its_trigger_times(obj: Calendar, window: TimeRange, expected: bool) -> None:
    assert matches(obj, alarm_filter(window)) is expected


# --- the pre-filter range ---------------------------------------------------------------------

RANGE = span("20260301T000000", "20260401T000000")
PRE_FILTER_CASES = {
    "vevent-range": (events(time_range=RANGE), RANGE),
    "vtodo-range": (under_calendar(CompFilter("VTODO", time_range=RANGE)), RANGE),
    "no-range": (under_calendar(CompFilter("VEVENT")), None),
    "only-an-alarm-range": (alarm_filter(RANGE), None),
    "only-a-journal-range": (under_calendar(CompFilter("VJOURNAL", time_range=RANGE)), None),
}


@pytest.mark.parametrize(("flt", "expected"), PRE_FILTER_CASES.values(), ids=PRE_FILTER_CASES.keys())
def test_the_pre_filter_range_is_that_of_events_or_tasks(flt: CompFilter, expected: TimeRange | None) -> None:
    assert time_range_of(flt) == expected
