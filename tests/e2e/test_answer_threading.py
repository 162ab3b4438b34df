"""An answer Reefknot mails threads under the mail it answers: In-Reply-To and References (RFC 5322 §3.6.4).

Each test takes a mail in (``reefknot ingest``, or SMTP to ``reefknot serve``), has
Reefknot answer it (a local attendee's reply, from the command or a CalDAV client; a
room; a REFRESH; a free/busy request from a partner), and reads the answer from a real SMTP peer.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from gateway.core.calendar.ical import find_attendee, parse_calendar, serialize_calendar
from gateway.service.delivery_attempts import thread_id
from tests.e2e.test_caldav_scheduling import calendar_path, members
from tests.peers.caldav_site import CalDavSite, site  # noqa: F401  (the fixture)
from tests.peers.cli import Reefknot
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Sink, smtp_peer

ALICE, ROOM, CAROL, ERIN = "alice@foo.example", "room-r@foo.example", "carol@bar.example", "erin@baz.example"
INVITATION_ID, EARLIER = "<invitation-2@baz.example>", ("<invitation-1@baz.example>", "<erins-note@baz.example>")


def event(uid: str, organizer: str, *attendees: str, method: str = "REQUEST") -> str:
    lines = "".join(f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{a}\n" for a in attendees)
    return (f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//Test//EN\nMETHOD:{method}\nBEGIN:VEVENT\nUID:{uid}\n"
            "DTSTAMP:20261101T080000Z\nDTSTART:20270310T090000Z\nDTEND:20270310T100000Z\nSUMMARY:Design review\n"
            f"ORGANIZER:mailto:{organizer}\n{lines}END:VEVENT\nEND:VCALENDAR\n")


def mail(sender: str, to: str, calendar: str, method: str, message_id: str, references: tuple[str, ...] = ()) -> bytes:
    thread = f"In-Reply-To: {references[-1]}\nReferences: {' '.join(references)}\n" if references else ""
    head = (f"From: {sender}\nTo: {to}\nSubject: {method}\nMessage-ID: {message_id}\n{thread}MIME-Version: 1.0\n"
            f'Content-Type: text/calendar; method={method}; charset="utf-8"\n\n')
    return (head + calendar).replace("\n", "\r\n").encode()


@pytest.fixture
def peer() -> Iterator[Sink]:
    with smtp_peer() as sink:
        yield sink


@pytest.fixture
def run(database_url: str, tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str]) -> Reefknot:
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n\n[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\n')
    reefknot = Reefknot(config, capsys)
    reefknot("users", "add", ALICE, "--name", "Alice")
    reefknot("users", "add", ROOM, "--name", "Room R", "--kind", "room")
    return reefknot


def ingest(run: Reefknot, tmp_path: Path, raw: bytes, recipient: str, sender: str) -> None:
    path = tmp_path / "incoming.eml"
    path.write_bytes(raw)
    assert "done" in run("ingest", "--recipient", recipient, "--sender", sender, str(path))


def sent_to(run: Reefknot, peer: Sink, recipient: str) -> list[Message]:
    run("outbox", "flush")
    return [email.message_from_bytes(m.data) for m in peer.received if recipient in m.rcpt_to]


def method_of(message: Message) -> str:
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    return str(part.get_param("method"))


def assert_threads_under(message: Message, message_id: str, earlier: tuple[str, ...] = ()) -> None:
    assert message["In-Reply-To"] == message_id
    assert str(message["References"]).split() == [*earlier, message_id]


def test_a_local_attendees_reply_threads_under_the_invitation_mail(run: Reefknot, peer: Sink, tmp_path: Path) -> None:
    raw = mail(ERIN, ALICE, event("u-reply", ERIN, ALICE), "REQUEST", INVITATION_ID, EARLIER)
    ingest(run, tmp_path, raw, ALICE, ERIN)
    run("event", "reply", "--as", ALICE, "u-reply", "--partstat", "ACCEPTED")
    (reply,) = sent_to(run, peer, ERIN)
    assert method_of(reply) == "REPLY"
    assert_threads_under(reply, INVITATION_ID, EARLIER)


def test_a_reply_threads_under_the_latest_invitation_mail(run: Reefknot, peer: Sink, tmp_path: Path) -> None:
    ingest(run, tmp_path, mail(ERIN, ALICE, event("u-moved", ERIN, ALICE), "REQUEST", "<first@baz.example>"),
           ALICE, ERIN)
    moved = event("u-moved", ERIN, ALICE).replace("DTSTAMP:20261101T080000Z", "DTSTAMP:20261102T080000Z\nSEQUENCE:1")
    ingest(run, tmp_path, mail(ERIN, ALICE, moved, "REQUEST", "<moved@baz.example>", ("<first@baz.example>",)),
           ALICE, ERIN)
    run("event", "reply", "--as", ALICE, "u-moved", "--partstat", "DECLINED")
    (reply,) = sent_to(run, peer, ERIN)
    assert_threads_under(reply, "<moved@baz.example>", ("<first@baz.example>",))


def test_a_rooms_answer_threads_under_the_invitation_mail(run: Reefknot, peer: Sink, tmp_path: Path) -> None:
    ingest(run, tmp_path, mail(ERIN, ROOM, event("u-room", ERIN, ROOM), "REQUEST", INVITATION_ID), ROOM, ERIN)
    (answer,) = sent_to(run, peer, ERIN)
    assert method_of(answer) == "REPLY"
    assert_threads_under(answer, INVITATION_ID)


def test_the_answer_to_a_refresh_threads_under_the_refresh_and_an_invitation_under_its_event(
    run: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    invitation = tmp_path / "u-refresh.ics"
    invitation.write_text(event("u-refresh", ALICE, CAROL).replace("METHOD:REQUEST\n", ""))
    run("event", "put", "--as", ALICE, str(invitation))
    (first,) = sent_to(run, peer, CAROL)
    event_thread = thread_id("u-refresh", ALICE)
    assert (first["In-Reply-To"], first["References"]) == (event_thread, event_thread)  # it answers no mail
    refresh = event("u-refresh", ALICE, CAROL, method="REFRESH").replace("SUMMARY:Design review\n", "")
    ingest(run, tmp_path, mail(CAROL, ALICE, refresh, "REFRESH", "<refresh@bar.example>", (first["Message-ID"],)),
           ALICE, CAROL)
    again = sent_to(run, peer, CAROL)[1]
    assert method_of(again) == "REQUEST"
    assert_threads_under(again, "<refresh@bar.example>", (first["Message-ID"],))


def test_a_free_busy_answer_threads_under_the_request(site: CalDavSite) -> None:  # noqa: F811
    request = ("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Bar//Server//EN\nMETHOD:REQUEST\nBEGIN:VFREEBUSY\n"
               f"UID:fb-1\nDTSTAMP:20261120T080000Z\nORGANIZER:mailto:{CAROL}\nATTENDEE:mailto:{ALICE}\n"
               "DTSTART:20270320T000000Z\nDTEND:20270406T000000Z\nEND:VFREEBUSY\nEND:VCALENDAR\n")
    site.send_mail(CAROL, ALICE, request, "REQUEST")  # from a partner who may see free/busy: <dav1@bar.example>
    (answer,) = [email.message_from_bytes(m.data) for m in site.mail_to(CAROL)]
    assert method_of(answer) == "REPLY"
    assert_threads_under(answer, "<dav1@bar.example>")


def test_a_caldav_clients_acceptance_threads_under_the_invitation_mail(site: CalDavSite) -> None:  # noqa: F811
    site.send_mail(CAROL, ALICE, event("u-dav", CAROL, ALICE), "REQUEST")  # Message-ID <dav1@bar.example>
    ((href, text),) = members(site, ALICE).items()
    calendar = parse_calendar(text)
    attendee = find_attendee(calendar.walk("VEVENT")[0], ALICE)
    assert attendee is not None
    attendee.params["PARTSTAT"] = "ACCEPTED"
    assert site.request("PUT", href, serialize_calendar(calendar)).status == 204
    (reply,) = [email.message_from_bytes(m.data) for m in site.mail_to(CAROL)]
    assert method_of(reply) == "REPLY"
    assert_threads_under(reply, "<dav1@bar.example>")
    assert href.startswith(calendar_path(ALICE))
