"""Tests for the throwaway Postfix peer: relaying, transport maps, LMTP retries, a pipe transport, on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.peers.postfix import PostfixInstance, QueuedMessage, postfix_instance, postfix_unavailable
from tests.peers.servers import LOOPBACK, _reachable_tempdir, _user_ids, free_port
from tests.peers.sink import Sink, smtp_peer

_UNAVAILABLE = postfix_unavailable()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"no private Postfix: {_UNAVAILABLE}")

SENDER = "organizer@bar.example"


def submit(postfix: PostfixInstance, recipients: list[str], subject: str = "hello", sender: str = SENDER) -> str:
    """Hand one message to the instance's smtpd with smtplib; return its Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}.{time.monotonic_ns()}@bar.example>"
    message.set_content("body\n")
    with smtplib.SMTP(postfix.host, postfix.smtp_port, timeout=10) as smtp:
        smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    return str(message["Message-ID"])


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met after {timeout:g}s")
        time.sleep(0.05)


# -- an LMTP server that answers as it is told ------------------------------------


@dataclass
class LmtpHandler:
    """Answers every recipient after DATA with ``reply``, one LMTP reply line each; records what it accepts."""

    reply: str = "250 2.0.0 delivered"
    received: list[tuple[str, tuple[str, ...], bytes]] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self.reply
        with self.lock:
            self.attempts += 1
            if reply.startswith("250"):
                content = envelope.original_content or b""
                self.received.append((str(envelope.mail_from), tuple(envelope.rcpt_tos), content))
        return "\r\n".join(reply for _ in envelope.rcpt_tos)


class LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler)


@contextlib.contextmanager
def lmtp_server() -> Iterator[tuple[int, LmtpHandler]]:
    handler = LmtpHandler()
    port = free_port()
    controller = LmtpController(handler, hostname=LOOPBACK, port=port)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


@pytest.fixture
def sink() -> Iterator[Sink]:
    with smtp_peer() as peer:
        yield peer


@pytest.fixture
def lmtp() -> Iterator[tuple[int, LmtpHandler]]:
    with lmtp_server() as server:
        yield server


# -- the tests --------------------------------------------------------------------


def test_relays_to_the_relayhost_with_the_original_envelope(sink: Sink) -> None:
    with postfix_instance({"relayhost": f"[{LOOPBACK}]:{sink.port}"}) as postfix:
        message_id = submit(postfix, ["attendee@elsewhere.example"])
        postfix.wait_for_queue_empty(10)
        assert "status=sent" in postfix.log()

    [received] = sink.received
    assert received.mail_from == SENDER
    assert received.rcpt_to == ("attendee@elsewhere.example",)
    assert received.message_id == message_id


def test_transport_map_sends_one_recipient_over_lmtp_and_the_other_to_the_relayhost(
    sink: Sink, lmtp: tuple[int, LmtpHandler]
) -> None:
    lmtp_port, handler = lmtp
    with postfix_instance(
        {"relayhost": f"[{LOOPBACK}]:{sink.port}", "transport_maps": "hash:$config_directory/transport"},
        maps={"hash:transport": f"calendar@foo.example lmtp:inet:{LOOPBACK}:{lmtp_port}\n"},
    ) as postfix:
        submit(postfix, ["calendar@foo.example", "someone@elsewhere.example"])
        postfix.wait_for_queue_empty(10)

    assert [(frm, rcpts) for frm, rcpts, _ in handler.received] == [(SENDER, ("calendar@foo.example",))]
    assert [(r.mail_from, r.rcpt_to) for r in sink.received] == [(SENDER, ("someone@elsewhere.example",))]


def test_a_451_from_lmtp_keeps_the_message_queued_until_a_flush_delivers_it(lmtp: tuple[int, LmtpHandler]) -> None:
    lmtp_port, handler = lmtp
    handler.reply = "451 4.3.0 mailbox busy, try later"
    with postfix_instance(
        {"transport_maps": "hash:$config_directory/transport"},
        maps={"hash:transport": f"calendar@foo.example lmtp:inet:{LOOPBACK}:{lmtp_port}\n"},
    ) as postfix:
        submit(postfix, ["calendar@foo.example"])

        deferred: list[QueuedMessage] = []

        def is_deferred() -> bool:  # deferred, or back in the active queue for its next try (1 s backoff)
            deferred[:] = [m for m in postfix.queue() if any(r.delay_reason for r in m.recipients)]
            return bool(deferred)

        wait_for(is_deferred, 30, "a deferred message")
        [message] = deferred
        assert message.sender == SENDER
        assert message.addresses == ("calendar@foo.example",)
        assert "451 4.3.0 mailbox busy" in message.recipients[0].delay_reason
        assert handler.received == []

        handler.reply = "250 2.0.0 delivered"
        postfix.flush()
        postfix.wait_for_queue_empty(10)

    assert [rcpts for _, rcpts, _ in handler.received] == [("calendar@foo.example",)]
    assert handler.attempts >= 2


@pytest.fixture
def capture_dir() -> Iterator[Path]:
    """A directory the pipe transport's user (nobody) can reach and write to."""
    directory = _reachable_tempdir("reefknot-pipe-")
    out = directory / "out"
    out.mkdir()
    os.chown(out, *_user_ids("nobody"))
    script = directory / "capture.sh"
    script.write_text(f'#!/bin/sh\nout="{out}/$$"\nprintf \'%s\\n\' "$@" > "$out.args"\ncat > "$out.eml"\n')
    script.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_pipe_transport_gets_the_message_with_sender_and_recipient_arguments(capture_dir: Path) -> None:
    master_cf = (
        "capture   unix  -       n       n       -       -       pipe\n"
        f"  flags=R user=nobody argv={capture_dir / 'capture.sh'} ${{sender}} ${{recipient}}\n"
    )
    with postfix_instance(
        {"transport_maps": "regexp:$config_directory/transport", "capture_destination_recipient_limit": "1"},
        master_cf,
        maps={"regexp:transport": "/^calendar\\+pipe@foo\\.example$/ capture:\n"},
    ) as postfix:
        message_id = submit(postfix, ["calendar+pipe@foo.example"], subject="piped")
        postfix.wait_for_queue_empty(10)

    [args] = list((capture_dir / "out").glob("*.args"))
    assert args.read_text().splitlines() == [SENDER, "calendar+pipe@foo.example"]
    delivered = message_from_bytes(args.with_suffix(".eml").read_bytes())
    assert delivered["Message-ID"] == message_id
    assert delivered["Return-Path"] == f"<{SENDER}>"


def test_pcre_tables_work_when_postfix_pcre_is_installed(sink: Sink) -> None:
    with postfix_instance(
        {"relayhost": f"[{LOOPBACK}]:{sink.port}", "recipient_canonical_maps": "pcre:$config_directory/canonical"},
        maps={"pcre:canonical": "/^(.+)@old\\.example$/ ${1}@new.example\n"},
    ) as postfix:
        if "pcre" not in postfix.map_types():
            pytest.skip("postfix-pcre is not installed")
        submit(postfix, ["calendar@old.example"])
        postfix.wait_for_queue_empty(10)

    assert [r.rcpt_to for r in sink.received] == [("calendar@new.example",)]


def test_instances_start_one_after_another_and_leave_nothing_running() -> None:
    masters: list[int] = []
    for _ in range(2):
        with postfix_instance() as postfix:
            masters.append(int((postfix.queue_dir / "pid" / "master.pid").read_text().split()[0]))
            assert postfix.postconf("config_directory") == str(postfix.config_dir)
            assert postfix.queue() == []
        directory, port = postfix.directory, postfix.smtp_port
        assert not directory.exists()
        with pytest.raises(OSError):
            smtplib.SMTP(LOOPBACK, port, timeout=1)
    for pid in masters:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"


def test_an_instance_that_cannot_start_says_why() -> None:
    with pytest.raises(RuntimeError) as failure, postfix_instance({"mail_owner": "no-such-user-here"}):
        pass  # pragma: no cover
    text = str(failure.value)
    assert "Postfix did not start" in text
    assert "no-such-user-here" in text
    assert "postfix check" in text
