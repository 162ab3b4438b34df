"""A polled IMAP mailbox's name and position (RFC 3501 §2.3.1.1): which messages were already taken.

A UID names the same message only while UIDVALIDITY is unchanged, so the position is
the pair. Knows no IMAP and no store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class MailboxKey:
    host: str
    username: str
    folder: str

    def lock_id(self) -> int:
        """A signed 64-bit number for ``pg_try_advisory_lock``, the same in every process."""
        digest = hashlib.sha256(f"reefknot-imap\0{self.host}\0{self.username}\0{self.folder}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class MailboxPosition:
    """The UIDVALIDITY seen last (0: never) and the highest UID taken under it."""

    uidvalidity: int = 0
    last_uid: int = 0
