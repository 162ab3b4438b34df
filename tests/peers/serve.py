"""``reefknot serve`` as a real process for tests, with a systemd notification socket to learn when it is ready.

``ServeProcess`` writes nothing itself: tests write the configuration (``write_config``)
and add users with the CLI first. The notification socket is an abstract unix socket
bound here, so that ``READY=1``, ``WATCHDOG=1`` and ``STOPPING=1`` are observed exactly
as systemd would see them.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.store.db import Database
from gateway.store.schema import IntakeMessage
from tests.peers.paths import ROOT
from tests.peers.servers import LOOPBACK, free_port


def write_config(
    directory: Path, database_url: str, *, smtp: str = "", lmtp: str = "", extra: str = ""
) -> tuple[Path, int, int]:
    """A configuration with SMTP and LMTP on free loopback ports; ``smtp``/``lmtp`` add settings to those tables."""
    smtp_port, lmtp_port = free_port(), free_port()
    path = directory / "reefknot.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        f'[smtp]\nlisten = ["{LOOPBACK}:{smtp_port}"]\n{smtp}\n\n'
        f'[lmtp]\nlisten = ["{LOOPBACK}:{lmtp_port}"]\n{lmtp}\n\n'
        f'[http]\nlisten = "{LOOPBACK}:{free_port()}"\n\n{extra}\n'
    )
    return path, smtp_port, lmtp_port


@dataclass
class ServeProcess:
    """One ``reefknot serve`` subprocess; ``start`` returns once it has sent READY=1."""

    config: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    notices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.notify_address = f"@reefknot-test-{uuid.uuid4().hex}"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind("\0" + self.notify_address[1:])

    def start(self, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("REEFKNOT_CONFIG", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env.update({"NOTIFY_SOCKET": self.notify_address, **self.env})
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "--config", str(self.config), "serve"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
            )
        self.wait_for_notice("READY=1", timeout)

    def wait_for_notice(self, notice: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while notice not in self.notices:
            if self.process is not None and self.process.poll() is not None and not self._receive(0.05):
                raise RuntimeError(f"reefknot serve exited {self.process.returncode} before {notice}\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {notice} from reefknot serve after {timeout:g} s\n{self.log()}")
            self._receive(0.1)

    def collect_notices(self, wait: float = 0.1) -> list[str]:
        """Every notification received so far, after waiting up to ``wait`` seconds for more."""
        while self._receive(wait):
            pass
        return self.notices

    def _receive(self, timeout: float) -> bool:
        self._notify.settimeout(timeout)
        try:
            data = self._notify.recv(4096)
        except (TimeoutError, BlockingIOError):
            return False
        self.notices.extend(data.decode().split("\n"))
        return True

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.collect_notices(0.01)

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self._notify.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    """The ``reefknot serve`` processes a test starts with ``serve``; each is killed at the end if still running."""
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.close()


def serve(processes: list[ServeProcess], config: Path, **env: str) -> ServeProcess:
    """Start one more ``reefknot serve`` on ``config`` (each with its own log beside it); ready when it returns."""
    process = ServeProcess(config, config.parent / f"serve-{len(processes)}.log", env=env)
    processes.append(process)
    process.start()
    return process


def intake_rows(database_url: str, message_id: str | None = None) -> list[IntakeMessage]:
    db = Database(database_url)
    try:
        with db.transaction() as session:
            query = select(IntakeMessage).order_by(IntakeMessage.id)
            if message_id is not None:
                query = query.where(IntakeMessage.message_id == message_id)
            return list(session.scalars(query))
    finally:
        db.dispose()


def wait_until_processed(database_url: str, message_ids: Iterable[str], timeout: float = 20.0) -> list[IntakeMessage]:
    """Wait until an intake row for each Message-ID has left the queue; those rows."""
    wanted = set(message_ids)
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in intake_rows(database_url) if r.message_id in wanted and r.state != "queued"]
        if {r.message_id for r in rows} >= wanted:
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"not processed after {timeout:g} s: {sorted(wanted - {r.message_id for r in rows})}")
        time.sleep(0.05)


def crlf(raw: bytes) -> bytes:
    """Line ends as an MTA sends them over SMTP and LMTP (files written by the email package end lines with LF)."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


def lmtp_deliver(
    port_or_path: int | str, sender: str, recipients: list[str], message: bytes
) -> tuple[dict[str, tuple[int, bytes]], list[tuple[int, bytes]]]:
    """One LMTP transaction: the reply to each RCPT, and the replies after DATA (one per accepted recipient)."""
    client = smtplib.LMTP(LOOPBACK, port_or_path) if isinstance(port_or_path, int) else smtplib.LMTP(port_or_path)
    try:
        client.ehlo()
        client.mail(sender)
        answers = {rcpt: client.rcpt(rcpt) for rcpt in recipients}
        accepted = [rcpt for rcpt, (code, _) in answers.items() if code == 250]
        if not accepted:
            return answers, []
        replies = [client.data(message)]
        replies += [client.getreply() for _ in accepted[1:]]
        return answers, replies
    finally:
        client.close()
