"""In front of the mailboxes: ``reefknot serve`` with a ``next_hop`` hands every message on to a real Dovecot LMTP.

Plain mail and invitations both reach the mailbox unchanged; the invitation is also
applied. The mailbox's refusal of a recipient is the MTA's answer for it, a mailbox
that is down is a 451 with nothing kept, and an MTA that sends a message again (it never
saw the answer, Reefknot restarted in between) does not get it delivered twice.
"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope

from gateway.core.calendar.ical import components_of, parse_calendar
from gateway.service.handoff import already_delivered, message_digest
from gateway.store.db import Database
from tests.peers.cli import Reefknot
from tests.peers.serve import ServeProcess, intake_rows, lmtp_deliver, wait_until_processed, write_config
from tests.peers.servers import LOOPBACK, DovecotServer, ServerUnavailable, dovecot_server, free_port

pytestmark = pytest.mark.e2e
ALICE, BOB, ERIN = "alice@foo.example", "bob@foo.example", "erin@baz.example"
POSTMASTER = "postmaster@foo.example"  # a mailbox that is no calendar user


def plain_mail(subject: str) -> bytes:
    return (f"From: {ERIN}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\n"
            f"Shall we have lunch?\r\n.. a line that starts with a dot\r\n").encode()


def invitation(uid: str) -> bytes:
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20261201T090000Z\r\nDTSTART:20270105T100000Z\r\nDTEND:20270105T110000Z\r\n"
        f"SUMMARY:Planning\r\nORGANIZER:mailto:{ERIN}\r\nATTENDEE;RSVP=TRUE:mailto:{ALICE}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return (f"From: {ERIN}\r\nTo: {ALICE}\r\nSubject: Planning\r\nMessage-ID: <{uid}@test>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: text/calendar; method=REQUEST; charset="utf-8"\r\n\r\n{calendar}').encode()


def mailbox(dovecot: DovecotServer, user: str) -> list[bytes]:
    """The messages in a user's INBOX, with the CRLF line ends they had on the wire (a Maildir keeps LF)."""
    new = dovecot.maildir(user) / "new"
    return [path.read_bytes().replace(b"\n", b"\r\n") for path in sorted(new.iterdir())] if new.exists() else []


def wait_for_mail(dovecot: DovecotServer, user: str, count: int, timeout: float = 10.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while len(found := mailbox(dovecot, user)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    try:
        with dovecot_server({ALICE: "pw", BOB: "pw", POSTMASTER: "pw"}, lmtp=True) as server:
            yield server
    except ServerUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def site(tmp_path: Path, dovecot: DovecotServer, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Path, int, int]]:
    """Reefknot in front of Dovecot: LMTP and SMTP both hand on to its LMTP socket; alice and bob are users."""
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    hop = f'next_hop = "lmtp:unix:{dovecot.lmtp_socket}"'
    config, smtp_port, lmtp_port = write_config(tmp_path, database_url, smtp=hop, lmtp=hop)
    cli = Reefknot(config, capsys)
    for user in (ALICE, BOB):
        cli("users", "add", user)
    yield config, smtp_port, lmtp_port


@pytest.fixture
def serve(site: tuple[Path, int, int]) -> Iterator[ServeProcess]:
    config = site[0]
    process = ServeProcess(config, config.parent / "serve.log")
    process.start()
    yield process
    process.close()


def database_of(config: Path) -> str:
    return f"sqlite:///{config.parent / 'reefknot.db'}"


def test_plain_mail_and_an_invitation_both_reach_the_mailbox_unchanged_and_the_invitation_is_applied(
    site: tuple[Path, int, int], serve: ServeProcess, dovecot: DovecotServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, lmtp_port = site
    lunch, planning = plain_mail("lunch"), invitation("planning-1")
    for message in (lunch, planning):
        answers, replies = lmtp_deliver(lmtp_port, ERIN, [ALICE], message)
        assert answers[ALICE][0] == 250 and [code for code, _ in replies] == [250]

    stored = wait_for_mail(dovecot, ALICE, 2)
    assert len(stored) == 2
    assert {message for message in (lunch, planning) if any(s.endswith(message) for s in stored)} == {lunch, planning}

    rows = wait_until_processed(database_of(config), ["<lunch@test>", "<planning-1@test>"])
    states = {row.message_id: (row.state, row.raw) for row in rows}
    assert states["<planning-1@test>"][0] == "done"
    assert states["<lunch@test>"] == ("ignored", b"")  # nothing to apply, and the mailbox has it: no bytes kept
    exported = parse_calendar(Reefknot(config, capsys)("calendar", "export", ALICE, "--uid", "planning-1"))
    assert [str(c["SUMMARY"]) for c in components_of(exported)] == ["Planning"]


def test_each_recipient_gets_the_mailboxes_own_answer_and_a_mailbox_without_a_calendar_user_still_gets_mail(
    site: tuple[Path, int, int], serve: ServeProcess, dovecot: DovecotServer
) -> None:
    _, _, lmtp_port = site
    message = plain_mail("everyone")
    answers, replies = lmtp_deliver(lmtp_port, ERIN, [ALICE, "nobody@foo.example", POSTMASTER], message)
    assert all(code == 250 for code, _ in answers.values())  # at RCPT the mailbox decides nothing yet
    assert [code for code, _ in replies] == [250, 550, 250]
    assert b"5.1.1" in replies[1][1] and b"nobody@foo.example" in replies[1][1]  # Dovecot's own words
    assert len(wait_for_mail(dovecot, ALICE, 1)) == 1 and len(wait_for_mail(dovecot, POSTMASTER, 1)) == 1
    (row,) = intake_rows(database_of(site[0]), "<everyone@test>")
    assert sorted(row.recipients) == [ALICE, POSTMASTER]


def test_a_message_sent_again_after_a_restart_is_answered_without_a_second_delivery(
    site: tuple[Path, int, int], serve: ServeProcess, dovecot: DovecotServer
) -> None:
    config, _, lmtp_port = site
    message = invitation("retried")
    lmtp_deliver(lmtp_port, ERIN, [ALICE], message)
    serve.kill()  # as if it died before the MTA read its answer: the MTA sends the message again
    again = ServeProcess(config, config.parent / "serve.log")
    again.start()
    try:
        answers, replies = lmtp_deliver(lmtp_port, ERIN, [ALICE, BOB], message)
        assert [code for code, _ in replies] == [250, 250]
        assert b"already delivered" in replies[0][1]
        assert len(wait_for_mail(dovecot, BOB, 1)) == 1
        time.sleep(0.3)
        assert len(mailbox(dovecot, ALICE)) == 1
        rows = wait_until_processed(database_of(config), ["<retried@test>"])
        assert sorted(r for row in rows for r in row.recipients) == [ALICE, BOB]  # each recipient applied once
    finally:
        again.close()


def test_a_mailbox_that_is_down_is_a_451_with_nothing_kept_and_the_retry_delivers_once(
    site: tuple[Path, int, int], serve: ServeProcess, dovecot: DovecotServer
) -> None:
    config, _, lmtp_port = site
    message = plain_mail("while-down")
    dovecot.stop()
    try:
        _, replies = lmtp_deliver(lmtp_port, ERIN, [ALICE, BOB], message)
        assert [code for code, _ in replies] == [451, 451]
        assert intake_rows(database_of(config), "<while-down@test>") == []
    finally:
        dovecot.start()
    _, replies = lmtp_deliver(lmtp_port, ERIN, [ALICE, BOB], message)
    assert [code for code, _ in replies] == [250, 250]
    assert len(wait_for_mail(dovecot, ALICE, 1)) == 1 and len(wait_for_mail(dovecot, BOB, 1)) == 1


def test_over_smtp_one_recipient_a_transaction_so_that_the_answer_after_data_is_that_recipients_own(
    site: tuple[Path, int, int], serve: ServeProcess, dovecot: DovecotServer
) -> None:
    _, smtp_port, _ = site
    with smtplib.SMTP(LOOPBACK, smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail(ERIN)
        assert client.rcpt(ALICE)[0] == 250
        code, text = client.rcpt(BOB)
        assert (code, text[:5]) == (452, b"4.5.3")
        assert client.data(plain_mail("over-smtp"))[0] == 250
        client.rset()
        client.mail(ERIN)
        client.rcpt("nobody@foo.example")
        code, text = client.data(plain_mail("to-nobody"))
        assert code == 550 and b"5.1.1" in text
    assert len(wait_for_mail(dovecot, ALICE, 1)) == 1


def test_reefknots_own_reply_addresses_are_taken_and_never_handed_on(
    site: tuple[Path, int, int], serve: ServeProcess, dovecot: DovecotServer
) -> None:
    _, _, lmtp_port = site
    answers, _ = lmtp_deliver(lmtp_port, ERIN, ["reply+abcdefghijklmnopqrst@foo.example"], plain_mail("to-a-token"))
    assert answers["reply+abcdefghijklmnopqrst@foo.example"][0] == 550  # no such token: refused like an unknown principal
    assert mailbox(dovecot, ALICE) == []


class _LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler)


class SlowMailbox:
    """An LMTP mailbox that takes a second to answer after DATA."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        await asyncio.sleep(1.0)
        self.received.append(envelope.original_content or b"")
        return "\r\n".join("250 2.0.0 Saved" for _ in envelope.rcpt_tos)


def test_sigterm_while_a_message_is_being_handed_on_finishes_it_and_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mailbox_server = SlowMailbox()
    port = free_port()
    controller = _LmtpController(mailbox_server, hostname=LOOPBACK, port=port)
    controller.start()
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    config, _, lmtp_port = write_config(tmp_path, database_url, lmtp=f'next_hop = "lmtp:{LOOPBACK}:{port}"')
    Reefknot(config, capsys)("users", "add", ALICE)
    daemon = ServeProcess(config, tmp_path / "serve.log")
    daemon.start()
    try:
        answer: list[object] = []
        client = threading.Thread(target=lambda: answer.append(
            lmtp_deliver(lmtp_port, ERIN, [ALICE], plain_mail("in-flight"))))
        client.start()
        time.sleep(0.5)  # the mailbox has the message and has not answered yet
        daemon.signal(signal.SIGTERM)
        client.join(10)
        assert daemon.stop() == 0
    finally:
        daemon.close()
        controller.stop()
    assert len(mailbox_server.received) == 1
    (row,) = intake_rows(database_url, "<in-flight@test>")
    assert row.handed_on
    assert already_delivered(Database(database_url), message_digest(ERIN, row.raw or plain_mail("in-flight")),
                             [ALICE]) == {ALICE}
