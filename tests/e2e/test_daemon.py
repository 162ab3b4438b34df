"""``reefknot serve`` as a process: systemd notifications, signals, a fresh database, and SIGKILL under load."""

from __future__ import annotations

import contextlib
import email
import random
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import select

from gateway.core.calendar.ical import components_of, parse_calendar, uid_of
from gateway.edges import sdnotify
from gateway.service import processing
from gateway.store.db import Database
from gateway.store.schema import CalendarObject, InboxEntry, IntakeMessage
from tests.peers.cli import EVENT, Reefknot, write_event
from tests.peers.serve import (  # noqa: F401  (processes: a fixture)
    ServeProcess,
    processes,
    serve,
    lmtp_deliver,
    wait_until_processed,
    write_config,
)
from tests.peers.servers import (
    LOOPBACK,
    ServerUnavailable,
    dovecot_server,
    wait_for_port,
)
from tests.peers.sink import smtp_peer

ALICE, ERIN = "alice@foo.example", "erin@baz.example"


def invitation(uid: str) -> bytes:
    """Erin invites Alice: a small iMIP REQUEST with Message-ID <uid@test>."""
    template = EVENT.replace("mailto:alice@foo.example", f"mailto:{ERIN}")
    text = template.format(uid=uid, attendees=f"ATTENDEE;RSVP=TRUE:mailto:{ALICE}")
    text = text.replace("VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST").replace("\n", "\r\n")
    return (
        f"From: {ERIN}\r\nTo: {ALICE}\r\nSubject: {uid}\r\nMessage-ID: <{uid}@test>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: text/calendar; method=REQUEST; charset="utf-8"\r\n\r\n{text}'
    ).encode()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'reefknot.db'}"


def add_alice(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Reefknot(config, capsys)("users", "add", ALICE)


def test_serve_creates_the_embedded_database_and_tells_systemd_ready_watchdog_stopping(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str
) -> None:
    config, smtp_port, lmtp_port = write_config(tmp_path, sqlite_url)
    assert not (tmp_path / "state").exists()
    daemon = serve(processes, config, WATCHDOG_USEC="200000")
    wait_for_port(LOOPBACK, smtp_port, timeout=1)
    wait_for_port(LOOPBACK, lmtp_port, timeout=1)
    assert Database(sqlite_url).is_current()
    daemon.wait_for_notice("WATCHDOG=1", timeout=2)
    time.sleep(0.5)
    assert daemon.collect_notices().count("WATCHDOG=1") >= 3
    assert daemon.stop() == 0
    assert daemon.notices[0] == "READY=1" and "STOPPING=1" in daemon.notices
    assert any(n.startswith("STATUS=ready: ") for n in daemon.notices)  # what systemctl status shows
    log = daemon.log()
    assert "ready: 2 listeners" in log and "stopped; the queue is empty" in log


def test_sd_notify_reaches_a_socket_path_and_is_a_no_op_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory() as directory, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        path = f"{directory}/notify"
        manager.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify(sdnotify.READY)
        assert manager.recv(100) == b"READY=1"
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert not sdnotify.notify(sdnotify.READY)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert sdnotify.watchdog_interval() is None


def test_sigterm_finishes_the_mail_it_holds_and_exits_0(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, smtp_port, _ = write_config(tmp_path, sqlite_url)
    add_alice(config, capsys)
    daemon = serve(processes, config)
    with smtplib.SMTP(LOOPBACK, smtp_port, timeout=30) as client:
        for n in range(40):
            client.sendmail(ERIN, [ALICE], invitation(f"term-{n}"))
        daemon.signal(signal.SIGTERM)
        daemon.wait_for_notice("STOPPING=1", timeout=10)
        try:  # the open connection is closed with 421, unless this message made it before
            client.sendmail(ERIN, [ALICE], invitation("late"))
            late = 1
        except smtplib.SMTPException:
            late = 0
    assert daemon.stop() == 0
    with Database(sqlite_url).transaction() as session:
        states = Counter(session.scalars(select(IntakeMessage.state)))
    assert states == {"done": 40 + late}
    with pytest.raises(OSError):
        socket.create_connection((LOOPBACK, smtp_port), timeout=1)


def test_sighup_reloads_the_policy_and_a_broken_file_keeps_the_running_one(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "local.toml"
    policy.write_text('default = "apply"\n')
    config, smtp_port, _ = write_config(tmp_path, sqlite_url, extra='[policy]\nfiles = ["local.toml"]\n')
    add_alice(config, capsys)
    daemon = serve(processes, config)

    def send_and_read_state(uid: str) -> str:
        with smtplib.SMTP(LOOPBACK, smtp_port, timeout=30) as client:
            client.sendmail(ERIN, [ALICE], invitation(uid))
        wait_until_processed(sqlite_url, [f"<{uid}@test>"])
        with Database(sqlite_url).transaction() as session:
            return session.scalars(select(IntakeMessage.state).where(IntakeMessage.message_id == f"<{uid}@test>")).one()

    def reload() -> None:
        daemon.notices.clear()
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_notice("READY=1", timeout=10)

    assert send_and_read_state("before-hup") == "done"
    policy.write_text('default = "hold"\n[[rule]]\nname = "typo"\naction = "aply"\n')
    reload()
    assert "reload failed, keeping the running policy" in daemon.log() and "local.toml:4" in daemon.log()
    assert send_and_read_state("after-bad-hup") == "done"
    policy.write_text('default = "hold"\n')
    reload()
    assert send_and_read_state("after-good-hup") == "held"
    assert daemon.stop() == 0


def test_a_broken_policy_file_at_start_is_a_configuration_error_naming_file_rule_and_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    (tmp_path / "local.toml").write_text('default = "hold"\n\n[[rule]]\nname = "held"\naction = "hold"\nsender = 3\n')
    config, _, _ = write_config(tmp_path, sqlite_url, extra='[policy]\nfiles = ["local.toml"]\n')
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    assert "local.toml:" in done.stderr and "rule 'held'" in done.stderr


def test_lmtp_on_a_unix_socket(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory(prefix="rk-") as short:  # a socket path must fit in 108 bytes
        path = f"{short}/lmtp.sock"
        config, _, _ = write_config(tmp_path, sqlite_url)
        config.write_text(config.read_text().replace('[lmtp]\nlisten = ["', f'[lmtp]\nlisten = ["unix:{path}", "'))
        add_alice(config, capsys)
        daemon = serve(processes, config)
        answers, replies = lmtp_deliver(path, ERIN, [ALICE], invitation("over-unix"))
        assert answers[ALICE][0] == 250 and [code for code, _ in replies] == [250]
        (row,) = wait_until_processed(sqlite_url, ["<over-unix@test>"])
        assert (row.source, row.state) == ("lmtp", "done")
        assert daemon.stop() == 0
        assert not Path(path).exists()


def test_a_listener_that_cannot_bind_exits_71_and_a_bad_setting_78(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str
) -> None:
    config, smtp_port, _ = write_config(tmp_path, sqlite_url)
    with socket.socket() as taken:
        taken.bind((LOOPBACK, smtp_port))
        taken.listen()
        daemon = ServeProcess(config, tmp_path / "serve.log")
        processes.append(daemon)
        with pytest.raises(RuntimeError, match="exited 71"):
            daemon.start()
    bad, _, _ = write_config(tmp_path, sqlite_url, smtp='mode = "relay"')
    daemon = ServeProcess(bad, tmp_path / "bad.log")
    processes.append(daemon)
    with pytest.raises(RuntimeError, match="exited 78"):
        daemon.start()
    assert "[smtp] mode: 'relay' is not one of transport, copy" in daemon.log()


class Sender(threading.Thread):
    """A steady stream of invitations over SMTP that, like an MTA, tries each message again until it gets 250."""

    def __init__(self, port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.stop = threading.Event()
        self.accepted: list[str] = []
        self.failures = 0

    def run(self) -> None:
        client: smtplib.SMTP | None = None
        n = 0
        while not self.stop.is_set():
            uid = f"crash-{n}"
            try:
                if client is None:
                    client = smtplib.SMTP(LOOPBACK, self.port, timeout=10)
                client.sendmail(ERIN, [ALICE], invitation(uid))
            except (OSError, smtplib.SMTPException):
                self.failures += 1
                client = None
                time.sleep(0.05)
                continue
            self.accepted.append(uid)
            n += 1
            time.sleep(self.interval)
        if client is not None:
            client.close()


def test_sigkill_under_load_loses_nothing_that_got_250_and_applies_nothing_twice(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, smtp_port, _ = write_config(tmp_path, sqlite_url)
    add_alice(config, capsys)
    daemon = serve(processes, config)
    sender = Sender(smtp_port, interval=0.01)
    sender.start()
    rng = random.Random()
    kills = rng.randint(3, 4)
    for _ in range(kills):
        time.sleep(rng.uniform(0.8, 2.5))
        daemon.kill()
        time.sleep(rng.uniform(0.0, 0.3))
        daemon = serve(processes, config)
    time.sleep(1.0)
    sender.stop.set()
    sender.join(30)
    assert daemon.stop() == 0

    # Rows claimed by a killed processor wait for their lease to run out; let that time pass.
    db = Database(sqlite_url)
    later = datetime.now(timezone.utc) + processing.LEASE
    late = 0
    while batch := processing.process_queued(db, later, 100):
        late += len(batch)
    print(f"accepted {len(sender.accepted)}, failures {sender.failures}, kills {kills}, late {late}")
    with db.transaction() as session:
        states = Counter(session.scalars(select(IntakeMessage.state)))
        applied = Counter(session.scalars(select(InboxEntry.uid).where(InboxEntry.outcome == "applied")))
        stored = Counter(session.scalars(select(CalendarObject.uid)))
    db.dispose()

    assert len(sender.accepted) >= 100 and sender.failures >= kills
    assert set(states) <= {"done"}, states
    assert all(applied[uid] == 1 for uid in sender.accepted), [u for u in sender.accepted if applied[u] != 1]
    assert max(applied.values()) == 1 and set(applied) <= set(sender.accepted) | {f"crash-{len(sender.accepted)}"}
    assert set(stored) == set(applied) and max(stored.values()) == 1


def test_serve_runs_an_imap_poller_per_mailbox_and_stops_it(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with contextlib.ExitStack() as stack:
        try:
            dovecot = stack.enter_context(dovecot_server({"calendar@foo.example": "s3cret"}))
        except ServerUnavailable as error:
            pytest.skip(str(error))
        secret = tmp_path / "imap.secret"
        secret.write_text("s3cret\n")
        extra = (
            f'[[imap]]\nhost = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
            f'username = "calendar@foo.example"\npassword_file = "{secret}"\nrecipients = ["{ALICE}"]\n'
        )
        config, _, _ = write_config(tmp_path, sqlite_url, extra=extra)
        add_alice(config, capsys)
        with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
            client.login("calendar@foo.example", "s3cret")
            client.append("INBOX", invitation("from-imap"))
        daemon = serve(processes, config)
        (row,) = wait_until_processed(sqlite_url, ["<from-imap@test>"])
        assert (row.source, row.state, row.recipients) == ("imap", "done", [ALICE])
        started = time.monotonic()
        assert daemon.stop() == 0 and time.monotonic() - started < 10
        assert "IMAP poller started for imap://calendar@foo.example" in daemon.log()


def test_a_process_with_no_processing_workers_only_takes_mail_in(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, smtp_port, _ = write_config(tmp_path, sqlite_url, extra="[processing]\nworkers = 0\n")
    add_alice(config, capsys)
    daemon = serve(processes, config)
    with smtplib.SMTP(LOOPBACK, smtp_port, timeout=30) as client:
        client.sendmail(ERIN, [ALICE], invitation("later"))
    assert daemon.stop() == 0
    with Database(sqlite_url).transaction() as session:
        assert list(session.scalars(select(IntakeMessage.state))) == ["queued"]
    config.write_text(config.read_text().replace("workers = 0", "workers = 1"))
    daemon = serve(processes, config)
    wait_until_processed(sqlite_url, ["<later@test>"])
    assert daemon.stop() == 0


def test_serve_sends_the_outbox_when_outbound_is_configured(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invitation to someone outside leaves the running daemon as iMIP mail at the relay."""
    with smtp_peer() as relay:
        extra = f'[outbound]\nsmarthost = "127.0.0.1:{relay.port}"\nreply_domain = "reply.foo.example"\n'
        config, _, _ = write_config(tmp_path, sqlite_url, extra=extra)
        add_alice(config, capsys)
        serve(processes, config)
        Reefknot(config, capsys)("event", "put", "--as", ALICE, str(write_event(tmp_path, "out-1", "carol@bar.example")))
        deadline = time.monotonic() + 20
        while not relay.received and time.monotonic() < deadline:
            time.sleep(0.2)
        (mail,) = relay.received
        assert mail.rcpt_to == ("carol@bar.example",) and mail.mail_from.startswith("bounce+")
        (part,) = [p for p in email.message_from_bytes(mail.data).walk() if p.get_content_type() == "text/calendar"]
        calendar = parse_calendar(part.get_payload(decode=True).decode())
        assert (str(calendar["METHOD"]), uid_of(components_of(calendar)[0])) == ("REQUEST", "out-1")


def test_serve_refuses_to_start_with_an_unreadable_signing_key(tmp_path: Path, sqlite_url: str) -> None:
    extra = f'[outbound]\nsmarthost = "127.0.0.1:1"\n\n[outbound.dkim]\ndomain = "foo.example"\nselector = "s"\nkey_file = "{tmp_path}/none"\n'
    config, _, _ = write_config(tmp_path, sqlite_url, extra=extra)
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"],
                            capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 78 and b"[outbound.dkim] key_file: " in result.stderr
