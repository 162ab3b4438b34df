"""Benchmark: one principal's free/busy over a year, and a room's decision on a weekly series.

Builds one calendar of ``--events`` stored objects (by default 10,000: 1,000 weekly
series in Europe/Berlin, America/New_York and UTC, each with EXDATEs, a moved, a
cancelled and a lengthened instance, and single events spread over three years, with
the principal as organizer or as an attendee with every PARTSTAT), parsed once, as the
store keeps them. Then times two things, each two ways:

- ``busy_periods`` over a one-year window (target: p50 under 100 ms);
- a room decision: ``booking_horizon``, the room's busy time over that horizon, then
  ``decide_booking`` for a weekly request (target: p50 under 50 ms);

"from parsed" starts from the parsed calendars and counts everything after parsing;
"from kept times" starts from what ``read_times`` returns, which the store keeps next
to each object (the time to read them all is printed too); "from the store" is what
Reefknot does per request: the objects read from an SQLite database, their kept times
looked up, then the same computation (the first, cold request is printed apart).

    python bench/freebusy.py --events 10000 --runs 20
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from icalendar import Calendar

from gateway.core.calendar.booking import Booking, BookingRules, booking_horizon, decide_booking
from gateway.core.calendar.freebusy import BusyPeriod, busy_periods
from gateway.core.calendar.ical import parse_calendar
from gateway.core.calendar.recurrence import ObjectTimes, read_times
from gateway.core.itip.types import Stored
from gateway.core.model import Kind
from gateway.service import freebusy
from gateway.store import calendars as stored_calendars
from gateway.store import directory
from gateway.store.db import Database

OWNER = "room-4.12@foo.example"
NOW = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
FIRST_DAY = datetime(2024, 1, 1)
ZONES = ("Europe/Berlin", "America/New_York", "UTC")
ANSWERS = ("ACCEPTED", "ACCEPTED", "ACCEPTED", "TENTATIVE", "NEEDS-ACTION", "DECLINED")
BUSY_TARGET_MS, DECISION_TARGET_MS = 100.0, 50.0


def local(value: datetime, zone: str) -> str:
    return f"TZID={zone}:{value:%Y%m%dT%H%M%S}" if zone != "UTC" else f"VALUE=DATE-TIME:{value:%Y%m%dT%H%M%SZ}"


def people(rng: random.Random) -> list[str]:
    """ORGANIZER and ATTENDEE lines: the principal organizes, or attends with some answer."""
    if rng.random() < 0.3:
        return [f"ORGANIZER:mailto:{OWNER}", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@bar.example"]
    return [
        "ORGANIZER;CN=Bob:mailto:bob@bar.example",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@bar.example",
        f"ATTENDEE;PARTSTAT={rng.choice(ANSWERS)};RSVP=TRUE:mailto:{OWNER.upper()}",
        "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:carol@bar.example",
    ]


def vevent(uid: str, start: datetime, minutes: int, zone: str, extra: list[str]) -> list[str]:
    return [
        "BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20241201T000000Z", "SEQUENCE:1",
        f"DTSTART;{local(start, zone)}", f"DTEND;{local(start + timedelta(minutes=minutes), zone)}",
        f"SUMMARY:Meeting {uid}", *extra, "END:VEVENT",
    ]


def single(rng: random.Random, n: int) -> str:
    start = FIRST_DAY + timedelta(days=rng.randrange(3 * 365), hours=rng.randrange(7, 19))
    extra = people(rng)
    if rng.random() < 0.05:
        extra.append("TRANSP:TRANSPARENT")
    if rng.random() < 0.03:
        extra.append("STATUS:CANCELLED")
    return wrap(vevent(f"single-{n}@bar.example", start, rng.choice((30, 60, 90, 120)), rng.choice(ZONES), extra))


def series(rng: random.Random, n: int) -> str:
    """A weekly series: an end by COUNT, by UNTIL or none, EXDATEs, a moved, a cancelled and a longer instance."""
    zone = rng.choice(ZONES)
    start = FIRST_DAY + timedelta(days=rng.randrange(2 * 365), hours=rng.randrange(7, 19))
    uid = f"series-{n}@bar.example"
    until = f";UNTIL={start + timedelta(weeks=80):%Y%m%dT%H%M%SZ}"
    rule = "RRULE:FREQ=WEEKLY" + rng.choice(("", ";COUNT=60", until, ";BYDAY=MO,WE", ";INTERVAL=2"))
    instance = [start + timedelta(weeks=w) for w in (4, 6, 8, 14, 22)]
    who = people(rng)
    master = vevent(uid, start, 60, zone, [rule, *(f"EXDATE;{local(d, zone)}" for d in instance[:2]), *who])
    moved = vevent(uid, instance[2] + timedelta(hours=3), 60, zone, [f"RECURRENCE-ID;{local(instance[2], zone)}", *who])
    cancelled = vevent(uid, instance[3], 60, zone,
                       [f"RECURRENCE-ID;{local(instance[3], zone)}", "STATUS:CANCELLED", *who])
    longer = vevent(uid, instance[4] - timedelta(days=1), 90, zone, [f"RECURRENCE-ID;{local(instance[4], zone)}", *who])
    return wrap(master + moved + cancelled + longer)


def wrap(lines: list[str]) -> str:
    return "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Bench//EN", *lines, "END:VCALENDAR", ""])


def build(events: int, series_count: int, seed: int) -> list[Calendar]:
    rng = random.Random(seed)
    texts = [series(rng, n) for n in range(series_count)]
    texts += [single(rng, n) for n in range(events - series_count)]
    return [parse_calendar(text) for text in texts]


def request() -> Calendar:
    """A weekly booking of the room for half a year, Tuesdays 07:00 in Berlin."""
    lines = vevent("booking@bar.example", datetime(2025, 1, 7, 7), 60, "Europe/Berlin", [
        "RRULE:FREQ=WEEKLY;COUNT=26", "ORGANIZER:mailto:bob@bar.example",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@bar.example",
        f"ATTENDEE;CUTYPE=ROOM;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{OWNER}",
    ])
    return parse_calendar(wrap(["METHOD:REQUEST", *lines]))


def measure(runs: int, action: Callable[[], object]) -> list[float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return sorted(timings)


def report(name: str, timings: list[float], target: float | None = None) -> None:
    p50, p90 = statistics.median(timings), timings[min(len(timings) - 1, int(len(timings) * 0.9))]
    verdict = "" if target is None else f" (target p50 < {target:.0f} ms: {'met' if p50 < target else 'MISSED'})"
    print(f"  {name:<44} p50 {p50:7.1f} ms  p90 {p90:7.1f} ms{verdict}")


def decide(objects: Sequence[Calendar | ObjectTimes], booking_request: Calendar) -> Booking:
    owner, horizon_end = frozenset({OWNER}), NOW + timedelta(days=365)
    rules = BookingRules(max_duration=timedelta(hours=4), booking_window=timedelta(days=365))
    horizon = booking_horizon(booking_request, owner, NOW, horizon_end)
    busy: list[BusyPeriod] = busy_periods(objects, owner, *horizon) if horizon is not None else []
    return decide_booking(booking_request, owner, busy, rules, NOW, horizon_end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    calendars = build(args.events, args.series, args.seed)
    print(f"{len(calendars)} objects ({args.series} weekly series) parsed in {time.perf_counter() - started:.1f} s")
    owner, year = frozenset({OWNER}), (NOW, NOW + timedelta(days=365))
    kept = [read_times(c) for c in calendars]
    booking_request = request()
    periods = busy_periods(calendars, owner, *year)
    booking = decide(calendars, booking_request)
    declined = sum(1 for d in booking.decisions if d.partstat != "ACCEPTED")
    print(f"{len(periods)} busy periods in the year; the room declines {declined} of "
          f"{len(booking.decisions)} instances (master {booking.partstat})")

    print("from parsed calendars:")
    report("busy_periods, one-year window", measure(args.runs, lambda: busy_periods(calendars, owner, *year)),
           BUSY_TARGET_MS)
    report("room decision (horizon, busy time, decide)", measure(args.runs, lambda: decide(calendars, booking_request)),
           DECISION_TARGET_MS)
    print("from kept times:")
    report("read_times of every object (kept by a store)", measure(max(args.runs // 4, 1),
                                                                   lambda: [read_times(c) for c in calendars]))
    report("busy_periods, one-year window", measure(args.runs, lambda: busy_periods(kept, owner, *year)),
           BUSY_TARGET_MS)
    report("room decision (horizon, busy time, decide)", measure(args.runs, lambda: decide(kept, booking_request)),
           DECISION_TARGET_MS)

    print("from the store (SQLite):")
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{scratch}/bench.db")
        db.upgrade()
        with db.transaction() as session:
            room = directory.add_principal(session, OWNER, NOW, kind=Kind.ROOM)
            for calendar in calendars:
                uid = str(calendar.walk("VEVENT")[0]["UID"])
                stored_calendars.save_object(session, room.id, uid, Stored(calendar), NOW)

        def busy_from_store() -> object:
            with db.reading() as session:
                return freebusy.busy_of(session, room, *year)

        def decision_from_store() -> object:
            owner_set, horizon_end = frozenset({OWNER}), NOW + timedelta(days=365)
            rules = BookingRules(max_duration=timedelta(hours=4), booking_window=timedelta(days=365))
            with db.reading() as session:
                horizon = booking_horizon(booking_request, owner_set, NOW, horizon_end)
                busy = freebusy.busy_of(session, room, *horizon, except_uid="booking@bar.example") if horizon else []
                return decide_booking(booking_request, owner_set, busy, rules, NOW, horizon_end)

        report("first request (times read and kept)", measure(1, busy_from_store))
        report("busy time, one-year window", measure(args.runs, busy_from_store), BUSY_TARGET_MS)
        report("room decision (horizon, busy time, decide)", measure(args.runs, decision_from_store),
               DECISION_TARGET_MS)
        db.dispose()


if __name__ == "__main__":
    main()
