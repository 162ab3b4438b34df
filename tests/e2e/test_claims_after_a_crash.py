"""Claims end with their holder: what a killed processor or sender had claimed is taken up by another within the lease.

Each test kills ``reefknot serve`` (SIGKILL) while it holds claims, starts another
process on the same database, and measures how long the claimed rows wait; on SQLite
and on PostgreSQL. Every message is still applied exactly once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from gateway.service.leases import LEASE
from gateway.store.db import Database
from gateway.store.schema import InboxEntry, IntakeMessage, OutboxMessage
from tests.peers.cli import Reefknot, write_event
from tests.peers.serve import ServeProcess, crlf, lmtp_deliver, processes, serve, write_config  # noqa: F401
from tests.peers.servers import LOOPBACK, free_port
from tests.peers.sink import smtp_peer

pytestmark = pytest.mark.e2e
ALICE, ERIN = "alice@foo.example", "erin@baz.example"
MESSAGES = 120
TAKEN_UP_WITHIN = LEASE.total_seconds() + 10  # from the kill: the lease, then the next process starts and polls


def invitation(n: int) -> bytes:
    return crlf(
        f"From: {ERIN}\nTo: {ALICE}\nSubject: n{n}\nMessage-ID: <crash-{n}@test>\nMIME-Version: 1.0\n"
        'Content-Type: text/calendar; method=REQUEST; charset="utf-8"\n\n'
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//EN\nMETHOD:REQUEST\nBEGIN:VEVENT\n"
        f"UID:crash-{n}\nDTSTAMP:20261201T090000Z\nDTSTART:20270105T100000Z\nDTEND:20270105T110000Z\n"
        f"SUMMARY:n{n}\nORGANIZER:mailto:{ERIN}\nATTENDEE;RSVP=TRUE:mailto:{ALICE}\nEND:VEVENT\nEND:VCALENDAR\n"
        .encode()
    )


def claimed(db: Database, table: type[IntakeMessage] | type[OutboxMessage]) -> set[int]:
    """The queued rows some process holds a claim on now."""
    now = datetime.now(timezone.utc)
    with db.reading() as session:
        query = select(table.id).where(table.state == "queued", table.claimed_until > now)
        return set(session.scalars(query))


def still_queued(db: Database, table: type[IntakeMessage] | type[OutboxMessage], ids: set[int]) -> set[int]:
    with db.reading() as session:
        return set(session.scalars(select(table.id).where(table.id.in_(ids), table.state == "queued")))


def wait_for_claims(db: Database, table: type[IntakeMessage] | type[OutboxMessage], timeout: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout
    while not (held := claimed(db, table)):
        assert time.monotonic() < deadline, "the process never held a claim"
        time.sleep(0.005)
    return held


def seconds_until_done(db: Database, table: type[IntakeMessage] | type[OutboxMessage], ids: set[int]) -> float:
    began = time.monotonic()
    while still_queued(db, table, ids):
        assert time.monotonic() - began < TAKEN_UP_WITHIN + 30, f"still queued: {still_queued(db, table, ids)}"
        time.sleep(0.1)
    return time.monotonic() - began


def test_messages_a_killed_processor_had_claimed_are_applied_by_another_within_the_lease(
    processes: list[ServeProcess], tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, lmtp_port = write_config(tmp_path, database_url, extra="[processing]\nworkers = 0\n")
    Reefknot(config, capsys)("users", "add", ALICE)
    intake_only = serve(processes, config)
    for n in range(MESSAGES):
        lmtp_deliver(lmtp_port, ERIN, [ALICE], invitation(n))
    assert intake_only.stop() == 0

    config.write_text(config.read_text().replace("workers = 0", "workers = 1"))
    db = Database(database_url)
    first = serve(processes, config)
    held = wait_for_claims(db, IntakeMessage)
    first.kill()
    held = still_queued(db, IntakeMessage, held)
    assert held, "the processor finished its claim before it was killed; nothing to take up"

    serve(processes, config)
    waited = seconds_until_done(db, IntakeMessage, held)
    print(f"{len(held)} messages claimed by the killed processor, applied by the next one after {waited:.1f} s")
    assert waited <= TAKEN_UP_WITHIN
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(IntakeMessage).where(IntakeMessage.state != "done")) == 0
        applied = list(session.scalars(select(InboxEntry.uid).where(InboxEntry.outcome == "applied")))
    db.dispose()
    assert sorted(applied) == sorted(f"crash-{n}" for n in range(MESSAGES))  # each once


class SlowRelay:
    """A relay that takes two seconds to answer each DATA, so a sender is killed in the middle of its batch."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        await asyncio.sleep(2.0)
        return "250 2.0.0 Ok"


def test_outbound_rows_a_killed_sender_had_claimed_are_sent_by_another_within_the_lease(
    processes: list[ServeProcess], tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    slow_port = free_port()
    slow = Controller(SlowRelay(), hostname=LOOPBACK, port=slow_port)
    slow.start()
    try:
        outbound = f'[outbound]\nsmarthost = "{LOOPBACK}:{slow_port}"\nreply_domain = "foo.example"\n'
        config, _, _ = write_config(tmp_path, database_url, extra=outbound)
        cli = Reefknot(config, capsys)
        cli("users", "add", ALICE)
        attendees = [f"guest{n}@bar.example" for n in range(6)]
        cli("event", "put", "--as", ALICE, str(write_event(tmp_path, "crash-out", *attendees)))
        db = Database(database_url)
        first = serve(processes, config)
        held = wait_for_claims(db, OutboxMessage)
        time.sleep(0.5)  # in the middle of the first slow DATA
        first.kill()
    finally:
        slow.stop()
    held = still_queued(db, OutboxMessage, held)
    assert held, "the sender finished its claim before it was killed; nothing to take up"

    with smtp_peer() as relay:
        config.write_text(config.read_text().replace(f"{LOOPBACK}:{slow_port}", f"{LOOPBACK}:{relay.port}"))
        serve(processes, config)
        waited = seconds_until_done(db, OutboxMessage, held)
        print(f"{len(held)} rows claimed by the killed sender, sent by the next one after {waited:.1f} s")
        assert waited <= TAKEN_UP_WITHIN
        with db.reading() as session:
            taken_over = set(session.scalars(select(OutboxMessage.recipient).where(OutboxMessage.id.in_(held))))
        assert taken_over <= {r.rcpt_to[0] for r in relay.received}
    with db.reading() as session:
        assert set(session.scalars(select(OutboxMessage.state))) == {"sent"}
    db.dispose()
