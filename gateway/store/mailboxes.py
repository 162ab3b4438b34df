"""Where each polled IMAP mailbox stands, and the lock that lets one process poll it. Knows no IMAP.

A mailbox is named by host, user name and folder. Its position is the folder's
UIDVALIDITY and the highest UID already taken into the intake queue (RFC 3501
section 2.3.1.1: a UID means the same message only while UIDVALIDITY is unchanged).
On PostgreSQL several Reefknot processes share the store, so a poller holds a
session advisory lock named after the mailbox on a connection of its own.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection, Engine, create_engine, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from gateway.core.mail.mailbox import MailboxKey, MailboxPosition
from gateway.store.schema import ImapMailbox

log = logging.getLogger(__name__)


def load_position(session: Session, key: MailboxKey) -> MailboxPosition:
    row = _find(session, key)
    return MailboxPosition(row.uidvalidity, row.last_uid) if row else MailboxPosition()


def save_position(session: Session, key: MailboxKey, position: MailboxPosition, now: datetime) -> None:
    """Store the mailbox's position; durable once the caller commits."""
    row = _find(session, key)
    if row is None:
        row = ImapMailbox(host=key.host, username=key.username, folder=key.folder)
        session.add(row)
    elif row.uidvalidity == position.uidvalidity and row.last_uid > position.last_uid:
        # Never move backwards: a second process that polled in a lock gap went further.
        position = MailboxPosition(position.uidvalidity, row.last_uid)
    row.uidvalidity, row.last_uid, row.updated_at = position.uidvalidity, position.last_uid, now
    session.flush()


def _find(session: Session, key: MailboxKey) -> ImapMailbox | None:
    query = select(ImapMailbox).where(
        ImapMailbox.host == key.host, ImapMailbox.username == key.username, ImapMailbox.folder == key.folder
    )
    return session.scalars(query).first()


class MailboxLock:
    """The right to poll one mailbox: a PostgreSQL session advisory lock; always granted on SQLite.

    SQLite serves one host, where the daemon runs one poller per mailbox, so there is
    nothing to coordinate. The lock lives as long as its connection: ``held()`` checks
    that the connection is still there before each round of work.
    """

    def __init__(self, engine: Engine, key: MailboxKey) -> None:
        self.needed = engine.dialect.name == "postgresql"
        # Unpooled: a lock's connection must never go back to a pool still holding the lock.
        self.engine = create_engine(engine.url, poolclass=NullPool) if self.needed else engine
        self.lock_id = key.lock_id()
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; True when it is ours (already or now)."""
        if not self.needed or self.held():
            return True
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = connection.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": self.lock_id}).scalar()
        except Exception:
            connection.invalidate()
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def held(self) -> bool:
        """True while the lock's connection is alive (a lost connection has lost the lock)."""
        if not self.needed:
            return True
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            return True
        except Exception as error:
            log.warning("advisory lock %d: connection lost (%s)", self.lock_id, error)
            self._discard()
            return False

    def release(self) -> None:
        """Give the lock up (a no-op when not held)."""
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": self.lock_id})
            self._connection.close()
        except Exception:
            self._discard()
        self._connection = None

    def _discard(self) -> None:
        # Close the database session itself, so that the server ends the lock with it.
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:
                log.debug("advisory lock %d: closing a broken connection failed", self.lock_id, exc_info=True)
            self._connection = None
