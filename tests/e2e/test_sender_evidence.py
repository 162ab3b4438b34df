"""Borrowed sender evidence through ``reefknot serve``'s SMTP listener, behind an MTA whose results it trusts.

Each message arrives as the operator's MTA (authserv-id ``mx.foo.example``) hands it
on: its Received field and the Authentication-Results it wrote on top, and below them
whatever the sender put in. A signature of a sibling registration under a public
suffix, and a forged field claiming our authserv-id, leave the sender unauthenticated:
the message is held and changes nothing; the honest message after it is applied. A
bounce that names one of our Message-IDs but reaches Alice's own address, unproven, is
recorded and changes nothing; the same bounce at the delivery's bounce address fails it.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.cli import EVENT, Reefknot, reply_from
from tests.peers.paths import ROOT
from tests.peers.serve import ServeProcess, crlf, wait_until_processed, write_config
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Received, Sink, smtp_peer
from tests.e2e.test_mail_back import _dsn

ALICE, CAROL = "alice@foo.example", "carol@bar.example"
OURS = "mx.foo.example"


def our_received(sender_host: str) -> str:
    return f"Received: from {sender_host} ({sender_host} [192.0.2.66])\n\tby {OURS} (Postfix) with ESMTPS id 4Z\n"


@dataclass
class Site:
    run: Reefknot
    port: int
    database_url: str
    peer: Sink
    sent: int = 0

    def send(self, sender: str, calendar: str, method: str, trace: str) -> str:
        """Hand Alice one iMIP message whose header starts with ``trace``; its processed state."""
        self.sent += 1
        message_id = f"<e{self.sent}@{sender.split('@')[1]}>"
        body = calendar.replace("\r\n", "\n").replace("\n", "\r\n")
        raw = crlf(
            f"{trace}From: {sender}\nTo: {ALICE}\nSubject: {method}\nMessage-ID: {message_id}\nMIME-Version: 1.0\n"
            f'Content-Type: text/calendar; method={method}; charset="utf-8"\n\n'.encode()
        ) + body.encode()
        with smtplib.SMTP(LOOPBACK, self.port, timeout=30) as client:
            client.sendmail(sender, [ALICE], raw)
        (row,) = wait_until_processed(self.database_url, [message_id])
        return row.state

    def last(self) -> dict[str, object]:
        return self.run.json_lines("inbox", ALICE)[-1]


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Site]:
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    policies = [str(ROOT / "policies" / "default.toml")]
    with smtp_peer() as peer:
        extra = (f'[policy]\nfiles = {policies!r}\n\n[trust]\ndns = false\nauthserv_ids = ["{OURS}"]\n\n'
                 f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "foo.example"\n'
                 "poll_interval = 0.2\n").replace("'", '"')
        config, port, _ = write_config(tmp_path, database_url, extra=extra)
        run = Reefknot(config, capsys)
        run("users", "add", ALICE, "--name", "Alice")
        daemon = ServeProcess(config, tmp_path / "serve.log")
        daemon.start()
        try:
            yield Site(run, port, database_url, peer)
        finally:
            daemon.close()


def invitation(uid: str, organizer: str, method: str, sequence: int = 0) -> str:
    text = EVENT.format(uid=uid, attendees=f"ATTENDEE;RSVP=TRUE:mailto:{ALICE}")
    text = text.replace("ORGANIZER;CN=Alice:mailto:alice@foo.example", f"ORGANIZER:mailto:{organizer}")
    text = text.replace("ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@foo.example", f"ATTENDEE:mailto:{organizer}")
    return text.replace("VERSION:2.0", f"VERSION:2.0\nMETHOD:{method}").replace(
        "SUMMARY:", f"SEQUENCE:{sequence}\nSUMMARY:")


def signed_by(domain: str) -> str:
    """Our MTA's verdict on a message with one valid DKIM signature of ``domain``."""
    return f"Authentication-Results: {OURS}; dkim=pass header.d={domain} header.s=sel; spf=none\n"


@pytest.mark.parametrize(
    ("organizer", "attacker"),
    [("ceo@bigcorp.com.sa", "attacker.com.sa"), ("bob@bob.eu.org", "attacker.eu.org")],
)
def test_a_cancel_signed_by_a_sibling_registration_does_not_cancel_the_event(
    site: Site, organizer: str, attacker: str
) -> None:
    home = organizer.split("@")[1]
    uid = f"u-{home}"
    assert site.send(organizer, invitation(uid, organizer, "REQUEST"), "REQUEST",
                     our_received(f"mail.{home}") + signed_by(home)) == "done"
    cancel = invitation(uid, organizer, "CANCEL", sequence=1)
    assert site.send(organizer, cancel, "CANCEL", our_received(f"mail.{attacker}") + signed_by(attacker)) == "held"
    assert (site.last()["outcome"], site.last()["reason"]) == ("held", "unauthenticated")
    assert "STATUS:CANCELLED" not in site.run("calendar", "export", ALICE, "--uid", uid)

    assert site.send(organizer, cancel, "CANCEL", our_received(f"mail.{home}") + signed_by(home)) == "done"
    assert "STATUS:CANCELLED" in site.run("calendar", "export", ALICE, "--uid", uid)


FORGED = f"Authentication-Results: {OURS}; dkim=pass header.d=bar.example; dmarc=pass header.from=bar.example\n"
OUR_NOTHING = f"Authentication-Results: {OURS}; dkim=none; dmarc=none; spf=softfail smtp.mailfrom=carol@bar.example\n"


@pytest.mark.parametrize(
    "trace",
    [
        pytest.param(our_received("mail.evil.example") + OUR_NOTHING + FORGED, id="forged-right-below-ours"),
        pytest.param(our_received("mail.evil.example") + OUR_NOTHING
                     + "Received: from laptop by mail.evil.example (Postfix)\n" + FORGED, id="forged-below-a-hop"),
        pytest.param(OUR_NOTHING + our_received("mail.evil.example") + FORGED, id="ours-above-our-received"),
    ],
)
def test_a_forged_field_with_our_authserv_id_does_not_authenticate(site: Site, tmp_path: Path, trace: str) -> None:
    path = tmp_path / "u-ar.ics"
    path.write_text(EVENT.format(uid="u-ar", attendees=f"ATTENDEE;RSVP=TRUE:mailto:{CAROL}"))
    site.run("event", "put", "--as", ALICE, str(path))
    assert site.send(CAROL, reply_from("u-ar", CAROL, "DECLINED"), "REPLY", trace) == "held"
    assert (site.last()["outcome"], site.last()["reason"]) == ("held", "unauthenticated")
    assert site.run.partstat(ALICE, "u-ar", CAROL) == "NEEDS-ACTION"

    honest = reply_from("u-ar", CAROL, "ACCEPTED", stamp="20260603T080000Z")
    assert site.send(CAROL, honest, "REPLY", our_received("mail.bar.example") + signed_by("bar.example")) == "done"
    assert site.run.partstat(ALICE, "u-ar", CAROL) == "ACCEPTED"


def test_a_bounce_to_alices_own_address_naming_our_message_id_changes_nothing(site: Site, tmp_path: Path) -> None:
    path = tmp_path / "u-bounce.ics"
    text = EVENT.format(uid="u-bounce", attendees=f"ATTENDEE;RSVP=TRUE:mailto:{CAROL}")
    path.write_text(text.replace("2026", "2027"))
    site.run("event", "put", "--as", ALICE, str(path))
    invitation_sent = delivered(site)
    forged = _dsn(invitation_sent, CAROL, "failed", "5.1.1", "550 5.1.1 User unknown",
                  reporter="MAILER-DAEMON@mail.evil.example", trace=our_received("mail.evil.example"))
    hand_over(site, "", ALICE, forged)
    wait_until_processed(site.database_url, ["<dsn-1@mx.foo.example>"])
    assert site.run.json_lines("outbox")[0]["state"] == "sent"
    assert (site.last()["outcome"], site.last()["reason"]) == ("recorded", "unauthenticated-bounce")

    real = _dsn(invitation_sent, CAROL, "failed", "5.1.1", "550 5.1.1 User unknown").replace(b"dsn-1@", b"dsn-2@")
    hand_over(site, "", invitation_sent.mail_from, real)
    wait_until_processed(site.database_url, ["<dsn-2@mx.foo.example>"])
    assert site.run.json_lines("outbox")[0]["state"] == "failed"
    assert (site.last()["outcome"], site.last()["reason"]) == ("bounced", "delivery-failed")


def delivered(site: Site, timeout: float = 20.0) -> Received:
    deadline = time.monotonic() + timeout
    while not site.peer.received:
        assert time.monotonic() < deadline, "the invitation was not sent"
        time.sleep(0.05)
    return site.peer.received[0]


def hand_over(site: Site, sender: str, recipient: str, raw: bytes) -> None:
    with smtplib.SMTP(LOOPBACK, site.port, timeout=30) as client:
        client.sendmail(sender, [recipient], crlf(raw))
