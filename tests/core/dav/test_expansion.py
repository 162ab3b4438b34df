"""Expanded calendar-data written from the stored text: the same instances as the general path, or None to defer to it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.core.calendar.ical import parse_calendar, serialize_calendar
from gateway.core.calendar.recurrence import read_times
from gateway.core.dav.calendar_data import expand_calendar
from gateway.core.dav.expansion import expand_text, instances_between
from gateway.core.dav.filter_tree import TimeRange

LO, HI = datetime(2027, 3, 20, tzinfo=UTC), datetime(2027, 4, 20, tzinfo=UTC)


def wrap(*components: str) -> str:
    return "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//EN\n" + "".join(components) + "END:VCALENDAR\n"


WEEKLY_BERLIN = ("BEGIN:VEVENT\nUID:w\nDTSTAMP:20261101T080000Z\nDTSTART;TZID=Europe/Berlin:20270315T100000\n"
                 "DTEND;TZID=Europe/Berlin:20270315T110000\nRRULE:FREQ=WEEKLY;COUNT=8\n"
                 "EXDATE;TZID=Europe/Berlin:20270405T100000\nSUMMARY:Weekly sync\n"
                 "BEGIN:VALARM\nACTION:DISPLAY\nDESCRIPTION:Soon\nTRIGGER:-PT10M\nEND:VALARM\nEND:VEVENT\n")
MOVED = ("BEGIN:VEVENT\nUID:w\nDTSTAMP:20261101T080000Z\nRECURRENCE-ID:20270329T080000Z\n"
         "DTSTART:20270330T120000Z\nDTEND:20270330T130000Z\nSUMMARY:Moved sync\nEND:VEVENT\n")
SINGLE = ("BEGIN:VEVENT\nUID:s\nDTSTAMP:20261101T080000Z\nDTSTART:20270401T120000Z\nDURATION:PT30M\n"
          "SUMMARY:Lunch with a very long summary that the writer folds onto a second content line somewhere\n"
          "END:VEVENT\n")
OUTSIDE = ("BEGIN:VEVENT\nUID:o\nDTSTAMP:20261101T080000Z\nDTSTART:20270601T120000Z\nDTEND:20270601T130000Z\n"
           "SUMMARY:Later\nEND:VEVENT\n")

SAME = {
    "weekly-across-dst-with-exdate-and-alarm": wrap(WEEKLY_BERLIN),
    "override-moved-within": wrap(WEEKLY_BERLIN, MOVED),
    "single-with-duration-and-folded-summary": wrap(SINGLE),
    "outside-the-range": wrap(OUTSIDE),
}


def facts(text: str) -> list[tuple[str, str, str, str, bool, bool]]:
    found = []
    for event in parse_calendar(text).walk("VEVENT"):
        rid = event.get("RECURRENCE-ID")
        found.append((str(event["SUMMARY"]), event["DTSTART"].dt.astimezone(UTC).isoformat(),
                      _end(event),
                      rid.dt.astimezone(UTC).isoformat() if rid is not None else "", "RRULE" in event,
                      bool(event.walk("VALARM"))))
    return sorted(found)


def _end(event: object) -> str:
    """DTEND, or DTSTART plus DURATION: the same end, however written."""
    if "DTEND" in event:  # type: ignore[operator]
        return event["DTEND"].dt.astimezone(UTC).isoformat()  # type: ignore[index]
    return (event["DTSTART"].dt + event["DURATION"].dt).astimezone(UTC).isoformat()  # type: ignore[index]


@pytest.mark.parametrize("text", SAME.values(), ids=SAME.keys())
def test_the_text_path_gives_the_instances_the_general_path_gives(text: str) -> None:
    stored = serialize_calendar(parse_calendar(text))
    times = read_times(parse_calendar(stored))
    written = expand_text(stored, times, instances_between(times, LO, HI))
    assert written is not None
    general = serialize_calendar(expand_calendar(parse_calendar(stored), TimeRange(LO, HI)))
    assert facts(written) == facts(general)
    assert "VTIMEZONE" not in written and "RRULE" not in written and "EXDATE" not in written


def test_the_weekly_series_keeps_its_wall_clock_time_across_the_change_to_summer_time() -> None:
    stored = serialize_calendar(parse_calendar(wrap(WEEKLY_BERLIN)))
    times = read_times(parse_calendar(stored))
    written = expand_text(stored, times, instances_between(times, LO, HI))
    assert written is not None
    starts = [f[1] for f in facts(written)]
    assert starts == ["2027-03-22T09:00:00+00:00", "2027-03-29T08:00:00+00:00", "2027-04-12T08:00:00+00:00",
                      "2027-04-19T08:00:00+00:00"]


DEFERRED = {
    "all-day": wrap("BEGIN:VEVENT\nUID:d\nDTSTAMP:20261101T080000Z\nDTSTART;VALUE=DATE:20270401\n"
                    "DTEND;VALUE=DATE:20270402\nSUMMARY:Holiday\nEND:VEVENT\n"),
    "override-in-a-zone": wrap(WEEKLY_BERLIN, MOVED.replace("RECURRENCE-ID:20270329T080000Z",
                                                            "RECURRENCE-ID;TZID=Europe/Berlin:20270329T100000")),
    "a-todo-beside": wrap(SINGLE, "BEGIN:VTODO\nUID:s\nDTSTAMP:20261101T080000Z\nSUMMARY:Todo\nEND:VTODO\n"),
    "an-event-without-length": wrap("BEGIN:VEVENT\nUID:z\nDTSTAMP:20261101T080000Z\nDTSTART:20270401T120000Z\n"
                                    "SUMMARY:Instant\nEND:VEVENT\n"),
}


@pytest.mark.parametrize("text", DEFERRED.values(), ids=DEFERRED.keys())
def test_what_the_text_path_cannot_write_it_leaves_to_the_general_path(text: str) -> None:
    stored = serialize_calendar(parse_calendar(text))
    times = read_times(parse_calendar(stored))
    assert expand_text(stored, times, instances_between(times, LO, HI)) is None
