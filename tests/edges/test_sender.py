"""The durable outbox sender against real SMTP peers, on SQLite and PostgreSQL.

Invitations are queued the way the product queues them (a local organizer puts an
event), sent by ``Sender`` to an aiosmtpd sink that answers as told (``tests.sink``) or
to Postfix's smtp-sink, and the outbox rows and the organizer's SCHEDULE-STATUS are
read back. The clock is injected and moved by hand for the retry schedule.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest

from gateway.core.itip.schedulestatus import schedule_statuses
from gateway.core.mail.replyaddress import TokenAddress, read_token_address
from gateway.core.model import Kind
from gateway.edges.sender import Sender
from gateway.service import events
from gateway.service.delivery_attempts import SendResult
from gateway.settings.config import Config, Listener, OutboundOptions
from gateway.store import calendars, directory, outbox
from gateway.store.db import Database
from gateway.store.outbox import OutboxState
from gateway.store.outbox import OutboxRecord
from tests.conftest import NOW
from tests.peers.cli import EVENT
from tests.peers.servers import (
    LOOPBACK,
    ServerUnavailable,
    _self_signed_cert,
    free_port,
    smtp_sink,
)
from tests.peers.sink import DROP, Sink, smtp_peer

ALICE, CAROL, DAVE = "alice@foo.example", "carol@bar.example", "dave@baz.example"
REPLY_DOMAIN = "reply.foo.example"
MINUTE = timedelta(minutes=1)


class Clock:
    """The sender's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def compose(row: OutboxRecord) -> bytes:
    """A minimal iMIP mail for a row (the real composer renders and signs; the sender only needs bytes)."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = row.sender
    message["To"] = row.recipient
    message["Subject"] = f"{row.method} {row.uid}"
    message["Message-ID"] = row.message_id
    message.set_content(row.ical, subtype="calendar", params={"method": row.method}, cte="base64")
    return message.as_bytes()


def failing_for(recipient: str) -> Callable[[OutboxRecord], bytes]:
    def composer(row: OutboxRecord) -> bytes:
        if row.recipient == recipient:
            raise ValueError("no template for\nthis method")
        return compose(row)

    return composer


def config_for(db: Database, port: int, **options: object) -> Config:
    return Config(
        database_url=db.url, smarthost=Listener(LOOPBACK, port), reply_domain=REPLY_DOMAIN,
        outbound=OutboundOptions(**options),  # type: ignore[arg-type]
    )


def invite(db: Database, uid: str, *attendees: str) -> list[int]:
    """Alice, a local organizer, invites outside attendees; the outbox ids of the invitations."""
    lines = "\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in attendees)
    with db.transaction() as session:
        alice = directory.resolve(session, ALICE)
        assert alice is not None
        events.put_event(session, alice, EVENT.format(uid=uid, attendees=lines), NOW)
        return [r.id for r in outbox.list_messages(session) if r.uid == uid]


def row(db: Database, outbox_id: int) -> OutboxRecord:
    with db.transaction() as session:
        return outbox.get(session, outbox_id)


def status(db: Database, uid: str, attendee: str) -> set[str]:
    """The attendee's SCHEDULE-STATUS values on Alice's copy."""
    with db.transaction() as session:
        alice = directory.resolve(session, ALICE)
        assert alice is not None
        stored = calendars.load_object(session, alice.id, uid)
        assert stored.calendar is not None
        return schedule_statuses(stored.calendar, attendee)


def send(sender: Sender) -> list[SendResult]:
    return asyncio.run(sender.send_due())


@pytest.fixture
def site(db: Database) -> Database:
    with db.transaction() as session:
        directory.add_principal(session, ALICE, NOW, name="Alice", kind=Kind.INDIVIDUAL)
    return db


@pytest.fixture
def peer() -> Iterator[Sink]:
    with smtp_peer() as sink:
        yield sink


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def test_a_delivered_invitation_is_sent_and_the_organizers_copy_says_1_1(
    site: Database, peer: Sink, clock: Clock
) -> None:
    ids = invite(site, "u-sent", CAROL, DAVE)
    results = send(Sender(config_for(site, peer.port), site, compose, clock=clock))
    assert [(r.outbox_id, r.state) for r in results] == [(i, OutboxState.SENT) for i in ids]
    assert peer.connections == 1  # one session for the pass
    by_rcpt = {m.rcpt_to: m for m in peer.received}
    for outbox_id in ids:
        sent = row(site, outbox_id)
        mail = by_rcpt[(sent.recipient,)]
        assert mail.mail_from == f"bounce+{outbox_id}.{sent.reply_token}@{REPLY_DOMAIN}"
        assert read_token_address(mail.mail_from) == TokenAddress(sent.reply_token, outbox_id)
        assert mail.message_id == sent.message_id
        assert (sent.state, sent.attempts, sent.finished_at, sent.claimed_until) == ("sent", 1, NOW, None)
        assert status(site, "u-sent", sent.recipient) == {"1.1"}
    assert status(site, "u-sent", ALICE) == {""}  # the organizer's own line is left alone


def test_451_is_retried_on_the_backoff_schedule_with_the_same_message_id_until_sent(
    site: Database, peer: Sink, clock: Clock
) -> None:
    (outbox_id,) = invite(site, "u-retry", CAROL)
    peer.answer(CAROL, "451 4.3.0 Try again later", at="data")
    sender = Sender(config_for(site, peer.port), site, compose, clock=clock)
    delays = []
    for _ in range(7):
        (result,) = send(sender)
        assert result.state is OutboxState.QUEUED and result.next_attempt_at is not None
        delays.append(result.next_attempt_at - clock.now)
        clock.advance(delays[-1] - MINUTE)
        assert send(sender) == []  # not due yet
        clock.advance(MINUTE)
    assert delays == [timedelta(minutes=m) for m in (5, 10, 20, 40, 60, 60, 60)]
    deferred = row(site, outbox_id)
    assert (deferred.state, deferred.attempts) == ("queued", 7)
    assert deferred.last_error == "451 4.3.0 Try again later"
    assert status(site, "u-retry", CAROL) == {"1.1"}
    peer.accept(CAROL)
    (result,) = send(sender)
    assert result.state is OutboxState.SENT
    assert {m.message_id for m in peer.offered} == {deferred.message_id} and len(peer.offered) == 8
    assert [m.message_id for m in peer.received] == [deferred.message_id]


def test_a_message_deferred_past_its_lifetime_fails_with_5_1(site: Database, peer: Sink, clock: Clock) -> None:
    (outbox_id,) = invite(site, "u-old", CAROL)
    peer.answer(CAROL, "451 4.7.1 Greylisted")
    sender = Sender(config_for(site, peer.port, lifetime=86400.0), site, compose, clock=clock)
    assert send(sender)[0].state is OutboxState.QUEUED
    clock.advance(timedelta(days=1))
    (result,) = send(sender)
    assert result.state is OutboxState.FAILED
    failed = row(site, outbox_id)
    assert failed.state == "failed" and failed.finished_at == clock.now
    assert failed.last_error == "lifetime-exceeded: 2 attempts, the last: 451 4.7.1 Greylisted"
    assert status(site, "u-old", CAROL) == {"5.1"}
    assert peer.received == []


def test_550_5_1_1_fails_at_once_with_3_7_and_the_other_attendee_is_sent(
    site: Database, peer: Sink, clock: Clock
) -> None:
    carol_id, dave_id = invite(site, "u-bad", CAROL, DAVE)
    peer.answer(CAROL, "550 5.1.1 <carol@bar.example>: Recipient address rejected: User unknown")
    results = {r.outbox_id: r for r in send(Sender(config_for(site, peer.port), site, compose, clock=clock))}
    assert results[carol_id].state is OutboxState.FAILED and results[dave_id].state is OutboxState.SENT
    assert row(site, carol_id).last_error.startswith("bad-address: 550 5.1.1 <carol@bar.example>")
    assert status(site, "u-bad", CAROL) == {"3.7"}
    assert status(site, "u-bad", DAVE) == {"1.1"}
    clock.advance(timedelta(days=1))
    assert send(Sender(config_for(site, peer.port), site, compose, clock=clock)) == []  # never again


def test_another_permanent_refusal_fails_at_once_with_5_1(site: Database, peer: Sink, clock: Clock) -> None:
    (outbox_id,) = invite(site, "u-spam", CAROL)
    peer.answer(CAROL, "554 5.7.1 Message rejected as spam", at="data")
    (result,) = send(Sender(config_for(site, peer.port), site, compose, clock=clock))
    assert result.state is OutboxState.FAILED
    assert row(site, outbox_id).last_error == "refused: 554 5.7.1 Message rejected as spam"
    assert status(site, "u-spam", CAROL) == {"5.1"}


def test_a_dropped_connection_defers_that_message_and_the_next_one_reconnects(
    site: Database, peer: Sink, clock: Clock
) -> None:
    carol_id, dave_id = invite(site, "u-drop", CAROL, DAVE)
    peer.answer(CAROL, DROP)
    results = {r.outbox_id: r for r in send(Sender(config_for(site, peer.port), site, compose, clock=clock))}
    assert results[carol_id].state is OutboxState.QUEUED
    assert results[carol_id].next_attempt_at == NOW + timedelta(minutes=5)
    assert results[dave_id].state is OutboxState.SENT
    assert row(site, carol_id).last_error.startswith(f"smarthost {LOOPBACK}:{peer.port}: ")
    assert status(site, "u-drop", CAROL) == {"1.1"}
    assert [m.rcpt_to for m in peer.received] == [(DAVE,)]


def test_an_unreachable_smarthost_defers_the_whole_pass_after_one_try(site: Database, clock: Clock) -> None:
    ids = invite(site, "u-down", CAROL, DAVE)
    results = send(Sender(config_for(site, free_port()), site, compose, clock=clock))
    assert [r.state for r in results] == [OutboxState.QUEUED, OutboxState.QUEUED]
    assert {row(site, i).last_error for i in ids} == {results[0].detail}
    assert results[0].detail.startswith(f"smarthost {LOOPBACK}:")


def test_a_message_that_cannot_be_composed_fails_with_its_reason_and_the_pass_goes_on(
    site: Database, peer: Sink, clock: Clock
) -> None:
    carol_id, dave_id = invite(site, "u-compose", CAROL, DAVE)
    results = {r.outbox_id: r for r in send(Sender(config_for(site, peer.port), site, failing_for(CAROL), clock=clock))}
    assert results[carol_id].state is OutboxState.FAILED and results[dave_id].state is OutboxState.SENT
    assert row(site, carol_id).last_error == "uncomposable: ValueError: no template for this method"
    assert status(site, "u-compose", CAROL) == {"5.1"}


def test_the_running_sender_sends_when_poked_and_survives_a_bad_row(site: Database, peer: Sink) -> None:
    async def scenario() -> None:
        sender = Sender(config_for(site, peer.port), site, failing_for(CAROL))
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(invite, site, "u-run", CAROL, DAVE)
        sender.poke()
        for _ in range(100):
            if peer.received:
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(invite, site, "u-run-2", DAVE)
        sender.poke()
        for _ in range(100):
            if len(peer.received) == 2:
                break
            await asyncio.sleep(0.05)
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert [m.rcpt_to for m in peer.received] == [(DAVE,), (DAVE,)]
    assert status(site, "u-run", CAROL) == {"5.1"}


def test_starttls_and_auth_are_used_and_a_refused_login_only_defers(
    site: Database, clock: Clock, tmp_path: Path
) -> None:
    try:
        cert, key = _self_signed_cert(tmp_path)
    except ServerUnavailable as error:
        pytest.skip(str(error))
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    (outbox_id,) = invite(site, "u-tls", CAROL)
    with smtp_peer(tls=(cert, key), auth=("reefknot", "s3cret")) as peer:
        settings = {"starttls": True, "ca_file": str(cert), "username": "reefknot"}
        wrong = tmp_path / "wrong"
        wrong.write_text("guess\n")
        sender = Sender(config_for(site, peer.port, password_file=str(wrong), **settings), site, compose, clock=clock)
        (result,) = send(sender)
        assert result.state is OutboxState.QUEUED and "535" in result.detail
        clock.advance(timedelta(minutes=5))
        sender = Sender(config_for(site, peer.port, password_file=str(secret), **settings), site, compose, clock=clock)
        (result,) = send(sender)
        assert result.state is OutboxState.SENT
        assert [m.message_id for m in peer.received] == [row(site, outbox_id).message_id]


def test_postfix_smtp_sink_takes_an_invitation(site: Database, clock: Clock) -> None:
    (outbox_id,) = invite(site, "u-postfix", CAROL)
    try:
        sink_context = smtp_sink()
        sink = sink_context.__enter__()
    except ServerUnavailable as error:
        pytest.skip(str(error))
    try:
        (result,) = send(Sender(config_for(site, sink.port), site, compose, clock=clock))
        (mail,) = sink.wait_for_messages(1)
    finally:
        sink_context.__exit__(None, None, None)
    sent = row(site, outbox_id)
    assert result.state is OutboxState.SENT and sent.state == "sent"
    assert (mail.mail_from, mail.rcpt_to) == (f"bounce+{outbox_id}.{sent.reply_token}@{REPLY_DOMAIN}", (CAROL,))
    assert f"Message-ID: {sent.message_id}".encode() in mail.content
    assert status(site, "u-postfix", CAROL) == {"1.1"}


def test_two_senders_on_postgresql_never_send_the_same_row_twice(site: Database, peer: Sink) -> None:
    if site.is_sqlite:
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has one writer")
    attendees = [f"guest{n}@bar.example" for n in range(24)]
    ids = invite(site, "u-many", *attendees)
    other = Database(site.url)

    async def drain(sender: Sender) -> int:
        sent = 0
        while batch := await sender.send_due(limit=2):
            sent += len(batch)
        return sent

    async def both() -> list[int]:
        first = Sender(config_for(site, peer.port), site, compose)
        second = Sender(config_for(other, peer.port), other, compose)
        return list(await asyncio.gather(drain(first), drain(second)))

    try:
        counts = asyncio.run(both())
    finally:
        other.dispose()
    assert sum(counts) == len(attendees) and min(counts) > 0  # both took part
    assert sorted(m.rcpt_to[0] for m in peer.offered) == sorted(attendees)
    assert {row(site, i).state for i in ids} == {"sent"}
    assert {row(site, i).attempts for i in ids} == {1}


def test_a_claimed_row_is_skipped_by_a_concurrent_claim_on_postgresql(site: Database) -> None:
    if site.is_sqlite:
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has one writer")
    ids = invite(site, "u-claim", CAROL, DAVE, "erin@baz.example")
    lease = NOW + timedelta(minutes=10)
    with site.transaction() as first:
        taken = [r.id for r in outbox.claim_due(first, NOW, lease, 2)]
        with site.transaction() as second:  # the first has not committed: its rows are locked
            other = [r.id for r in outbox.claim_due(second, NOW, lease, 3)]
    assert sorted(taken + other) == sorted(ids) and not set(taken) & set(other)
    with site.transaction() as third:  # both committed: every row is leased
        assert outbox.claim_due(third, NOW + timedelta(minutes=9), lease, 3) == []
        assert len(outbox.claim_due(third, lease + timedelta(seconds=1), lease, 3)) == 3


def test_a_lease_left_by_a_crashed_sender_expires_and_the_row_is_sent_once_more(
    site: Database, peer: Sink, clock: Clock
) -> None:
    (outbox_id,) = invite(site, "u-crash", CAROL)
    with site.transaction() as session:
        outbox.claim_due(session, NOW, NOW + timedelta(minutes=30), 10)  # and the sender died
    sender = Sender(config_for(site, peer.port), site, compose, clock=clock)
    assert send(sender) == []
    clock.advance(timedelta(minutes=31))
    (result,) = send(sender)
    assert result.state is OutboxState.SENT and row(site, outbox_id).attempts == 2


def test_outbound_settings_are_read_and_checked(tmp_path: Path) -> None:
    from gateway.settings.config import ConfigError, load_config

    path = tmp_path / "reefknot.toml"
    path.write_text('[outbound]\nsmarthost = "relay.example:587"\nstarttls = true\nusername = "u"\n'
                    'password_file = "/etc/reefknot/pw"\nlifetime = 86400\nretry_min = 60\nretry_max = 600\n'
                    'templates_dir = "/etc/reefknot/templates"\n')
    options = load_config(str(path)).outbound
    assert options == dataclasses.replace(
        OutboundOptions(), starttls=True, username="u", password_file="/etc/reefknot/pw", lifetime=86400.0,
        retry_min=60.0, retry_max=600.0, templates_dir="/etc/reefknot/templates",
    )
    assert Config().outbound == OutboundOptions(lifetime=5 * 86400.0, retry_min=300.0, retry_max=3600.0)
    for bad in ('retry_min = 7200', 'lifetime = 0', 'starttls = "yes"', 'username = "u"', 'timeout = -1'):
        path.write_text(f"[outbound]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"\[outbound\]"):
            load_config(str(path))
