"""The IMAP poller against a real Dovecot: each message taken once, applied once, moved once.

One Dovecot serves the whole module (implicit TLS and STARTTLS with a self-signed
certificate, PLAIN and XOAUTH2); every test gets a mailbox user of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from gateway.core.mail.headers import message_id_field
from gateway.core.mail.mailbox import MailboxKey, MailboxPosition
from gateway.edges import imap
from gateway.edges.imap import ImapPoller, uid_set
from gateway.service import processing
from gateway.settings.config import ConfigError, ImapAccount
from gateway.store import directory
from gateway.store.db import Database
from gateway.store.mailboxes import load_position, save_position
from gateway.store.schema import InboxEntry, IntakeMessage
from tests.conftest import NOW
from tests.peers.cli import EVENT
from tests.peers.paths import ROOT
from tests.peers.servers import DovecotServer, ServerUnavailable, dovecot_server

PASSWORD = "s3cret"
USERS = {f"box{n}@foo.example": PASSWORD for n in range(64)}  # one for each test that needs a mailbox
_next_user = itertools.count()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    try:
        with dovecot_server(USERS, tls=True, mechanisms=("plain", "login", "xoauth2")) as server:
            yield server
    except ServerUnavailable as error:
        pytest.skip(f"Dovecot not available: {error}")


class Mailbox:
    """One test's mailbox user on the shared Dovecot, seen through a plain IMAPClient."""

    def __init__(self, server: DovecotServer, user: str, tmp_path: Path) -> None:
        self.server, self.user = server, user
        self.password_file = tmp_path / f"{user}.secret"
        self.password_file.write_text(f"{PASSWORD}\n")

    def account(self, **changes: object) -> ImapAccount:
        base = ImapAccount(
            self.server.host, self.user, password_file=str(self.password_file), port=self.server.port,
            security="none", processed_folder="Calendar/Processed",
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def client(self) -> Iterator[IMAPClient]:
        with IMAPClient(self.server.host, port=self.server.port, ssl=False, timeout=10) as client:
            client.login(self.user, PASSWORD)
            yield client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        with self.client() as client:
            for raw in messages:
                client.append(folder, raw)

    def message_ids(self, folder: str) -> list[str]:
        """Message-IDs in the folder, in UID order ([] when it does not exist)."""
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            found = client.fetch(client.search(), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            return [message_id_field(found[u][b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]) for u in sorted(found)]

    def flags(self, folder: str) -> list[tuple[bytes, ...]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return list(client.get_flags(client.search()).values())


@pytest.fixture
def mailbox(dovecot: DovecotServer, tmp_path: Path) -> Mailbox:
    user = f"box{next(_next_user)}@foo.example"
    assert user in USERS, "more tests need a mailbox than USERS has: add users"
    return Mailbox(dovecot, user, tmp_path)


@pytest.fixture
def local_db(db: Database) -> Database:
    with db.transaction() as session:
        directory.add_principal(session, "alice@foo.example", NOW, name="Alice")
    return db


def invitation(name: str, *, return_path: str = "") -> bytes:
    """erin@baz.example invites alice@foo.example (DESIGN.md scenario 4), as one iMIP message."""
    calendar = EVENT.format(uid=name, attendees="ATTENDEE;RSVP=TRUE:mailto:LOCAL")
    calendar = calendar.replace("CN=Alice:mailto:alice@foo.example", "CN=Erin:mailto:erin@baz.example")
    calendar = calendar.replace("alice@foo.example", "erin@baz.example").replace("mailto:LOCAL", "mailto:alice@foo.example")
    calendar = calendar.replace("VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST")
    head = f"Return-Path: <{return_path}>\r\n" if return_path else ""
    body = calendar.replace("\n", "\r\n")
    return (
        f"{head}From: erin@baz.example\r\nTo: alice@foo.example\r\nSubject: Invitation {name}\r\n"
        f"Message-ID: <{name}@test>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: text/calendar; method=REQUEST; charset="utf-8"\r\n\r\n{body}'
    ).encode()


def applied(db: Database) -> list[tuple[str, str]]:
    """Apply what is queued; then every (UID, outcome) line in the inboxes, sorted."""
    while processing.process_queued(db, NOW):
        pass
    with db.transaction() as session:
        return sorted((uid, outcome) for uid, outcome in session.execute(select(InboxEntry.uid, InboxEntry.outcome)))


def queued_message_ids(db: Database) -> list[str]:
    with db.transaction() as session:
        return sorted(session.scalars(select(IntakeMessage.message_id)))


def intake_count(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(IntakeMessage)) or 0)


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextlib.contextmanager
def running(poller: ImapPoller) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "run() did not return after stop"


def names(*numbers: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{n}" for n in numbers]


def ids(*names_: str) -> list[str]:
    return sorted(f"<{n}@test>" for n in names_)


def test_invitations_are_queued_then_moved_unseen_and_applied_once(mailbox: Mailbox, local_db: Database) -> None:
    mailbox.append(*(invitation(n, return_path="erin@baz.example") for n in names(1, 2, 3)))
    wakes: list[int] = []
    poller = ImapPoller(mailbox.account(), local_db, lambda: wakes.append(intake_count(local_db)))

    assert poller.poll_once() == 3
    assert poller.poll_once() == 0
    poller.close()

    assert wakes == [3]  # woken after the commit
    assert mailbox.message_ids("INBOX") == []
    assert sorted(mailbox.message_ids("Calendar/Processed")) == ids("m1", "m2", "m3")
    assert all(b"\\Seen" not in flags for flags in mailbox.flags("Calendar/Processed"))
    with local_db.transaction() as session:
        rows = session.scalars(select(IntakeMessage)).all()
        assert {(r.source, r.envelope_sender, tuple(r.recipients)) for r in rows} == {("imap", "erin@baz.example", ())}
    assert applied(local_db) == [(n, "applied") for n in names(1, 2, 3)]


def test_fixed_recipients_become_the_envelope(mailbox: Mailbox, local_db: Database) -> None:
    mailbox.append(invitation("m1"))
    poller = ImapPoller(mailbox.account(recipients=("alice@foo.example",)), local_db, lambda: None)
    assert poller.poll_once() == 1
    poller.close()
    with local_db.transaction() as session:
        (row,) = session.scalars(select(IntakeMessage)).all()
        assert (row.envelope_sender, row.recipients) == ("", ["alice@foo.example"])


class FailingCommit(ImapPoller):
    def _commit(self, messages: list[tuple[bytes, object]], position: object) -> list[int]:  # type: ignore[override]
        raise RuntimeError("database unavailable")


class CrashAfterCommit(ImapPoller):
    """Dies between the commit and the move, as a killed process would."""

    def _move(self, uids: list[int]) -> None:
        raise RuntimeError("crashed before moving")


def test_a_failed_commit_leaves_the_message_unseen_in_the_folder(mailbox: Mailbox, local_db: Database) -> None:
    mailbox.append(invitation("m1"))
    failing = FailingCommit(mailbox.account(), local_db, lambda: None)
    with pytest.raises(RuntimeError, match="database unavailable"):
        failing.poll_once()
    failing.close()

    assert mailbox.message_ids("INBOX") == ids("m1")
    assert all(b"\\Seen" not in flags for flags in mailbox.flags("INBOX"))
    assert intake_count(local_db) == 0

    poller = ImapPoller(mailbox.account(), local_db, lambda: None)
    assert poller.poll_once() == 1
    poller.close()
    assert applied(local_db) == [("m1", "applied")]


def test_a_crash_between_commit_and_move_neither_loses_nor_repeats(mailbox: Mailbox, local_db: Database) -> None:
    mailbox.append(invitation("m1"), invitation("m2"))
    crashing = CrashAfterCommit(mailbox.account(), local_db, lambda: None)
    with pytest.raises(RuntimeError, match="crashed before moving"):
        crashing.poll_once()
    crashing.close()
    assert queued_message_ids(local_db) == ids("m1", "m2")
    assert mailbox.message_ids("INBOX") == ids("m1", "m2")  # committed, not yet moved

    mailbox.append(invitation("m3"))
    restarted = ImapPoller(mailbox.account(), local_db, lambda: None)
    assert restarted.poll_once() == 1  # only m3 is new; m1 and m2 are moved without being taken again
    restarted.close()

    assert mailbox.message_ids("INBOX") == []
    assert sorted(mailbox.message_ids("Calendar/Processed")) == ids("m1", "m2", "m3")
    assert queued_message_ids(local_db) == ids("m1", "m2", "m3")
    assert applied(local_db) == [(n, "applied") for n in names(1, 2, 3)]


def test_a_dropped_connection_and_a_server_restart_are_survived(
    mailbox: Mailbox, local_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap, "BATCH_MESSAGES", 2)
    server_down = threading.Event()

    class ServerGoesAway(ImapPoller):
        commits = 0

        def _commit(self, messages, position):  # type: ignore[no-untyped-def]
            ids_ = super()._commit(messages, position)
            self.commits += 1
            if self.commits == 2:  # the connection ends after a commit, before the move
                mailbox.server.kick(mailbox.user)
                mailbox.server.stop()
                server_down.set()
            return ids_

    mailbox.append(*(invitation(n) for n in names(*range(1, 11))))
    with running(ServerGoesAway(mailbox.account(), local_db, lambda: None)):
        assert server_down.wait(10)
        time.sleep(1.0)  # the poller retries against a closed port meanwhile
        mailbox.server.start()
        wait_until(lambda: len(mailbox.message_ids("Calendar/Processed")) == 10)

    assert mailbox.message_ids("INBOX") == []
    assert sorted(mailbox.message_ids("Calendar/Processed")) == ids(*names(*range(1, 11)))
    assert queued_message_ids(local_db) == ids(*names(*range(1, 11)))
    assert applied(local_db) == sorted((n, "applied") for n in names(*range(1, 11)))


CHILD = """
import sys, threading, time
from gateway.settings.config import ImapAccount
from gateway.edges import imap
from gateway.store.db import Database
imap.BATCH_MESSAGES = 3
url, host, port, user, secret = sys.argv[1:]
account = ImapAccount(host, user, password_file=secret, port=int(port), security="none")
imap.ImapPoller(account, Database(url), lambda: time.sleep(0.05)).run(threading.Event())
"""


def test_a_poller_process_killed_mid_drain_takes_each_message_once(mailbox: Mailbox, local_db: Database) -> None:
    mailbox.append(*(invitation(n) for n in names(*range(60))))
    args = [local_db.url, mailbox.server.host, str(mailbox.server.port), mailbox.user, str(mailbox.password_file)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: intake_count(local_db) >= 20 or child.poll() is not None, timeout=30)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert 0 < intake_count(local_db) < 60

    poller = ImapPoller(mailbox.account(), local_db, lambda: None)
    poller.poll_once()
    poller.close()
    assert mailbox.message_ids("INBOX") == []
    assert sorted(mailbox.message_ids("Calendar/Processed")) == ids(*names(*range(60)))
    assert queued_message_ids(local_db) == ids(*names(*range(60)))
    assert applied(local_db) == sorted((n, "applied") for n in names(*range(60)))


def test_a_new_uidvalidity_takes_every_message_in_the_folder(mailbox: Mailbox, local_db: Database) -> None:
    account = mailbox.account(folder="Invitations", processed_folder="Invitations-done")
    key = MailboxKey(account.host, account.username, account.folder)
    with mailbox.client() as client:
        client.create_folder("Invitations")
    mailbox.append(invitation("m1"), invitation("m2"), folder="Invitations")
    poller = ImapPoller(account, local_db, lambda: None)
    assert poller.poll_once() == 2
    poller.close()
    with local_db.transaction() as session:
        before = load_position(session, key)
    assert before.last_uid == 2

    with mailbox.client() as client:  # the folder is recreated: UIDs start again at 1
        client.delete_folder("Invitations")
        client.create_folder("Invitations")
    mailbox.append(invitation("m3"), invitation("m4"), folder="Invitations")

    poller = ImapPoller(account, local_db, lambda: None)
    assert poller.poll_once() == 2
    poller.close()
    with local_db.transaction() as session:
        after = load_position(session, key)
    assert after.uidvalidity != before.uidvalidity and after.last_uid == 2
    assert mailbox.message_ids("Invitations") == []
    assert sorted(mailbox.message_ids("Invitations-done")) == ids("m1", "m2", "m3", "m4")
    assert applied(local_db) == [(n, "applied") for n in names(1, 2, 3, 4)]


@pytest.mark.parametrize("hidden", [("MOVE",), ("MOVE", "UIDPLUS")], ids=["no-move", "no-move-no-uidplus"])
def test_without_move_only_the_taken_messages_are_copied_and_deleted(
    mailbox: Mailbox, local_db: Database, hidden: tuple[str, ...]
) -> None:
    class OldServer(ImapPoller):
        def _server_has(self, capability: str) -> bool:
            return capability not in hidden and super()._server_has(capability)

    account = mailbox.account()
    with mailbox.client() as client:  # another client's deleted message, from before the last UID taken
        client.append("INBOX", b"Message-ID: <other@test>\r\n\r\nnot ours\r\n", flags=[b"\\Deleted"])
        uidvalidity = client.select_folder("INBOX")[b"UIDVALIDITY"]
    with local_db.transaction() as session:
        save_position(session, MailboxKey(account.host, account.username, "INBOX"), MailboxPosition(uidvalidity, 1), NOW)
    mailbox.append(invitation("m1"), invitation("m2"))

    for _ in range(2):  # the second run copies nothing again
        poller = OldServer(account, local_db, lambda: None)
        poller.poll_once()
        poller.close()

    assert mailbox.message_ids("Calendar/Processed") == ids("m1", "m2")
    left = ["<other@test>", *ids("m1", "m2")] if "UIDPLUS" in hidden else ["<other@test>"]
    assert mailbox.message_ids("INBOX") == left
    assert all(b"\\Deleted" in flags for flags in mailbox.flags("INBOX"))
    assert applied(local_db) == [("m1", "applied"), ("m2", "applied")]


def test_idle_takes_a_message_appended_while_idling_within_a_second_or_two(
    mailbox: Mailbox, local_db: Database
) -> None:
    woken = threading.Event()
    poller = ImapPoller(mailbox.account(idle_timeout=0.5), local_db, woken.set)
    mailbox.append(invitation("m1"))
    with running(poller):
        assert woken.wait(10)
        woken.clear()
        time.sleep(1.5)  # several IDLE renewals go by
        appended = time.monotonic()
        mailbox.append(invitation("m2"))
        assert woken.wait(5)
        latency = time.monotonic() - appended
        woken.clear()

        mailbox.server.kick(mailbox.user)  # BYE while idling: reconnect after a short backoff
        mailbox.append(invitation("m3"))
        assert woken.wait(10)
    assert latency < 2.0
    assert queued_message_ids(local_db) == ids("m1", "m2", "m3")


def test_without_idle_the_mailbox_is_polled(mailbox: Mailbox, local_db: Database) -> None:
    class NoIdle(ImapPoller):
        def _server_has(self, capability: str) -> bool:
            return capability != "IDLE" and super()._server_has(capability)

    woken = threading.Event()
    with running(NoIdle(mailbox.account(poll_interval=0.2), local_db, woken.set)):
        time.sleep(0.3)
        mailbox.append(invitation("m1"))
        assert woken.wait(5)
    assert queued_message_ids(local_db) == ids("m1")


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_with_a_private_ca_and_xoauth2_token_command(mailbox: Mailbox, local_db: Database, security: str) -> None:
    server = mailbox.server
    assert server.cert_path is not None and server.tls_port is not None
    token_command = (sys.executable, "-c", f"print({PASSWORD!r})")
    account = mailbox.account(
        security=security, port=server.tls_port if security == "tls" else server.port,
        password_file="", xoauth2_token_command=token_command, ca_file=str(server.cert_path),
    )
    mailbox.append(invitation("m1"))

    untrusted = ImapPoller(replace(account, ca_file=""), local_db, lambda: None)
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.poll_once()
    untrusted.close()

    poller = ImapPoller(account, local_db, lambda: None)
    assert poller.poll_once() == 1
    poller.close()
    assert mailbox.message_ids("Calendar/Processed") == ids("m1")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_one_process_polls_a_mailbox_at_a_time(mailbox: Mailbox, local_db: Database) -> None:
    other_db = Database(local_db.url)  # another process's engine
    first = ImapPoller(mailbox.account(), local_db, lambda: None)
    second = ImapPoller(mailbox.account(), other_db, lambda: None)
    try:
        mailbox.append(invitation("m1"))
        assert first.poll_once() == 1
        mailbox.append(invitation("m2"))
        assert second.poll_once() == 0  # the first holds the mailbox's advisory lock
        assert mailbox.message_ids("INBOX") == ids("m2")

        first.close()
        assert second.poll_once() == 1
        assert first.poll_once() == 0
    finally:
        first.close()
        second.close()
        other_db.dispose()
    assert queued_message_ids(local_db) == ids("m1", "m2")


def test_uid_sets_are_compact_ranges() -> None:
    assert uid_set([7, 1, 3, 2, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"password_file": "a", "xoauth2_token_command": "get-token"}, "exactly one of"),
        ({}, "exactly one of"),
        ({"password_file": "a", "security": "ssl"}, "security"),
        ({"password_file": "a", "idle_timeout": 1800}, "idle_timeout"),
        ({"password_file": "a", "processed_folder": "INBOX"}, "processed_folder"),
        ({"password_file": "a", "pasword_command": "x"}, "unknown key 'pasword_command'"),
    ],
)
def test_bad_imap_settings_are_refused(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        ImapAccount.from_toml({"host": "imap.foo.example", "username": "calendar@foo.example", **entry})


def test_imap_settings_are_read_with_their_defaults() -> None:
    account = ImapAccount.from_toml({
        "host": "imap.foo.example", "username": "calendar@foo.example", "security": "starttls",
        "xoauth2_token_command": "oauth2-token --account calendar", "recipients": ["room-r@foo.example"],
    })
    assert (account.port, account.xoauth2_token_command) == (143, ("oauth2-token", "--account", "calendar"))
    assert (account.idle_timeout, account.recipients) == (600.0, ("room-r@foo.example",))
    assert ImapAccount.from_toml({"host": "h", "username": "u", "password_file": "p"}).port == 993
