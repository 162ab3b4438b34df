"""Benchmark: realistic scheduling mail through the in-process ingest path on SQLite.

Generates a mix for a few thousand local principals — new invitations (a third of them
weekly series), updates, single-instance overrides, replies to local organizers,
whole and per-instance cancels — and pushes every message through
``processing.ingest_message`` (durable intake row, apply, inbox, ledger, one commit each,
SQLite in WAL mode with synchronous=FULL). Prints messages/s, p50/p99 latency per
message, and resident memory at checkpoints to show it stays flat. Beside it, in the same
run, the rate of the required parts alone (``parts_floor``): the bound for this machine;
and the daemon's way, the same messages queued first and then applied one, or
``processing.TOGETHER``, to a transaction.

    python bench/ingest_throughput.py --messages 50000 --principals 3000
"""

from __future__ import annotations

import argparse
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from array import array
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.core.calendar.ical import parse_calendar, serialize_calendar  # noqa: E402
from gateway.core.mail.calendarparts import parse_mail  # noqa: E402
from gateway.core.model import Kind  # noqa: E402
from gateway.service import events, processing  # noqa: E402
from gateway.store import directory  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from gateway.store.intake import Envelope  # noqa: E402

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
ZONE = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
"""
CHUNK = 1000  # messages generated ahead of each timed run
FLOOR = 3000  # messages for the measurement of the parts alone
RECENT = 5000  # invitations the generator remembers
DESCRIPTION = "Agenda: review of the quarter, hiring plan, budget, open questions. " * 12


def rss_mib() -> float:
    """Current resident set size (Linux), in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def vevent(uid: str, organizer: str, attendees: list[str], seq: int, start: datetime, *,
           rrule: bool = False, recurrence_id: datetime | None = None, status: str = "CONFIRMED",
           stamp: datetime) -> str:
    lines = [
        "BEGIN:VEVENT", f"UID:{uid}", f"DTSTAMP:{stamp:%Y%m%dT%H%M%SZ}", f"SEQUENCE:{seq}",
        f"DTSTART;TZID=Europe/Berlin:{start:%Y%m%dT%H%M%S}",
        f"DTEND;TZID=Europe/Berlin:{start + timedelta(hours=1):%Y%m%dT%H%M%S}",
        f"SUMMARY:Meeting {uid[:8]}", f"DESCRIPTION:{DESCRIPTION}", "LOCATION:Room 4.12",
        f"STATUS:{status}", f"ORGANIZER;CN=Organizer:mailto:{organizer}",
    ]
    if rrule:
        lines.append("RRULE:FREQ=WEEKLY;COUNT=20")
    if recurrence_id is not None:
        lines.append(f"RECURRENCE-ID;TZID=Europe/Berlin:{recurrence_id:%Y%m%dT%H%M%S}")
    lines += [f"ATTENDEE;CN=Person;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{a}" for a in attendees]
    return "\n".join([*lines, "END:VEVENT"])


def calendar(method: str, body: str) -> str:
    return f"BEGIN:VCALENDAR\nPRODID:-//Bench//EN\nVERSION:2.0\nMETHOD:{method}\n{ZONE}{body}\nEND:VCALENDAR\n"


def mail(sender: str, recipients: list[str], method: str, ical: str, n: int) -> bytes:
    message = EmailMessage()
    message["From"], message["To"] = sender, ", ".join(recipients)
    message["Subject"], message["Message-ID"] = f"Invitation {n}", f"<bench-{n}@bar.example>"
    message.set_content("You are invited. " * 20)
    message.add_alternative(ical.replace("\n", "\r\n").encode(), maintype="text", subtype="calendar",
                            params={"method": method, "charset": "UTF-8"})
    return bytes(message)


class Mix:
    """Generates the message stream, remembering what exists so updates and replies make sense."""

    def __init__(self, principals: list[str], local_events: list[tuple[str, str, str]], seed: int) -> None:
        self.random = random.Random(seed)
        self.principals = principals
        self.local_events = local_events  # (uid, local organizer, outside attendee)
        self.invites: list[tuple[str, str, list[str], datetime, bool, int]] = []
        self.n = 0

    def next(self) -> tuple[bytes, list[str], str]:
        self.n += 1
        stamp = NOW + timedelta(seconds=self.n)
        roll = self.random.random()
        if roll < 0.40 or not self.invites:
            return self._new_invitation(stamp)
        if roll < 0.55:
            return self._update(stamp)
        if roll < 0.65:
            return self._override(stamp)
        if roll < 0.90:
            return self._reply(stamp)
        return self._cancel(stamp)

    def _new_invitation(self, stamp: datetime) -> tuple[bytes, list[str], str]:
        uid = f"{self.random.getrandbits(64):016x}-{self.n}@bar.example"
        organizer = f"ext{self.random.randrange(500)}@bar.example"
        attendees = self.random.sample(self.principals, self.random.randint(1, 3))
        start = datetime(2026, 7, 1, 9) + timedelta(hours=self.random.randrange(2000))
        recurring = self.random.random() < 0.33
        self.invites.append((uid, organizer, attendees, start, recurring, 0))
        if len(self.invites) > RECENT:
            del self.invites[0]  # updates, overrides and cancels go to recent invitations; the generator stays small
        body = vevent(uid, organizer, attendees, 0, start, rrule=recurring, stamp=stamp)
        return mail(organizer, attendees, "REQUEST", calendar("REQUEST", body), self.n), attendees, "REQUEST"

    def _update(self, stamp: datetime) -> tuple[bytes, list[str], str]:
        index = self.random.randrange(len(self.invites))
        uid, organizer, attendees, start, recurring, seq = self.invites[index]
        self.invites[index] = (uid, organizer, attendees, start + timedelta(hours=1), recurring, seq + 1)
        body = vevent(uid, organizer, attendees, seq + 1, start + timedelta(hours=1), rrule=recurring, stamp=stamp)
        return mail(organizer, attendees, "REQUEST", calendar("REQUEST", body), self.n), attendees, "REQUEST update"

    def _override(self, stamp: datetime) -> tuple[bytes, list[str], str]:
        series = [i for i in self.invites if i[4]] or self.invites
        uid, organizer, attendees, start, _recurring, seq = self.random.choice(series)
        instance = start + timedelta(weeks=self.random.randrange(1, 10))
        body = vevent(uid, organizer, attendees, seq + 1, instance + timedelta(hours=2), recurrence_id=instance, stamp=stamp)
        return mail(organizer, attendees, "REQUEST", calendar("REQUEST", body), self.n), attendees, "REQUEST instance"

    def _reply(self, stamp: datetime) -> tuple[bytes, list[str], str]:
        uid, organizer, attendee = self.random.choice(self.local_events)
        partstat = self.random.choice(["ACCEPTED", "DECLINED", "TENTATIVE"])
        body = (f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:{stamp:%Y%m%dT%H%M%SZ}\nSEQUENCE:0\nSUMMARY:Accepted\n"
                f"ORGANIZER:mailto:{organizer}\nATTENDEE;PARTSTAT={partstat}:mailto:{attendee}\nEND:VEVENT")
        return mail(attendee, [organizer], "REPLY", calendar("REPLY", body), self.n), [organizer], "REPLY"

    def _cancel(self, stamp: datetime) -> tuple[bytes, list[str], str]:
        uid, organizer, attendees, start, recurring, seq = self.random.choice(self.invites)
        instance = start + timedelta(weeks=2) if recurring and self.random.random() < 0.5 else None
        body = vevent(uid, organizer, attendees, seq + 1, instance or start, recurrence_id=instance,
                      status="CANCELLED", stamp=stamp)
        kind = "CANCEL instance" if instance else "CANCEL"
        return mail(organizer, attendees, "CANCEL", calendar("CANCEL", body), self.n), attendees, kind


def seed(db: Database, count: int, local_events: int) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Local principals, and events organized by some of them with one outside attendee each."""
    principals = [f"user{i}@foo.example" for i in range(count)]
    with db.transaction() as session:
        refs = [directory.add_principal(session, a, NOW, name=f"User {i}", kind=Kind.INDIVIDUAL)
                for i, a in enumerate(principals)]
    made = []
    with db.transaction() as session:
        for i in range(local_events):
            organizer = refs[i % len(refs)]
            uid, attendee = f"local-{i}@foo.example", f"ext{i % 500}@bar.example"
            body = vevent(uid, organizer.address, [attendee], 0, datetime(2026, 8, 1, 9) + timedelta(hours=i), stamp=NOW)
            events.put_event(session, organizer, calendar("PUBLISH", body).replace("METHOD:PUBLISH\n", ""), NOW)
            made.append((uid, organizer.address, attendee))
    return principals, made


def parts_floor(directory: Path, messages: list[tuple[bytes, list[str], str]]) -> float:
    """Messages/s of the required parts alone, with nothing of Reefknot between them.

    For each message: the email parser reads it, icalendar parses each calendar part and
    serializes it once per local recipient, and SQLite (WAL, synchronous=FULL) commits the
    raw message durably. No iTIP, no directory, no per-recipient rows: a bound that the
    whole ingest path cannot pass.
    """
    connection = sqlite3.connect(directory / "floor.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE intake (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
    started = time.perf_counter()
    for raw, recipients, _kind in messages:
        mail = parse_mail(raw)
        for part in mail.calendar_parts:
            calendar = parse_calendar(part.text)
            for _recipient in recipients:
                serialize_calendar(calendar)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO intake (raw) VALUES (?)", (raw,))
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return len(messages) / elapsed


def queue_path(directory: Path, principals: int, messages: list[tuple[bytes, list[str], str]], together: int) -> float:
    """Messages/s as the daemon applies its queue: taken in first, then claimed and applied ``together`` a commit.

    The same messages on a fresh database seeded as the main run's; only the applying is
    timed (taking in is the listener's work, measured by ``bench/smtp_intake.py``).
    """
    db = Database(f"sqlite:///{directory}/queue-{together}.db")
    db.upgrade()
    seed(db, principals, 2000)
    processing.take_in(db, [(raw, Envelope("bench@bar.example", tuple(to), "smtp")) for raw, to, _ in messages], NOW)
    started = time.perf_counter()
    while processing.process_queued(db, NOW, 16, together=together):
        pass
    elapsed = time.perf_counter() - started
    db.dispose()
    return len(messages) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--principals", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory_name:
        db = Database(f"sqlite:///{directory_name}/bench.db")
        db.upgrade()
        principals, local_events = seed(db, args.principals, 2000)
        mix = Mix(principals, local_events, args.seed)
        latencies = array("d")  # compact, so that the benchmark's own memory stays flat too
        kinds: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        checkpoints = max(args.messages // 10, 1)
        sizes = 0
        print(f"{args.principals} principals, {len(local_events)} local events seeded; RSS {rss_mib():.0f} MiB")
        busy = 0.0  # time spent inside the ingest path; generating the mail is the load, not the work
        done = 0
        while done < args.messages:
            batch = [mix.next() for _ in range(min(CHUNK, args.messages - done))]
            for raw, recipients, kind in batch:
                sizes += len(raw)
                kinds[kind] += 1
                t0 = time.perf_counter()
                receipt = processing.ingest_message(db, raw, Envelope("bench@bar.example", tuple(recipients), "ingest"), NOW)
                latencies.append(time.perf_counter() - t0)
                busy += latencies[-1]
                outcomes[receipt.state.value] += 1
                done += 1
                if done % checkpoints == 0:
                    print(f"  {done:>6} messages  {done / busy:7.0f} msg/s  RSS {rss_mib():6.1f} MiB")
        latencies = array("d", sorted(latencies))
        print(f"mix: {dict(kinds)}; average size {sizes / args.messages / 1024:.1f} KiB")
        print(f"intake states: {dict(outcomes)}")
        print(f"throughput: {args.messages / busy:.0f} messages/s over {args.messages} messages (time inside ingest only)")
        print(f"latency per message: p50 {statistics.median(latencies) * 1000:.2f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.2f} ms")
        first = Mix(principals, local_events, args.seed)
        head = [first.next() for _ in range(FLOOR)]
        floor = parts_floor(Path(directory_name), head)
        print(f"the required parts alone (email parse, icalendar parse and serialize, one durable SQLite commit): "
              f"{floor:.0f} messages/s over the first {FLOOR} messages of the same mix; "
              f"ingest path / parts = {args.messages / busy / floor:.2f}")
        for together in (1, processing.TOGETHER):
            rate = queue_path(Path(directory_name), args.principals, head, together)
            print(f"the same {FLOOR} messages queued, then applied {together} a transaction: {rate:.0f} messages/s "
                  f"({rate / floor:.2f} of the parts)")
        db.dispose()


if __name__ == "__main__":
    main()
