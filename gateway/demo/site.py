"""The demo's Reefknot site, foo.example: its directory, configuration, DKIM key, and ``reefknot serve`` as a child process.

The demo acts for the site's users through the same services the ``reefknot event``
commands use, and reads their calendars from the same database the daemon writes.
"""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.adapters.clock import utcnow
from gateway.settings.config import load_config
from gateway.core.calendar.ical import components_of, find_attendee, partstat_of
from gateway.core.model import Kind, PartStat
from gateway.adapters.dkim import DkimSigner
from gateway.service import events
from gateway.store import calendars, directory, inbox
from gateway.store.db import Database

LOOPBACK = "127.0.0.1"
DOMAIN = "foo.example"
SELECTOR = "demo"
START_LIMIT = 30.0  # seconds for ``reefknot serve`` to listen
STOP_LIMIT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class Site:
    """foo.example: a configuration in ``directory``, the daemon serving it, and its database."""

    def __init__(self, directory: Path, smarthost_port: int) -> None:
        self.directory = directory
        self.smtp_port = free_port()
        self.key_file = directory / "dkim.key"
        self.config_file = directory / "reefknot.toml"
        self.log_file = directory / "serve.log"
        self._write_key()
        self._write_config(smarthost_port)
        self.db = Database(load_config(str(self.config_file)).database_url)
        self.db.ensure_schema()
        self.signer = DkimSigner(DOMAIN, SELECTOR, self.key_file)
        self._process: subprocess.Popen[bytes] | None = None

    def _write_key(self) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        self.key_file.write_bytes(pem)
        self.key_file.chmod(0o600)

    def _write_config(self, smarthost_port: int) -> None:
        self.config_file.write_text(
            f'[database]\nurl = "sqlite:///{self.directory / "reefknot.db"}"\n\n'
            f'[smtp]\nlisten = ["{LOOPBACK}:{self.smtp_port}"]\n\n'
            f'[lmtp]\nlisten = ["{LOOPBACK}:{free_port()}"]\n\n'
            f'[http]\nlisten = "{LOOPBACK}:{free_port()}"\n\n'
            f'[outbound]\nsmarthost = "{LOOPBACK}:{smarthost_port}"\nreply_domain = "{DOMAIN}"\n'
            "poll_interval = 0.2\nretry_min = 1\nretry_max = 5\n\n"
            f'[outbound.dkim]\ndomain = "{DOMAIN}"\nselector = "{SELECTOR}"\nkey_file = "{self.key_file}"\n'
        )

    # -- the daemon ---------------------------------------------------------------

    def start(self) -> None:
        """Run ``reefknot serve`` on the configuration until it listens for SMTP."""
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "--config", str(self.config_file), "serve"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_LIMIT
        while not _listening(self.smtp_port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"reefknot serve did not start; see {self.log_file}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM, and the daemon's exit status (None when it had to be killed)."""
        if self._process is None or self._process.poll() is not None:
            return self._process.returncode if self._process else None
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(STOP_LIMIT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return None

    def send(self, mail_from: str, recipient: str, data: bytes) -> None:
        """Hand a message to the daemon's SMTP listener, as the site's MTA would (smtplib raises if it is refused)."""
        with smtplib.SMTP(LOOPBACK, self.smtp_port, timeout=30) as client:
            client.sendmail(mail_from, [recipient], data)

    # -- the users ----------------------------------------------------------------

    def add_user(self, address: str, name: str, kind: Kind = Kind.INDIVIDUAL) -> None:
        with self.db.transaction() as session:
            directory.add_principal(session, address, utcnow(), name=name, kind=kind)

    def put_event(self, address: str, text: str) -> None:
        with self.db.transaction() as session:
            events.put_event(session, self._principal(session, address), text, utcnow())

    def answer(self, address: str, uid: str, partstat: PartStat) -> None:
        with self.db.transaction() as session:
            events.reply_event(session, self._principal(session, address), uid, partstat, utcnow())

    def calendar_of(self, address: str, uid: str) -> Calendar | None:
        with self.db.transaction() as session:
            return calendars.load_object(session, self._principal(session, address).id, uid).calendar

    def partstat(self, owner: str, uid: str, attendee: str) -> str | None:
        """The attendee's PARTSTAT on the owner's copy of the master, or None when there is no such copy."""
        calendar = self.calendar_of(owner, uid)
        if calendar is None:
            return None
        prop = find_attendee(components_of(calendar)[0], attendee)
        return partstat_of(prop) if prop is not None else None

    def schedule_status(self, owner: str, uid: str, attendee: str) -> str:
        calendar = self.calendar_of(owner, uid)
        prop = find_attendee(components_of(calendar)[0], attendee) if calendar is not None else None
        return str(prop.params.get("SCHEDULE-STATUS", "")) if prop is not None else ""

    def inbox_lines(self, address: str) -> list[str]:
        with self.db.transaction() as session:
            entries = inbox.list_entries(session, self._principal(session, address).id)
            return [f"{e.method} {e.outcome}{f' ({e.reason})' if e.reason else ''}" for e in entries]

    def _principal(self, session: Session, address: str) -> directory.PrincipalRef:
        found = directory.resolve(session, address)
        assert found is not None, address
        return found

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0
