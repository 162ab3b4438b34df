"""Free/busy and rooms through ``reefknot serve``: requests by SMTP, answers by SMTP to a real peer, the HTTP face.

Alice has a weekly meeting at 10:00 Europe/Berlin across the change to summer time
(28 March 2027), so its UTC time moves by an hour. bar.example is a partner (pinned DKIM
key, free/busy allowed, may book room-* rooms, a free/busy URL token); baz.example is not.
"""

from __future__ import annotations

import email
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.adapters.dkim import DkimSigner
from gateway.core.calendar.ical import (
    components_of,
    find_attendee,
    parse_calendar,
    partstat_of,
)
from gateway.core.calendar.instances import recurrence_key_of
from tests.peers.cli import Reefknot
from tests.peers.paths import ROOT
from tests.peers.serve import ServeProcess, crlf, wait_until_processed, write_config
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Received, Sink, smtp_peer

ALICE, ROOM, CAROL, ERIN = "alice@foo.example", "room-4@foo.example", "carol@bar.example", "erin@baz.example"
TOKEN = "bar-free-busy-token-0123456789"
WEEKLY = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Test//EN
BEGIN:VEVENT
UID:weekly-sync
DTSTAMP:20261101T080000Z
DTSTART;TZID=Europe/Berlin:20270315T100000
DTEND;TZID=Europe/Berlin:20270315T110000
RRULE:FREQ=WEEKLY;COUNT=6
SUMMARY:Weekly sync
END:VEVENT
END:VCALENDAR
"""
# The weekly sync in UTC: 09:00 while Berlin is on CET, 08:00 from 28 March on (CEST).
EXPECTED_BUSY = [
    "20270322T090000Z/20270322T100000Z", "20270329T080000Z/20270329T090000Z", "20270405T080000Z/20270405T090000Z",
]


@dataclass
class Site:
    run: Reefknot
    smtp_port: int
    http_port: int
    database_url: str
    peer: Sink
    carol: DkimSigner
    sent: int = 0

    def send(self, sender: str, to: str, calendar: str, method: str, headers: str = "") -> None:
        self.sent += 1
        message_id = f"<fb{self.sent}@{sender.split('@')[1]}>"
        raw = crlf(
            f"From: {sender}\nTo: {to}\nSubject: {method}\nMessage-ID: {message_id}\nMIME-Version: 1.0\n{headers}"
            f'Content-Type: text/calendar; method={method}; charset="utf-8"\n\n{calendar}'.encode()
        )
        if sender == CAROL:
            raw = self.carol.sign(raw)
        with smtplib.SMTP(LOOPBACK, self.smtp_port, timeout=30) as client:
            client.sendmail(sender, [to], raw)
        wait_until_processed(self.database_url, [message_id])

    def mail_to(self, recipient: str, count: int = 1, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.peer.received if recipient in m.rcpt_to]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} mail(s) to {recipient} expected, got {len(found)}")

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}{path}", timeout=30) as answer:
                return answer.status, answer.headers.get_content_type(), answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get_content_type(), error.read().decode()


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Site]:
    key = tmp_path / "bar.key"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    carol = DkimSigner("bar.example", "cal", key)
    (tmp_path / "partners.toml").write_text(
        '[freebusy]\nurl = "token"\n\n'
        f'[[partner]]\nname = "bar"\ndomains = ["bar.example"]\nfreebusy = true\nbook_rooms = ["room-*@foo.example"]\n'
        f'freebusy_token = "{TOKEN}"\n[partner.dkim_keys]\n"{carol.record_name}" = "{carol.dns_record()}"\n'
    )
    policies = [str(ROOT / "policies" / "default.toml"), str(ROOT / "policies" / "relays.toml"), "partners.toml"]
    database_url = f"sqlite:///{tmp_path / 'reefknot.db'}"
    with smtp_peer() as peer:
        extra = (f"[policy]\nfiles = {policies!r}\n\n[trust]\ndns = false\n\n"
                 f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "foo.example"\n'
                 "poll_interval = 0.2\n").replace("'", '"')
        config, smtp_port, _ = write_config(tmp_path, database_url, extra=extra)
        http_port = int(config.read_text().split("[http]\nlisten = \"")[1].split(":")[1].split('"')[0])
        run = Reefknot(config, capsys)
        run("users", "add", ALICE, "--name", "Alice")
        run("users", "add", ROOM, "--name", "Room 4", "--kind", "room")
        (tmp_path / "weekly.ics").write_text(WEEKLY)
        run("event", "put", "--as", ALICE, str(tmp_path / "weekly.ics"))
        daemon = ServeProcess(config, tmp_path / "serve.log")
        daemon.start()
        try:
            yield Site(run, smtp_port, http_port, database_url, peer, carol)
        finally:
            daemon.close()


def freebusy_request(sender: str, uid: str) -> str:
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Bar//Server//EN\nMETHOD:REQUEST\nBEGIN:VFREEBUSY\n"
        f"UID:{uid}\nDTSTAMP:20261120T080000Z\nORGANIZER:mailto:{sender}\nATTENDEE:mailto:{ALICE}\n"
        "DTSTART:20270320T000000Z\nDTEND:20270406T000000Z\nEND:VFREEBUSY\nEND:VCALENDAR\n"
    )


def busy_in(calendar_text: str) -> list[str]:
    (component,) = [c for c in parse_calendar(calendar_text).walk("VFREEBUSY")]
    props = component.get("FREEBUSY")
    props = props if isinstance(props, list) else [props]
    return sorted(p.to_ical().decode() for p in props)


def calendar_part(mail: Received) -> tuple[str, str]:
    parts = [p for p in email.message_from_bytes(mail.data).walk() if p.get_content_type() == "text/calendar"]
    return parts[0].get_param("method") or "", parts[0].get_payload(decode=True).decode()


def test_a_partners_free_busy_request_by_mail_gets_the_busy_periods_back_by_mail(site: Site) -> None:
    site.send(CAROL, ALICE, freebusy_request(CAROL, "fb-1"), "REQUEST")
    (reply,) = site.mail_to(CAROL)
    method, text = calendar_part(reply)
    assert method == "REPLY"
    assert busy_in(text) == EXPECTED_BUSY
    assert "Weekly sync" not in text  # busy time only, never details
    assert site.run.json_lines("inbox", ALICE)[-1]["reason"] == "freebusy-answered"


def test_an_unauthorized_free_busy_request_gets_nothing(site: Site) -> None:
    site.send(ERIN, ALICE, freebusy_request(ERIN, "fb-2"), "REQUEST")
    line = site.run.json_lines("inbox", ALICE)[-1]
    assert (line["outcome"], line["reason"]) in {("recorded", "freebusy-not-allowed"), ("held", "unauthenticated")}
    time.sleep(0.5)  # the sender polls every 0.2 s: an answer would have gone out by now
    assert [m for m in site.peer.received if ERIN in m.rcpt_to] == []


def test_a_free_busy_request_marked_auto_submitted_gets_no_answer(site: Site) -> None:
    site.send(CAROL, ALICE, freebusy_request(CAROL, "fb-3"), "REQUEST", headers="Auto-Submitted: auto-generated\n")
    line = site.run.json_lines("inbox", ALICE)[-1]
    assert (line["outcome"], line["reason"]) == ("recorded", "freebusy-not-allowed")
    time.sleep(0.5)  # the sender polls every 0.2 s: an answer would have gone out by now
    assert [m for m in site.peer.received if CAROL in m.rcpt_to] == []


def test_the_free_busy_url_answers_with_the_token_across_the_dst_change(site: Site) -> None:
    window = "start=2027-03-20T00:00:00Z&end=2027-04-06T00:00:00Z"
    status, content_type, text = site.get(f"/freebusy/{ALICE}?{window}&token={TOKEN}")
    assert (status, content_type) == (200, "text/calendar")
    assert busy_in(text) == EXPECTED_BUSY
    status, _, both = site.get(f"/freebusy/{ALICE},{ROOM}?{window}&token={TOKEN}")
    (together,) = parse_calendar(both).walk("VFREEBUSY")
    assert status == 200 and sorted(str(a) for a in together["ATTENDEE"]) == [f"mailto:{ALICE}", f"mailto:{ROOM}"]
    assert busy_in(both) == EXPECTED_BUSY  # the room is free: together they are busy when Alice is
    assert site.get(f"/freebusy/{ALICE}?{window}")[0] == 404  # no token: the URL is not public
    assert site.get(f"/freebusy/{ALICE}?{window}&token=wrong")[0] == 403
    assert site.get(f"/freebusy/nobody@foo.example?{window}&token={TOKEN}")[0] == 404
    assert site.get(f"/freebusy/{ALICE}?start=2027-04-06T00:00:00Z&end=2027-03-20T00:00:00Z&token={TOKEN}")[0] == 400


def test_the_calendar_feed_needs_the_principals_secret(site: Site) -> None:
    url = site.run("users", "feed", ALICE).strip()
    path = url.split(str(site.http_port), 1)[1]
    status, content_type, text = site.get(path)
    assert (status, content_type) == (200, "text/calendar") and "SUMMARY:Weekly sync" in text
    assert site.get(path.replace("token=", "token=x"))[0] == 404
    site.run("users", "feed", ALICE, "--renew")
    assert site.get(path)[0] == 404


def room_request(uid: str, start: str, end: str, rrule: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Bar//Server//EN\nMETHOD:REQUEST\nBEGIN:VEVENT\n"
        f"UID:{uid}\nDTSTAMP:20261120T080000Z\nSEQUENCE:0\nDTSTART;TZID=Europe/Berlin:{start}\n"
        f"DTEND;TZID=Europe/Berlin:{end}\n{rrule}SUMMARY:Partner visit\nORGANIZER:mailto:{CAROL}\n"
        f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{CAROL}\nATTENDEE;CUTYPE=ROOM;RSVP=TRUE:mailto:{ROOM}\n"
        "END:VEVENT\nEND:VCALENDAR\n"
    )


def test_a_room_takes_the_first_booking_and_declines_clashes_including_one_instance_of_a_series(
    site: Site, tmp_path: Path
) -> None:
    alices = WEEKLY.replace("weekly-sync", "room-first").replace("RRULE:FREQ=WEEKLY;COUNT=6\n", "").replace(
        "SUMMARY:Weekly sync", f"SUMMARY:Planning\nORGANIZER:mailto:{ALICE}\nATTENDEE;CUTYPE=ROOM:mailto:{ROOM}")
    alices = alices.replace("20270315T1", "20270412T1")
    (tmp_path / "first.ics").write_text(alices)
    site.run("event", "put", "--as", ALICE, str(tmp_path / "first.ics"))
    assert site.run.partstat(ALICE, "room-first", ROOM) == "ACCEPTED"  # local booking: answered at once

    site.send(CAROL, ROOM, room_request("room-clash", "20270412T103000", "20270412T113000"), "REQUEST")
    (declined,) = site.mail_to(CAROL)
    method, text = calendar_part(declined)
    (component,) = components_of(parse_calendar(text))
    assert method == "REPLY" and partstat_of(find_attendee(component, ROOM)) == "DECLINED"  # type: ignore[arg-type]

    series = room_request("room-series", "20270405T100000", "20270405T110000", "RRULE:FREQ=WEEKLY;COUNT=3\n")
    site.send(CAROL, ROOM, series, "REQUEST")
    replies = site.mail_to(CAROL, count=2)
    method, text = calendar_part(replies[1])
    answers = {recurrence_key_of(c): partstat_of(find_attendee(c, ROOM)) for c in components_of(parse_calendar(text))}
    assert method == "REPLY"
    assert answers == {"": "ACCEPTED", "20270412T080000Z": "DECLINED"}  # the 12 April instance clashes
