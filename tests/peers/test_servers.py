"""Smoke tests for the real protocol peers in tests/servers.py."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.peers.servers import (
    DovecotServer,
    ServerUnavailable,
    SmtpSink,
    dovecot_server,
    free_port,
    postgres_cluster,
    smtp_sink,
    wait_for_port,
)

USERS = {"calendar@foo.example": "s3cret", "b@foo.example": "other"}
MESSAGE = (
    b"From: c@bar.example\r\nTo: calendar@foo.example\r\nSubject: hello\r\n"
    b"Message-ID: <1@bar.example>\r\n\r\nbody\r\n"
)


T = TypeVar("T")


def start_or_skip(stack: contextlib.ExitStack[Any], server: AbstractContextManager[T]) -> T:
    """Enter ``server`` on ``stack``; skip the test when its program is not installed."""
    try:
        return stack.enter_context(server)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    with contextlib.ExitStack() as stack:
        yield start_or_skip(stack, dovecot_server(USERS))


def test_free_port_is_bindable_and_wait_for_port_times_out() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.2)


def test_a_missing_program_raises_server_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    servers = sys.modules[ServerUnavailable.__module__]
    monkeypatch.setattr(servers, "_find_program", lambda name, extra_dirs=(): None)
    monkeypatch.setattr(servers.glob, "glob", lambda pattern: [])
    for server in (postgres_cluster(), dovecot_server(USERS), smtp_sink()):
        with pytest.raises(ServerUnavailable, match="install the Debian"):
            server.__enter__()


@pytest.mark.parametrize("kind", ["postgres", "dovecot", "smtp-sink"])
def test_a_server_is_stopped_and_removed_when_the_body_raises(kind: str) -> None:
    starters: dict[str, Callable[[], AbstractContextManager[object]]] = {
        "postgres": postgres_cluster,
        "dovecot": lambda: dovecot_server(USERS),
        "smtp-sink": smtp_sink,
    }
    running: list[object] = []
    try:
        with starters[kind]() as server:
            running.append(server)
            raise ZeroDivisionError
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    except ZeroDivisionError:
        pass
    [server] = running
    directory: Path | None = None
    if isinstance(server, str):
        port = sa.engine.make_url(server).port or 0
    elif isinstance(server, DovecotServer):
        port, directory = server.port, server.directory
    else:
        assert isinstance(server, SmtpSink)
        port, directory = server.port, server.dump_dir.parent
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.2)
    assert directory is None or not directory.exists()


@pytest.mark.postgresql
def test_postgres_cluster_round_trip() -> None:
    with contextlib.ExitStack() as stack:
        url = start_or_skip(stack, postgres_cluster(database="reefknot_test"))
        assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert url.endswith("/reefknot_test")
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
                conn.execute(sa.text("CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL)"))
                conn.execute(sa.text("INSERT INTO t (v) VALUES ('a'), ('b')"))
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT v FROM t ORDER BY id")).scalars().all() == ["a", "b"]
                assert conn.execute(sa.text("SELECT current_database()")).scalar() == "reefknot_test"
        finally:
            engine.dispose()
    # The cluster is gone afterwards.
    with pytest.raises(sa.exc.OperationalError):
        sa.create_engine(url, connect_args={"connect_timeout": 2}).connect()


def test_dovecot_append_create_move(dovecot: DovecotServer) -> None:
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        client.login("calendar@foo.example", "s3cret")
        caps = set(client.capabilities())
        assert {b"IDLE", b"MOVE", b"UIDPLUS"} <= caps
        client.append("INBOX", MESSAGE)
        client.create_folder("Calendar/Processed")
        client.select_folder("INBOX")
        uids = client.search(["SUBJECT", "hello"])
        assert len(uids) == 1
        client.move(uids, "Calendar/Processed")
        assert client.search("ALL") == []
        client.select_folder("Calendar/Processed", readonly=True)
        [uid] = client.search("ALL")
        assert client.fetch([uid], ["RFC822"])[uid][b"RFC822"] == MESSAGE
        client.logout()
    assert dovecot.maildir("calendar@foo.example").is_dir()


def test_dovecot_rejects_a_wrong_password_and_keeps_users_apart(dovecot: DovecotServer) -> None:
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        with pytest.raises(LoginError):
            client.login("calendar@foo.example", "wrong")
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        client.login("b@foo.example", "other")
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_dovecot_idle_sees_a_new_message(dovecot: DovecotServer) -> None:
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as watcher:
        watcher.login("calendar@foo.example", "s3cret")
        watcher.select_folder("INBOX")
        watcher.idle()
        try:
            with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as writer:
                writer.login("calendar@foo.example", "s3cret")
                writer.append("INBOX", MESSAGE)
            responses = watcher.idle_check(timeout=10)
        finally:
            watcher.idle_done()
        assert any(r[1] == b"EXISTS" for r in responses if len(r) > 1)


def test_dovecot_restart_keeps_mail(dovecot: DovecotServer) -> None:
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        client.login("calendar@foo.example", "s3cret")
        client.append("INBOX", MESSAGE)
    started = time.monotonic()
    dovecot.restart()
    assert time.monotonic() - started < 10
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        client.login("calendar@foo.example", "s3cret")
        assert client.select_folder("INBOX")[b"EXISTS"] == 1


def test_dovecot_implicit_tls() -> None:
    with contextlib.ExitStack() as stack:
        server = start_or_skip(stack, dovecot_server({"calendar@foo.example": "s3cret"}, tls=True))
        assert server.tls_port and server.cert_path
        context = ssl.create_default_context(cafile=str(server.cert_path))
        with IMAPClient(server.host, port=server.tls_port, ssl=True, ssl_context=context, timeout=10) as client:
            client.login("calendar@foo.example", "s3cret")
            assert b"IDLE" in client.capabilities()


def _invitation() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@foo.example"
    msg["To"] = "c@bar.example"
    msg["Subject"] = "Invitation"
    msg.set_content("see attached")
    return msg


def test_smtp_sink_accepts_and_records_mail() -> None:
    with contextlib.ExitStack() as stack:
        sink = start_or_skip(stack, smtp_sink())
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
            refused = smtp.send_message(_invitation(), "bounce@foo.example", ["c@bar.example", "d@bar.example"])
            assert refused == {}
        [mail] = sink.wait_for_messages(1)
        assert mail.mail_from == "bounce@foo.example"
        assert mail.rcpt_to == ("c@bar.example", "d@bar.example")
        assert b"Subject: Invitation" in mail.content
        assert mail.content.rstrip().endswith(b"see attached")


def test_smtp_sink_soft_rejects_rcpt() -> None:
    with contextlib.ExitStack() as stack:
        sink = start_or_skip(stack, smtp_sink(soft_reject=["rcpt"]))
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
                smtp.send_message(_invitation(), "bounce@foo.example", ["c@bar.example"])
            code, _ = caught.value.recipients["c@bar.example"]
            assert 400 <= code < 500
        assert sink.messages() == []
