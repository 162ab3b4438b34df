"""The listeners' view of which addresses are local, so that a RCPT for a known principal asks no database.

The view is every principal's address and alias, read in one go and read again only
when the directory's revision has changed. A yes is taken from it for up to
``FRESH_FOR`` seconds after the revision was last confirmed; a no is only given after
reading the revision again, so that a principal added a moment ago is never refused. A
principal removed a moment ago may still be accepted: processing then finds no local
recipient and records the message with that reason.
"""

from __future__ import annotations

import threading
import time

from gateway.core.addresses import normalize_address
from gateway.store import directory
from gateway.store.db import Database

FRESH_FOR = 10.0  # seconds a yes is given without reading the directory's revision again


class LocalAddresses:
    """``known(address)`` answers from memory; ``refresh()`` (blocking: a worker thread's) brings the view up to date."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._revision: int | None = None
        self._addresses: frozenset[str] = frozenset()
        self._confirmed_at = float("-inf")
        self._lock = threading.Lock()  # one refresh at a time; the others wait for it rather than read again

    def known(self, address: str) -> bool:
        """True when the address is local by a view confirmed less than ``FRESH_FOR`` seconds ago."""
        fresh = time.monotonic() - self._confirmed_at < FRESH_FOR
        return fresh and (normalize_address(address) or "") in self._addresses

    def refresh(self) -> None:
        """Read the directory's revision, and every address again if it changed."""
        with self._lock, self.db.reading() as session:
            revision = directory.read_revision(session)
            if revision != self._revision or revision is None:
                self._addresses = directory.every_address(session)
                self._revision = revision
            self._confirmed_at = time.monotonic()
