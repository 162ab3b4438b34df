"""Where a polled IMAP mailbox stands (gateway.service.polled_mailboxes): its position under UIDVALIDITY, its lock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.core.mail.envelope import Envelope
from gateway.core.mail.mailbox import MailboxKey, MailboxPosition
from gateway.service import polled_mailboxes, processing
from gateway.store import mailboxes
from gateway.store.db import Database
from tests.conftest import NOW

INBOX = MailboxKey("imap.foo.example", "alice@foo.example", "INBOX")


def stored(db: Database, key: MailboxKey) -> MailboxPosition:
    with db.reading() as session:
        return mailboxes.load_position(session, key)


def poll(db: Database, key: MailboxKey, position: MailboxPosition, count: int = 1) -> list[int]:
    """What the poller does with new mail: take it in together with the mailbox's new position."""
    mail = [(f"Subject: {n}\r\n\r\nno calendar\r\n".encode(), Envelope("", (), "imap")) for n in range(count)]
    return processing.take_in(db, mail, NOW, mailbox=(key, position))


def test_a_mailbox_never_seen_starts_at_uid_zero_under_its_uidvalidity_and_is_saved_at_once(db: Database) -> None:
    assert stored(db, INBOX) == MailboxPosition()
    position, before = polled_mailboxes.position_under(db, INBOX, 1234, NOW)
    assert (position, before) == (MailboxPosition(1234, 0), MailboxPosition())
    assert stored(db, INBOX) == MailboxPosition(1234, 0)
    assert polled_mailboxes.position_under(db, INBOX, 1234, NOW) == (position, position)  # now seen


def test_the_position_taken_in_with_the_mail_is_where_the_poller_goes_on_and_never_moves_back(db: Database) -> None:
    polled_mailboxes.position_under(db, INBOX, 77, NOW)
    assert len(poll(db, INBOX, MailboxPosition(77, 5), count=2)) == 2
    assert polled_mailboxes.position_under(db, INBOX, 77, NOW) == (MailboxPosition(77, 5), MailboxPosition(77, 5))
    poll(db, INBOX, MailboxPosition(77, 3))  # a poller that saw less, in a lock gap: the position stays ahead
    assert polled_mailboxes.position_under(db, INBOX, 77, NOW)[0] == MailboxPosition(77, 5)
    poll(db, INBOX, MailboxPosition(77, 9))
    assert polled_mailboxes.position_under(db, INBOX, 77, NOW)[0] == MailboxPosition(77, 9)


def test_a_changed_uidvalidity_starts_again_at_uid_zero_and_reports_the_old_position(db: Database) -> None:
    poll(db, INBOX, MailboxPosition(100, 42))
    position, before = polled_mailboxes.position_under(db, INBOX, 101, NOW + timedelta(minutes=1))
    assert (position, before) == (MailboxPosition(101, 0), MailboxPosition(100, 42))
    assert stored(db, INBOX) == MailboxPosition(101, 0)  # saved at once: every message is taken again
    poll(db, INBOX, MailboxPosition(101, 2))
    assert polled_mailboxes.position_under(db, INBOX, 101, NOW)[0] == MailboxPosition(101, 2)


def test_each_host_user_and_folder_keeps_a_position_of_its_own(db: Database) -> None:
    others = [
        MailboxKey(INBOX.host, INBOX.username, "Calendar"),
        MailboxKey(INBOX.host, "bob@foo.example", INBOX.folder),
        MailboxKey("imap.bar.example", INBOX.username, INBOX.folder),
    ]
    poll(db, INBOX, MailboxPosition(9, 30))
    for n, key in enumerate(others, start=1):
        assert polled_mailboxes.position_under(db, key, 9, NOW) == (MailboxPosition(9, 0), MailboxPosition())
        poll(db, key, MailboxPosition(9, n))
    assert stored(db, INBOX) == MailboxPosition(9, 30)
    assert [stored(db, key) for key in others] == [MailboxPosition(9, n) for n in (1, 2, 3)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_only_one_lock_for_a_mailbox_is_held_at_a_time(db: Database) -> None:
    first, second = polled_mailboxes.lock_for(db, INBOX), polled_mailboxes.lock_for(db, INBOX)
    elsewhere = polled_mailboxes.lock_for(db, MailboxKey(INBOX.host, INBOX.username, "Calendar"))
    try:
        assert not first.held()
        assert first.acquire() and first.held() and first.acquire()  # ours already
        assert not second.acquire() and not second.held()  # another process polls this mailbox
        assert elsewhere.acquire()  # another mailbox is free
        first.release()
        assert not first.held()
        assert second.acquire() and second.held()
        assert not first.acquire()
    finally:
        for lock in (first, second, elsewhere):
            lock.release()
            lock.engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_every_lock_is_granted_as_one_host_runs_one_poller_per_mailbox(db: Database) -> None:
    first, second = polled_mailboxes.lock_for(db, INBOX), polled_mailboxes.lock_for(db, INBOX)
    assert first.acquire() and second.acquire()
    assert first.held() and second.held()
    first.release()
    assert first.held()  # nothing to lose
