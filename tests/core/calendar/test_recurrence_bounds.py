"""Bounded work for any recurrence: expansion is windowed and capped, and mail beyond the caps is held.

The core against dateutil (the same starts from a rule restarted at the window as from
its own DTSTART), and a table of hostile rules and dates (each named by the reason it is
held under, and each expanded within the cap all the same, should it be stored). That
the commands hold and refuse them is ``tests/cli/test_recurrence_holds.py``'s. The time
and memory each takes is printed by ``bench/recurrence_worst.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, vRecur

from gateway.core.calendar.recurrence import (
    MAX_DATES,
    MAX_PER_YEAR,
    occurrences,
    read_times,
    recurrence_limit,
)
from gateway.core.calendar.rrules import MAX_COUNT, MAX_INSTANCES, rule_of
from gateway.core.mail.replyaddress import token_expiry

ROOM = "room-r@foo.example"


def event(rule: str, start: str = "20260105T090000Z", end: str = "20260105T100000Z", uid: str = "series") -> str:
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "METHOD:REQUEST", "BEGIN:VEVENT", f"UID:{uid}",
        "DTSTAMP:20260101T000000Z", f"DTSTART:{start}", f"DTEND:{end}", "SUMMARY:Series", "SEQUENCE:0",
        "ORGANIZER:mailto:carol@bar.example", "ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:alice@foo.example",
        f"ATTENDEE;CUTYPE=ROOM;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{ROOM}", rule, "END:VEVENT", "END:VCALENDAR",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def parsed(text: str) -> Calendar:
    return Calendar.from_ical(text.replace("\n", "\r\n"))


def rdates(count: int) -> str:
    first = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return "RDATE:" + ",".join(f"{first + timedelta(hours=n):%Y%m%dT%H%M%SZ}" for n in range(count))


# --- the rules: the same starts as dateutil, from anywhere ------------------------------------

WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
rules = st.fixed_dictionaries(
    {"FREQ": st.sampled_from(["YEARLY", "MONTHLY", "WEEKLY", "DAILY"])},
    optional={
        "INTERVAL": st.integers(1, 4),
        "COUNT": st.integers(1, 400),
        "BYMONTH": st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True),
        "BYMONTHDAY": st.lists(st.sampled_from([1, 2, 15, 28, 29, 30, 31, -1]), min_size=1, max_size=3, unique=True),
        "BYDAY": st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True),
        "BYHOUR": st.lists(st.integers(0, 23), min_size=1, max_size=2, unique=True),
        "WKST": st.sampled_from(["MO", "SU", "WE"]),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    parts=rules,
    first=st.datetimes(datetime(2000, 1, 1), datetime(2030, 12, 31)).map(lambda d: d.replace(microsecond=0)),
    offset=st.integers(0, 6000),
    length=st.integers(1, 900),
)
def test_a_rule_gives_the_same_starts_in_any_window_as_walking_from_its_dtstart(
    parts: dict[str, object], first: datetime, offset: int, length: int
) -> None:
    recur = vRecur(parts)
    rule = rule_of(recur, first, UTC)
    assert rule is not None
    lo = first + timedelta(days=offset)
    hi = lo + timedelta(days=length)
    expected = rrulestr(recur.to_ical().decode(), dtstart=first).between(lo, hi, inc=True)
    assert rule.starts(lo, hi) == expected[:MAX_INSTANCES]


@pytest.mark.parametrize("freq", ["HOURLY", "MINUTELY", "SECONDLY"])
@pytest.mark.parametrize("interval", [1, 7])
def test_a_sub_daily_rule_without_filters_is_arithmetic_and_agrees_with_dateutil(freq: str, interval: int) -> None:
    first = datetime(2026, 1, 5, 9, 0, 0)
    recur = vRecur({"FREQ": freq, "INTERVAL": interval, "COUNT": 5000})
    rule = rule_of(recur, first, UTC)
    assert rule is not None
    lo, hi = first + timedelta(hours=3, seconds=11), first + timedelta(hours=5)
    assert rule.starts(lo, hi) == rrulestr(recur.to_ical().decode(), dtstart=first).between(lo, hi, inc=True)
    assert rule.last_start() == list(rrulestr(recur.to_ical().decode(), dtstart=first))[-1]


# --- hostile input: held by name, and bounded all the same ----------------------------------

HOSTILE = {
    "count-a-billion": ("RRULE:FREQ=DAILY;COUNT=1000000000", "too-many-instances", "COUNT=1000000000"),
    "count-a-billion-filtered": (
        "RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15;COUNT=1000000000", "too-many-instances", "COUNT=1000000000"),
    "secondly-endless": ("RRULE:FREQ=SECONDLY", "too-many-instances", "instances in a year"),
    "minutely-endless": ("RRULE:FREQ=MINUTELY", "too-many-instances", "instances in a year"),
    "hourly-endless": ("RRULE:FREQ=HOURLY", "too-many-instances", "instances in a year"),
    "daily-four-times": ("RRULE:FREQ=DAILY;BYHOUR=6,10,14,18", "too-many-instances", "instances in a year"),
    "secondly-filtered": (
        "RRULE:FREQ=SECONDLY;BYMONTH=12;BYMONTHDAY=31;BYHOUR=23", "unsupported-recurrence", "FREQ=SECONDLY with"),
    "minutely-by-hour": ("RRULE:FREQ=MINUTELY;BYHOUR=9;BYMINUTE=0", "unsupported-recurrence", "BYHOUR, BYMINUTE"),
    "thousands-of-rdates": (rdates(5000), "too-many-instances", "5000 RDATE values"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_recurrence_beyond_the_caps_is_named(name: str) -> None:
    line, reason, detail = HOSTILE[name]
    beyond = recurrence_limit(parsed(event(line)).walk("VEVENT")[0])
    assert beyond is not None and beyond[0] == reason and detail in beyond[1], beyond


@pytest.mark.parametrize("name", HOSTILE)
def test_a_stored_recurrence_beyond_the_caps_is_expanded_within_them(name: str) -> None:
    calendar = parsed(event(HOSTILE[name][0]))
    window = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2046, 1, 1, tzinfo=UTC))
    found = occurrences(calendar, *window)
    assert len(found) <= MAX_INSTANCES + 1
    assert all(window[0] <= o.end and o.start < window[1] for o in found)
    times = read_times(calendar)
    assert times.start == datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_a_series_from_the_year_one_is_restarted_at_the_window() -> None:
    calendar = parsed(event("RRULE:FREQ=DAILY;BYMONTHDAY=1,15", "00010101T090000Z", "00010101T100000Z"))
    assert recurrence_limit(calendar.walk("VEVENT")[0]) is None
    found = occurrences(calendar, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert [o.start.day for o in found] == [1, 15] * 12


@pytest.mark.parametrize(
    "line",
    [
        "RRULE:FREQ=DAILY",  # an endless daily meeting
        "RRULE:FREQ=DAILY;BYHOUR=9,13,17",  # three a day, every day: the densest series taken
        "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;COUNT=" + str(MAX_COUNT),
        "RRULE:FREQ=HOURLY;INTERVAL=12;COUNT=700",
        rdates(MAX_DATES),
    ],
    ids=["daily", "three-a-day", "weekdays-max-count", "hourly-unfiltered", "max-rdates"],
)
def test_a_recurrence_within_the_caps_is_taken(line: str) -> None:
    assert recurrence_limit(parsed(event(line)).walk("VEVENT")[0]) is None


def test_the_densest_series_taken_fits_the_longest_window_a_room_judges() -> None:
    assert MAX_PER_YEAR * 20 < MAX_INSTANCES  # rooms judge a booking up to 20 years ahead


def test_a_reply_token_of_a_series_too_long_to_count_lives_as_long_as_an_endless_one() -> None:
    assert token_expiry(parsed(event("RRULE:FREQ=DAILY;COUNT=1000000000"))) is None
    counted = token_expiry(parsed(event("RRULE:FREQ=MONTHLY;BYMONTHDAY=5;COUNT=3")))
    assert counted == datetime(2026, 3, 5, 10, tzinfo=UTC) + timedelta(days=30)
