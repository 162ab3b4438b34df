"""SMTP and LMTP intake against the real ``reefknot serve``, driven by smtplib: what the MTA is told, and what is stored.

Every test starts the daemon as a subprocess on free loopback ports and waits for its
READY=1; the stored result is read back with the ``reefknot`` command or the intake table.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.edges.smtp import is_allowed
from gateway.settings.config import ConfigError, IntakeOptions
from gateway.store.writers import WriteGate
from tests.peers.cli import EVENT, Reefknot, imip_mail, reply_from, write_event
from tests.peers.serve import (
    ServeProcess,
    crlf,
    intake_rows,
    lmtp_deliver,
    wait_until_processed,
    write_config,
)
from tests.peers.servers import (
    LOOPBACK,
    ServerUnavailable,
    _self_signed_cert,
    postgres_cluster_control,
)
from tests.cli.test_ingest import mime_bomb

ALICE, BOB, CAROL, ERIN, FRANK = (
    "alice@foo.example", "bob@foo.example", "carol@bar.example", "erin@baz.example", "frank@baz.example",
)


@dataclass
class Site:
    """A running daemon, its configuration, its ports, and the ``reefknot`` command on the same database."""

    database_url: str
    process: ServeProcess
    cli: Reefknot
    smtp_port: int
    lmtp_port: int
    tmp_path: Path

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP(LOOPBACK, self.smtp_port, timeout=30)

    def send(self, path: Path, sender: str, *recipients: str) -> None:
        with self.smtp() as client:
            assert client.sendmail(sender, list(recipients), crlf(path.read_bytes())) == {}

    def lmtp(self, path: Path, sender: str, *recipients: str) -> None:
        answers, replies = lmtp_deliver(self.lmtp_port, sender, list(recipients), crlf(path.read_bytes()))
        assert all(code == 250 for code, _ in answers.values()), answers
        assert [code for code, _ in replies] == [250] * len(recipients), replies


@pytest.fixture
def start_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Site]]:
    """Start ``reefknot serve`` on a database with Alice (alias a.smith), Bob and room R."""
    started: list[ServeProcess] = []

    def start(database_url: str, *, smtp: str = "", lmtp: str = "", extra: str = "") -> Site:
        config, smtp_port, lmtp_port = write_config(tmp_path, database_url, smtp=smtp, lmtp=lmtp, extra=extra)
        cli = Reefknot(config, capsys)
        cli("users", "add", ALICE, "--name", "Alice", "--alias", "a.smith@foo.example")
        cli("users", "add", BOB, "--name", "Bob")
        cli("users", "add", "room-r@foo.example", "--name", "Room R", "--kind", "room")
        process = ServeProcess(config, tmp_path / "serve.log")
        started.append(process)
        process.start()
        return Site(database_url, process, cli, smtp_port, lmtp_port, tmp_path)

    yield start
    for process in started:
        process.close()


def deliver(site: Site, protocol: str, path: Path, sender: str, *recipients: str) -> None:
    """Hand one message over SMTP or LMTP and wait until the daemon has processed it."""
    (site.send if protocol == "smtp" else site.lmtp)(path, sender, *recipients)
    message_id = f"<{path.stem}@test>"
    wait_until_processed(site.database_url, [message_id])


def request_from_erin(uid: str, *attendees: str) -> str:
    lines = "\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in attendees)
    template = EVENT.replace("mailto:alice@foo.example", f"mailto:{ERIN}")  # Erin organizes
    return template.format(uid=uid, attendees=lines).replace("VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST")


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_the_five_scenarios_arrive_as_mail_and_are_applied(
    start_site: Callable[..., Site], database_url: str, tmp_path: Path, protocol: str
) -> None:
    site = start_site(database_url)
    cli = site.cli

    # 1: A invites B through Reefknot; B's client answers by mail.
    cli("event", "put", "--as", ALICE, str(write_event(tmp_path, "s1", BOB)))
    answer = imip_mail(tmp_path, "s1-reply", BOB, ALICE, reply_from("s1", BOB, "ACCEPTED"), "REPLY")
    deliver(site, protocol, answer, BOB, ALICE)
    assert cli.partstat(ALICE, "s1", BOB) == "ACCEPTED"

    # 2 and 3: A invites C (other server) and E (no server); their emailed answers update A's copy.
    for uid, outsider, partstat in (("s2", CAROL, "TENTATIVE"), ("s3", ERIN, "ACCEPTED")):
        cli("event", "put", "--as", ALICE, str(write_event(tmp_path, uid, outsider)))
        answer = imip_mail(tmp_path, f"{uid}-reply", outsider, ALICE, reply_from(uid, outsider, partstat), "REPLY")
        deliver(site, protocol, answer, outsider, ALICE)
        assert cli.partstat(ALICE, uid, outsider) == partstat

    # 4: E invites A (by an alias); A's answer goes back to E as iMIP.
    invitation = imip_mail(tmp_path, "s4", ERIN, "a.smith@foo.example",
                           request_from_erin("s4", "a.smith@foo.example"), "REQUEST")
    deliver(site, protocol, invitation, ERIN, "a.smith@foo.example")
    assert cli.partstat(ALICE, "s4", "a.smith@foo.example") == "NEEDS-ACTION"
    cli("event", "reply", "--as", ALICE, "s4", "--partstat", "DECLINED")

    # 5: A invites F (email only) and B: F's invitation waits in the outbox.
    cli("event", "put", "--as", ALICE, str(write_event(tmp_path, "s5", FRANK, BOB)))
    assert cli.partstat(BOB, "s5", FRANK) == "NEEDS-ACTION"

    outbox = [(m["method"], m["uid"], m["recipients"]) for m in cli.json_lines("outbox")]
    assert outbox == [
        ("REQUEST", "s2", [CAROL]), ("REQUEST", "s3", [ERIN]), ("REPLY", "s4", [ERIN]), ("REQUEST", "s5", [FRANK]),
    ]
    inbox = [(e["method"], e["uid"], e["outcome"]) for e in cli.json_lines("inbox", ALICE)]
    assert inbox == [
        ("REPLY", "s1", "applied"), ("REPLY", "s2", "applied"), ("REPLY", "s3", "applied"),
        ("REQUEST", "s4", "applied"),
    ]
    assert {r.source for r in intake_rows(database_url)} == {protocol}
    assert site.process.stop() == 0


def test_lmtp_answers_each_recipient_after_data_and_refuses_unknown_ones_at_rcpt(
    start_site: Callable[..., Site], tmp_path: Path
) -> None:
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}")
    mail = imip_mail(tmp_path, "many", ERIN, ALICE, request_from_erin("many", "a.smith@foo.example", BOB), "REQUEST")
    recipients = ["a.smith@foo.example", "ghost@foo.example", BOB, "room-r@foo.example"]

    answers, replies = lmtp_deliver(site.lmtp_port, ERIN, recipients, crlf(mail.read_bytes()))

    assert answers["ghost@foo.example"] == (550, b"5.1.1 <ghost@foo.example>: no such local principal")
    assert [answers[r][0] for r in recipients if r != "ghost@foo.example"] == [250, 250, 250]
    assert len(replies) == 3 and all(code == 250 and text.startswith(b"2.0.0") for code, text in replies)
    (row,) = wait_until_processed(site.database_url, ["<many@test>"])
    assert row.recipients == ["a.smith@foo.example", BOB, "room-r@foo.example"]
    assert site.cli.partstat(ALICE, "many", "a.smith@foo.example") == "NEEDS-ACTION"
    assert site.cli.partstat(BOB, "many", BOB) == "NEEDS-ACTION"


def test_smtp_refuses_an_unknown_local_recipient_with_550_and_takes_the_others(
    start_site: Callable[..., Site], tmp_path: Path
) -> None:
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}")
    mail = imip_mail(tmp_path, "partly", ERIN, ALICE, request_from_erin("partly", ALICE), "REQUEST")
    with site.smtp() as client:
        refused = client.sendmail(ERIN, [ALICE, "nobody@foo.example"], crlf(mail.read_bytes()))
    assert refused == {"nobody@foo.example": (550, b"5.1.1 <nobody@foo.example>: no such local principal")}
    (row,) = wait_until_processed(site.database_url, ["<partly@test>"])
    assert (row.recipients, row.state) == ([ALICE], "done")

    with site.smtp() as client, pytest.raises(smtplib.SMTPRecipientsRefused):
        client.sendmail(ERIN, ["nobody@foo.example"], crlf(mail.read_bytes()))


def test_copy_mode_accepts_every_recipient_and_never_sends_mail_that_arrived_as_mail(
    start_site: Callable[..., Site], tmp_path: Path
) -> None:
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}", smtp='mode = "copy"', lmtp='mode = "copy"')
    outsiders = [CAROL, "dave@bar.example", FRANK]
    request = EVENT.format(uid="copied", attendees="\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in [BOB, *outsiders]))
    request = request.replace("VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST")
    mail = imip_mail(tmp_path, "copied", ALICE, BOB, request, "REQUEST")
    with site.smtp() as client:
        assert client.sendmail(ALICE, [BOB, *outsiders, "ghost@foo.example"], crlf(mail.read_bytes())) == {}
    cancel = request.replace("METHOD:REQUEST", "METHOD:CANCEL").replace("SUMMARY:", "SEQUENCE:1\nSTATUS:CANCELLED\nSUMMARY:")
    answers, replies = lmtp_deliver(site.lmtp_port, ALICE, [BOB, *outsiders],
                                    crlf(imip_mail(tmp_path, "copied-cancel", ALICE, BOB, cancel, "CANCEL").read_bytes()))
    assert [code for code, _ in answers.values()] == [250] * 4 and [code for code, _ in replies] == [250] * 4

    rows = wait_until_processed(site.database_url, ["<copied@test>", "<copied-cancel@test>"])
    assert [r.state for r in rows] == ["done", "done"]
    assert [(e["method"], e["outcome"]) for e in site.cli.json_lines("inbox", BOB)] == [
        ("REQUEST", "applied"), ("CANCEL", "applied"),
    ]
    assert site.cli.json_lines("outbox") == []


def test_a_copy_sent_to_a_collecting_address_is_for_the_local_principals_the_message_names(
    start_site: Callable[..., Site], tmp_path: Path
) -> None:
    """Postfix's recipient_bcc_maps sends the copy to one address of Reefknot's, not to the original recipients."""
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}", lmtp='mode = "copy"')
    request = EVENT.format(uid="bcc-copy", attendees=f"ATTENDEE;RSVP=TRUE:mailto:{BOB}\nATTENDEE:mailto:{CAROL}")
    request = request.replace("VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST")
    mail = imip_mail(tmp_path, "bcc-copy", ALICE, BOB, request, "REQUEST")
    _, replies = lmtp_deliver(site.lmtp_port, ALICE, ["calendar-copy@foo.example"], crlf(mail.read_bytes()))
    assert [code for code, _ in replies] == [250]
    (row,) = wait_until_processed(site.database_url, ["<bcc-copy@test>"])
    assert row.state == "done" and row.recipients == [] and row.handed_on  # the MTA delivers the mail itself
    assert [(e["method"], e["outcome"]) for e in site.cli.json_lines("inbox", BOB)] == [("REQUEST", "applied")]
    assert site.cli.json_lines("outbox") == []


def _big_message(size: int) -> bytes:
    line = b"x" * 98 + b"\r\n"
    return b"From: erin@baz.example\r\nMessage-ID: <big@test>\r\nSubject: big\r\n\r\n" + line * (size // len(line) + 1)


def test_a_message_over_the_size_limit_is_refused_with_552_and_not_stored(
    start_site: Callable[..., Site], tmp_path: Path
) -> None:
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}", smtp="max_message_size = 20000",
                      lmtp="max_message_size = 20000")
    big = _big_message(30_000)
    with site.smtp() as client:  # SIZE declared at MAIL FROM (smtplib does it when the server offers SIZE)
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail(ERIN, [ALICE], big)
        assert (caught.value.smtp_code, caught.value.smtp_error[:5]) == (552, b"5.3.4")
    with site.smtp() as client:  # no SIZE: refused after the data
        client.ehlo()
        assert client.mail(ERIN)[0] == 250 and client.rcpt(ALICE)[0] == 250
        code, text = client.data(big)
        assert (code, text[:5]) == (552, b"5.3.4")
        client.rset()
        assert client.mail(ERIN)[0] == 250 and client.rcpt(ALICE)[0] == 250
        assert client.data(_big_message(10_000).replace(b"<big@", b"<fits@"))[0] == 250
    answers, replies = lmtp_deliver(site.lmtp_port, ERIN, [ALICE, BOB], big)
    assert [(code, text[:5]) for code, text in replies] == [(552, b"5.3.4")] * 2
    wait_until_processed(site.database_url, ["<fits@test>"])
    assert [r.message_id for r in intake_rows(site.database_url)] == ["<fits@test>"]


def test_malformed_mail_and_a_mime_bomb_are_taken_and_held_and_the_daemon_goes_on(
    start_site: Callable[..., Site], tmp_path: Path
) -> None:
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}")
    broken = imip_mail(tmp_path, "broken", ERIN, ALICE, "BEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:x\n", "REQUEST")
    garbage = b"Message-ID: <garbage@test>\r\n\x00\xff\xfe binary \x00 junk\r\n\r\n\x80\x81"
    bomb = mime_bomb(10_000)
    started = time.monotonic()
    with site.smtp() as client:
        for raw in (crlf(broken.read_bytes()), garbage, bomb):
            assert client.sendmail(ERIN, [ALICE], raw) == {}
    rows = wait_until_processed(site.database_url, ["<broken@test>", "<garbage@test>", "<bomb@test>"])
    assert {r.message_id: (r.state, r.reason) for r in rows}["<bomb@test>"] == ("held", "mime-too-many-parts")
    assert {r.message_id: r.state for r in rows}["<broken@test>"] == "held"
    assert {r.message_id: r.state for r in rows}["<garbage@test>"] in ("ignored", "held")
    assert time.monotonic() - started < 15

    fine = imip_mail(tmp_path, "after", ERIN, ALICE, request_from_erin("after", ALICE), "REQUEST")
    deliver(site, "smtp", fine, ERIN, ALICE)
    assert site.cli.partstat(ALICE, "after", ALICE) == "NEEDS-ACTION"
    assert site.process.stop() == 0


def _start_data(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220")
    for command in (b"EHLO test", b"MAIL FROM:<erin@baz.example>", b"RCPT TO:<alice@foo.example>", b"DATA"):
        sock.sendall(command + b"\r\n")
        reply = reader.readline()
        while reply[3:4] == b"-":
            reply = reader.readline()
        assert reply[:1] in (b"2", b"3"), reply
    sock.sendall(b"From: erin@baz.example\r\nMessage-ID: <cut@test>\r\nSubject: cut\r\n\r\nhalf a mess")
    return sock


def test_a_client_that_disconnects_during_data_leaves_nothing_and_the_daemon_goes_on(
    start_site: Callable[..., Site], tmp_path: Path
) -> None:
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}")
    _start_data(site.smtp_port).close()
    reset = _start_data(site.smtp_port)
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST, not FIN
    reset.close()
    time.sleep(0.5)
    fine = imip_mail(tmp_path, "whole", ERIN, ALICE, request_from_erin("whole", ALICE), "REQUEST")
    deliver(site, "smtp", fine, ERIN, ALICE)
    assert [r.message_id for r in intake_rows(site.database_url)] == ["<whole@test>"]
    assert site.process.stop() == 0


@pytest.mark.postgresql
def test_a_database_outage_is_answered_451_and_mail_is_taken_again_once_it_is_back(
    start_site: Callable[..., Site], tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(postgres_cluster_control("reefknot"))
        except ServerUnavailable as error:
            pytest.skip(str(error))
        database_url = cluster.url
        site = start_site(database_url, lmtp='mode = "copy"')
        before = imip_mail(tmp_path, "before", ERIN, ALICE, request_from_erin("before", ALICE), "REQUEST")
        deliver(site, "smtp", before, ERIN, ALICE)

        cluster.stop()
        during = imip_mail(tmp_path, "during", ERIN, ALICE, request_from_erin("during", ALICE), "REQUEST")
        with site.smtp() as client:
            client.ehlo()
            client.mail(ERIN)
            unknown = "newcomer@foo.example"  # maybe added since: not refused before the directory is read again
            assert client.rcpt(unknown) == (451, b"4.3.0 Temporary failure, try again later")  # handle_exception
            assert client.rcpt(ALICE)[0] == 250 and client.rcpt(BOB)[0] == 250  # known from a moment ago
            assert client.data(crlf(during.read_bytes())) == (451, b"4.3.0 Temporary failure, try again later")
        answers, replies = lmtp_deliver(site.lmtp_port, ERIN, [ALICE, BOB], crlf(during.read_bytes()))  # copy: the commit fails
        assert [code for code, _ in answers.values()] == [250, 250]
        assert replies == [(451, b"4.3.0 Temporary failure, try again later")] * 2

        cluster.start()
        deliver(site, "smtp", during, ERIN, ALICE)
        assert site.cli.partstat(ALICE, "during", ALICE) == "NEEDS-ACTION"
        assert [r.message_id for r in intake_rows(database_url)] == ["<before@test>", "<during@test>"]
        assert site.process.stop() == 0


def test_only_allowed_networks_may_connect(start_site: Callable[..., Site], tmp_path: Path) -> None:
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}", smtp='allowed_networks = ["192.0.2.0/24"]',
                      lmtp='allowed_networks = ["192.0.2.0/24", "127.0.0.0/8", "::1/128"]')
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        smtplib.SMTP(LOOPBACK, site.smtp_port, timeout=10)
    assert (caught.value.smtp_code, caught.value.smtp_error) == (554, b"5.7.1 Access denied")
    mail = imip_mail(tmp_path, "allowed", ERIN, ALICE, request_from_erin("allowed", ALICE), "REQUEST")
    deliver(site, "lmtp", mail, ERIN, ALICE)


def test_starttls_with_the_configured_certificate_and_smtputf8(start_site: Callable[..., Site], tmp_path: Path) -> None:
    cert, key = _self_signed_cert(tmp_path)
    site = start_site(f"sqlite:///{tmp_path / 'reefknot.db'}", smtp=f'tls_cert = "{cert}"\ntls_key = "{key}"')
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "jörg@bär.example", ALICE, "Grüße"
    message["Message-ID"] = "<utf8@test>"
    message.set_content("Schöne Grüße")
    with site.smtp() as client:
        client.starttls(context=ssl.create_default_context(cafile=str(cert)))
        client.ehlo()
        assert client.has_extn("smtputf8")
        raw = message.as_bytes(policy=message.policy.clone(utf8=True))
        assert client.sendmail("jörg@bär.example", [ALICE], raw, mail_options=["SMTPUTF8"]) == {}
    (row,) = wait_until_processed(site.database_url, ["<utf8@test>"])
    assert row.envelope_sender == "jörg@bär.example" and "Subject: Grüße".encode() in row.raw




@pytest.mark.parametrize(
    ("peer", "allowed"),
    [(("127.0.0.1", 25), True), (("::ffff:127.0.0.1", 25, 0, 0), True), (("192.0.2.7", 25), False),
     (("::1", 25, 0, 0), False), ("", True)],
)
def test_allowed_networks_match_ipv4_ipv6_mapped_and_unix_peers(peer: object, allowed: bool) -> None:
    networks = IntakeOptions.from_toml({"allowed_networks": ["127.0.0.0/8", "10.1.2.0/24"]}, "[smtp]").allowed_networks
    assert is_allowed(peer, networks) is allowed
    assert is_allowed(peer, ())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "relay"}, "mode: 'relay' is not one of transport, copy"),
        ({"allowed_networks": ["10.0.0.0/33"]}, "allowed_networks"),
        ({"tls_cert": "/etc/cert.pem"}, "tls_cert and tls_key go together"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"mdoe": "copy"}, "unknown key 'mdoe'"),
    ],
)
def test_listener_settings_are_checked(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        IntakeOptions.from_toml(settings, "[smtp]")


def test_the_write_gate_lets_intake_in_before_the_processor_and_keeps_arrival_order() -> None:
    gate, order = WriteGate(), []
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(5)

    holder = threading.Thread(target=gate.run, args=(hold,))
    holder.start()
    entered.wait(5)
    waiters = []
    for name, urgent in (("processor-1", False), ("intake-1", True), ("processor-2", False), ("intake-2", True)):
        waiters.append(threading.Thread(target=gate.run, args=(order.append, name), kwargs={"urgent": urgent}))
        waiters[-1].start()
        time.sleep(0.05)
    release.set()
    for thread in [holder, *waiters]:
        thread.join(5)
    assert order == ["intake-1", "intake-2", "processor-1", "processor-2"]
