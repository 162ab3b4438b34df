"""The scenarios through ``reefknot serve``: out by SMTP to a real peer, back in by SMTP, answered, applied.

``reefknot demo`` plays all five and checks each step itself; here its exit status and
the database it leaves behind are checked independently. Bounces and reply addresses
go through the daemon's own SMTP listener.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.utils import parseaddr
from pathlib import Path

import pytest

from gateway.core.calendar.ical import (
    components_of,
    find_attendee,
    parse_calendar,
    partstat_of,
    uid_of,
)
from tests.peers.cli import EVENT, Reefknot
from tests.peers.paths import ROOT
from tests.peers.serve import ServeProcess, write_config
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Received, Sink, smtp_peer
from tests.e2e.test_mail_back import _dsn

ALICE, CAROL = "alice@foo.example", "carol@bar.example"


def test_reefknot_demo_plays_the_five_scenarios_and_leaves_their_calendars_behind(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--keep", str(kept)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for title in ("1. Alice invites Bob", "2. Alice invites Carol", "3. Alice invites Erin", "4. Erin invites Alice",
                  "5. Alice invites Fred", "All five scenarios worked."):
        assert title in done.stdout
    assert "✗" not in done.stdout

    again = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--keep", str(kept)],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert again.returncode == 64 and "not empty" in again.stderr  # the kept site is left as it was

    export = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(kept / "reefknot.toml"),
                             "calendar", "export", ALICE], capture_output=True, text=True, cwd=ROOT, check=True)
    answers = {
        (str(c.get("SUMMARY")), address): partstat_of(prop)
        for c in components_of(parse_calendar(export.stdout))
        for address in ("bob@foo.example", CAROL, "erin@baz.example", "fred@baz.example", ALICE)
        if (prop := find_attendee(c, address)) is not None and address not in (ALICE, str(c.get("ORGANIZER"))[7:])
    }
    assert answers == {
        ("Design review", "bob@foo.example"): "ACCEPTED",
        ("Contract review", CAROL): "ACCEPTED",
        ("Budget 2027", "erin@baz.example"): "DECLINED",
        ("Kick-off", "fred@baz.example"): "ACCEPTED",
    }
    lunch = [c for c in components_of(parse_calendar(export.stdout)) if str(c.get("SUMMARY")) == "Lunch at the harbour"]
    assert [partstat_of(find_attendee(c, ALICE)) for c in lunch] == ["ACCEPTED"]  # type: ignore[arg-type]


@pytest.fixture
def peer() -> Iterator[Sink]:
    with smtp_peer() as sink:
        yield sink


@pytest.fixture
def site(tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Reefknot, int]]:
    extra = (f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "foo.example"\n'
             "poll_interval = 0.2\n")
    config, smtp_port, _ = write_config(tmp_path, f"sqlite:///{tmp_path / 'reefknot.db'}", extra=extra)
    run = Reefknot(config, capsys)
    run("users", "add", ALICE, "--name", "Alice")
    daemon = ServeProcess(config, tmp_path / "serve.log")
    daemon.start()
    try:
        yield run, smtp_port
    finally:
        daemon.close()


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def invite_carol(run: Reefknot, peer: Sink, tmp_path: Path) -> Received:
    text = EVENT.format(uid="u-e2e", attendees=f"ATTENDEE;RSVP=TRUE:mailto:{CAROL}").replace("2026", "2027")
    (tmp_path / "u-e2e.ics").write_text(text)
    run("event", "put", "--as", ALICE, str(tmp_path / "u-e2e.ics"))
    wait_until(lambda: len(peer.received) == 1)
    return peer.received[0]


def test_a_bounce_sent_to_the_bounce_address_by_smtp_fails_the_delivery_and_sets_5_1(
    site: tuple[Reefknot, int], peer: Sink, tmp_path: Path
) -> None:
    run, port = site
    sent = invite_carol(run, peer, tmp_path)
    bounce = _dsn(sent, CAROL, "failed", "5.1.1", "550 5.1.1 User unknown")
    with smtplib.SMTP(LOOPBACK, port) as client:
        client.sendmail("", [sent.mail_from], bounce.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"))
    wait_until(lambda: run.json_lines("outbox")[0]["state"] == "failed")
    (component,) = components_of(parse_calendar(run("calendar", "export", ALICE, "--uid", "u-e2e")))
    prop = find_attendee(component, CAROL)
    assert prop is not None and prop.params["SCHEDULE-STATUS"] == "5.1" and partstat_of(prop) == "NEEDS-ACTION"
    assert run.json_lines("inbox", ALICE)[-1]["outcome"] == "bounced"


def test_the_listener_takes_a_known_reply_address_refuses_an_unknown_one_and_applies_the_answer(
    site: tuple[Reefknot, int], peer: Sink, tmp_path: Path
) -> None:
    run, port = site
    sent = invite_carol(run, peer, tmp_path)
    reply_to = parseaddr(str(message_from_bytes(sent.data)["Reply-To"]))[1]
    answer = (f"From: {CAROL}\r\nTo: {reply_to}\r\nSubject: Re: Invitation\r\nMessage-ID: <a1@bar.example>\r\n"
              "\r\nDecline, sorry - I am away that week.\r\n").encode()
    with smtplib.SMTP(LOOPBACK, port) as client:
        client.ehlo()
        assert client.mail(CAROL)[0] == 250
        assert client.rcpt("reply+aaaaaaaaaaaaaaaaaaaaaaaa@foo.example")[0] == 550
        assert client.rcpt(reply_to)[0] == 250
        assert client.data(answer)[0] == 250

    def carol_answer() -> str:
        (component,) = components_of(parse_calendar(run("calendar", "export", ALICE, "--uid", "u-e2e")))
        assert uid_of(component) == "u-e2e"
        return partstat_of(find_attendee(component, CAROL))  # type: ignore[arg-type]

    wait_until(lambda: carol_answer() == "DECLINED")
