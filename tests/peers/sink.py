"""An SMTP peer for the sender's tests: an aiosmtpd server on a loopback port that answers as it is told.

Each recipient can be answered at RCPT TO or after DATA with any reply line (``250``,
``451 4.3.0 …``, ``550 5.1.1 …``), or have the connection dropped there; everything
accepted is recorded. Optional STARTTLS (required) and AUTH PLAIN/LOGIN with one user.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.peers.servers import LOOPBACK, free_port

DROP = "drop"  # an answer that closes the connection instead of replying
OK = "250 2.0.0 Ok: queued"


@dataclass(frozen=True)
class Received:
    """One message the sink accepted."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes

    @property
    def message_id(self) -> str:
        return str(message_from_bytes(self.data)["Message-ID"])


@dataclass
class SinkHandler:
    """The aiosmtpd handler: replies by recipient and stage, records what it accepts."""

    at_rcpt: dict[str, str] = field(default_factory=dict)
    at_data: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    offered: list[Received] = field(default_factory=list)  # every DATA, accepted or not
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        answer = self.at_rcpt.get(address.lower(), OK)
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return _reply(server, answer)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answers = [self.at_data.get(r.lower(), OK) for r in envelope.rcpt_tos]
        answer = next((a for a in answers if not a.startswith("250")), OK)
        message = Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), envelope.original_content or b"")
        with self.lock:
            self.offered.append(message)
            if answer == OK:
                self.received.append(message)
        return _reply(server, answer)


def _reply(server: SMTP, answer: str) -> str:
    if answer == DROP:
        assert isinstance(server.transport, asyncio.Transport)
        server.transport.abort()
        return "421 4.4.2 closing"  # never reaches the client: the connection is gone
    return answer


@dataclass
class Sink:
    """A running sink: where it listens, how it answers, what it got."""

    host: str
    port: int
    handler: SinkHandler

    def answer(self, recipient: str, reply: str, *, at: str = "rcpt") -> None:
        """From now on answer ``recipient`` with ``reply`` (or DROP) at ``rcpt`` or ``data``."""
        (self.handler.at_rcpt if at == "rcpt" else self.handler.at_data)[recipient.lower()] = reply

    def accept(self, recipient: str) -> None:
        self.handler.at_rcpt.pop(recipient.lower(), None)
        self.handler.at_data.pop(recipient.lower(), None)

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def offered(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.offered)

    @property
    def connections(self) -> int:
        return self.handler.connections


def _authenticator(user: str, password: str) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (user.encode(), password.encode())
        return AuthResult(success=good, handled=False)

    return check


@contextmanager
def smtp_peer(*, tls: tuple[Path, Path] | None = None, auth: tuple[str, str] | None = None) -> Iterator[Sink]:
    """Run a sink on a free loopback port; ``tls`` (cert, key) requires STARTTLS, ``auth`` (user, password) AUTH."""
    handler = SinkHandler()
    options: dict[str, Any] = {}
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        options.update(tls_context=context, require_starttls=True)
    if auth is not None:
        options.update(authenticator=_authenticator(*auth), auth_required=True, auth_require_tls=tls is not None)
    port = free_port()
    controller = Controller(handler, hostname=LOOPBACK, port=port, **options)
    controller.start()
    try:
        yield Sink(LOOPBACK, port, handler)
    finally:
        controller.stop()
