"""The next-hop client against real aiosmtpd LMTP and SMTP servers; and how ``next_hop`` is written."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.edges.nexthop import NextHopClient
from gateway.settings.config import Listener, NextHop, load_config
from gateway.settings.reader import SettingError
from tests.peers.servers import LOOPBACK, free_port


class Mailboxes:
    """A mailbox server: refuses ``unknown@`` at RCPT, ``full@`` after DATA, keeps what it takes."""

    def __init__(self, lmtp: bool) -> None:
        self.lmtp = lmtp
        self.received: list[tuple[str, list[str], bytes, list[str]]] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address.startswith("unknown@"):
            return "550 5.1.1 <unknown@foo.example> User doesn't exist"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), content, envelope.mail_options))
        replies = ["552-5.2.2 Mailbox full\r\n552 5.2.2 try again next year" if r.startswith("full@")
                   else f"250 2.0.0 <{r}> Saved" for r in envelope.rcpt_tos]
        if not self.lmtp:
            return next((r for r in replies if not r.startswith("250")), "250 2.0.0 Ok")
        return "\r\n".join(replies)


class _LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, enable_SMTPUTF8=True)


@pytest.fixture(params=["lmtp", "smtp"])
def hop(request: pytest.FixtureRequest) -> Iterator[tuple[NextHop, Mailboxes]]:
    mailboxes = Mailboxes(request.param == "lmtp")
    port = free_port()
    kind = _LmtpController if request.param == "lmtp" else Controller
    controller = kind(mailboxes, hostname=LOOPBACK, port=port)
    controller.start()
    yield NextHop(request.param, Listener(LOOPBACK, port)), mailboxes
    controller.stop()


def hand_on(hop: NextHop, recipients: list[str], raw: bytes, timeout: float = 10.0) -> list[str]:
    client = NextHopClient(hop, hostname="reefknot.test", timeout=timeout)
    return [str(reply) for reply in asyncio.run(client.hand_on("erin@baz.example", recipients, raw))]


def test_each_recipient_gets_its_own_answer_from_rcpt_or_after_data(hop: tuple[NextHop, Mailboxes]) -> None:
    next_hop, mailboxes = hop
    replies = hand_on(next_hop, ["alice@foo.example", "unknown@foo.example", "bob@foo.example"], b"Subject: x\r\n\r\nhi\r\n")
    assert replies[1].startswith("550 5.1.1")
    assert replies[0].startswith("250") and replies[2].startswith("250")
    (received,) = mailboxes.received
    assert received[1] == ["alice@foo.example", "bob@foo.example"]


def test_over_lmtp_a_refusal_after_data_is_that_recipients_alone(hop: tuple[NextHop, Mailboxes]) -> None:
    next_hop, _ = hop
    replies = hand_on(next_hop, ["alice@foo.example", "full@foo.example"], b"Subject: x\r\n\r\nhi\r\n")
    assert replies[1] == "552 5.2.2 Mailbox full 5.2.2 try again next year"  # a multi-line reply, joined
    assert replies[0].startswith("250" if next_hop.protocol == "lmtp" else "552")  # SMTP: one answer for all


def test_the_message_arrives_byte_for_byte_with_dots_and_8bit_and_bare_line_feeds_made_crlf(
    hop: tuple[NextHop, Mailboxes],
) -> None:
    next_hop, mailboxes = hop
    raw = "Subject: café\r\n\r\n.leading dot\r\n..two\r\nbare\nend".encode()
    hand_on(next_hop, ["alice@foo.example"], raw)
    (received,) = mailboxes.received
    assert received[2] == "Subject: café\r\n\r\n.leading dot\r\n..two\r\nbare\r\nend\r\n".encode()
    assert "BODY=8BITMIME" in received[3]


def test_a_next_hop_that_is_down_or_silent_is_a_temporary_failure_for_everyone() -> None:
    closed = NextHop("lmtp", Listener(LOOPBACK, free_port()))
    assert all(r.startswith("451 4.4.1") for r in hand_on(closed, ["a@foo.example", "b@foo.example"], b"x\r\n"))
    with socket.socket() as silent:  # accepts the connection, never greets
        silent.bind((LOOPBACK, 0))
        silent.listen()
        hop = NextHop("lmtp", Listener(LOOPBACK, silent.getsockname()[1]))
        (reply,) = hand_on(hop, ["a@foo.example"], b"x\r\n", timeout=0.5)
    assert reply.startswith("451 4.4.1") and "no answer in time" in reply


def test_a_unix_socket_next_hop(tmp_path: Path) -> None:
    mailboxes = Mailboxes(lmtp=True)
    path = tmp_path / "lmtp"

    class Unix(UnixSocketController):
        def factory(self) -> LMTP:
            return LMTP(self.handler)

    controller = Unix(mailboxes, unix_socket=str(path))
    controller.start()
    try:
        replies = hand_on(NextHop("lmtp", Listener(path=str(path))), ["alice@foo.example"], b"x\r\n")
    finally:
        controller.stop()
    assert replies[0].startswith("250") and len(mailboxes.received) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lmtp:unix:/run/dovecot/lmtp", NextHop("lmtp", Listener(path="/run/dovecot/lmtp"))),
        ("lmtp:127.0.0.1:24", NextHop("lmtp", Listener("127.0.0.1", 24))),
        ("smtp:[::1]:2525", NextHop("smtp", Listener("::1", 2525))),
    ],
)
def test_next_hop_is_written_as_protocol_and_address(tmp_path: Path, value: str, expected: NextHop) -> None:
    path = tmp_path / "reefknot.toml"
    path.write_text(f'[lmtp]\nnext_hop = "{value}"\n')
    assert load_config(str(path)).lmtp_options.next_hop == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('next_hop = "dovecot"\n', "is not lmtp:unix:PATH, lmtp:HOST:PORT or smtp:HOST:PORT"),
        ('next_hop = "lmtp:localhost"\n', "is not HOST:PORT or unix:PATH"),
        ('next_hop = "smtp:unix:/run/x"\n', "SMTP to a unix socket is not supported"),
        ('mode = "copy"\nnext_hop = "lmtp:127.0.0.1:24"\n', "only in transport mode"),
    ],
)
def test_a_bad_next_hop_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "reefknot.toml"
    path.write_text(f"[smtp]\n{text}")
    with pytest.raises(SettingError) as error:
        load_config(str(path))
    assert message in str(error.value) and error.value.line == text.count("\n") + 1
