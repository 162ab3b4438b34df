"""Forged and honest scheduling mail through ``reefknot serve``'s SMTP listener under the shipped default policy.

bar.example and baz.example are partners whose DKIM keys are pinned, so their honest
mail authenticates without DNS. Each forgery is refused with its named reason and
changes nothing; the honest message after it is applied. Quarantine release and drop
are checked on a held message.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.adapters.dkim import DkimSigner
from tests.peers.cli import EVENT, Reefknot, reply_from
from tests.peers.paths import ROOT
from tests.peers.serve import ServeProcess, crlf, wait_until_processed, write_config
from tests.peers.servers import LOOPBACK

ALICE, CAROL, DAVE, ERIN = "alice@foo.example", "carol@bar.example", "dave@bar.example", "erin@baz.example"


def _signer(directory: Path, domain: str) -> DkimSigner:
    key = directory / f"{domain}.key"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return DkimSigner(domain, "cal", key)


@dataclass
class Site:
    run: Reefknot
    port: int
    database_url: str
    signers: dict[str, DkimSigner]
    sent: int = 0

    def send(self, sender: str, calendar: str, method: str, *, sign: bool = True, to: str = ALICE) -> str:
        """Mail an iMIP message to Alice over SMTP, DKIM-signed by the sender's domain; its processed state."""
        self.sent += 1
        message_id = f"<m{self.sent}@{sender.split('@')[1]}>"
        body = calendar.replace("\r\n", "\n").replace("\n", "\r\n")
        raw = crlf(
            f"From: {sender}\nTo: {to}\nSubject: {method}\nMessage-ID: {message_id}\nMIME-Version: 1.0\n"
            f'Content-Type: text/calendar; method={method}; charset="utf-8"\n\n'.encode()
        ) + body.encode()
        if sign:
            raw = self.signers[sender.split("@")[1]].sign(raw)
        with smtplib.SMTP(LOOPBACK, self.port, timeout=30) as client:
            client.sendmail(sender, [to], raw)
        (row,) = wait_until_processed(self.database_url, [message_id])
        return row.state

    def last(self) -> dict[str, object]:
        return self.run.json_lines("inbox", ALICE)[-1]


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Site]:
    signers = {domain: _signer(tmp_path, domain) for domain in ("bar.example", "baz.example")}
    partners = "".join(
        f'[[partner]]\nname = "{domain.split(".")[0]}"\ndomains = ["{domain}"]\n'
        f'[partner.dkim_keys]\n"{s.record_name}" = "{s.dns_record()}"\n\n'
        for domain, s in signers.items()
    )
    (tmp_path / "partners.toml").write_text(partners)
    policies = [str(ROOT / "policies" / "default.toml"), str(ROOT / "policies" / "relays.toml"), "partners.toml"]
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    extra = f"[policy]\nfiles = {policies!r}\n\n[trust]\ndns = false\n".replace("'", '"')
    config, port, _ = write_config(tmp_path, database_url, extra=extra)
    run = Reefknot(config, capsys)
    run("users", "add", ALICE, "--name", "Alice")
    daemon = ServeProcess(config, tmp_path / "serve.log")
    daemon.start()
    try:
        yield Site(run, port, database_url, signers)
    finally:
        daemon.close()


def carols_invitation(uid: str, *attendees: str, method: str = "REQUEST", organizer: str = CAROL) -> str:
    text = EVENT.format(uid=uid, attendees="\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in attendees))
    text = text.replace("ORGANIZER;CN=Alice:mailto:alice@foo.example", f"ORGANIZER:mailto:{organizer}")
    text = text.replace("ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@foo.example", f"ATTENDEE:mailto:{organizer}")
    return text.replace("VERSION:2.0", f"VERSION:2.0\nMETHOD:{method}")


def alices_event(site: Site, tmp_path: Path, uid: str, *attendees: str) -> None:
    path = tmp_path / f"{uid}.ics"
    path.write_text(EVENT.format(uid=uid, attendees="\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in attendees)))
    site.run("event", "put", "--as", ALICE, str(path))


def test_an_authenticated_partners_invitation_is_applied(site: Site) -> None:
    assert site.send(CAROL, carols_invitation("u-honest", ALICE), "REQUEST") == "done"
    assert site.run.partstat(ALICE, "u-honest", ALICE) == "NEEDS-ACTION"
    assert (site.last()["outcome"], site.last()["reason"]) == ("applied", "")


def test_a_spoofed_reply_is_held_and_release_applies_it(site: Site, tmp_path: Path) -> None:
    alices_event(site, tmp_path, "u-spoof", CAROL)
    assert site.send(CAROL, reply_from("u-spoof", CAROL, "DECLINED"), "REPLY", sign=False) == "held"
    assert site.run.partstat(ALICE, "u-spoof", CAROL) == "NEEDS-ACTION"
    line = site.last()
    assert (line["outcome"], line["reason"]) == ("held", "unauthenticated")
    (held,) = site.run.json_lines("quarantine")
    assert held["reason"] == "unauthenticated-held" and "unauthenticated" in held["detail"]

    assert site.run("quarantine", "release", str(held["id"])) == f"intake {held['id']}: done\n"
    assert site.run.partstat(ALICE, "u-spoof", CAROL) == "DECLINED"
    assert "released by the operator" in str(site.last()["detail"])
    assert site.run.json_lines("quarantine") == []


def test_a_dropped_message_is_recorded_in_the_inbox(site: Site, tmp_path: Path) -> None:
    alices_event(site, tmp_path, "u-drop", CAROL)
    site.send(CAROL, reply_from("u-drop", CAROL, "ACCEPTED"), "REPLY", sign=False)
    (held,) = site.run.json_lines("quarantine")
    site.run("quarantine", "drop", str(held["id"]))
    assert (site.last()["outcome"], site.last()["reason"]) == ("ignored", "dropped-by-operator")
    assert site.run.partstat(ALICE, "u-drop", CAROL) == "NEEDS-ACTION"


def test_an_honest_signed_reply_is_applied(site: Site, tmp_path: Path) -> None:
    alices_event(site, tmp_path, "u-reply", CAROL)
    assert site.send(CAROL, reply_from("u-reply", CAROL, "ACCEPTED"), "REPLY") == "done"
    assert site.run.partstat(ALICE, "u-reply", CAROL) == "ACCEPTED"


def test_a_cancel_from_an_attendee_is_rejected_and_the_organizers_is_applied(site: Site) -> None:
    site.send(CAROL, carols_invitation("u-cancel", ALICE, ERIN), "REQUEST")
    forged = carols_invitation("u-cancel", ALICE, ERIN, method="CANCEL").replace("DTSTAMP:20260601T080000Z",
                                                                                 "DTSTAMP:20260601T090000Z\nSEQUENCE:1")
    assert site.send(ERIN, forged, "CANCEL") == "ignored"
    line = site.last()
    assert (line["method"], line["outcome"], line["reason"]) == ("CANCEL", "rejected", "not-organizer")
    assert "STATUS:CANCELLED" not in site.run("calendar", "export", ALICE, "--uid", "u-cancel")
    assert site.send(CAROL, forged, "CANCEL") == "done"
    assert "STATUS:CANCELLED" in site.run("calendar", "export", ALICE, "--uid", "u-cancel")


def test_a_request_that_changes_the_organizer_is_rejected(site: Site) -> None:
    site.send(CAROL, carols_invitation("u-takeover", ALICE), "REQUEST")
    takeover = carols_invitation("u-takeover", ALICE, organizer=ERIN).replace(
        "SUMMARY:Quarterly planning", "SUMMARY:Moved to my office\nSEQUENCE:2")
    assert site.send(ERIN, takeover, "REQUEST") == "ignored"
    assert (site.last()["outcome"], site.last()["reason"]) == ("rejected", "organizer-changed")
    assert "Moved to my office" not in site.run("calendar", "export", ALICE, "--uid", "u-takeover")


def test_a_reply_that_answers_for_another_attendee_is_rejected_and_the_own_answer_applied(
    site: Site, tmp_path: Path
) -> None:
    alices_event(site, tmp_path, "u-other", CAROL, ERIN)
    assert site.send(ERIN, reply_from("u-other", CAROL, "DECLINED"), "REPLY") == "ignored"
    assert (site.last()["outcome"], site.last()["reason"]) == ("rejected", "reply-for-another-attendee")
    assert site.run.partstat(ALICE, "u-other", CAROL) == "NEEDS-ACTION"
    assert site.send(ERIN, reply_from("u-other", ERIN, "ACCEPTED"), "REPLY") == "done"
    assert site.run.partstat(ALICE, "u-other", ERIN) == "ACCEPTED"
