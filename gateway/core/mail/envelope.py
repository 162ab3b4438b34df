"""The SMTP envelope of a message as the MTA gave it (RFC 5321), and where it came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Envelope:
    """Who the MTA says the message is from and for (RFC 5321), and where it came from."""

    sender: str
    recipients: tuple[str, ...]
    source: str

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2].lower()[:255] if "@" in self.sender else ""
