"""What operators see on the HTTP face of ``reefknot serve``: /healthz and Prometheus /metrics counting real mail.

Mail comes in by SMTP, by LMTP and from a real Dovecot by IMAP; invitations go out to a
real SMTP peer that accepts one recipient, refuses one and defers one; /metrics is read
with a real HTTP client. Whether the face listens at all is seen from the process's own
listening sockets.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from gateway.settings.config import load_config
from tests.peers.caldav_site import ALICE, CAROL, CalDavSite
from tests.peers.caldav_site import site  # noqa: F401  (the fixture)
from tests.peers.cli import Reefknot, write_event
from tests.peers.serve import ServeProcess, lmtp_deliver, processes, serve, write_config  # noqa: F401
from tests.peers.servers import LOOPBACK, DovecotServer, ServerUnavailable, dovecot_server
from tests.peers.sink import Sink, smtp_peer

INVITATION = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Bar//Server//EN
METHOD:REQUEST
BEGIN:VEVENT
UID:metrics-1
DTSTAMP:20261120T080000Z
DTSTART:20270310T090000Z
DTEND:20270310T100000Z
SUMMARY:Partner visit
ORGANIZER:mailto:carol@bar.example
ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@bar.example
ATTENDEE;RSVP=TRUE:mailto:alice@foo.example
END:VEVENT
END:VCALENDAR
"""
ERIN, DAVE, FRANK = "erin@baz.example", "dave@baz.example", "frank@baz.example"
MAILBOX_USER = "calendar@foo.example"


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from the exposition text; 0 when it is not there."""
    wanted = ",".join(sorted(f'{k}="{v}"' for k, v in labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted(filter(None, (match.group(1) or "").split(",")))) == wanted:
            return float(match.group(2))
    return 0.0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        return str(answer.read().decode())


def scrape_until(port: int, done: Callable[[str], bool], timeout: float = 20.0) -> str:
    """Scrape until ``done`` holds for the text (or the time is up: the asserts that follow then say what is off)."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(port)
        if done(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports the process listens on, from its own sockets (never a guess from connecting)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # a descriptor closed meanwhile
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def invitation(uid: str) -> bytes:
    """Erin invites Alice: a small iMIP REQUEST with Message-ID <uid@test>."""
    text = INVITATION.replace("metrics-1", uid).replace("carol@bar.example", ERIN).replace("\n", "\r\n")
    return (
        f"From: {ERIN}\r\nTo: {ALICE}\r\nSubject: {uid}\r\nMessage-ID: <{uid}@test>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: text/calendar; method=REQUEST; charset="utf-8"\r\n\r\n{text}'
    ).encode()


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    try:
        with dovecot_server({MAILBOX_USER: "s3cret"}) as server:
            yield server
    except ServerUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def peer() -> Iterator[Sink]:
    with smtp_peer() as sink:
        yield sink


def test_metrics_count_mail_taken_in_and_processed_and_show_the_queues(site: CalDavSite) -> None:
    before = site.request("GET", "/metrics", user=None)
    assert before.status == 200 and before.headers["content-type"].startswith("text/plain")
    assert sample(before.body, "reefknot_queue_depth", queue="intake") == 0
    site.send_mail(CAROL, ALICE, INVITATION, "REQUEST")
    done = {"source": "smtp", "method": "REQUEST", "outcome": "done", "reason": ""}
    after = scrape_until(site.http_port, lambda text: sample(text, "reefknot_messages_processed_total", **done) >= 1)
    assert sample(after, "reefknot_messages_taken_in_total", source="smtp") == 1
    assert sample(after, "reefknot_messages_processed_total", **done) == 1
    assert sample(after, "reefknot_processing_seconds_count") == 1
    assert sample(after, "reefknot_processing_latency_seconds_count") == 1
    for queue in ("intake", "quarantine", "outbox"):
        assert f'reefknot_queue_depth{{queue="{queue}"}}' in after
        assert f'reefknot_queue_oldest_seconds{{queue="{queue}"}}' in after
    assert "sum over them" in after and "the same for every process that shares it" in after  # the help says whose


def test_metrics_show_lmtp_and_imap_intake_the_mailbox_poller_and_each_delivery_result(
    tmp_path: Path, dovecot: DovecotServer, peer: Sink, processes: list[ServeProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = tmp_path / "imap.secret"
    secret.write_text("s3cret\n")
    extra = (
        f'[[imap]]\nhost = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
        f'username = "{MAILBOX_USER}"\npassword_file = "{secret}"\nrecipients = ["{ALICE}"]\n\n'
        f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "foo.example"\n'
    )
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    config, _, lmtp_port = write_config(tmp_path, database_url, extra=extra)
    loaded = load_config(str(config))
    http_port, mailbox = loaded.http.port, loaded.imap[0].name
    run = Reefknot(config, capsys)
    run("users", "add", ALICE)
    peer.answer(DAVE, "550 5.1.1 no such user")
    peer.answer(FRANK, "451 4.3.0 try again later")
    run("event", "put", "--as", ALICE, str(write_event(tmp_path, "outgoing", ERIN, DAVE, FRANK)))
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        client.login(MAILBOX_USER, "s3cret")
        client.append("INBOX", invitation("from-imap"))
    started = time.time()
    serve(processes, config)
    assert lmtp_deliver(lmtp_port, ERIN, [ALICE], invitation("from-lmtp"))[1][0][0] == 250

    def processed(source: str, text: str) -> float:
        return sample(text, "reefknot_messages_processed_total", source=source, method="REQUEST", outcome="done",
                      reason="")

    def settled(text: str) -> bool:
        return (processed("lmtp", text) + processed("imap", text) >= 2
                and sample(text, "reefknot_deliveries_total", result="sent") >= 1
                and sample(text, "reefknot_imap_state", mailbox=mailbox, state="idle") == 1)

    text = scrape_until(http_port, settled)
    assert sample(text, "reefknot_messages_taken_in_total", source="lmtp") == 1
    assert sample(text, "reefknot_messages_taken_in_total", source="imap") == 1
    assert processed("lmtp", text) == 1 and processed("imap", text) == 1
    assert sample(text, "reefknot_processing_latency_seconds_count") == 2
    assert sample(text, "reefknot_processing_seconds_count") == 2
    assert sample(text, "reefknot_imap_state", mailbox=mailbox, state="idle") == 1
    assert sample(text, "reefknot_imap_state", mailbox=mailbox, state="error") == 0
    assert started - 1 <= sample(text, "reefknot_imap_last_poll_timestamp_seconds", mailbox=mailbox) <= time.time()
    assert f'reefknot_imap_errors_total{{mailbox="{mailbox}"}} 0.0' in text
    assert sample(text, "reefknot_deliveries_total", result="sent") == 1
    assert sample(text, "reefknot_deliveries_total", result="bad-address") == 1
    assert sample(text, "reefknot_deliveries_total", result="deferred") == 1
    assert sample(text, "reefknot_queue_depth", queue="outbox") == 1  # Frank's, deferred
    assert [r.rcpt_to for r in peer.received] == [(ERIN,)]

    dovecot.stop()  # the poller loses its server: the gauge says so and the error is counted
    text = scrape_until(http_port, lambda t: sample(t, "reefknot_imap_state", mailbox=mailbox, state="error") == 1)
    assert sample(text, "reefknot_imap_state", mailbox=mailbox, state="error") == 1
    assert sample(text, "reefknot_imap_state", mailbox=mailbox, state="idle") == 0
    assert sample(text, "reefknot_imap_errors_total", mailbox=mailbox) >= 1


def test_a_configuration_file_without_http_binds_no_http_port_and_one_with_it_does(
    tmp_path: Path, processes: list[ServeProcess],
) -> None:
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    config, smtp_port, lmtp_port = write_config(tmp_path, database_url)
    with_http = config.read_text()
    http_port = load_config(str(config)).http.port
    config.write_text(re.sub(r"\[http\]\nlisten = \S+\n", "", with_http))
    assert "[http]" not in config.read_text()

    daemon = serve(processes, config)
    assert daemon.process is not None
    assert listening_ports(daemon.process.pid) == {smtp_port, lmtp_port}
    assert "no HTTP face: the configuration has no [http] section" in daemon.log()
    assert daemon.stop() == 0

    config.write_text(with_http)
    daemon = serve(processes, config)
    assert daemon.process is not None
    assert listening_ports(daemon.process.pid) == {smtp_port, lmtp_port, http_port}
    assert f"HTTP face on {LOOPBACK}:{http_port}: [http] is configured" in daemon.log()
    assert scrape(http_port)
