"""Benchmark: scale-out on PostgreSQL, one ``reefknot serve`` processor against two, then one sender against two.

A throwaway PostgreSQL cluster on loopback (``tests.peers.servers.postgres_cluster``:
fsync and synchronous_commit off) gets one database, ``base``: local principals (the
individuals of ``bench/ingest_throughput.py``'s ``seed``, with 1,000 meetings they
organize, each inviting one outside attendee, and 50 rooms), and an intake queue
pre-filled through ``processing.take_in`` with the ingest mix of
``bench/ingest_throughput.py`` (new invitations from outside organizers, updates,
single-instance overrides, cancels, and replies to the local organizers), its meetings
moved to the weeks ahead and half its new invitations booking a local room. A room
answers its invitations itself (accepted when free, declined on a clash) and its
REPLY to the outside organizer is the outbound mail processing queues; the seeded
meetings' invitations wait in the outbox beside them.

Every phase runs on its own copy of a database (``CREATE DATABASE … TEMPLATE``), so the
same work is done each time, and the load generator takes no CPU while it is measured:

1. processing: 1, then 2 ``reefknot serve`` processes (no listeners: ``[smtp]`` and
   ``[lmtp]`` with ``listen = []``, no HTTP face, no ``[outbound]``,
   ``[processing] workers = 1``) drain the same pre-filled queue. The clock runs from
   the moment every process has told READY (it is then processing) until no message is
   left queued; the rate is the messages applied meanwhile over that time, and the
   target is two processes at 1.7 times the rate of one. Then the database is read:
   no message left queued, one inbox line per message and recipient (none twice), no
   message found already processed, no outbound message queued twice for the mail it
   answers;
2. sending: 1, then 2 ``reefknot serve`` processes (``[processing] workers = 0``, an
   ``[outbound]`` smarthost on loopback without TLS or AUTH, DKIM signing on with one
   ed25519 key) drain the outbox that processing with one process left, into an
   aiosmtpd sink in its own process that answers 250 and records each Message-ID. Every
   outbox row must end sent and reach the sink exactly once.

Beside each rate: the CPU time per message of the ``reefknot serve`` processes and of
PostgreSQL, the share of the machine's CPU time left idle (near 0%: other work or the
phase itself used every CPU, and two processes cannot go faster than the CPUs allow),
the deadlocks PostgreSQL detected between the processes (from their logs), and how many
messages were applied only at a later attempt. Each check prints PASS or FAIL; the exit
status is 1 when any fails.

    python bench/scale_out.py --messages 20000 --principals 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_throughput  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402
from ingest_throughput import NOW, calendar, mail, seed, vevent  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from gateway.core.mail.envelope import Envelope  # noqa: E402
from gateway.core.model import Kind  # noqa: E402
from gateway.service import processing  # noqa: E402
from gateway.store import directory  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from tests.peers.serve import ServeProcess  # noqa: E402
from tests.peers.servers import LOOPBACK, free_port, postgres_cluster, wait_for_port  # noqa: E402

ROOMS = 50
ROOM_SHARE = 0.5  # of the new invitations
LOCAL_EVENTS = 1000
CHUNK = 1000  # messages per take_in commit while filling the queue
TIMEOUT = 1800.0  # seconds a phase may take
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


class BookingMix(ingest_throughput.Mix):
    """The ingest mix, its meetings in the weeks from ``first``, and a local room booked by some new invitations."""

    def __init__(self, principals: list[str], rooms: list[str], local_events: list[tuple[str, str, str]], seed: int,
                 first: datetime) -> None:
        super().__init__(principals, local_events, seed)
        self.rooms, self.first = rooms, first

    def _new_invitation(self, stamp: datetime) -> tuple[bytes, list[str], str]:
        uid = f"{self.random.getrandbits(64):016x}-{self.n}@bar.example"
        organizer = f"ext{self.random.randrange(500)}@bar.example"
        attendees = self.random.sample(self.principals, self.random.randint(1, 3))
        if self.random.random() < ROOM_SHARE:
            attendees.append(self.random.choice(self.rooms))
        start = self.first + timedelta(hours=self.random.randrange(2000))
        recurring = self.random.random() < 0.33
        self.invites.append((uid, organizer, attendees, start, recurring, 0))
        if len(self.invites) > ingest_throughput.RECENT:
            del self.invites[0]
        body = vevent(uid, organizer, attendees, 0, start, rrule=recurring, stamp=stamp)
        return mail(organizer, attendees, "REQUEST", calendar("REQUEST", body), self.n), attendees, "REQUEST"


class Cluster:
    """The PostgreSQL cluster: one URL per database, and copies made from a template."""

    def __init__(self, url: str) -> None:
        self.server = url.rsplit("/", 1)[0]
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")

    def url(self, name: str) -> str:
        return f"{self.server}/{name}"

    def create(self, name: str, template: str = "") -> str:
        with self.admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")))
        return self.url(name)


def fill(url: str, principals: int, messages: int) -> Counter[str]:
    """The principals, rooms and seeded meetings, and the intake queue pre-filled; the mix's kinds of message."""
    db = Database(url)
    db.upgrade()
    people, local_events = seed(db, principals, LOCAL_EVENTS)
    rooms = [f"room{i}@foo.example" for i in range(ROOMS)]
    with db.transaction() as session:
        for i, address in enumerate(rooms):
            directory.add_principal(session, address, NOW, name=f"Room {i}", kind=Kind.ROOM)
    today = datetime.now(timezone.utc).replace(tzinfo=None, hour=9, minute=0, second=0, microsecond=0)
    mix = BookingMix(people, rooms, local_events, 1, today + timedelta(days=7))
    kinds: Counter[str] = Counter()
    done = 0
    while done < messages:
        batch = [mix.next() for _ in range(min(CHUNK, messages - done))]
        kinds.update(kind for _, _, kind in batch)
        processing.take_in(db, [(raw, Envelope(mail_from(raw), tuple(recipients), "smtp"))
                                for raw, recipients, _ in batch], datetime.now(timezone.utc))
        done += len(batch)
    db.dispose()
    return kinds


def mail_from(raw: bytes) -> str:
    return re.search(rb"^From: (\S+)", raw, re.MULTILINE).group(1).decode()


def count(url: str, query: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(query)).scalar_one()
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Drain:
    """One drain, from the moment every process told READY until nothing was left waiting."""

    seconds: float
    rows: int  # waiting at that moment
    serve_cpu: float  # CPU seconds of the reefknot serve processes meanwhile
    postgres_cpu: float  # CPU seconds of the PostgreSQL server meanwhile
    idle: float  # the share of the machine's CPU time nobody used meanwhile (other work counts as used)
    deadlocks: int  # "deadlock detected" errors in the reefknot serve logs

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        per_row = 1000 / max(self.rows, 1)
        return (f"{self.rows} in {self.seconds:.1f} s, {self.rate:.0f}/s; CPU per message "
                f"{self.serve_cpu * per_row:.1f} ms in reefknot serve, {self.postgres_cpu * per_row:.1f} ms in "
                f"PostgreSQL; the machine's {os.cpu_count()} CPUs idle {self.idle:.0%} of the time; "
                f"{self.deadlocks} deadlocks detected by PostgreSQL")


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their children that have exited (Linux /proc)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += sum(int(v) for v in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids(port: int) -> list[int]:
    """The postmaster listening on ``port``, and its children."""
    parents, postmaster = {}, 0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            if arguments[0].endswith(b"postgres") and arguments[arguments.index(b"-p") + 1] == str(port).encode():
                postmaster = int(entry.name)
    return [postmaster] + [pid for pid, parent in parents.items() if parent == postmaster]


def machine_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the whole machine so far."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks), ticks[3] + ticks[4]


def drain(url: str, directory: Path, processes: int, settings: str, waiting: str) -> Drain:
    """Start ``processes`` ``reefknot serve`` on ``url`` and wait until the query ``waiting`` counts nothing."""
    directory.mkdir()
    config = directory / "reefknot.toml"
    config.write_text(f'[database]\nurl = "{url}"\n\n[smtp]\nlisten = []\n\n[lmtp]\nlisten = []\n\n{settings}')
    daemons = [ServeProcess(config, directory / f"serve-{n}.log") for n in range(processes)]
    starting = [threading.Thread(target=daemon.start, args=(120.0,)) for daemon in daemons]
    engine = create_engine(url)
    try:
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        serve = [daemon.process.pid for daemon in daemons if daemon.process is not None]
        postgres = postgres_pids(engine.url.port)
        with engine.connect() as connection:
            before = time.monotonic(), cpu_seconds(serve), cpu_seconds(postgres), machine_ticks()
            left = connection.execute(text(waiting)).scalar_one()
            while True:
                remaining = connection.execute(text(waiting)).scalar_one()
                connection.rollback()  # a fresh snapshot at each look
                if remaining == 0:
                    break
                for daemon in daemons:
                    if daemon.process is None or daemon.process.poll() is not None:
                        raise RuntimeError(f"reefknot serve is not running\n{daemon.log()[-3000:]}")
                if time.monotonic() - before[0] > TIMEOUT:
                    raise TimeoutError(f"{remaining} rows still waiting after {TIMEOUT:.0f} s")
                time.sleep(0.1)
            after = time.monotonic(), cpu_seconds(serve), cpu_seconds(postgres), machine_ticks()
    finally:
        engine.dispose()
        for daemon in daemons:
            if daemon.process is not None:
                daemon.stop()
            daemon.close()
    ticks, idle = after[3][0] - before[3][0], after[3][1] - before[3][1]
    deadlocks = sum(daemon.log().count("deadlock detected") for daemon in daemons)
    return Drain(after[0] - before[0], left, after[1] - before[1], after[2] - before[2], idle / ticks if ticks else 0.0,
                 deadlocks)


def rows(url: str, query: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query))]
    finally:
        engine.dispose()


def check_processing(url: str, messages: int) -> list[tuple[bool, str]]:
    """What the database says about one drain of the queue: each message applied once."""
    states = dict(rows(url, "SELECT state, count(*) FROM intake GROUP BY state"))
    recipients = dict(rows(url, "SELECT id, recipients FROM intake"))
    lines = Counter(dict(rows(url, "SELECT intake_id, count(*) FROM inbox WHERE intake_id IS NOT NULL "
                                   "GROUP BY intake_id")))
    twice = count(url, "SELECT count(*) FROM (SELECT 1 FROM inbox WHERE intake_id IS NOT NULL "
                       "GROUP BY intake_id, principal_id HAVING count(*) > 1) AS t")
    uneven = sum(1 for intake_id, names in recipients.items() if lines[intake_id] != len(set(names)))
    again = count(url, "SELECT count(*) FROM inbox WHERE reason = 'already-processed'")
    retried = count(url, "SELECT count(*) FROM intake WHERE attempts > 0")
    outbound = count(url, "SELECT count(*) FROM outbox WHERE in_reply_to <> ''")
    doubled = count(url, "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE in_reply_to <> '' "
                         "GROUP BY in_reply_to, recipient HAVING count(*) > 1) AS t")
    strays = count(url, "SELECT count(*) FROM outbox o WHERE in_reply_to <> '' AND NOT EXISTS "
                        "(SELECT 1 FROM intake i WHERE i.message_id = o.in_reply_to AND i.state = 'done')")
    return [
        (sum(states.values()) == messages and states.get("queued", 0) == 0,
         f"every message left the queue once: {dict(sorted(states.items()))}"),
        (twice == 0 and uneven == 0,
         f"one inbox line per message and recipient: {sum(lines.values())} lines, {twice} recorded twice, "
         f"{uneven} messages with a line missing or extra"),
        (again == 0, f"no message found already processed (the ledger caught a second application): {again}; "
                     f"{retried} applied at a later attempt, the failed one undone"),
        (doubled == 0 and strays == 0,
         f"outbound mail queued once per message answered and recipient: {outbound} rows, {doubled} twice, "
         f"{strays} answering no applied message"),
    ]


def check_sending(url: str, message_ids: list[str]) -> list[tuple[bool, str]]:
    """What the outbox and the sink say about one drain of the outbox: each message sent once."""
    states = dict(rows(url, "SELECT state, count(*) FROM outbox GROUP BY state"))
    expected = {m for (m,) in rows(url, "SELECT message_id FROM outbox")}
    arrived = Counter(message_ids)
    twice = sum(n - 1 for n in arrived.values() if n > 1)
    missing, strange = len(expected - arrived.keys()), len(arrived.keys() - expected)
    return [
        (states.get("sent", 0) == sum(states.values()), f"every outbox row sent: {dict(sorted(states.items()))}"),
        (twice == missing == strange == 0 and len(message_ids) == len(expected),
         f"each reached the sink exactly once (by Message-ID): {len(message_ids)} arrived for {len(expected)} rows, "
         f"{twice} twice, {missing} missing, {strange} unknown"),
    ]


async def _sink(port: int, path: str) -> None:
    from aiosmtpd.smtp import SMTP

    record = open(path, "a", buffering=1)

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            found = MESSAGE_ID.search(envelope.original_content.split(b"\r\n\r\n", 1)[0])  # type: ignore[attr-defined]
            record.write((found.group(1).decode() if found else "(none)") + "\n")
            return "250 2.0.0 Ok"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), enable_SMTPUTF8=True, hostname="sink", loop=loop), LOOPBACK, port
    )
    async with server:
        await server.serve_forever()


def send_phase(url: str, directory: Path, senders: int, key: Path) -> tuple[Drain, list[str]]:
    """The outbox at ``url`` drained by ``senders`` processes into a fresh sink; the drain and the Message-IDs seen."""
    port, seen = free_port(), directory.with_suffix(".sink")
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port), "--sink-file", str(seen)])
    try:
        wait_for_port(LOOPBACK, port, process=sink)
        settings = (f'[processing]\nworkers = 0\n\n[outbound]\nsmarthost = "{LOOPBACK}:{port}"\n'
                    f'reply_domain = "foo.example"\n\n[outbound.dkim]\ndomain = "foo.example"\nselector = "bench"\n'
                    f'key_file = "{key}"\n')
        result = drain(url, directory, senders, settings, "SELECT count(*) FROM outbox WHERE state = 'queued'")
    finally:
        sink.terminate()
        sink.wait()
    return result, seen.read_text().split()


def report(checks: list[tuple[bool, str]]) -> bool:
    for ok, line in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {line}")
    return all(ok for ok, _ in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--principals", type=int, default=500)
    parser.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sink-file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        asyncio.run(_sink(args.sink, args.sink_file))
        return 0

    passed = True
    with tempfile.TemporaryDirectory() as directory_name, postgres_cluster() as admin_url:
        work = Path(directory_name)
        cluster = Cluster(admin_url)
        kinds = fill(cluster.create("base"), args.principals, args.messages)
        seeded = count(cluster.url("base"), "SELECT count(*) FROM outbox")
        print(f"{args.principals} principals, {ROOMS} rooms, {LOCAL_EVENTS} local meetings; "
              f"{args.messages} messages queued: {dict(kinds)}")

        print("processing (no listeners, [processing] workers = 1 in each process):")
        rates = {}
        for processes in (1, 2):
            url = cluster.create(f"processing{processes}", "base")
            result = drain(url, work / f"processing{processes}", processes, "[processing]\nworkers = 1\n",
                           "SELECT count(*) FROM intake WHERE state = 'queued'")
            rates[processes] = result.rate
            print(f" {processes} process{'es' if processes > 1 else ''}: messages applied {result.describe()}")
            passed &= report(check_processing(url, args.messages))
        ratio = rates[2] / rates[1]
        passed &= report([(ratio >= 1.7, f"two processors at {ratio:.2f}x the rate of one (target at least 1.7x)")])

        outbox = count(cluster.url("processing1"), "SELECT count(*) FROM outbox")
        print(f"sending (no processing, [outbound] to an aiosmtpd sink on loopback, DKIM ed25519): {outbox} outbox "
              f"rows, {seeded} invitations of the local meetings and {outbox - seeded} queued by processing")
        key = work / "dkim.key"
        key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        sent = {}
        for senders in (1, 2):
            url = cluster.create(f"sending{senders}", "processing1")
            result, seen = send_phase(url, work / f"sending{senders}", senders, key)
            sent[senders] = result.rate
            print(f" {senders} sender{'s' if senders > 1 else ''}: messages sent {result.describe()}")
            passed &= report(check_sending(url, seen))
        print(f"two senders at {sent[2] / sent[1]:.2f}x the rate of one")
    print("all checks passed" if passed else "some checks FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
