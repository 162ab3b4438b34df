"""Where a polled IMAP mailbox stands, for the poller: its lock, and its position checked against UIDVALIDITY.

The poller takes mail in through ``processing.take_in`` with the new position; this
module only reads and resets the position, and hands out the lock that lets one
process poll a mailbox (``gateway.store.mailboxes``).
"""

from __future__ import annotations

from datetime import datetime

from gateway.core.mail.mailbox import MailboxKey, MailboxPosition
from gateway.store import mailboxes
from gateway.store.db import Database
from gateway.store.mailboxes import MailboxLock


def lock_for(db: Database, key: MailboxKey) -> MailboxLock:
    """The lock one process holds while it polls the mailbox (a no-op on SQLite)."""
    return MailboxLock(db.engine, key)


def position_under(
    db: Database, key: MailboxKey, uidvalidity: int, now: datetime
) -> tuple[MailboxPosition, MailboxPosition]:
    """The mailbox's position under the folder's UIDVALIDITY, and the position stored before.

    When UIDVALIDITY changed (or was never seen), the position starts again at UID 0 and
    is saved at once: every message in the folder is taken again (RFC 3501 §2.3.1.1).
    """
    with db.transaction() as session:
        stored = mailboxes.load_position(session, key)
        if stored.uidvalidity == uidvalidity:
            return stored, stored
        position = MailboxPosition(uidvalidity, 0)
        mailboxes.save_position(session, key, position, now)
        return position, stored
