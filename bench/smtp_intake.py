"""Benchmark: ``reefknot serve`` on SQLite, intake and applied throughput, each beside its yardstick in the same run.

    python bench/smtp_intake.py --messages 4000 --principals 3000 --connections 16 --rate 200 --seconds 15

Every message is one of ``ingest_throughput``'s realistic mix (``Mix`` and ``seed``
imported from it: invitations, updates, overrides, replies to local organizers,
cancels, for the same principals and local events), and every figure stands beside
the one it is judged against:

1. Intake over ``--connections`` concurrent SMTP connections (16, as an MTA opens):
   a bare aiosmtpd server that answers 250 to everything, then ``reefknot serve`` that
   only takes mail in (``[processing] workers = 0``; 250 once the intake row is
   committed, SQLite WAL, synchronous=FULL), and the ratio (target at least 0.5).
2. One connection: the time from sending the end of data (the final ``.``) to reading
   the 250, median and p99, for the sink and for the intake-only Reefknot, beside one
   raw SQLite commit (WAL, synchronous=FULL: INSERT of the message's bytes and COMMIT)
   in the same directory.
3. Applied: the messages through ``processing.ingest_message`` in this process on a
   fresh database (what ``ingest_throughput`` measures), then the same messages over
   SMTP to ``reefknot serve`` as deployed (listeners and processor in one process) on a
   fresh copy of the same seeded database, from the first message sent until the
   queue is empty; the ratio (target at least 0.9), the queue depth over time and the
   daemon's CPU time per message. Then a steady offered load (``--rate``, 200
   messages/s, each message sent at its due time) and the time from each 250 to the
   message being applied (target p99 under 1 s); since a connection waits for each
   250 before its next message, the rate actually taken is printed beside it.

The client runs on the same CPUs as the servers, so its cost is kept small and
counted: every message is built before any clock starts (CRLF line ends,
dot-stuffed), a transaction is MAIL, RCPT, DATA, one write of the body and the final
dot, and the same client (``CLIENT_PROCESSES`` processes, the connections spread over
their threads) is pointed at the sink and at Reefknot. Beside each rate, the CPU time
per message of the server (from /proc) and of the client.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_throughput import NOW, Mix, seed  # noqa: E402

from gateway.service import processing  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from gateway.store.intake import Envelope  # noqa: E402
from tests.peers.serve import ServeProcess, write_config  # noqa: E402
from tests.peers.servers import LOOPBACK, free_port, wait_for_port  # noqa: E402

SENDER = "bench@bar.example"
LOCAL_EVENTS = 2000  # as ingest_throughput seeds them
CLIENT_PROCESSES = 4  # the load generator's processes; the connections are spread over their threads


@dataclass(frozen=True)
class Message:
    recipients: tuple[str, ...]
    raw: bytes  # as it arrives: CRLF line ends
    data: bytes  # what follows DATA: dot-stuffed, without the final ".\r\n"
    message_id: str


def messages(mix: Mix, count: int) -> list[Message]:
    made = []
    for _ in range(count):
        raw, recipients, _kind = mix.next()
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        data = (b"." if raw.startswith(b".") else b"") + raw.replace(b"\r\n.", b"\r\n..")
        made.append(Message(tuple(recipients), raw, data if data.endswith(b"\r\n") else data + b"\r\n",
                            f"<bench-{mix.n}@bar.example>"))
    return made


# -- the client ----------------------------------------------------------------------------------------------------


def transaction(client: smtplib.SMTP, message: Message) -> float:
    """One SMTP transaction; the seconds from sending the end of data to reading the reply."""
    _expect(client.mail(SENDER), 250)
    for recipient in message.recipients:
        _expect(client.rcpt(recipient), 250)
    client.putcmd("data")
    _expect(client.getreply(), 354)
    client.send(message.data)
    began = time.perf_counter()
    client.send(b".\r\n")
    reply = client.getreply()
    took = time.perf_counter() - began
    _expect(reply, 250)
    return took


def _expect(reply: tuple[int, bytes], code: int) -> None:
    if reply[0] != code:
        raise RuntimeError(f"expected {code}, got {reply[0]} {reply[1]!r}")


def connection(port: int, share: list[tuple[int, Message]], rate: float, start_at: float, results: list) -> None:
    """One connection sends its share, message ``i`` at ``start_at + i / rate`` when paced."""
    try:
        with smtplib.SMTP(LOOPBACK, port, timeout=300) as client:
            client.ehlo()
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while (delay := start_at - time.time()) > 0:
                time.sleep(delay)
            for i, message in share:
                if rate and (delay := start_at + i / rate - time.time()) > 0:
                    time.sleep(delay)
                took = transaction(client, message)
                results.append((message.message_id, time.time(), took))
    except Exception as error:
        results.append(error)


def client_process(port: int, shares: list[list[tuple[int, Message]]], rate: float, start_at: float,
                   out: multiprocessing.Queue) -> None:
    results: list[list] = [[] for _ in shares]
    threads = [threading.Thread(target=connection, args=(port, share, rate, start_at, done))
               for share, done in zip(shares, results)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put(([r for done in results for r in done], usage.ru_utime + usage.ru_stime))


@dataclass
class Load:
    start_at: float
    acked: list[tuple[str, float, float]]  # Message-ID, when its 250 came, seconds from end of data to 250
    client_cpu: float

    @property
    def elapsed(self) -> float:
        return max(t for _, t, _ in self.acked) - self.start_at


def run_load(port: int, sent: list[Message], connections: int, rate: float = 0.0) -> Load:
    """Send every message over ``connections`` connections, paced at ``rate`` messages/s in all if given."""
    numbered = list(enumerate(sent))
    shares = [numbered[c::connections] for c in range(connections)]
    processes = min(connections, CLIENT_PROCESSES)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start_at = time.time() + 0.5
    workers = [context.Process(target=client_process, args=(port, shares[p::processes], rate, start_at, out))
               for p in range(processes)]
    for worker in workers:
        worker.start()
    acked, cpu = [], 0.0
    for _ in workers:
        results, seconds = out.get()
        acked += results
        cpu += seconds
    for worker in workers:
        worker.join()
    errors = [r for r in acked if isinstance(r, Exception)]
    if errors:
        raise RuntimeError(f"{len(errors)} connections failed, the first: {errors[0]}")
    return Load(start_at, acked, cpu)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, port: int, sent: list[Message], connections: int, rate: float = 0.0) -> tuple[Load, str]:
    """A load, and the server's and the client's CPU per message, in words."""
    before = cpu_seconds(pid)
    load = run_load(port, sent, connections, rate)
    server = (cpu_seconds(pid) - before) / len(sent) * 1e6
    return load, f"CPU per message: server {server:.0f} µs, client {load.client_cpu / len(sent) * 1e6:.0f} µs"


# -- the servers ---------------------------------------------------------------------------------------------------


async def _sink(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 2.0.0 Ok"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), enable_SMTPUTF8=True, hostname="sink", loop=loop), LOOPBACK, port
    )
    async with server:
        await server.serve_forever()


def prepare(directory: Path, template: Path, extra: str = "") -> tuple[ServeProcess, int, Path]:
    """A fresh copy of the seeded database, and ``reefknot serve`` on it (started)."""
    directory.mkdir()
    path = directory / "bench.db"
    copy_database(template, path)
    config, smtp_port, _ = write_config(directory, f"sqlite:///{path}", extra=extra)
    daemon = ServeProcess(config, directory / "serve.log")
    daemon.start()
    return daemon, smtp_port, path


def copy_database(source: Path, target: Path) -> None:
    """A fresh database holding what ``source`` holds (SQLite's backup, so nothing in its WAL is missed)."""
    original, copy = sqlite3.connect(source), sqlite3.connect(target)
    original.backup(copy)
    original.close()
    copy.close()


class Watcher(threading.Thread):
    """Reads the intake table every 10 ms (a read-only connection, never a write lock): queue depth, when each row left it."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.seen: dict[str, float] = {}
        self.depth: list[tuple[float, int]] = []

    def run(self) -> None:
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        last_id, last_depth = 0, 0.0
        while not self.stop.is_set():
            now = time.time()
            rows = connection.execute(
                "SELECT id, message_id, state FROM intake WHERE id > ? ORDER BY id", (last_id,)
            ).fetchall()
            for row_id, message_id, state in rows:
                if state == "queued":
                    break
                self.seen.setdefault(message_id, now)
                last_id = row_id
            if now - last_depth >= 0.5:
                queued = connection.execute("SELECT count(*) FROM intake WHERE state = 'queued'").fetchone()[0]
                self.depth.append((now, queued))
                last_depth = now
            time.sleep(0.01)
        connection.close()

    def wait_empty(self, expected: int, timeout: float = 900) -> float:
        deadline = time.time() + timeout
        while len(self.seen) < expected:
            if time.time() > deadline:
                raise TimeoutError(f"{expected - len(self.seen)} messages still queued after {timeout:.0f} s")
            time.sleep(0.01)
        return max(self.seen.values())


# -- the phases ----------------------------------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"median {statistics.median(ordered) * 1000:6.2f} ms, p99 {p99 * 1000:6.2f} ms"


def rates(name: str, pid: int, port: int, burst: list[Message], single: list[Message], connections: int,
          ) -> tuple[float, list[float]]:
    """One server's intake rate over ``connections`` (printed), and its end of data -> 250 times on one connection."""
    load, cpu = measured(pid, port, burst, connections)
    rate = len(burst) / load.elapsed
    print(f"{name}, {connections} connections: {rate:6.0f} msg/s  ({cpu})")
    return rate, [took for *_, took in run_load(port, single, 1).acked]


def intake(directory: Path, template: Path, burst: list[Message], single: list[Message], connections: int) -> None:
    port = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port)])
    try:
        wait_for_port(LOOPBACK, port, process=sink)
        sink_rate, sink_single = rates("bare aiosmtpd sink", sink.pid, port, burst, single, connections)
    finally:
        sink.terminate()
        sink.wait()

    daemon, port, _ = prepare(directory / "intake-only", template, "[processing]\nworkers = 0\n")
    try:
        assert daemon.process is not None
        reefknot_rate, reefknot_single = rates("reefknot serve, workers = 0", daemon.process.pid, port, burst, single,
                                               connections)
    finally:
        daemon.stop()
        daemon.close()
    commits = sqlite_commits(directory / "raw-commit.db", burst, single)
    print(f"intake, {connections} connections: reefknot {reefknot_rate:.0f} msg/s, bare sink {sink_rate:.0f} msg/s, "
          f"ratio {reefknot_rate / sink_rate:.2f} (target >= 0.5)")
    print(f"end of data -> 250, 1 connection, {len(single)} messages:")
    print(f"  bare aiosmtpd sink:              {ms(sink_single)}")
    print(f"  reefknot serve, workers = 0:     {ms(reefknot_single)}")
    print(f"  raw SQLite commit (WAL, FULL):   {ms(commits)}  (INSERT of the message's bytes, COMMIT)")


def sqlite_commits(path: Path, before: list[Message], timed: list[Message]) -> list[float]:
    """The time of each durable commit of one message's bytes, with nothing but SQLite.

    ``before`` is committed first, untimed, 64 a transaction as a group commit would, so
    that the database and its WAL have the size the intake-only daemon's had.
    """
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE intake (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
    for n in range(0, len(before), 64):
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("INSERT INTO intake (raw) VALUES (?)", [(m.raw,) for m in before[n:n + 64]])
        connection.execute("COMMIT")
    times = []
    for message in timed:
        began = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO intake (raw) VALUES (?)", (message.raw,))
        connection.execute("COMMIT")
        times.append(time.perf_counter() - began)
    connection.close()
    return times


def in_process(path: Path, burst: list[Message]) -> tuple[float, Counter[str]]:
    """``ingest_message`` for each message, as ``ingest_throughput`` measures it: messages/s and the states."""
    db = Database(f"sqlite:///{path}")
    states: Counter[str] = Counter()
    began = time.perf_counter()
    for message in burst:
        receipt = processing.ingest_message(db, message.raw, Envelope(SENDER, message.recipients, "ingest"), NOW)
        states[receipt.state.value] += 1
    rate = len(burst) / (time.perf_counter() - began)
    db.dispose()
    return rate, states


def applied(directory: Path, template: Path, burst: list[Message], steady: list[Message], connections: int,
            rate: float) -> None:
    copy_database(template, directory / "in-process.db")
    inline_rate, inline_states = in_process(directory / "in-process.db", burst)
    print(f"in-process ingest_message, fresh SQLite: {inline_rate:6.0f} msg/s  "
          f"({1000 / inline_rate:.1f} ms per message), states {dict(inline_states)}")

    daemon, port, path = prepare(directory / "full", template)
    watcher = Watcher(str(path))
    watcher.start()
    try:
        assert daemon.process is not None
        pid = daemon.process.pid
        before = cpu_seconds(pid)
        load = run_load(port, burst, connections)
        empty_at = watcher.wait_empty(len(burst))
        daemon_ms = (cpu_seconds(pid) - before) / len(burst) * 1000
        applied_rate = len(burst) / (empty_at - load.start_at)
        print(f"reefknot serve, {connections} connections, as fast as it takes them: 250s at "
              f"{len(burst) / load.elapsed:.0f} msg/s, applied {applied_rate:.0f} msg/s "
              f"(first sent to queue empty); daemon CPU {daemon_ms:.1f} ms per message, "
              f"client {load.client_cpu / len(burst) * 1000:.1f} ms")
        print(f"  queue depth every 0.5 s: {' '.join(str(d) for t, d in watcher.depth if t >= load.start_at)}")
        rows = intake_rows(path)
        print(f"  states {dict(Counter(rows[m.message_id][0] for m in burst))}")
        print(f"applied through reefknot serve: {applied_rate:.0f} msg/s, in-process {inline_rate:.0f} msg/s, "
              f"ratio {applied_rate / inline_rate:.2f} (target >= 0.9)")

        watcher.depth.clear()
        load = run_load(port, steady, connections, rate)
        watcher.wait_empty(len(burst) + len(steady))
        rows = intake_rows(path)
        own = [rows[m][1] for m, *_ in load.acked]
        seen = [watcher.seen[m] - t for m, t, _ in load.acked]
        print(f"steady load, {rate:.0f} msg/s offered over {connections} connections for {load.elapsed:.0f} s "
              f"({len(steady) / load.elapsed:.0f} msg/s taken), max queue depth "
              f"{max((d for _, d in watcher.depth), default=0)}:")
        print(f"  250 -> applied, the daemon's processed_at - received_at: {ms(own)}, max {max(own) * 1000:.0f} ms")
        print(f"  250 -> applied, seen by a watcher polling every 10 ms:  {ms(seen)}, max {max(seen) * 1000:.0f} ms "
              f"(target p99 under 1 s)")
    finally:
        watcher.stop.set()
        status = daemon.stop()
        daemon.close()
    if status:
        print(f"reefknot serve stopped with status {status}; its log: {daemon.log_path}")


def intake_rows(path: Path) -> dict[str, tuple[str, float]]:
    """Message-ID -> (state, seconds from received_at to processed_at) of every intake row."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = connection.execute("SELECT message_id, state, received_at, processed_at FROM intake").fetchall()
    connection.close()
    return {
        message_id: (state, (datetime.fromisoformat(done) - datetime.fromisoformat(received)).total_seconds()
                     if done else float("nan"))
        for message_id, state, received, done in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=4000, help="the burst, for intake and applied rates")
    parser.add_argument("--principals", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=16, help="concurrent SMTP connections")
    parser.add_argument("--single", type=int, default=500, help="messages for the one-connection timings")
    parser.add_argument("--rate", type=float, default=200.0, help="steady offered load, messages/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the steady load")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--directory", help="where the databases go (default: a temporary directory)")
    parser.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        asyncio.run(_sink(args.sink))
        return

    with tempfile.TemporaryDirectory(dir=args.directory) as directory_name:
        directory = Path(directory_name)
        template = directory / "seeded.db"
        db = Database(f"sqlite:///{template}")
        db.upgrade()
        principals, local_events = seed(db, args.principals, LOCAL_EVENTS)
        db.dispose()
        mix = Mix(principals, local_events, args.seed)
        burst = messages(mix, args.messages)
        steady = messages(mix, int(args.rate * args.seconds))
        size = statistics.mean(len(m.raw) for m in burst)
        print(f"{args.messages} messages of ingest_throughput's mix ({size / 1024:.1f} KiB on average), "
              f"{args.principals} principals, {len(local_events)} local events; {os.cpu_count()} CPUs; client: "
              f"{min(args.connections, CLIENT_PROCESSES)} processes (the connections their threads), messages built beforehand; "
              f"databases in "
              f"{directory}")
        intake(directory, template, burst, burst[:args.single], args.connections)
        applied(directory, template, burst, steady, args.connections, args.rate)


if __name__ == "__main__":
    main()
