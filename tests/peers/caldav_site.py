"""A CalDAV site for tests: ``reefknot serve`` with local users and app passwords, an outside SMTP peer, raw HTTP.

Alice, Bob and the room are local users; carol@bar.example is at a partner with a
pinned DKIM key (her mail is trusted); fred@mail.example has only email. Each local
user has an app password; ``client`` gives a real ``caldav`` library client for one,
``request`` a raw HTTP exchange for what the library does not expose. The ``site``
fixture is one such site for one test.
"""

from __future__ import annotations

import base64
import http.client
import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import caldav
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.adapters.dkim import DkimSigner
from tests.peers.cli import Reefknot
from tests.peers.paths import ROOT
from tests.peers.serve import ServeProcess, crlf, wait_until_processed, write_config
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Received, Sink, smtp_peer

ALICE, BOB, ROOM = "alice@foo.example", "bob@foo.example", "room-4@foo.example"
CAROL, FRED = "carol@bar.example", "fred@mail.example"
LOCAL_USERS = {ALICE: ("Alice", "individual"), BOB: ("Bob", "individual"), ROOM: ("Room 4", "room")}


@dataclass(frozen=True)
class Answer:
    """One raw HTTP exchange's answer."""

    status: int
    headers: dict[str, str]
    body: str


@dataclass
class CalDavSite:
    run: Reefknot
    http_port: int
    smtp_port: int
    database_url: str
    peer: Sink
    carol: DkimSigner
    passwords: dict[str, str] = field(default_factory=dict)
    sent: int = 0

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def client(self, user: str = ALICE, *, url: str = "") -> caldav.DAVClient:
        return caldav.DAVClient(url=url or f"{self.base}/", username=user, password=self.passwords[user],
                                require_tls=False)

    def request(self, method: str, path: str, body: str | bytes = b"", *, user: str | None = ALICE,
                password: str | None = None, headers: dict[str, str] | None = None) -> Answer:
        sent = dict(headers or {})
        if user is not None:
            secret = password if password is not None else self.passwords[user]
            sent["Authorization"] = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
        connection = http.client.HTTPConnection(LOOPBACK, self.http_port, timeout=60)
        try:
            connection.request(method, path, body.encode() if isinstance(body, str) else body, sent)
            answer = connection.getresponse()
            return Answer(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read().decode())
        finally:
            connection.close()

    def mail_to(self, recipient: str, count: int = 1, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        found: list[Received] = []
        while time.monotonic() < deadline:
            found = [m for m in self.peer.received if recipient in m.rcpt_to]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} mail(s) to {recipient} expected, got {len(found)}")

    def send_mail(self, sender: str, to: str, calendar: str, method: str) -> None:
        """Mail from outside, by SMTP; Carol's is DKIM-signed by her partner domain."""
        self.sent += 1
        message_id = f"<dav{self.sent}@{sender.split('@')[1]}>"
        raw = crlf(f"From: {sender}\nTo: {to}\nSubject: {method}\nMessage-ID: {message_id}\nMIME-Version: 1.0\n"
                   f'Content-Type: text/calendar; method={method}; charset="utf-8"\n\n{calendar}'.encode())
        if sender == CAROL:
            raw = self.carol.sign(raw)
        with smtplib.SMTP(LOOPBACK, self.smtp_port, timeout=30) as client:
            client.sendmail(sender, [to], raw)
        wait_until_processed(self.database_url, [message_id])


@contextmanager
def caldav_site(tmp_path: Path, capsys: pytest.CaptureFixture[str], *, freebusy_local: bool = True) -> Iterator[CalDavSite]:
    key = tmp_path / "bar.key"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    carol = DkimSigner("bar.example", "cal", key)
    (tmp_path / "partners.toml").write_text(
        f"[freebusy]\nlocal = {'true' if freebusy_local else 'false'}\n\n"
        '[[partner]]\nname = "bar"\ndomains = ["bar.example"]\nfreebusy = true\nbook_rooms = ["room-*@foo.example"]\n'
        f'[partner.dkim_keys]\n"{carol.record_name}" = "{carol.dns_record()}"\n')
    policies = [str(ROOT / "policies" / "default.toml"), str(ROOT / "policies" / "relays.toml"), "partners.toml"]
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    with smtp_peer() as peer:
        extra = (f"[policy]\nfiles = {policies!r}\n\n[trust]\ndns = false\n\n"
                 f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "foo.example"\n'
                 "poll_interval = 0.2\n").replace("'", '"')
        config, smtp_port, _ = write_config(tmp_path, database_url, extra=extra)
        http_port = int(config.read_text().split("[http]\nlisten = \"")[1].split(":")[1].split('"')[0])
        run = Reefknot(config, capsys)
        passwords = {}
        for address, (name, kind) in LOCAL_USERS.items():
            run("users", "add", address, "--name", name, "--kind", kind)
            passwords[address] = run("users", "password", "add", address, "--label", "phone").strip()
        daemon = ServeProcess(config, tmp_path / "serve.log")
        daemon.start()
        try:
            yield CalDavSite(run, http_port, smtp_port, database_url, peer, carol, passwords)
        finally:
            daemon.close()


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[CalDavSite]:
    """A running site for one test; a test module imports it to use it."""
    with caldav_site(tmp_path, capsys) as running:
        yield running
