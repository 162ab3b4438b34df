"""Benchmark: drain a backlog of invitations from a real Dovecot, beside the in-process ingest path.

Generates a scheduling mix (``ingest_throughput.Mix``: invitations, updates, overrides,
replies, cancels, about 3 KB each), APPENDs it to a private Dovecot mailbox, then, on a
fresh SQLite database (WAL, synchronous=FULL), runs the IMAP poller in a thread with a
processor applying the queue as the poller wakes it (as ``reefknot serve`` does), and
times the backlog from start to the last message applied; for scale, it then times the
poller alone taking the same backlog into an empty queue. The same messages then go
through ``processing.ingest_message`` (intake row and apply in one commit each) on a second
database seeded identically. Both paths get the same envelope: no fixed recipients, so
each message is applied for the local principals it names. Prints both rates and their
ratio (target: the poller path at least 80% of the ingest path).

    python bench/imap_drain.py --messages 10000 --principals 3000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imapclient import IMAPClient  # noqa: E402
from ingest_throughput import NOW, Mix, seed  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from gateway.settings.config import ImapAccount  # noqa: E402
from gateway.edges.imap import ImapPoller  # noqa: E402
from gateway.service import processing  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from gateway.store.intake import Envelope  # noqa: E402
from gateway.store.schema import IntakeMessage  # noqa: E402
from tests.servers import dovecot_server  # noqa: E402

USER, PASSWORD = "calendar@foo.example", "bench-secret"
LOCAL_EVENTS = 2000


def generate(count: int, principals: list[str], local_events: list[tuple[str, str, str]], seed_: int) -> list[bytes]:
    mix = Mix(principals, local_events, seed_)
    return [mix.next()[0].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for _ in range(count)]


def append_all(host: str, port: int, messages: list[bytes]) -> float:
    """APPEND every message (MULTIAPPEND, 500 at a time); seconds taken."""
    started = time.perf_counter()
    with IMAPClient(host, port=port, ssl=False, timeout=120) as client:
        client.login(USER, PASSWORD)
        for start in range(0, len(messages), 500):
            client.multiappend("INBOX", messages[start:start + 500])
    return time.perf_counter() - started


def drain(db: Database, account: ImapAccount, expected: int) -> tuple[float, float, float, Counter[str]]:
    """Poller thread plus a processor woken by it.

    Returns seconds to all queued, seconds to all applied, CPU seconds (both threads), and the states.
    """
    woken = threading.Event()
    stop = threading.Event()
    poller = ImapPoller(account, db, woken.set, clock=lambda: NOW)
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    states: Counter[str] = Counter()
    queued_at = 0.0
    started, cpu = time.perf_counter(), time.process_time()
    thread.start()
    while sum(states.values()) < expected:
        receipts = processing.process_queued(db, NOW, limit=100)
        states.update(r.state.value for r in receipts)
        if not receipts:
            woken.wait(0.05)
            woken.clear()
        if not queued_at and queued(db) >= expected:
            queued_at = time.perf_counter() - started
    applied_at, cpu = time.perf_counter() - started, time.process_time() - cpu
    stop.set()
    thread.join()
    return queued_at or applied_at, applied_at, cpu, states


def poller_alone(server_host: str, server_port: int, db: Database, account: ImapAccount) -> tuple[int, float]:
    """Move the processed backlog back to INBOX and time the poller taking it into an empty queue, applying nothing."""
    with IMAPClient(server_host, port=server_port, ssl=False, timeout=120) as client:
        client.login(USER, PASSWORD)
        client.select_folder(account.processed_folder)
        client.move("1:*", "INBOX")
    poller = ImapPoller(account, db, lambda: None, clock=lambda: NOW)
    started = time.perf_counter()
    taken = poller.poll_once()
    seconds = time.perf_counter() - started
    poller.close()
    return taken, seconds


def queued(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(IntakeMessage)) or 0)


def ingest(db: Database, messages: list[bytes]) -> tuple[float, float, Counter[str]]:
    """Every message through the in-process path; (seconds, CPU seconds, states)."""
    states: Counter[str] = Counter()
    started, cpu = time.perf_counter(), time.process_time()
    for raw in messages:
        states[processing.ingest_message(db, raw, Envelope("", (), "ingest"), NOW).state.value] += 1
    return time.perf_counter() - started, time.process_time() - cpu, states


def warm_up(path: Path) -> None:
    """Run the apply path once on a small scratch database, so that neither timed path pays for first use."""
    db, principals, local_events = fresh_database(path, 50, 50)
    ingest(db, generate(300, principals, local_events, 99))
    db.dispose()


def fresh_database(
    path: Path, principals: int, local_events: int = LOCAL_EVENTS
) -> tuple[Database, list[str], list[tuple[str, str, str]]]:
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    addresses, events = seed(db, principals, local_events)
    return db, addresses, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--principals", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory_name, dovecot_server({USER: PASSWORD}) as server:
        directory = Path(directory_name)
        (directory / "secret").write_text(PASSWORD)
        imap_db, principals, local_events = fresh_database(directory / "imap.db", args.principals)
        ingest_db, _, _ = fresh_database(directory / "ingest.db", args.principals)
        messages = generate(args.messages, principals, local_events, args.seed)
        size = sum(map(len, messages)) / len(messages) / 1024
        print(f"{len(messages)} messages, average {size:.1f} KiB; {args.principals} principals, "
              f"{LOCAL_EVENTS} local events; Dovecot {server.host}:{server.port}")

        warm_up(directory / "warm-up.db")
        seconds = append_all(server.host, server.port, messages)
        print(f"APPEND to Dovecot: {len(messages) / seconds:.0f} messages/s ({seconds:.1f} s)")

        account = ImapAccount(server.host, USER, password_file=str(directory / "secret"), port=server.port,
                              security="none")
        to_queue, to_applied, imap_cpu, drained = drain(imap_db, account, len(messages))
        imap_rate = len(messages) / to_applied
        print(f"IMAP poller: all queued after {to_queue:.1f} s ({len(messages) / to_queue:.0f} messages/s); "
              f"all applied after {to_applied:.1f} s: {imap_rate:.0f} messages/s applied "
              f"({imap_cpu / len(messages) * 1000:.2f} ms CPU a message); {dict(drained)}")

        alone_db = Database(f"sqlite:///{directory / 'alone.db'}")
        alone_db.upgrade()
        taken, seconds = poller_alone(server.host, server.port, alone_db, account)
        print(f"IMAP poller alone, into the queue only: {taken / seconds:.0f} messages/s ({seconds:.1f} s)")
        alone_db.dispose()

        seconds, ingest_cpu, ingested = ingest(ingest_db, messages)
        ingest_rate = len(messages) / seconds
        print(f"ingest (in-process): {ingest_rate:.0f} messages/s applied ({seconds:.1f} s, "
              f"{ingest_cpu / len(messages) * 1000:.2f} ms CPU a message); {dict(ingested)}")
        print(f"ratio IMAP/ingest: {imap_rate / ingest_rate:.0%} (target >= 80%); "
              f"by CPU time a message: {ingest_cpu / imap_cpu:.0%}")
        if drained != ingested:
            print("warning: the two paths ended in different states")
        imap_db.dispose()
        ingest_db.dispose()


if __name__ == "__main__":
    main()
