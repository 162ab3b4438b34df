"""CalDAV through ``reefknot serve`` with the real ``caldav`` library: discovery, CRUD with ETags, searches, sync, free/busy.

The scheduling scenarios driven through CalDAV are in ``test_caldav_scheduling``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

import caldav
import pytest
from caldav.lib.error import AuthorizationError, NotFoundError

from gateway.core.calendar.ical import parse_calendar
from gateway.core.dav.xml import parse_body
from tests.peers.caldav_site import ALICE, BOB, CalDavSite
from tests.peers.caldav_site import site  # noqa: F401  (the fixture)

PLAIN = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Test//EN
BEGIN:VEVENT
UID:{uid}
DTSTAMP:20261101T080000Z
DTSTART:{start}
DTEND:{end}
SUMMARY:{summary}
END:VEVENT
END:VCALENDAR
"""
WEEKLY = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Test//EN
BEGIN:VEVENT
UID:weekly
DTSTAMP:20261101T080000Z
DTSTART;TZID=Europe/Berlin:20270315T100000
DTEND;TZID=Europe/Berlin:20270315T110000
RRULE:FREQ=WEEKLY;COUNT=6
EXDATE;TZID=Europe/Berlin:20270405T100000
SUMMARY:Weekly sync
END:VEVENT
END:VCALENDAR
"""
NS = 'xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"'



def plain(uid: str, summary: str = "Lunch", start: str = "20270310T120000Z", end: str = "20270310T130000Z") -> str:
    return PLAIN.format(uid=uid, summary=summary, start=start, end=end)


def default_calendar(site: CalDavSite, user: str = ALICE) -> caldav.Calendar:
    return site.client(user).principal().calendars()[0]


def test_a_client_finds_the_principal_and_its_calendars_from_the_bare_host(site: CalDavSite) -> None:
    assert site.request("GET", "/.well-known/caldav", user=None).status == 301
    principal = site.client().principal()
    assert str(principal.url).endswith(f"/dav/principals/{ALICE}/")
    assert f"mailto:{ALICE}" in principal.calendar_user_address_set()
    (calendar,) = principal.calendars()
    assert str(calendar.url).endswith(f"/dav/calendars/{ALICE}/default/")
    assert "VEVENT" in calendar.get_supported_components()


def test_options_and_propfind_carry_the_dav_header(site: CalDavSite) -> None:
    expected = "1, 3, calendar-access, calendar-auto-schedule, extended-mkcol"
    assert site.request("OPTIONS", "/dav/", user=None).headers["dav"] == expected
    answer = site.request("PROPFIND", f"/dav/calendars/{ALICE}/", headers={"Depth": "1"},
                          body=f'<D:propfind {NS}><D:prop><D:resourcetype/><D:sync-token/></D:prop></D:propfind>')
    assert answer.status == 207 and answer.headers["dav"] == expected
    hrefs = [h.text for h in parse_body(answer.body.encode()).iter("{DAV:}href")]
    assert f"/dav/calendars/{ALICE}/default/" in hrefs and f"/dav/calendars/{ALICE}/inbox/" in hrefs


def test_wrong_or_missing_credentials_and_other_homes_are_refused(site: CalDavSite) -> None:
    assert site.request("PROPFIND", "/dav/", user=None).status == 401
    assert site.request("PROPFIND", "/dav/", password="wrong").status == 401
    with pytest.raises(AuthorizationError):
        caldav.DAVClient(url=f"{site.base}/dav/", username=ALICE, password="wrong", require_tls=False).principal()
    assert site.request("PROPFIND", f"/dav/calendars/{BOB}/", headers={"Depth": "0"}).status == 403
    assert site.request("GET", f"/dav/calendars/{BOB}/default/x.ics").status == 403
    assert site.request("PROPFIND", "/dav/principals/alice%40foo.example/", headers={"Depth": "0"}).status == 207


def test_a_revoked_password_stops_working_at_once(site: CalDavSite) -> None:
    assert site.request("PROPFIND", "/dav/", headers={"Depth": "0"}).status == 207
    site.run("users", "password", "revoke", ALICE, "phone")
    assert site.request("PROPFIND", "/dav/", headers={"Depth": "0"}).status == 401


def test_crud_keeps_the_href_and_honours_etags(site: CalDavSite) -> None:
    path = f"/dav/calendars/{ALICE}/default/my-own-name.ics"
    created = site.request("PUT", path, plain("crud-1"), headers={"If-None-Match": "*",
                                                                 "Content-Type": "text/calendar"})
    assert created.status == 201
    again = site.request("PUT", path, plain("crud-1"), headers={"If-None-Match": "*"})
    assert again.status == 412
    got = site.request("GET", path)
    assert got.status == 200 and "SUMMARY:Lunch" in got.body
    etag = got.headers["etag"]
    assert site.request("PUT", path, plain("crud-1", "Dinner"), headers={"If-Match": '"stale"'}).status == 412
    assert site.request("PUT", path, plain("crud-1", "Dinner"), headers={"If-Match": etag}).status == 204
    newer = site.request("GET", path)
    assert "SUMMARY:Dinner" in newer.body and newer.headers["etag"] != etag
    assert site.request("DELETE", path, headers={"If-Match": etag}).status == 412
    assert site.request("DELETE", path, headers={"If-Match": newer.headers["etag"]}).status == 204
    assert site.request("GET", path).status == 404


def test_the_library_saves_loads_and_deletes_an_event(site: CalDavSite) -> None:
    calendar = default_calendar(site)
    event = calendar.save_event(plain("lib-1"))
    loaded = calendar.event_by_uid("lib-1")
    assert "Lunch" in loaded.data
    event.delete()
    with pytest.raises(NotFoundError):
        calendar.event_by_uid("lib-1")


def test_bad_objects_are_refused_with_their_precondition(site: CalDavSite) -> None:
    base = f"/dav/calendars/{ALICE}/default/"
    assert site.request("PUT", base + "a.ics", plain("uid-a")).status == 201
    conflict = site.request("PUT", base + "b.ics", plain("uid-a"))
    assert conflict.status == 403 and "no-uid-conflict" in conflict.body and base + "a.ics" in conflict.body
    broken = site.request("PUT", base + "c.ics", "BEGIN:VCALENDAR\nthis is not iCalendar")
    assert broken.status == 403 and "valid-calendar-data" in broken.body
    huge = site.request("PUT", base + "d.ics", plain("uid-d", "x" * 1_100_000))
    assert huge.status in (403, 413)
    assert site.request("GET", base + "c.ics").status == 404 and site.request("GET", base + "d.ics").status == 404
    hostile = site.request("PROPFIND", base, '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM '
                           '"file:///etc/passwd">]><D:propfind xmlns:D="DAV:">&x;</D:propfind>')
    assert hostile.status == 400
    assert site.request("PROPFIND", base, headers={"Depth": "0"}).status == 207  # the process is unaffected


def test_mkcalendar_proppatch_and_delete_of_a_calendar(site: CalDavSite) -> None:
    principal = site.client().principal()
    work = principal.make_calendar(name="Work", cal_id="work")
    assert unquote(str(work.url)).endswith(f"/dav/calendars/{ALICE}/work/")
    work.set_properties([caldav.elements.dav.DisplayName("Work stuff")])
    (again,) = [c for c in site.client().principal().calendars() if unquote(str(c.url)).endswith("/work/")]
    assert again.get_display_name() == "Work stuff"
    work.save_event(plain("in-work"))
    assert sorted(str(c.url).rstrip("/").rsplit("/", 1)[1] for c in principal.calendars()) == ["default", "work"]
    work.delete()
    assert [str(c.url).rstrip("/").rsplit("/", 1)[1] for c in principal.calendars()] == ["default"]
    assert site.request("DELETE", f"/dav/calendars/{ALICE}/default/").status == 403


def test_a_search_with_expansion_follows_the_series_across_the_dst_change(site: CalDavSite) -> None:
    calendar = default_calendar(site)
    calendar.save_event(WEEKLY)
    calendar.save_event(plain("outside", start="20270601T120000Z", end="20270601T130000Z"))
    found = calendar.search(start=datetime(2027, 3, 20, tzinfo=UTC), end=datetime(2027, 4, 20, tzinfo=UTC),
                            event=True, expand=True)
    starts = sorted(e.icalendar_component["DTSTART"].dt.astimezone(UTC) for e in found)
    assert starts == [datetime(2027, 3, 22, 9, tzinfo=UTC), datetime(2027, 3, 29, 8, tzinfo=UTC),
                      datetime(2027, 4, 12, 8, tzinfo=UTC), datetime(2027, 4, 19, 8, tzinfo=UTC)]


def test_the_server_expands_a_calendar_query_itself(site: CalDavSite) -> None:
    default_calendar(site).save_event(WEEKLY)
    answer = site.request("REPORT", f"/dav/calendars/{ALICE}/default/", headers={"Depth": "1"}, body=(
        f'<C:calendar-query {NS}><D:prop><C:calendar-data><C:expand start="20270320T000000Z" end="20270403T000000Z"/>'
        '</C:calendar-data></D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        '<C:time-range start="20270320T000000Z" end="20270403T000000Z"/></C:comp-filter></C:comp-filter></C:filter>'
        '</C:calendar-query>'))
    assert answer.status == 207
    (data,) = [d.text for d in parse_body(answer.body.encode()).iter("{urn:ietf:params:xml:ns:caldav}calendar-data")]
    events = parse_calendar(data).walk("VEVENT")
    assert sorted(str(e["RECURRENCE-ID"].to_ical().decode()) for e in events) == ["20270322T090000Z",
                                                                               "20270329T080000Z"]
    assert all("RRULE" not in e for e in events)


def test_sync_reports_changes_and_deletions_since_a_token(site: CalDavSite) -> None:
    calendar = default_calendar(site)
    for n in range(3):
        calendar.save_event(plain(f"sync-{n}"))
    first = calendar.objects_by_sync_token(load_objects=False)
    assert len(list(first)) == 3
    calendar.event_by_uid("sync-1").delete()
    calendar.save_event(plain("sync-3"))
    changed = calendar.objects_by_sync_token(sync_token=first.sync_token, load_objects=False)
    names = sorted(str(o.url).rsplit("/", 1)[1] for o in changed)
    assert len(names) == 2  # one new, one deleted
    assert changed.sync_token != first.sync_token


def test_sync_with_a_limit_answers_507_and_a_token_for_what_was_sent(site: CalDavSite) -> None:
    calendar = default_calendar(site)
    for n in range(5):
        calendar.save_event(plain(f"lim-{n}"))
    path = f"/dav/calendars/{ALICE}/default/"

    def sync(token: str) -> tuple[list[str], list[str], str]:
        answer = site.request("REPORT", path, body=(
            f'<D:sync-collection {NS}><D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>'
            '<D:limit><D:nresults>2</D:nresults></D:limit><D:prop><D:getetag/></D:prop></D:sync-collection>'))
        assert answer.status == 207
        root = parse_body(answer.body.encode())
        members = [r.findtext("{DAV:}href") for r in root.findall("{DAV:}response")]
        statuses = [r.findtext("{DAV:}status") or "" for r in root.findall("{DAV:}response")]
        return members, statuses, root.findtext("{DAV:}sync-token") or ""

    seen: set[str] = set()
    token = ""
    for _round in range(3):
        members, statuses, token = sync(token)
        seen.update(m for m, s in zip(members, statuses, strict=True) if "507" not in s)
    assert len(seen) == 5
    stale = site.request("REPORT", path, body=(
        f'<D:sync-collection {NS}><D:sync-token>urn:x-reefknot:sync:999:1</D:sync-token><D:sync-level>1'
        '</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>'))
    assert stale.status == 403 and "valid-sync-token" in stale.body


def test_free_busy_by_report_and_by_outbox_post(site: CalDavSite) -> None:
    default_calendar(site).save_event(WEEKLY)
    default_calendar(site, BOB).save_event(plain("bob-busy", start="20270323T080000Z", end="20270323T090000Z"))
    answer = site.request("REPORT", f"/dav/calendars/{ALICE}/default/", body=(
        f'<C:free-busy-query {NS}><C:time-range start="20270320T000000Z" end="20270330T000000Z"/>'
        '</C:free-busy-query>'))
    assert answer.status == 200 and "20270322T090000Z/20270322T100000Z" in answer.body.replace("\r\n ", "")
    post = site.request("POST", f"/dav/calendars/{ALICE}/outbox/", headers={"Content-Type": "text/calendar"}, body=(
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Test//EN\nMETHOD:REQUEST\nBEGIN:VFREEBUSY\nUID:fb-post\n"
        f"DTSTAMP:20261101T080000Z\nDTSTART:20270320T000000Z\nDTEND:20270330T000000Z\nORGANIZER:mailto:{ALICE}\n"
        f"ATTENDEE:mailto:{BOB}\nATTENDEE:mailto:nobody@elsewhere.example\nEND:VFREEBUSY\nEND:VCALENDAR\n"))
    assert post.status == 200
    root = parse_body(post.body.encode())
    statuses = {r.findtext(".//{DAV:}href"): r.findtext("{urn:ietf:params:xml:ns:caldav}request-status")
                for r in root.iter("{urn:ietf:params:xml:ns:caldav}response")}
    assert statuses[f"mailto:{BOB}"].startswith("2.0") and statuses["mailto:nobody@elsewhere.example"].startswith("5.3")
    assert "20270323T080000Z/20270323T090000Z" in post.body.replace("\r\n ", "")


def test_known_client_quirks_are_taken_as_meant(site: CalDavSite) -> None:
    path = f"/dav/calendars/{ALICE}/default/"
    assert site.request("PUT", path + "q.ics", plain("quirk-1")).status == 201
    query = (f'<C:calendar-query {NS}><D:prop><D:getetag/></D:prop><C:filter><C:comp-filter name="VCALENDAR">'
             '<C:comp-filter name="VEVENT"/></C:comp-filter></C:filter></C:calendar-query>')
    outlook = site.request("REPORT", path, query, headers={"Depth": "0", "User-Agent": "MSFT-WIN-3/15.0"})
    assert path + "q.ics" in outlook.body  # Depth 0 from Outlook's connector means the members
    strict = site.request("REPORT", path, query, headers={"Depth": "0"})
    assert strict.status == 207 and path + "q.ics" not in strict.body
    wrongly_typed = site.request("REPORT", path, query, headers={"Depth": "1", "Content-Type": "text/plain"})
    assert path + "q.ics" in wrongly_typed.body  # an XML body is read whatever its Content-Type says
    etag = site.request("GET", path + "q.ics").headers["etag"]
    escaped = etag.replace('"', '\\"')
    assert site.request("PUT", path + "q.ics", plain("quirk-1", "Dinner"), headers={"If-Match": escaped}).status == 204


def test_a_put_stored_as_sent_gets_its_etag_and_a_rewritten_one_does_not(site: CalDavSite) -> None:
    path = f"/dav/calendars/{ALICE}/default/"
    rewritten = site.request("PUT", path + "r.ics", plain("rewrite-1"))  # LF line ends: stored with CRLF
    assert rewritten.status == 201 and "etag" not in rewritten.headers
    stored = site.request("GET", path + "r.ics").body
    again = site.request("PUT", path + "r2.ics", stored.replace("rewrite-1", "rewrite-2"))
    assert again.status == 201 and again.headers.get("etag") == site.request("GET", path + "r2.ics").headers["etag"]


def test_the_health_probe_answers_without_signing_in(site: CalDavSite) -> None:
    answer = site.request("GET", "/healthz", user=None)
    assert (answer.status, answer.body) == (200, "ok\n")
