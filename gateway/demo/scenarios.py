"""The five scenarios of the design, played on the demo site: each step narrated, each outcome checked.

Alice and Bob are users of foo.example, the Reefknot site. Carol has a calendar server
at bar.example; Erin (a calendar program) and Fred (email only) are at baz.example, an
ISP. What the people elsewhere send is what their software would send: an iMIP REPLY
from Carol's server and Erin's program, a plain "yes" from Fred.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

import dkim  # type: ignore[import-untyped]

from gateway.adapters.clock import utcnow
from gateway.core.calendar.ical import parse_calendar, serialize_calendar
from gateway.core.itip.compose import build_reply
from gateway.core.mail.calendarparts import parse_mail
from gateway.core.model import PartStat
from gateway.demo.peers import Delivered, OtherDomains
from gateway.demo.site import Site

ALICE, BOB = "alice@foo.example", "bob@foo.example"
CAROL, ERIN, FRED = "carol@bar.example", "erin@baz.example", "fred@baz.example"
WAIT = 20.0  # seconds any one step may take


class Narrator:
    """Prints the story and keeps the score."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.failures: list[str] = []

    def title(self, text: str) -> None:
        self.say("")
        self.say(text)

    def step(self, text: str) -> None:
        self.say(f"   {text}")

    def check(self, ok: bool, text: str) -> bool:
        self.say(f"   {'✓' if ok else '✗'} {text}")
        if not ok:
            self.failures.append(text)
        return ok


def event(uid: str, summary: str, organizer: str, attendees: list[str], start: datetime, location: str = "") -> str:
    """An event in Europe/Berlin as a calendar program would write it."""
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Reefknot//Demo//EN", "BEGIN:VEVENT", f"UID:{uid}",
        f"DTSTAMP:{utcnow():%Y%m%dT%H%M%SZ}", f"DTSTART;TZID=Europe/Berlin:{start:%Y%m%dT%H%M%S}",
        f"DTEND;TZID=Europe/Berlin:{start + timedelta(hours=1):%Y%m%dT%H%M%S}", f"SUMMARY:{summary}",
        f"ORGANIZER;CN={_name(organizer)}:mailto:{organizer}", f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{organizer}",
        *(f"ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:{a}" for a in attendees),
        *([f"LOCATION:{location}"] if location else []), "END:VEVENT", "END:VCALENDAR",
    ]
    return "\r\n".join(lines) + "\r\n"


def next_week(days: int, hour: int) -> datetime:
    today = utcnow().date()
    return datetime(today.year, today.month, today.day, hour) + timedelta(days=7 + days)


class Scenarios:
    """The five scenarios against one running site and the other domains' mail server."""

    def __init__(self, site: Site, others: OtherDomains, narrator: Narrator) -> None:
        self.site, self.others, self.n = site, others, narrator

    def run(self) -> None:
        for scenario in (self.same_server, self.other_server, self.client_only, self.outside_invites, self.email_only):
            scenario()

    def same_server(self) -> None:
        n, site = self.n, self.site
        n.title("1. Alice invites Bob (same server)")
        uid, before = _uid(), self.others.count
        site.put_event(ALICE, event(uid, "Design review", ALICE, [BOB], next_week(0, 10), "Room 4"))
        n.step('Alice puts "Design review" in her calendar with Bob as attendee')
        n.check(site.partstat(BOB, uid, BOB) == "NEEDS-ACTION", "Bob's calendar has it, waiting for his answer")
        n.check(site.inbox_lines(BOB)[-1:] == ["REQUEST applied"], "Bob's inbox: REQUEST applied")
        site.answer(BOB, uid, PartStat.ACCEPTED)
        n.step("Bob accepts")
        n.check(site.partstat(ALICE, uid, BOB) == "ACCEPTED", "Alice's copy: Bob ACCEPTED")
        n.check(self.others.count == before, "no mail left the server")

    def other_server(self) -> None:
        self.n.title("2. Alice invites Carol at bar.example (another server)")
        uid = self._invited_answers(CAROL, "Contract review", next_week(1, 14), PartStat.ACCEPTED,
                                    "Carol's server answers with an iMIP REPLY")
        if uid is not None:
            self.n.check(self.site.schedule_status(ALICE, uid, CAROL) == "2.0",
                         "and SCHEDULE-STATUS 2.0: delivered and answered")

    def client_only(self) -> None:
        self.n.title("3. Alice invites Erin at baz.example (no calendar server; Erin has a calendar program)")
        self._invited_answers(ERIN, "Budget 2027", next_week(2, 9), PartStat.DECLINED,
                              "Erin's program answers straight to Alice")

    def outside_invites(self) -> None:
        n, site = self.n, self.site
        n.title("4. Erin invites Alice")
        uid, before = _uid(), self.others.count
        text = event(uid, "Lunch at the harbour", ERIN, [ALICE], next_week(3, 12), "Harbour café")
        site.send(ERIN, ALICE, _imip(ERIN, ALICE, "Invitation: Lunch at the harbour", text, "REQUEST"))
        n.step("Erin's program sends an iMIP REQUEST to alice@foo.example; foo.example's MTA hands it to Reefknot")
        n.check(site.wait_for(lambda: site.partstat(ALICE, uid, ALICE) == "NEEDS-ACTION"),
                "Alice's calendar has it, waiting for her answer")
        site.answer(ALICE, uid, PartStat.ACCEPTED)
        n.step("Alice accepts")
        mail = self._received(ERIN, before, "her REPLY")
        if mail is not None:
            reply = parse_mail(mail.data).calendar_parts
            n.check(bool(reply) and reply[0].declared_method == "REPLY" and "PARTSTAT=ACCEPTED" in reply[0].text,
                    "it is an iMIP REPLY (method=REPLY) saying ACCEPTED")

    def email_only(self) -> None:
        n, site = self.n, self.site
        n.title("5. Alice invites Fred at baz.example (email only)")
        uid, before = _uid(), self.others.count
        site.put_event(ALICE, event(uid, "Kick-off", ALICE, [FRED], next_week(4, 15), "Main hall"))
        n.step('Alice puts "Kick-off" with Fred as attendee')
        mail = self._received(FRED, before)
        if mail is None:
            return
        body = mail.message.get_body(("plain",))
        lines = [line for line in (body.get_content() if body else "").splitlines() if line.strip()]
        n.step("Fred reads:")
        for line in lines[:8]:
            n.step(f"   | {line}")
        reply_to = parseaddr(str(mail.message["Reply-To"]))[1]
        answer = EmailMessage(policy=policy.SMTP)
        answer["From"], answer["To"] = FRED, reply_to
        answer["Subject"], answer["Message-ID"] = f"Re: {mail.message['Subject']}", make_msgid(domain="baz.example")
        answer["Date"], answer["In-Reply-To"] = format_datetime(utcnow()), str(mail.message["Message-ID"])
        answer.set_content("Yes, I'll be there!\n\nFred\n")
        site.send(FRED, reply_to, bytes(answer))
        n.step(f'Fred replies "Yes, I\'ll be there!" to {reply_to}')
        n.check(site.wait_for(lambda: site.partstat(ALICE, uid, FRED) == "ACCEPTED"), "Alice's copy: Fred ACCEPTED")

    # -- the people elsewhere -----------------------------------------------------

    def _invited_answers(self, attendee: str, summary: str, start: datetime, partstat: PartStat,
                         how: str) -> str | None:
        """Alice invites someone elsewhere, whose software answers by iMIP; the event's UID once the answer is in."""
        n, site = self.n, self.site
        uid, before = _uid(), self.others.count
        site.put_event(ALICE, event(uid, summary, ALICE, [attendee], start))
        n.step(f'Alice puts "{summary}" with {_name(attendee)} as attendee')
        mail = self._received(attendee, before)
        if mail is None:
            return None
        self._answer_by_calendar(mail, attendee, partstat, how)
        answered = site.wait_for(lambda: site.partstat(ALICE, uid, attendee) == partstat.value)
        n.check(answered, f"Alice's copy: {_name(attendee)} {partstat.value}")
        return uid if answered else None

    def _received(self, recipient: str, after: int, what: str = "an invitation") -> Delivered | None:
        mail = self.others.next_for(recipient, after, WAIT)
        if not self.n.check(mail is not None, f"{recipient} received {what}"):
            return None
        assert mail is not None
        message = mail.message
        signed = dkim.verify(mail.data, dnsfunc=self._dns)
        self.n.step(f'   Subject: {message["Subject"]}  (From {message["From"]}, Reply-To {message["Reply-To"]})')
        self.n.check(signed, f"its DKIM signature verifies (d={self.site.signer.domain}, "
                             f"{self.site.signer.algorithm.decode()})")
        return mail

    def _dns(self, name: bytes, timeout: int = 5) -> bytes:
        wanted = f"{self.site.signer.record_name}.".encode()
        return self.site.signer.dns_record().encode() if name == wanted else b""

    def _answer_by_calendar(self, mail: Delivered, attendee: str, partstat: PartStat, text: str) -> None:
        request = parse_calendar(parse_mail(mail.data).calendar_parts[0].text)
        reply = build_reply(request, attendee, utcnow(), partstat=partstat)
        subject = f"{partstat.value.title()}: {mail.message['Subject']}"
        self.site.send(attendee, ALICE, _imip(attendee, ALICE, subject, serialize_calendar(reply.calendar), "REPLY"))
        self.n.step(f"{text} ({partstat.value}) by SMTP to {ALICE}")


def _imip(sender: str, to: str, subject: str, calendar: str, method: str) -> bytes:
    message = EmailMessage(policy=policy.SMTP)  # CRLF line endings, as SMTP sends them
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"], message["Message-ID"] = format_datetime(utcnow()), make_msgid(domain=sender.split("@")[1])
    message.set_content(f"{subject}\n")
    message.add_alternative(calendar.encode(), maintype="text", subtype="calendar",
                            params={"method": method, "charset": "utf-8"})
    return bytes(message)


def _name(address: str) -> str:
    return address.split("@")[0].title()


def _uid() -> str:
    return f"{uuid.uuid4()}@demo.example"
