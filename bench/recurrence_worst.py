"""Benchmark: the worst case of recurrence work, for each hostile input and each path that expands.

Every input here is one invitation (an organizer elsewhere, a local attendee and a room)
whose recurrence is what hostile or broken mail sends: a COUNT of a billion, an endless
SECONDLY or MINUTELY rule, a SECONDLY rule filtered down to one instance a year (which
dateutil alone walks second by second), thousands of RDATEs, a series from the year 1.
For each, and each path, it prints the slowest of ``--runs`` runs and the peak memory
that path allocated (tracemalloc, measured in a separate run so as not to slow the timing):

- validate: reading the message (``read_itip``: the caps are checked here, and mail beyond
  them is held);
- free/busy: the busy time over one year, had the object been stored anyway;
- room: the room's answer over the longest horizon (20 years);
- occurrences: the instances over one year, as the feed and the instance matching use;
- changes: the "what changed" text between this version and one with another rule;
- token: the reply token's expiry (the series' last end).

Target: every figure well under one second, memory bounded (a few MB).

    python bench/recurrence_worst.py --runs 5
"""

from __future__ import annotations

import argparse
import gettext
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from icalendar import Calendar

from gateway.core.calendar.booking import BookingRules, booking_horizon, decide_booking
from gateway.core.calendar.freebusy import busy_periods
from gateway.core.calendar.recurrence import occurrences
from gateway.core.imip.changes import describe_changes
from gateway.core.itip.messages import ItipMessage, PartProblem, read_itip
from gateway.core.mail.calendarparts import CalendarPart
from gateway.core.mail.replyaddress import token_expiry

NOW = datetime(2026, 1, 1, tzinfo=UTC)
YEAR = (NOW, NOW + timedelta(days=365))
HORIZON = NOW + timedelta(days=20 * 365)
ROOM = "room-r@foo.example"


def rdates(count: int) -> str:
    first = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return "RDATE:" + ",".join(f"{first + timedelta(hours=n):%Y%m%dT%H%M%SZ}" for n in range(count))


CASES = {
    "COUNT=1000000000 daily": ("RRULE:FREQ=DAILY;COUNT=1000000000", "20260105T090000Z"),
    "COUNT=1000000000 monthly, filtered": ("RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15;COUNT=1000000000", "20260105T090000Z"),
    "SECONDLY, endless": ("RRULE:FREQ=SECONDLY", "20260105T090000Z"),
    "MINUTELY, endless": ("RRULE:FREQ=MINUTELY", "20260105T090000Z"),
    "SECONDLY, one a year": ("RRULE:FREQ=SECONDLY;BYMONTH=12;BYMONTHDAY=31;BYHOUR=23", "20200105T090000Z"),
    "10,000 RDATEs": (rdates(10_000), "20260105T090000Z"),
    "daily, filtered, from the year 1": ("RRULE:FREQ=DAILY;BYMONTHDAY=1,2,3,4,5,6,7,8,9,10", "00010105T090000Z"),
    "three a day, 20 years (taken)": ("RRULE:FREQ=DAILY;BYHOUR=9,13,17", "20260105T090000Z"),
}


def invitation(rule: str, start: str) -> str:
    end = start[:9] + "10" + start[11:]
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bench//EN", "METHOD:REQUEST", "BEGIN:VEVENT", "UID:worst",
        "DTSTAMP:20260101T000000Z", f"DTSTART:{start}", f"DTEND:{end}", "SUMMARY:Worst", "SEQUENCE:0",
        "ORGANIZER:mailto:carol@bar.example", "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:alice@foo.example",
        f"ATTENDEE;CUTYPE=ROOM;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{ROOM}", rule, "END:VEVENT", "END:VCALENDAR",
    ]
    return "\r\n".join(lines) + "\r\n"


def paths(text: str) -> dict[str, Callable[[], object]]:
    calendar = Calendar.from_ical(text)
    other = Calendar.from_ical(text.replace("SEQUENCE:0", "SEQUENCE:1").replace("RRULE:", "RRULE:X-OLD=1;"))
    room, alice = frozenset({ROOM}), frozenset({"alice@foo.example"})
    tr = gettext.NullTranslations()

    def room_answer() -> object:
        horizon = booking_horizon(calendar, room, NOW, HORIZON)
        return decide_booking(calendar, room, [], BookingRules(), NOW, HORIZON) if horizon else None

    return {
        "validate": lambda: read_itip(CalendarPart(text, "text/calendar", "REQUEST", None, "1"), now=NOW),
        "free/busy": lambda: busy_periods([calendar], alice, *YEAR),
        "room": room_answer,
        "occurrences": lambda: occurrences(calendar, *YEAR),
        "changes": lambda: describe_changes(tr, other, calendar, UTC),
        "token": lambda: token_expiry(calendar),
    }


def slowest(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return max(times)


def peak_memory(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def outcome(text: str) -> str:
    reading = read_itip(CalendarPart(text, "text/calendar", "REQUEST", None, "1"), now=NOW)
    if isinstance(reading, PartProblem):
        return f"held: {reading.reason}"
    assert isinstance(reading, ItipMessage)
    return "taken"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    names = list(paths(invitation(*CASES["SECONDLY, endless"])))
    print(f"{'input':36} {'message':28} " + " ".join(f"{n:>18}" for n in names))
    worst_time, worst_memory = 0.0, 0
    for case, (rule, start) in CASES.items():
        text = invitation(rule, start)
        cells = []
        for work in paths(text).values():
            seconds, memory = slowest(args.runs, work), peak_memory(work)
            worst_time, worst_memory = max(worst_time, seconds), max(worst_memory, memory)
            cells.append(f"{seconds * 1000:8.1f} ms {memory / 2**20:5.1f} MB")
        print(f"{case:36} {outcome(text):28} " + " ".join(f"{c:>18}" for c in cells))
    print(f"\nworst time {worst_time * 1000:.1f} ms; worst peak memory {worst_memory / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
