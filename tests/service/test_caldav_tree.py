"""What PROPFIND and GET show of the CalDAV tree (``gateway.service.caldav.tree``), on SQLite and PostgreSQL.

The helpers here run one CalDAV request as the HTTP face does (one transaction, the
target read from the path and made the actor's own) and read the multistatus back as
XML; the other ``test_caldav_*`` modules use them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from xml.etree.ElementTree import Element

import pytest
from sqlalchemy.orm import Session

from gateway.core.dav import paths
from gateway.core.dav.preconditions import Conditions
from gateway.core.dav.requests import PropRequest, read_report
from gateway.core.dav.responses import multistatus
from gateway.core.dav.xml import APPLE, CALDAV, CALSERVER, DAV, DavError, parse_body, qname
from gateway.core.model import Kind
from gateway.service.caldav import tree, writes
from gateway.service.caldav.reports import Multistatus
from gateway.service.caldav.tree import Request
from gateway.service.caldav.writes import Written
from gateway.store import directory
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from tests.conftest import NOW

ALICE, ALIAS, BOB, ROOM = "alice@foo.example", "a.smith@foo.example", "bob@foo.example", "room-r@foo.example"
CAROL = "carol@bar.example"
NS = f'xmlns:D="{DAV}" xmlns:C="{CALDAV}" xmlns:CS="{CALSERVER}" xmlns:A="{APPLE}"'
_T = TypeVar("_T")
NO_CONDITIONS = Conditions()


def d(local: str) -> str:
    return qname(DAV, local)


def c(local: str) -> str:
    return qname(CALDAV, local)


def cs(local: str) -> str:
    return qname(CALSERVER, local)


def apple(local: str) -> str:
    return qname(APPLE, local)


@dataclass(frozen=True)
class People:
    alice: PrincipalRef
    bob: PrincipalRef
    room: PrincipalRef


def add_people(db: Database) -> People:
    """Alice (with an alias), Bob and a room, each with the default calendar a new principal gets."""
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW, name="Alice", aliases=(ALIAS,))
        bob = directory.add_principal(session, BOB, NOW, name="Bob")
        room = directory.add_principal(session, ROOM, NOW, name="Room R", kind=Kind.ROOM)
    return People(alice, bob, room)


@pytest.fixture
def people(db: Database) -> People:
    return add_people(db)


def request_for(actor: PrincipalRef, href: str, now: datetime = NOW) -> Request:
    """The request the HTTP face makes of a path: its target, made the actor's own (403 when it is not)."""
    target = paths.parse_path(href)
    assert target is not None, href
    return Request(actor, tree.own_target(actor, target), now)


def run(db: Database, actor: PrincipalRef, href: str, work: Callable[[Session, Request], _T],
        *, now: datetime = NOW) -> _T:
    """``work`` for one request, in one transaction."""
    with db.transaction() as session:
        return work(session, request_for(actor, href, now))


def refusal(db: Database, actor: PrincipalRef, href: str, work: Callable[[Session, Request], object],
            *, now: datetime = NOW) -> DavError:
    with pytest.raises(DavError) as refused:
        run(db, actor, href, work, now=now)
    return refused.value


@dataclass
class Member:
    """One ``DAV:response`` of a multistatus: its found properties, those it lacks, or its status alone."""

    href: str
    found: dict[str, Element] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    status: int | None = None
    codes: dict[str, int] = field(default_factory=dict)  # each property's propstat status

    def text(self, name: str) -> str:
        return (self.found[name].text or "").strip()

    def hrefs(self, name: str) -> list[str]:
        return [(h.text or "").strip() for h in self.found[name].iter(d("href"))]


def read_members(members: list[str], sync_token: str | None = None) -> dict[str, Member]:
    """A multistatus, as the client reads it: by href."""
    return read_multistatus(multistatus(members, sync_token))[0]


def read_multistatus(body: str) -> tuple[dict[str, Member], str]:
    root = parse_body(body.encode())
    assert root is not None and root.tag == d("multistatus")
    out: dict[str, Member] = {}
    for response in root.findall(d("response")):
        member = Member((response.findtext(d("href")) or "").strip())
        status = response.findtext(d("status"))
        if status is not None:
            member.status = int(status.split()[1])
        for propstat in response.findall(d("propstat")):
            code = int((propstat.findtext(d("status")) or "").split()[1])
            props = propstat.find(d("prop"))
            for value in props if props is not None else []:
                member.codes[value.tag] = code
                if code == 200:
                    member.found[value.tag] = value
                else:
                    member.missing.add(value.tag)
        assert member.href not in out, f"{member.href} twice"
        out[member.href] = member
    return out, (root.findtext(d("sync-token")) or "").strip()


def propfind(db: Database, actor: PrincipalRef, href: str, depth: int, *names: str) -> dict[str, Member]:
    wanted = PropRequest(names=names)
    return read_members(run(db, actor, href, lambda s, r: list(tree.propfind(s, r, depth, wanted))))


def prop(db: Database, actor: PrincipalRef, href: str, name: str) -> Member:
    """One property of one resource (Depth 0)."""
    (member,) = propfind(db, actor, href, 0, name).values()
    return member


def put(db: Database, actor: PrincipalRef, href: str, text: str, conditions: Conditions = NO_CONDITIONS,
        *, now: datetime = NOW) -> Written:
    return run(db, actor, href, lambda s, r: writes.put_object(s, r, text.encode(), conditions), now=now)


def get(db: Database, actor: PrincipalRef, href: str) -> tree.Resource:
    return run(db, actor, href, tree.get_resource)


def report(db: Database, actor: PrincipalRef, href: str, body: str,
           call: Callable[[Session, Request, Any], Multistatus], *,
           now: datetime = NOW) -> tuple[dict[str, Member], str]:
    """A REPORT body read as the face reads it, answered, and its multistatus read back."""
    parsed = read_report(parse_body(body.encode()))
    answer = run(db, actor, href, lambda s, r: call(s, r, parsed), now=now)
    return read_multistatus(multistatus(answer.members, answer.sync_token))


def home(address: str) -> str:
    return paths.home_href(address)


def calendar(address: str, name: str = "default") -> str:
    return paths.calendar_href(address, name)


def obj(address: str, name: str, calendar_name: str = "default") -> str:
    return paths.object_href(address, calendar_name, name)


def plain(uid: str, summary: str = "Lunch", start: str = "20260710T120000Z", end: str = "20260710T130000Z",
          extra: str = "") -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Test//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260601T080000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n{extra}"
            f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


TASK = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Test//EN\r\nBEGIN:VTODO\r\nUID:{uid}\r\n"
        "DTSTAMP:20260601T080000Z\r\nSUMMARY:File the report\r\nEND:VTODO\r\nEND:VCALENDAR\r\n")


def meeting(uid: str, *attendees: str, summary: str = "Design review", start: str = "20260710T100000Z",
            end: str = "20260710T110000Z", organizer: str = ALICE) -> str:
    lines = "".join(f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{a}\r\n" for a in attendees)
    return plain(uid, summary, start, end,
                 f"ORGANIZER:mailto:{organizer}\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:{organizer}\r\n{lines}")


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 1])
def test_the_root_names_the_signed_in_principal(db: Database, people: People, depth: int) -> None:
    found = propfind(db, people.bob, paths.ROOT, depth, d("current-user-principal"), d("resourcetype"))
    assert found[paths.ROOT].hrefs(d("current-user-principal")) == [paths.principal_href(BOB)]
    assert found[paths.ROOT].found[d("resourcetype")].find(d("collection")) is not None


def test_the_principals_collection_lists_only_the_signed_in_principal_at_depth_1(db: Database, people: People) -> None:
    principals = f"{paths.ROOT}principals/"
    assert list(propfind(db, people.alice, principals, 0, d("displayname"))) == [principals]
    assert list(propfind(db, people.alice, principals, 1, d("displayname"))) == [principals,
                                                                                 paths.principal_href(ALICE)]


def test_the_principal_points_at_its_home_inbox_and_outbox(db: Database, people: People) -> None:
    wanted = (c("calendar-home-set"), c("schedule-inbox-URL"), c("schedule-outbox-URL"), d("principal-URL"),
              d("displayname"))
    (member,) = propfind(db, people.alice, paths.principal_href(ALICE), 0, *wanted).values()
    assert member.hrefs(c("calendar-home-set")) == [home(ALICE)]
    assert member.hrefs(c("schedule-inbox-URL")) == [calendar(ALICE, "inbox")]
    assert member.hrefs(c("schedule-outbox-URL")) == [calendar(ALICE, "outbox")]
    assert member.hrefs(d("principal-URL")) == [paths.principal_href(ALICE)]
    assert member.text(d("displayname")) == "Alice"


def test_the_address_set_gives_the_primary_mailto_first_then_the_aliases(db: Database) -> None:
    with db.transaction() as session:
        dana = directory.add_principal(session, "dana@foo.example", NOW,
                                       aliases=("zed@foo.example", "d.x@foo.example"))
    addresses = prop(db, dana, paths.principal_href(dana.address), c("calendar-user-address-set"))
    uris = addresses.hrefs(c("calendar-user-address-set"))
    assert uris[0] == "mailto:dana@foo.example"
    assert set(uris[1:3]) == {"mailto:zed@foo.example", "mailto:d.x@foo.example"}
    assert uris[3:] == [paths.principal_href("dana@foo.example")]


@pytest.mark.parametrize(("who", "user_type"), [("alice", "INDIVIDUAL"), ("room", "ROOM")])
def test_the_calendar_user_type_follows_the_kind_of_principal(db: Database, people: People, who: str,
                                                              user_type: str) -> None:
    actor: PrincipalRef = getattr(people, who)
    member = prop(db, actor, paths.principal_href(actor.address), c("calendar-user-type"))
    assert member.text(c("calendar-user-type")) == user_type


def test_the_home_lists_the_default_calendar_the_inbox_and_the_outbox(db: Database, people: People) -> None:
    found = propfind(db, people.alice, home(ALICE), 1, d("resourcetype"), c("schedule-default-calendar-URL"))
    assert list(found) == [home(ALICE), calendar(ALICE), calendar(ALICE, "inbox"), calendar(ALICE, "outbox")]
    assert found[home(ALICE)].hrefs(c("schedule-default-calendar-URL")) == [calendar(ALICE)]
    kinds = {href: {t.tag for t in m.found[d("resourcetype")]} for href, m in found.items()}
    assert kinds[calendar(ALICE)] == {d("collection"), c("calendar")}
    assert kinds[calendar(ALICE, "inbox")] == {d("collection"), c("schedule-inbox")}
    assert kinds[calendar(ALICE, "outbox")] == {d("collection"), c("schedule-outbox")}
    assert list(propfind(db, people.alice, home(ALICE), 0, d("resourcetype"))) == [home(ALICE)]


def test_a_calendar_shows_its_owner_components_and_default(db: Database, people: People) -> None:
    wanted = (d("owner"), c("supported-calendar-component-set"), c("schedule-default-calendar-URL"),
              c("max-resource-size"))
    member = propfind(db, people.alice, calendar(ALICE), 0, *wanted)[calendar(ALICE)]
    assert member.hrefs(d("owner")) == [paths.principal_href(ALICE)]
    kinds = [comp.get("name") for comp in member.found[c("supported-calendar-component-set")]]
    assert kinds == ["VEVENT", "VTODO", "VJOURNAL"]
    assert member.hrefs(c("schedule-default-calendar-URL")) == [calendar(ALICE)]
    assert int(member.text(c("max-resource-size"))) == 1024 * 1024


def test_a_write_changes_the_calendars_ctag_and_sync_token(db: Database, people: People) -> None:
    def tags() -> tuple[str, str]:
        member = propfind(db, people.alice, calendar(ALICE), 0, cs("getctag"), d("sync-token"))[calendar(ALICE)]
        return member.text(cs("getctag")), member.text(d("sync-token"))

    before = tags()
    put(db, people.alice, obj(ALICE, "lunch.ics"), plain("lunch"))
    after_put = tags()
    put(db, people.alice, obj(ALICE, "lunch.ics"), plain("lunch", "Dinner"))
    after_change = tags()
    assert len({before[0], after_put[0], after_change[0]}) == 3
    assert len({before[1], after_put[1], after_change[1]}) == 3
    assert tags() == after_change  # reading changes nothing


def test_an_objects_getetag_is_what_get_returns(db: Database, people: People) -> None:
    href = obj(ALICE, "lunch.ics")
    put(db, people.alice, href, plain("lunch"))
    resource = get(db, people.alice, href)
    assert "UID:lunch" in resource.text
    assert prop(db, people.alice, href, d("getetag")).text(d("getetag")) == f'"{resource.etag}"'
    listed = propfind(db, people.alice, calendar(ALICE), 1, d("getetag"))
    assert listed[href].text(d("getetag")) == f'"{resource.etag}"'


def test_a_missing_object_or_calendar_is_a_404(db: Database, people: People) -> None:
    for href in (obj(ALICE, "nothing.ics"), calendar(ALICE, "nowhere")):
        assert refusal(db, people.alice, href, lambda s, r: list(tree.propfind(s, r, 0, PropRequest()))).status == 404
    assert refusal(db, people.alice, obj(ALICE, "nothing.ics"), tree.get_resource).status == 404


@pytest.mark.parametrize("href", [home(BOB), calendar(BOB), obj(BOB, "x.ics"), paths.principal_href(BOB),
                                  calendar(BOB, "inbox")])
def test_another_principals_resources_are_refused_with_need_privileges(db: Database, people: People,
                                                                       href: str) -> None:
    target = paths.parse_path(href)
    assert target is not None
    with pytest.raises(DavError) as refused:
        tree.check_access(people.alice, target)
    assert (refused.value.status, refused.value.condition) == (403, d("need-privileges"))


@pytest.mark.parametrize("address", [ALIAS, "A.Smith%40foo.example", ALICE])
def test_a_path_with_any_of_the_principals_addresses_reaches_its_own_home(db: Database, people: People,
                                                                          address: str) -> None:
    target = paths.parse_path(f"/dav/calendars/{address}/default/")
    assert target is not None
    tree.check_access(people.alice, target)
    assert tree.own_target(people.alice, target).href == calendar(ALICE)
    put(db, people.alice, f"/dav/calendars/{address}/default/by-alias.ics", plain("by-alias"))
    assert obj(ALICE, "by-alias.ics") in propfind(db, people.alice, calendar(ALICE), 1, d("getetag"))
