"""With no [policy] files, scheduling mail whose sender does not play its RFC 5546 role is held, the rest applied.

The built-in roles check judges the claimed sender (From or Sender, the role's address,
its EMAIL and SENT-BY, a reply token) against the role the method needs. Each case is
one message through ``reefknot ingest`` on a configuration that names no policy files:
a held message changes nothing and names its reason, an applied one changes Alice's
calendar. A shipped calendar relay (Google's) still speaks for a shared calendar's
organizer once its signature verifies. Quarantine release applies a held message;
``check-config`` and the start log of ``reefknot serve`` say which mode runs; one
forgery goes through the real SMTP listener.
"""

from __future__ import annotations

import email
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.adapters.dkim import DkimSigner, KeyResolver
from gateway.core.mail.envelope import Envelope
from gateway.service import processing
from gateway.service.trust import load_trust
from gateway.settings.config import load_config
from gateway.store import directory, inbox
from gateway.store.db import Database
from tests.conftest import NOW
from tests.peers.cli import EVENT, Reefknot, imip_mail
from tests.peers.serve import ServeProcess, crlf, wait_until_processed, write_config
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Sink, smtp_peer

ALICE, CAROL, ERIN = "alice@foo.example", "carol@bar.example", "erin@baz.example"
DAVE, DANA, BOB = "dave@bar.example", "dana@icloud.com", "bob@foo.example"
ICLOUD_TOKEN = "2_GEZDGNBVGY3TQOJQGEZDGNBVGY@imip.me.com"
BUILTIN_MODE = "policy: built-in roles check (no [policy] files)"


def calendar(method: str, uid: str, organizer: str, *attendees: str, sequence: int = 0,
             stamp: str = "20260602T080000Z") -> str:
    """An iTIP message; ``organizer`` and each attendee are what follows the property name (parameters, value)."""
    lines = [f"ATTENDEE{a}" for a in attendees]
    return "\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Test//Roles//EN", f"METHOD:{method}", "BEGIN:VEVENT",
        f"UID:{uid}", f"DTSTAMP:{stamp}", f"SEQUENCE:{sequence}", "DTSTART:20260710T080000Z",
        "DTEND:20260710T090000Z", "SUMMARY:Roles", f"ORGANIZER{organizer}", *lines, "END:VEVENT", "END:VCALENDAR", "",
    ])


def to(address: str, partstat: str = "") -> str:
    return f";PARTSTAT={partstat}:mailto:{address}" if partstat else f":mailto:{address}"


@dataclass(frozen=True)
class Case:
    """One message to Alice: who sends it, what it says, and what becomes of it (inbox outcome and reason).

    ``u-alice`` is Alice's own event (Carol, Erin and Bob invited), ``u-carol`` Carol's event that
    invited Alice; any other UID is new.
    """

    name: str
    sender: str
    method: str
    uid: str
    organizer: str
    attendees: tuple[str, ...]
    outcome: str
    reason: str = ""
    sequence: int = 0
    token: bool = False  # sent to the reply address of Alice's invitation to Carol

    @property
    def held(self) -> bool:
        return self.outcome == "held"


CASES = [
    Case("reply-from-the-attendee", CAROL, "REPLY", "u-alice", to(ALICE), (to(CAROL, "ACCEPTED"),), "applied"),
    Case("reply-for-another-attendee", ERIN, "REPLY", "u-alice", to(ALICE), (to(CAROL, "DECLINED"),),
         "held", "reply-for-another-attendee"),
    Case("reply-by-the-attendees-delegate", ERIN, "REPLY", "u-alice", to(ALICE),
         (f';SENT-BY="mailto:{ERIN}"{to(CAROL, "ACCEPTED")}',), "applied"),
    Case("reply-from-an-alias-of-a-local-attendee", "bobby@foo.example", "REPLY", "u-alice", to(ALICE),
         (to(BOB, "ACCEPTED"),), "applied"),
    Case("reply-at-the-token-address-from-another-address", "carol.home@mail.example", "REPLY", "u-alice",
         to(ALICE), (to(CAROL, "TENTATIVE"),), "applied", token=True),
    Case("counter-from-someone-not-invited", "frank@baz.example", "COUNTER", "u-alice", to(ALICE),
         (to(CAROL, "NEEDS-ACTION"),), "held", "not-attendee"),
    Case("cancel-of-alices-event-from-an-attendee", CAROL, "CANCEL", "u-alice", to(ALICE), (to(ALICE), to(CAROL)),
         "held", "not-organizer", sequence=1),
    Case("request-from-the-organizer", CAROL, "REQUEST", "u-new", to(CAROL), (to(ALICE),), "applied"),
    Case("request-in-another-organizers-name", ERIN, "REQUEST", "u-new", to(CAROL), (to(ALICE),),
         "held", "not-organizer"),
    Case("request-by-the-organizers-delegate", DAVE, "REQUEST", "u-new", f';SENT-BY="mailto:{DAVE}"{to(CAROL)}',
         (to(ALICE),), "applied"),
    Case("request-from-the-email-of-an-icloud-organizer", DANA, "REQUEST", "u-new",
         f";EMAIL={DANA}:mailto:{ICLOUD_TOKEN}", (to(ALICE),), "applied"),
    Case("update-from-the-organizer", CAROL, "REQUEST", "u-carol", to(CAROL), (to(ALICE), to(ERIN)), "applied",
         sequence=1),
    Case("update-from-an-attendee", ERIN, "REQUEST", "u-carol", to(CAROL), (to(ALICE), to(ERIN)),
         "held", "not-organizer", sequence=1),
    Case("update-changing-the-organizer", ERIN, "REQUEST", "u-carol", to(ERIN), (to(ALICE), to(ERIN)),
         "held", "organizer-changed", sequence=1),
    Case("update-from-the-organizer-handing-over", CAROL, "REQUEST", "u-carol", to(ERIN), (to(ALICE), to(CAROL)),
         "held", "organizer-changed", sequence=1),
    Case("add-from-an-attendee", ERIN, "ADD", "u-carol", to(CAROL), (to(ALICE),), "held", "not-organizer",
         sequence=1),
    Case("cancel-from-the-organizer", CAROL, "CANCEL", "u-carol", to(CAROL), (to(ALICE), to(ERIN)), "applied",
         sequence=1),
    Case("cancel-from-an-attendee", ERIN, "CANCEL", "u-carol", to(CAROL), (to(ALICE), to(ERIN)),
         "held", "not-organizer", sequence=1),
]


@dataclass
class Site:
    run: Reefknot
    tmp_path: Path
    token_address: str  # the Reply-To of Alice's invitation to Carol

    def send(self, case: Case) -> str:
        """Ingest the case's message for Alice; the ingest line."""
        text = calendar(case.method, case.uid, case.organizer, *case.attendees, sequence=case.sequence,
                        stamp="20260603T080000Z")
        recipient = self.token_address if case.token else ALICE
        mail = imip_mail(self.tmp_path, case.name, case.sender, recipient, text, case.method)
        return self.run("ingest", "--recipient", recipient, "--sender", case.sender, str(mail))

    def export(self) -> str:
        return self.run("calendar", "export", ALICE)


@pytest.fixture
def peer() -> Iterator[Sink]:
    with smtp_peer() as sink:
        yield sink


@pytest.fixture
def site(database_url: str, tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str]) -> Site:
    """Alice's event with Carol, Erin and Bob (who has an alias), its invitations sent; Carol's invitation applied."""
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n\n'
                      f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "reply.foo.example"\n')
    run = Reefknot(config, capsys)
    run("users", "add", ALICE, "--name", "Alice")
    run("users", "add", BOB, "--name", "Bob", "--alias", "bobby@foo.example")
    own = tmp_path / "u-alice.ics"
    attendees = "\n".join(f"ATTENDEE:mailto:{a}" for a in (CAROL, ERIN, BOB))
    event = EVENT.format(uid="u-alice", attendees=attendees)
    own.write_text(event.replace("20260710T", "20990710T"))  # in the future: its reply token is valid
    run("event", "put", "--as", ALICE, str(own))
    run("outbox", "flush")
    (invitation,) = [m for m in peer.received if CAROL in m.rcpt_to]
    token_address = parseaddr(email.message_from_bytes(invitation.data)["Reply-To"])[1]
    invited = calendar("REQUEST", "u-carol", to(CAROL), to(ALICE), to(ERIN))
    run("ingest", "--recipient", ALICE, str(imip_mail(tmp_path, "u-carol", CAROL, ALICE, invited, "REQUEST")))
    return Site(run, tmp_path, token_address)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_message_is_applied_only_when_its_claimed_sender_plays_its_role(site: Site, case: Case) -> None:
    before = site.export()
    line = site.send(case)
    assert line.split(": ")[1].strip() == ("held (builtin-roles)" if case.held else "done")
    last = site.run.json_lines("inbox", ALICE)[-1]
    assert (last["method"], last["outcome"], last["reason"]) == (case.method, case.outcome, case.reason)
    assert (site.export() == before) is case.held
    held = site.run.json_lines("quarantine")
    assert [h["reason"] for h in held] == (["builtin-roles"] if case.held else [])
    if case.held:
        assert f"rule builtin-roles: refused {case.reason}" in held[0]["detail"]


def test_release_applies_a_message_the_roles_check_held(site: Site) -> None:
    forged = next(c for c in CASES if c.name == "reply-for-another-attendee")
    site.send(forged)
    assert site.run.partstat(ALICE, "u-alice", CAROL) == "NEEDS-ACTION"
    (held,) = site.run.json_lines("quarantine")

    assert site.run("quarantine", "release", str(held["id"])) == f"intake {held['id']}: done\n"
    assert site.run.partstat(ALICE, "u-alice", CAROL) == "DECLINED"
    last = site.run.json_lines("inbox", ALICE)[-1]
    assert last["outcome"] == "applied" and "released by the operator" in str(last["detail"])
    assert site.run.json_lines("quarantine") == []


def test_check_config_names_the_built_in_roles_check_and_the_shipped_relays(site: Site) -> None:
    said = site.run("check-config")
    assert f"{BUILTIN_MODE}: a sender not in its iTIP role is held; 3 calendar relays" in said


def test_serve_says_it_runs_the_roles_check_and_holds_a_forged_reply_from_smtp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    config, port, _ = write_config(tmp_path, database_url)
    run = Reefknot(config, capsys)
    run("users", "add", ALICE, "--name", "Alice")
    own = tmp_path / "u-smtp.ics"
    own.write_text(EVENT.format(uid="u-smtp", attendees=f"ATTENDEE:mailto:{CAROL}\nATTENDEE:mailto:{ERIN}"))
    run("event", "put", "--as", ALICE, str(own))
    daemon = ServeProcess(config, tmp_path / "serve.log")
    daemon.start()
    try:
        states = [_send_smtp(port, database_url, sender, n, calendar("REPLY", "u-smtp", to(ALICE), to(CAROL, partstat)))
                  for n, (sender, partstat) in enumerate(((ERIN, "DECLINED"), (CAROL, "ACCEPTED")))]
    finally:
        daemon.close()
    assert states == ["held", "done"]
    assert run.partstat(ALICE, "u-smtp", CAROL) == "ACCEPTED"
    assert [(e["outcome"], e["reason"]) for e in run.json_lines("inbox", ALICE)] == [
        ("held", "reply-for-another-attendee"), ("applied", "")]
    assert BUILTIN_MODE in (tmp_path / "serve.log").read_text()


GOOGLE_SERVER = "calendar-server.bounces.google.com"
RELAY_CASES = [  # (what the mail is, signed by google.com, envelope sender, inbox outcome and reason)
    ("from-googles-calendar-server", True, f"invites@{GOOGLE_SERVER}", ("applied", "")),
    ("unsigned", False, f"invites@{GOOGLE_SERVER}", ("held", "not-organizer")),
    ("signed-but-not-from-the-calendar-server", True, "kim@gmail.com", ("held", "not-organizer")),
]


@pytest.mark.parametrize(("name", "signed", "envelope", "expected"), RELAY_CASES, ids=[c[0] for c in RELAY_CASES])
def test_the_shipped_google_relay_speaks_for_a_shared_calendar_organizer(
    db: Database, tmp_path: Path, name: str, signed: bool, envelope: str, expected: tuple[str, str]
) -> None:
    key = tmp_path / "google.key"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    signer = DkimSigner("google.com", "cal", key)
    records = {signer.record_name: signer.dns_record().encode()}
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "{db.engine.url.render_as_string(hide_password=False)}"\n')
    trust = load_trust(load_config(str(config)), KeyResolver(lambda record, timeout: records.get(record)))
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW)
    team = "team-7@group.calendar.google.com"  # Google mails a shared calendar's event from whoever changed it
    text = calendar("REQUEST", f"u-{name}", to(team), to(team), to(ALICE))
    raw = crlf(f"From: kim@gmail.com\nTo: {ALICE}\nSubject: Invitation\nMessage-ID: <{name}@google.com>\n"
               f'MIME-Version: 1.0\nContent-Type: text/calendar; method=REQUEST; charset="utf-8"\n\n{text}'.encode())
    raw = signer.sign(raw) if signed else raw

    processing.ingest_message(db, raw, Envelope(envelope, (ALICE,), "ingest"), NOW, trust)

    with db.transaction() as session:
        assert [(e.outcome, e.reason) for e in inbox.list_entries(session, alice.id)] == [expected]


def _send_smtp(port: int, database_url: str, sender: str, number: int, text: str) -> str:
    """One iMIP REPLY to Alice over SMTP; its processed state."""
    message_id = f"<roles-{number}@{sender.split('@')[1]}>"
    raw = crlf(f"From: {sender}\nTo: {ALICE}\nSubject: Reply\nMessage-ID: {message_id}\nMIME-Version: 1.0\n"
               f'Content-Type: text/calendar; method=REPLY; charset="utf-8"\n\n{text}'.encode())
    with smtplib.SMTP(LOOPBACK, port, timeout=30) as client:
        client.sendmail(sender, [ALICE], raw)
    (row,) = wait_until_processed(database_url, [message_id])
    return row.state
