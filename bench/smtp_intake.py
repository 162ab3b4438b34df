"""Benchmark: SMTP intake of ``reefknot serve`` beside a bare aiosmtpd sink, then applied throughput and latency.

One load generator (4 processes, one SMTP connection each, pre-built ~3 KB invitations
from outside organizers to local principals) is pointed in turn at:

1. a bare aiosmtpd server in its own process that answers 250 to everything;
2. ``reefknot serve`` on a fresh SQLite database (WAL, synchronous=FULL) that only takes
   mail in (``[processing] workers = 0``): 250 only after the intake row is committed;
3. ``reefknot serve`` as deployed: the same, while its processor applies the queue.

It prints both intake rates and their ratio (target: Reefknot at least 50% of the sink),
the sustained applied rate (from the first message sent until the queue is empty, with
the queue depth over time, so a growing backlog shows), and at a steady offered load
(default 200 messages/s) the time from 250 to applied: the daemon's own
``processed_at - received_at``, and the time a watcher (polling the intake table every
10 ms) first sees the message applied after the client got its 250.

    python bench/smtp_intake.py --messages 4000 --principals 500 --rate 200 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_throughput import NOW, calendar, mail, seed, vevent  # noqa: E402

from gateway.store.db import Database  # noqa: E402
from tests.serve import ServeProcess, write_config  # noqa: E402
from tests.servers import LOOPBACK, free_port, wait_for_port  # noqa: E402

CONNECTIONS = 4
SENDER = "organizer@bar.example"


def invitations(count: int, principals: list[str], first: int) -> list[tuple[str, bytes, str]]:
    """(recipient, message, Message-ID) for ``count`` new invitations, each to one local principal."""
    rng = random.Random(first)
    made = []
    for n in range(first, first + count):
        attendee = rng.choice(principals)
        uid = f"bench-{n}@bar.example"
        start = datetime(2026, 7, 1, 9) + timedelta(hours=rng.randrange(2000))
        body = vevent(uid, SENDER, [attendee], 0, start, stamp=NOW + timedelta(seconds=n))
        made.append((attendee, mail(SENDER, [attendee], "REQUEST", calendar("REQUEST", body), n).replace(b"\n", b"\r\n"),
                     f"<bench-{n}@bar.example>"))
    return made


def send_share(port: int, share: list[tuple[str, bytes, str]], rate: float, start_at: float, out: multiprocessing.Queue) -> None:
    """One connection: send ``share`` (paced at ``rate`` per second if given); report (Message-ID, time of 250)."""
    acked = []
    with smtplib.SMTP(LOOPBACK, port, timeout=120) as client:
        while time.time() < start_at:
            time.sleep(0.001)
        for i, (recipient, raw, message_id) in enumerate(share):
            if rate:
                delay = start_at + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            client.sendmail(SENDER, [recipient], raw)
            acked.append((message_id, time.time()))
    out.put(acked)


def run_load(port: int, messages: list[tuple[str, bytes, str]], rate: float = 0.0) -> tuple[float, list[tuple[str, float]]]:
    """Send everything over CONNECTIONS connections; the elapsed seconds and every (Message-ID, 250 time)."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start_at = time.time() + 0.5
    shares = [messages[i::CONNECTIONS] for i in range(CONNECTIONS)]
    workers = [context.Process(target=send_share, args=(port, share, rate / CONNECTIONS, start_at, out))
               for share in shares]
    for worker in workers:
        worker.start()
    acked = [item for _ in workers for item in out.get()]
    for worker in workers:
        worker.join()
    return max(t for _, t in acked) - start_at, acked


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


def bare_sink_rate(messages: list[tuple[str, bytes, str]]) -> float:
    port = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port)])
    try:
        wait_for_port(LOOPBACK, port, process=sink)
        elapsed, _ = run_load(port, messages)
    finally:
        sink.terminate()
        sink.wait()
    return len(messages) / elapsed


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

    def wait_empty(self, expected: int, timeout: float = 600) -> float:
        deadline = time.time() + timeout
        while len(self.seen) < expected:
            if time.time() > deadline:
                raise TimeoutError(f"{expected - len(self.seen)} messages still queued after {timeout:.0f} s")
            time.sleep(0.01)
        return max(self.seen.values())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--principals", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0, help="steady offered load for the latency phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency phase")
    parser.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        asyncio.run(_sink(args.sink))
        return

    principals = [f"user{i}@foo.example" for i in range(args.principals)]
    burst = invitations(args.messages, principals, 0)
    steady = invitations(int(args.rate * args.seconds), principals, args.messages)
    size = statistics.mean(len(raw) for _, raw, _ in burst)
    print(f"{args.messages} invitations of {size / 1024:.1f} KiB on average, {CONNECTIONS} connections, "
          f"{os.cpu_count()} CPUs")

    sink_rate = bare_sink_rate(burst)
    print(f"bare aiosmtpd sink:        {sink_rate:7.0f} messages/s")

    with tempfile.TemporaryDirectory() as directory_name:
        directory = Path(directory_name)
        config, smtp_port, path = prepare(directory / "intake-only", args.principals, "[processing]\nworkers = 0\n")
        daemon = ServeProcess(config, config.parent / "serve.log")
        daemon.start()
        try:
            elapsed, _ = run_load(smtp_port, burst)
        finally:
            daemon.stop()
            daemon.close()
        print(f"reefknot serve taking mail only ([processing] workers = 0): {len(burst) / elapsed:7.0f} messages/s "
              f"({len(burst) / elapsed / sink_rate:.0%} of the bare sink)")

        config, smtp_port, path = prepare(directory / "full", args.principals, "")
        daemon = ServeProcess(config, config.parent / "serve.log")
        daemon.start()
        watcher = Watcher(str(path))
        watcher.start()
        try:
            report_reefknot(daemon, watcher, smtp_port, burst, steady, sink_rate, args.rate)
        finally:
            watcher.stop.set()
            print(f"reefknot serve stopped with status {daemon.stop()}")
            daemon.close()


def prepare(directory: Path, principals: int, extra: str) -> tuple[Path, int, Path]:
    """A fresh SQLite database with the principals, and a configuration for it."""
    directory.mkdir()
    path = directory / "bench.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    seed(db, principals, 0)
    db.dispose()
    config, smtp_port, _ = write_config(directory, f"sqlite:///{path}", extra=extra)
    return config, smtp_port, path


def report_reefknot(daemon: ServeProcess, watcher: Watcher, port: int, burst: list[tuple[str, bytes, str]],
                    steady: list[tuple[str, bytes, str]], sink_rate: float, rate: float) -> None:
    started = time.time() + 0.5
    elapsed, _ = run_load(port, burst)
    intake_rate = len(burst) / elapsed
    depth_at_end = next((d for t, d in reversed(watcher.depth) if t <= started + elapsed), 0)
    print(f"reefknot serve, 250 after commit, processing as it goes: {intake_rate:7.0f} messages/s "
          f"({intake_rate / sink_rate:.0%} of the bare sink; target at least 50%)")
    empty_at = watcher.wait_empty(len(burst))
    applied_rate = len(burst) / (empty_at - started)
    print(f"sustained applied (intake and processing, until the queue is empty): {applied_rate:7.0f} messages/s")
    print(f"  queue depth when the last 250 was sent: {depth_at_end}; "
          + ("the backlog grows" if depth_at_end > 2 * rate else "no growing backlog")
          + f" (processing {applied_rate:.0f}/s against intake {intake_rate:.0f}/s)")
    print("  queue depth every 0.5 s: " + " ".join(str(d) for t, d in watcher.depth if t >= started))

    watcher.depth.clear()
    elapsed, acked = run_load(port, steady, rate)
    watcher.wait_empty(len(burst) + len(steady))
    offered = len(steady) / elapsed
    seen = [watcher.seen[m] - t for m, t in acked]
    own = daemon_latencies(watcher.path, {m for m, _ in acked})
    print(f"steady load: {rate:.0f} messages/s offered, {offered:.0f}/s taken (a client waits for each 250) "
          f"for {elapsed:.0f} s; max queue depth "
          f"{max((d for _, d in watcher.depth), default=0)}")
    print(f"  250 -> applied (processed_at - received_at): p50 {percentile(own, 0.5) * 1000:6.0f} ms  "
          f"p99 {percentile(own, 0.99) * 1000:6.0f} ms  max {max(own) * 1000:6.0f} ms")
    print(f"  250 -> seen applied by the watcher:            p50 {percentile(seen, 0.5) * 1000:6.0f} ms  "
          f"p99 {percentile(seen, 0.99) * 1000:6.0f} ms  max {max(seen) * 1000:6.0f} ms  (target p99 under 1 s)")


def daemon_latencies(path: str, message_ids: set[str]) -> list[float]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = connection.execute("SELECT message_id, received_at, processed_at FROM intake").fetchall()
    connection.close()
    return [
        (datetime.fromisoformat(done) - datetime.fromisoformat(received)).total_seconds()
        for message_id, received, done in rows if message_id in message_ids
    ]


if __name__ == "__main__":
    main()
