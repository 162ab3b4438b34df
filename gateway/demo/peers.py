"""The other domains of the demo: one SMTP server on loopback that takes every message for bar.example and baz.example.

It is Reefknot's smarthost in the demo, so every mail Reefknot sends ends up here, where
the people of those domains read it. Nothing is relayed any further.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Delivered:
    """One message as the other domain received it."""

    mail_from: str
    recipient: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Mailboxes:
    delivered: list[Delivered] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.arrived:
            for recipient in envelope.rcpt_tos:
                self.delivered.append(Delivered(str(envelope.mail_from), recipient.lower(), envelope.original_content))
            self.arrived.notify_all()
        return "250 2.0.0 Ok: delivered"


class OtherDomains:
    """A running stand-in for the other domains' mail servers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._mailboxes = _Mailboxes()
        self._controller = Controller(self._mailboxes, hostname=host, port=port)

    def __enter__(self) -> OtherDomains:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def count(self) -> int:
        with self._mailboxes.arrived:
            return len(self._mailboxes.delivered)

    def next_for(self, recipient: str, after: int, timeout: float) -> Delivered | None:
        """The first message for ``recipient`` among those that arrived after the first ``after``; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._mailboxes.arrived:
            while True:
                found = [d for d in self._mailboxes.delivered[after:] if d.recipient == recipient.lower()]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._mailboxes.arrived.wait(left)
