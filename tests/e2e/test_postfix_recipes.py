"""The README's Postfix recipes, each run against a real Postfix, a real Dovecot LMTP and ``reefknot serve``.

The deployment a mail administrator follows: Postfix hands the users' mail to Reefknot
over LMTP, Reefknot hands every message on to Dovecot; an invitation and a plain mail
both land in the mailbox, the invitation is applied, the answer leaves DKIM-signed
through Postfix as the smarthost, a plain-words answer to a reply address comes back
to Reefknot alone, and ``/metrics`` counts it all. Then the copy recipe
(``recipient_bcc_maps``) and the pipe recipe (``reefknot ingest`` as a pipe(8)
transport, for a room).
"""

from __future__ import annotations

import contextlib
import email
import os
import re
import shutil
import smtplib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email.utils import parseaddr
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest

from gateway.core.calendar.ical import components_of, parse_calendar
from tests.conftest import _fresh_postgres_database
from tests.peers.cli import Reefknot
from tests.peers.paths import ROOT
from tests.peers.postfix import PostfixInstance, postfix_instance
from tests.peers.serve import ServeProcess, intake_rows, wait_until_processed
from tests.peers.servers import LOOPBACK, DovecotServer, ServerUnavailable, _reachable_tempdir, dovecot_server, free_port
from tests.peers.sink import Received, Sink, smtp_peer

pytestmark = pytest.mark.e2e
ALICE, BOB, ERIN, FRED = "alice@foo.example", "bob@foo.example", "erin@baz.example", "fred@baz.example"
ROOM = "room-r@foo.example"


COPY_RULE = "/@foo\\.example$/  calendar-copy@foo.example\n"  # one copy a message, to one address


def event(uid: str, organizer: str, attendee: str, method: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Other//Client//EN\r\n"
        + (f"METHOD:{method}\r\n" if method else "")
        + f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261201T090000Z\r\nDTSTART:20270105T100000Z\r\n"
        f"DTEND:20270105T110000Z\r\nSUMMARY:Planning\r\nORGANIZER:mailto:{organizer}\r\n"
        f"ATTENDEE;RSVP=TRUE:mailto:{attendee}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def invitation(uid: str, organizer: str, attendee: str) -> bytes:
    calendar = event(uid, organizer, attendee, "REQUEST")
    return (f"From: {organizer}\r\nTo: {attendee}\r\nSubject: Planning\r\nMessage-ID: <{uid}@baz.example>\r\n"
            f'MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REQUEST; charset="utf-8"\r\n\r\n{calendar}'
            ).encode()


def plain_mail(subject: str, to: str = ALICE, sender: str = ERIN, body: str = "Lunch on Friday?") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@baz.example>\r\n\r\n"
            f"{body}\r\n").encode()


def submit(postfix: PostfixInstance, sender: str, recipients: list[str], message: bytes) -> None:
    """Hand a message to Postfix's smtpd, as the outside world does."""
    with smtplib.SMTP(LOOPBACK, postfix.smtp_port, timeout=30) as client:
        assert client.sendmail(sender, recipients, message) == {}


def mailbox(dovecot: DovecotServer, user: str) -> list[email.message.Message]:
    new = dovecot.maildir(user) / "new"
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(new.iterdir())] if new.exists() else []


def wait_for(condition: object, what: str, timeout: float = 30.0, postfix: PostfixInstance | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            queue = postfix.queue() if postfix is not None else ""
            raise AssertionError(f"{what}: not after {timeout:g} s\nqueue: {queue}\n{postfix.log()[-3000:] if postfix else ''}")
        time.sleep(0.1)


def calendar_in(data: bytes) -> str:
    """The text/calendar part of a mail, decoded."""
    part = next(p for p in email.message_from_bytes(data).walk() if p.get_content_type() == "text/calendar")
    return part.get_payload(decode=True).decode()


def received_by(relay: Sink, recipient: str) -> list[Received]:
    return [m for m in relay.received if recipient in m.rcpt_to]


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    try:
        with dovecot_server({ALICE: "pw", BOB: "pw"}, lmtp=True) as server:
            yield server
    except ServerUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def relay() -> Iterator[Sink]:
    """The outside world: where Postfix relays what is not for foo.example."""
    with smtp_peer() as sink:
        yield sink


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory Postfix's own users can reach, for Reefknot's LMTP socket."""
    directory = _reachable_tempdir("reefknot-recipe-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def postfix_for(relay: Sink, transport: str, *, copy: bool = False, master_cf_extra: str = "") -> Iterator[PostfixInstance]:
    """A Postfix for foo.example that relays everything else to ``relay``, routing by ``transport``."""
    main_cf = {"relay_domains": "foo.example", "relayhost": f"[{LOOPBACK}]:{relay.port}",
               "transport_maps": "hash:$config_directory/transport"}
    maps = {"hash:transport": transport}
    if copy:
        main_cf["recipient_bcc_maps"] = "regexp:$config_directory/reefknot_copy"
        maps["regexp:reefknot_copy"] = COPY_RULE
    try:
        with postfix_instance(main_cf, master_cf_extra=master_cf_extra, maps=maps) as postfix:
            yield postfix
    except ServerUnavailable as error:
        pytest.skip(str(error))


def start_serve(config: Path) -> ServeProcess:
    process = ServeProcess(config, config.parent / "serve.log")
    process.start()
    return process


def counted(port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry these labels, from ``/metrics``."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "").split(",") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_in_front_of_the_mailboxes_mail_reaches_the_mailbox_invitations_are_applied_and_answers_leave_signed(
    place: Path, dovecot: DovecotServer, relay: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    socket_path = place / "lmtp.sock"
    with postfix_for(relay, f"foo.example  lmtp:unix:{socket_path}\n") as postfix:
        http_port = free_port()
        config = place / "reefknot.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{place / "reefknot.db"}"\n\n'
            f'[smtp]\nlisten = ["{LOOPBACK}:{free_port()}"]\n\n'
            f'[lmtp]\nlisten = ["unix:{socket_path}"]\nnext_hop = "lmtp:unix:{dovecot.lmtp_socket}"\n\n'
            f'[outbound]\nsmarthost = "{LOOPBACK}:{postfix.smtp_port}"\nreply_domain = "foo.example"\n'
            'poll_interval = 0.5\n\n'
            '[outbound.dkim]\ndomain = "foo.example"\nselector = "rk"\nkey_file = "dkim.key"\n\n'
            f'[http]\nlisten = "{LOOPBACK}:{http_port}"\n'
        )
        cli = Reefknot(config, capsys)
        record = cli("dkim", "keygen", "--domain", "foo.example", "--selector", "rk", "--out", str(place / "dkim.key"))
        txt = "".join(part for part in record.splitlines()[0].split('"')[1::2])
        for user in (ALICE, BOB):
            cli("users", "add", user)
        daemon = start_serve(config)
        try:
            # Erin, outside, invites Alice and asks her to lunch: both reach Alice's mailbox, the first is applied.
            submit(postfix, ERIN, [ALICE], invitation("planning", ERIN, ALICE))
            submit(postfix, ERIN, [ALICE], plain_mail("lunch"))
            wait_for(lambda: len(mailbox(dovecot, ALICE)) == 2, "both in Alice's mailbox", postfix=postfix)
            assert sorted(str(m["Subject"]) for m in mailbox(dovecot, ALICE)) == ["Planning", "lunch"]
            rows = wait_until_processed(f"sqlite:///{place / 'reefknot.db'}",
                                        ["<planning@baz.example>", "<lunch@baz.example>"])
            assert {r.message_id: r.state for r in rows} == {"<planning@baz.example>": "done",
                                                             "<lunch@baz.example>": "ignored"}
            (stored,) = components_of(parse_calendar(cli("calendar", "export", ALICE, "--uid", "planning")))
            assert str(stored["SUMMARY"]) == "Planning"

            # Alice accepts: the REPLY leaves through Postfix, signed for foo.example.
            cli("event", "reply", "--as", ALICE, "planning", "--partstat", "ACCEPTED")
            wait_for(lambda: received_by(relay, ERIN), "Alice's answer at Erin's server", postfix=postfix)
            (answer,) = received_by(relay, ERIN)
            assert "METHOD:REPLY" in calendar_in(answer.data) and "PARTSTAT=ACCEPTED" in calendar_in(answer.data)
            assert dkim.verify(answer.data, dnsfunc=lambda name, timeout=5: txt.encode())
            assert answer.data.count(b"DKIM-Signature:") == 1

            # Alice invites Fred, who has only email; his answer in plain words comes back through Postfix
            # to the reply address, which Reefknot keeps: it never reaches a mailbox.
            event_file = place / "lunch-with-fred.ics"
            event_file.write_text(event("with-fred", ALICE, FRED))
            cli("event", "put", "--as", ALICE, str(event_file))
            wait_for(lambda: received_by(relay, FRED), "the invitation at Fred's server", postfix=postfix)
            (sent,) = received_by(relay, FRED)
            reply_to = parseaddr(email.message_from_bytes(sent.data)["Reply-To"])[1]
            assert reply_to.startswith("reply+") and reply_to.endswith("@foo.example")
            assert sent.mail_from.startswith("bounce+") and sent.mail_from.endswith("@foo.example")
            assert dkim.verify(sent.data, dnsfunc=lambda name, timeout=5: txt.encode())
            submit(postfix, FRED, [reply_to], plain_mail("re-lunch", to=reply_to, sender=FRED, body="Accept"))
            wait_for(lambda: cli.partstat(ALICE, "with-fred", FRED) == "ACCEPTED", "Fred's answer applied",
                     postfix=postfix)
            assert len(mailbox(dovecot, ALICE)) == 2 and mailbox(dovecot, BOB) == []

            # And /metrics counted it all.
            assert counted(http_port, "reefknot_messages_taken_in_total", source="lmtp") == 3
            assert counted(http_port, "reefknot_messages_processed_total", method="REQUEST", outcome="done") == 1
            assert counted(http_port, "reefknot_messages_processed_total", outcome="ignored") == 1
            assert counted(http_port, "reefknot_messages_processed_total", outcome="done") == 2  # and Fred's answer
            assert counted(http_port, "reefknot_deliveries_total", result="sent") == 2
            assert daemon.stop() == 0
        finally:
            daemon.close()
        postfix.wait_for_queue_empty(timeout=10)


def test_copy_postfix_delivers_as_before_and_reefknot_applies_the_copy(
    place: Path, dovecot: DovecotServer, relay: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    socket_path = place / "lmtp.sock"
    transport = (f"calendar-copy@foo.example  lmtp:unix:{socket_path}\n"
                 f"foo.example  lmtp:inet:{LOOPBACK}:{dovecot.lmtp_port}\n")
    with postfix_for(relay, transport, copy=True) as postfix:
        config = place / "reefknot.toml"
        database_url = f"sqlite:///{place / 'reefknot.db'}"
        config.write_text(f'[database]\nurl = "{database_url}"\n\n[smtp]\nlisten = ["{LOOPBACK}:{free_port()}"]\n\n'
                          f'[lmtp]\nlisten = ["unix:{socket_path}"]\nmode = "copy"\n\n'
                          f'[http]\nlisten = "{LOOPBACK}:{free_port()}"\n')
        cli = Reefknot(config, capsys)
        for user in (ALICE, BOB):
            cli("users", "add", user)
        daemon = start_serve(config)
        try:
            submit(postfix, ERIN, [ALICE, BOB], invitation("copied", ERIN, ALICE))
            submit(postfix, ERIN, [ALICE], plain_mail("copied-lunch"))
            wait_for(lambda: len(mailbox(dovecot, ALICE)) == 2 and len(mailbox(dovecot, BOB)) == 1,
                     "Postfix's own deliveries", postfix=postfix)
            rows = wait_until_processed(database_url, ["<copied@baz.example>", "<copied-lunch@baz.example>"])
            assert sorted((r.state, r.raw == b"") for r in rows) == [("done", False), ("ignored", True)]
            assert [(e["method"], e["outcome"]) for e in cli.json_lines("inbox", ALICE)] == [("REQUEST", "applied")]
            assert cli.json_lines("outbox") == []  # it arrived as mail: never sent again
        finally:
            daemon.close()


def test_pipe_reefknot_ingest_takes_a_rooms_mail_from_postfix(
    place: Path, relay: Sink, postgres_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """pipe(8) runs the command as an unprivileged user, so the database is PostgreSQL and the interpreter one
    that user may run: the system's Python with this checkout and its libraries on the path."""
    if not Path("/usr/bin/python3").exists() or sys.version_info[:2] != _system_python_version():
        pytest.skip("the system Python differs from the one the libraries are installed for")
    for database_url in _fresh_postgres_database(postgres_server):
        config = place / "reefknot.toml"
        config.write_text(f'[database]\nurl = "{database_url}"\n')
        config.chmod(0o644)
        cli = Reefknot(config, capsys)
        cli("users", "add", ROOM, "--kind", "room")
        site_packages = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
        command = (f"/usr/bin/env PYTHONPATH={ROOT}:{site_packages} /usr/bin/python3 -m gateway.cli --config {config} "
                   "ingest --sender ${sender} --recipient ${recipient}")
        master = f"reefknot  unix  -  n  n  -  4  pipe\n  flags=Rq user=nobody argv={command}\n"
        with postfix_for(relay, f"{ROOM}  reefknot:\n", master_cf_extra=master) as postfix:
            submit(postfix, ERIN, [ROOM], invitation("book-the-room", ERIN, ROOM))
            postfix.wait_for_queue_empty(timeout=30)
            (row,) = intake_rows(database_url, "<book-the-room@baz.example>")
            assert (row.source, row.state, row.recipients) == ("ingest", "done", [ROOM])
            assert [e["outcome"] for e in cli.json_lines("inbox", ROOM)] == ["applied"]


def _system_python_version() -> tuple[int, int]:
    out = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(*sys.version_info[:2])"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""}).stdout
    major, minor = out.split()
    return int(major), int(minor)
