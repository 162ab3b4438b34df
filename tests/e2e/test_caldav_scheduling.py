"""The DESIGN.md scenarios driven through CalDAV: Alice's calendar program PUTs, the server schedules (RFC 6638).

Organizer, local attendee, outside attendee answering by mail, email-only attendee and
room, each seen from the clients' side: what Bob's client and Alice's client find at their
next sync, and what mail left for the outside world.
"""

from __future__ import annotations

import email
import smtplib
import time
from collections.abc import Callable
from email.utils import parseaddr


from gateway.core.calendar.ical import (
    components_of,
    find_attendee,
    parse_calendar,
    partstat_of,
    serialize_calendar,
    set_attendees,
)
from gateway.core.dav.xml import parse_body
from tests.peers.caldav_site import ALICE, BOB, CAROL, FRED, ROOM, CalDavSite
from tests.peers.caldav_site import site  # noqa: F401  (the fixture)
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Received

MEETING = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Client//EN
BEGIN:VEVENT
UID:{uid}
DTSTAMP:20261101T080000Z
DTSTART;TZID=Europe/Berlin:20270310T100000
DTEND;TZID=Europe/Berlin:20270310T110000
SUMMARY:Design review
{organizer}ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@foo.example
{attendees}
END:VEVENT
END:VCALENDAR
"""
NS = 'xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"'



def meeting(uid: str, *attendees: str, organizer: bool = True) -> str:
    lines = "\n".join(f"ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:{a}" for a in attendees)
    return MEETING.format(uid=uid, attendees=lines, organizer="ORGANIZER:mailto:alice@foo.example\n" if organizer
                          else "")


def calendar_path(user: str, name: str = "") -> str:
    return f"/dav/calendars/{user}/default/{name}"


def partstat_in(text: str, attendee: str) -> str:
    (component,) = components_of(parse_calendar(text))
    prop = find_attendee(component, attendee)
    assert prop is not None, f"{attendee} not in {text}"
    return partstat_of(prop)


def schedule_status_in(text: str, attendee: str) -> str:
    (component,) = components_of(parse_calendar(text))
    prop = find_attendee(component, attendee)
    assert prop is not None
    return str(prop.params.get("SCHEDULE-STATUS", ""))


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def members(site: CalDavSite, user: str, collection: str = "default") -> dict[str, str]:
    """The user's collection by multiget-free means: a calendar-query returning every object's data."""
    answer = site.request("REPORT", f"/dav/calendars/{user}/{collection}/", user=user, headers={"Depth": "1"}, body=(
        f'<C:calendar-query {NS}><D:prop><D:getetag/><C:calendar-data/></D:prop><C:filter>'
        '<C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>'))
    assert answer.status == 207, answer.body
    root = parse_body(answer.body.encode())
    return {r.findtext("{DAV:}href") or "": r.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data") or ""
            for r in root.findall("{DAV:}response")}


def calendar_mail(mail: Received) -> tuple[str, str]:
    part = next(p for p in email.message_from_bytes(mail.data).walk() if p.get_content_type() == "text/calendar")
    return part.get_param("method") or "", part.get_payload(decode=True).decode()


def reply_of(request: str, attendee: str, partstat: str) -> str:
    """The attendee's iTIP REPLY to a REQUEST, as its own calendar program would write it."""
    calendar = parse_calendar(request)
    calendar["METHOD"] = "REPLY"
    for component in components_of(calendar):
        prop = find_attendee(component, attendee)
        assert prop is not None
        prop.params["PARTSTAT"] = partstat
        set_attendees(component, [prop])
    return serialize_calendar(calendar)


def test_alice_invites_bob_whose_client_sees_it_and_whose_acceptance_alice_sees(site: CalDavSite) -> None:
    put = site.request("PUT", calendar_path(ALICE, "review.ics"), meeting("s1", BOB))
    assert put.status == 201 and "schedule-tag" in put.headers
    assert schedule_status_in(site.request("GET", calendar_path(ALICE, "review.ics")).body, BOB) == "1.2"
    (bobs,) = members(site, BOB).values()
    assert partstat_in(bobs, BOB) == "NEEDS-ACTION"
    inbox = site.request("PROPFIND", f"/dav/calendars/{BOB}/inbox/", user=BOB, headers={"Depth": "1"})
    items = [h.text for h in parse_body(inbox.body.encode()).iter("{DAV:}href") if (h.text or "").endswith(".ics")]
    assert len(items) == 1
    assert "METHOD:REQUEST" in site.request("GET", items[0], user=BOB).body
    (bob_href,) = members(site, BOB)
    accepted = bobs.replace("PARTSTAT=NEEDS-ACTION", "PARTSTAT=ACCEPTED", 1) if "NEEDS-ACTION" in bobs else bobs
    assert partstat_in(accepted, BOB) == "ACCEPTED"
    tag = site.request("GET", bob_href, user=BOB).headers["schedule-tag"]
    answer = site.request("PUT", bob_href, accepted, user=BOB, headers={"If-Schedule-Tag-Match": tag})
    assert answer.status == 204
    (alices,) = members(site, ALICE).values()
    assert partstat_in(alices, BOB) == "ACCEPTED"
    assert site.request("DELETE", items[0], user=BOB).status == 204
    assert [m for m in site.peer.received if BOB in m.rcpt_to] == []  # nothing left the server


def test_an_attendee_may_change_only_its_own_answer(site: CalDavSite) -> None:
    site.request("PUT", calendar_path(ALICE, "review.ics"), meeting("s2", BOB))
    ((bob_href, bobs),) = members(site, BOB).items()
    moved = site.request("PUT", bob_href, bobs.replace("SUMMARY:Design review", "SUMMARY:Mine now"), user=BOB)
    assert moved.status == 403 and "allowed-attendee-scheduling-object-change" in moved.body
    (alices,) = members(site, ALICE).values()
    assert "SUMMARY:Design review" in alices


def test_an_attendee_deleting_the_event_declines_unless_schedule_reply_is_false(site: CalDavSite) -> None:
    site.request("PUT", calendar_path(ALICE, "a.ics"), meeting("s3a", BOB))
    site.request("PUT", calendar_path(ALICE, "b.ics"), meeting("s3b", BOB))
    bob_members = members(site, BOB)
    (first,) = [h for h, text in bob_members.items() if "UID:s3a" in text]
    (second,) = [h for h, text in bob_members.items() if "UID:s3b" in text]
    assert site.request("DELETE", first, user=BOB).status == 204
    assert site.request("DELETE", second, user=BOB, headers={"Schedule-Reply": "F"}).status == 204
    alices = {("s3a" if "UID:s3a" in t else "s3b"): t for t in members(site, ALICE).values()}
    assert partstat_in(alices["s3a"], BOB) == "DECLINED"
    assert partstat_in(alices["s3b"], BOB) == "NEEDS-ACTION"


def test_carol_at_another_server_gets_imip_and_her_mailed_reply_reaches_alices_client(site: CalDavSite) -> None:
    path = calendar_path(ALICE, "carol.ics")
    site.request("PUT", path, meeting("s4", CAROL))
    (sent,) = site.mail_to(CAROL)
    method, text = calendar_mail(sent)
    assert method == "REQUEST" and "SCHEDULE-AGENT" not in text
    wait_until(lambda: schedule_status_in(site.request("GET", path).body, CAROL) == "1.1")
    sync = f'<D:sync-collection {NS}><D:sync-token/><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>' \
           '</D:sync-collection>'
    token = parse_body(site.request("REPORT", calendar_path(ALICE), sync).body.encode()).findtext("{DAV:}sync-token")
    site.send_mail(CAROL, ALICE, reply_of(text, CAROL, "ACCEPTED"), "REPLY")
    assert partstat_in(site.request("GET", path).body, CAROL) == "ACCEPTED"
    delta = site.request("REPORT", calendar_path(ALICE), sync.replace("<D:sync-token/>",
                                                                     f"<D:sync-token>{token}</D:sync-token>"))
    hrefs = [h.text for h in parse_body(delta.body.encode()).iter("{DAV:}href")]
    assert path in hrefs  # the mailed answer moved the sync token on


def test_fred_with_only_email_answers_in_plain_words_and_alice_sees_it(site: CalDavSite) -> None:
    path = calendar_path(ALICE, "fred.ics")
    site.request("PUT", path, meeting("s5", FRED))
    (sent,) = site.mail_to(FRED)
    reply_to = parseaddr(str(email.message_from_bytes(sent.data)["Reply-To"]))[1]
    answer = (f"From: {FRED}\r\nTo: {reply_to}\r\nSubject: Re: Invitation\r\nMessage-ID: <f1@mail.example>\r\n"
              "\r\nAccept - see you there.\r\n").encode()
    with smtplib.SMTP(LOOPBACK, site.smtp_port) as client:
        client.sendmail(FRED, [reply_to], answer)
    wait_until(lambda: partstat_in(site.request("GET", path).body, FRED) == "ACCEPTED")


def test_a_room_invited_from_a_client_answers_at_once(site: CalDavSite) -> None:
    path = calendar_path(ALICE, "room.ics")
    site.request("PUT", path, meeting("s6", ROOM).replace("ATTENDEE;RSVP", "ATTENDEE;CUTYPE=ROOM;RSVP"))
    assert partstat_in(site.request("GET", path).body, ROOM) == "ACCEPTED"
    clash = meeting("s7", ROOM).replace("ATTENDEE;RSVP", "ATTENDEE;CUTYPE=ROOM;RSVP")
    site.request("PUT", calendar_path(ALICE, "clash.ics"), clash)
    assert partstat_in(site.request("GET", calendar_path(ALICE, "clash.ics")).body, ROOM) == "DECLINED"


def test_a_put_without_organizer_makes_the_owner_the_organizer(site: CalDavSite) -> None:
    path = calendar_path(ALICE, "no-organizer.ics")
    assert site.request("PUT", path, meeting("s8", BOB, organizer=False)).status == 201
    assert "ORGANIZER:mailto:alice@foo.example" in site.request("GET", path).body.replace("\r\n ", "")
    assert partstat_in(next(iter(members(site, BOB).values())), BOB) == "NEEDS-ACTION"


def test_schedule_agent_client_sends_nothing_for_that_attendee(site: CalDavSite) -> None:
    text = meeting("s9", CAROL).replace("ATTENDEE;RSVP=TRUE", "ATTENDEE;SCHEDULE-AGENT=CLIENT;RSVP=TRUE")
    assert site.request("PUT", calendar_path(ALICE, "agent.ics"), text).status == 201
    time.sleep(0.6)  # the sender polls every 0.2 s: a message would have gone out by now
    assert [m for m in site.peer.received if CAROL in m.rcpt_to] == []
