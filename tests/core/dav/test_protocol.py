"""The WebDAV plumbing of the CalDAV face, table-driven: hostile XML, request bodies, paths, sync tokens, conditions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.core.dav import paths
from gateway.core.dav.paths import Kind, Target, parse_path, target_of_href
from gateway.core.dav.preconditions import Conditions, check_conditions, read_tags
from gateway.core.dav.requests import (
    FreeBusyQuery,
    Multiget,
    SyncCollection,
    read_mkcol,
    read_propfind,
    read_proppatch,
    read_report,
)
from gateway.core.dav.responses import error_body, multistatus, response, status_response
from gateway.core.dav.sync import SyncPoint, read_token, token_of
from gateway.core.dav.xml import CALDAV, DAV, MAX_BODY, DavError, parse_body, qname

NS = 'xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"'


# --- hostile and malformed XML ---------------------------------------------------------------

HOSTILE = {
    "billion-laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                      b'<D:propfind xmlns:D="DAV:"><D:prop>&b;</D:prop></D:propfind>',
    "external-entity": b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                       b'<D:propfind xmlns:D="DAV:">&x;</D:propfind>',
    "doctype-only": b'<!DOCTYPE p><D:propfind xmlns:D="DAV:"/>',
    "not-well-formed": b'<D:propfind xmlns:D="DAV:"><D:prop></D:propfind>',
    "deep-nesting": b"<a>" * 100 + b"</a>" * 100,
    "unbound-prefix": b"<D:propfind/>",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_or_malformed_xml_is_a_400(body: bytes) -> None:
    with pytest.raises(DavError) as caught:
        parse_body(body)
    assert caught.value.status == 400


def test_a_huge_body_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(DavError) as caught:
        parse_body(b"<a>" + b" " * MAX_BODY + b"</a>")
    assert caught.value.status == 413


def test_an_empty_body_is_none() -> None:
    assert parse_body(b"  \n") is None


# --- request bodies --------------------------------------------------------------------------

def test_propfind_reads_names_allprop_and_propname() -> None:
    named = read_propfind(parse_body(f'<D:propfind {NS}><D:prop><D:getetag/><C:calendar-data/></D:prop></D:propfind>'
                                     .encode()))
    assert named.names == (qname(DAV, "getetag"), qname(CALDAV, "calendar-data")) and not named.every
    assert read_propfind(None).every
    assert read_propfind(parse_body(f"<D:propfind {NS}><D:allprop/></D:propfind>".encode())).every
    assert read_propfind(parse_body(f"<D:propfind {NS}><D:propname/></D:propfind>".encode())).names_only


def test_proppatch_reads_sets_and_removes_in_order() -> None:
    body = (f'<D:propertyupdate {NS} xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop><D:displayname>Work'
            '</D:displayname><A:calendar-color>#FF0000FF</A:calendar-color></D:prop></D:set><D:remove><D:prop>'
            '<C:calendar-description/></D:prop></D:remove></D:propertyupdate>')
    update = read_proppatch(parse_body(body.encode()))
    assert [name for name, _ in update.sets] == [qname(DAV, "displayname"), "{http://apple.com/ns/ical/}calendar-color"]
    assert update.removes == (qname(CALDAV, "calendar-description"),)


def test_mkcalendar_and_extended_mkcol_ask_for_a_calendar() -> None:
    assert qname(CALDAV, "calendar") in read_mkcol(None, calendar=True).resourcetype
    body = (f'<D:mkcol {NS}><D:set><D:prop><D:resourcetype><D:collection/><C:calendar/></D:resourcetype>'
            '<D:displayname>Team</D:displayname></D:prop></D:set></D:mkcol>')
    update = read_mkcol(parse_body(body.encode()), calendar=False)
    assert qname(CALDAV, "calendar") in update.resourcetype
    assert [name for name, _ in update.sets] == [qname(DAV, "displayname")]
    plain = read_mkcol(parse_body(f"<D:mkcol {NS}><D:set><D:prop><D:resourcetype><D:collection/></D:resourcetype>"
                                  "</D:prop></D:set></D:mkcol>".encode()), calendar=False)
    assert qname(CALDAV, "calendar") not in plain.resourcetype


REPORTS = {
    "multiget": (f'<C:calendar-multiget {NS}><D:prop><D:getetag/></D:prop><D:href>/dav/calendars/a@x/default/1.ics'
                 '</D:href><D:href>/dav/calendars/a@x/default/2.ics</D:href></C:calendar-multiget>',
                 Multiget),
    "sync-initial": (f'<D:sync-collection {NS}><D:sync-token/><D:sync-level>1</D:sync-level><D:prop><D:getetag/>'
                     '</D:prop></D:sync-collection>', SyncCollection),
    "free-busy": (f'<C:free-busy-query {NS}><C:time-range start="20270301T000000Z" end="20270401T000000Z"/>'
                  '</C:free-busy-query>', FreeBusyQuery),
}


@pytest.mark.parametrize(("body", "kind"), REPORTS.values(), ids=REPORTS.keys())
def test_reports_are_read_by_their_root(body: str, kind: type) -> None:
    assert isinstance(read_report(parse_body(body.encode())), kind)


def test_a_sync_collection_reads_its_token_and_limit() -> None:
    report = read_report(parse_body(f'<D:sync-collection {NS}><D:sync-token>urn:x-reefknot:sync:3:9</D:sync-token>'
                                    '<D:sync-level>1</D:sync-level><D:limit><D:nresults>50</D:nresults></D:limit>'
                                    '<D:prop><D:getetag/></D:prop></D:sync-collection>'.encode()))
    assert isinstance(report, SyncCollection) and (report.token, report.limit) == ("urn:x-reefknot:sync:3:9", 50)


BAD_REPORTS = {
    "unknown-report": (f"<D:expand-property {NS}/>", 403, qname(DAV, "supported-report")),
    "query-without-filter": (f"<C:calendar-query {NS}><D:prop/></C:calendar-query>", 400, qname(CALDAV, "valid-filter")),
    "free-busy-backwards": (f'<C:free-busy-query {NS}><C:time-range start="20270401T000000Z" end="20270301T000000Z"/>'
                            "</C:free-busy-query>", 400, ""),
    "bad-limit": (f"<D:sync-collection {NS}><D:sync-token/><D:limit><D:nresults>-1</D:nresults></D:limit>"
                  "</D:sync-collection>", 400, ""),
}


@pytest.mark.parametrize(("body", "status", "condition"), BAD_REPORTS.values(), ids=BAD_REPORTS.keys())
def test_bad_reports_are_refused_with_their_condition(body: str, status: int, condition: str) -> None:
    with pytest.raises(DavError) as caught:
        read_report(parse_body(body.encode()))
    assert (caught.value.status, caught.value.condition) == (status, condition)


# --- paths -----------------------------------------------------------------------------------

PATHS = {
    "root": ("/dav/", Target(Kind.ROOT)),
    "root-without-slash": ("/dav", Target(Kind.ROOT)),
    "principal": ("/dav/principals/alice@foo.example/", Target(Kind.PRINCIPAL, "alice@foo.example")),
    "principal-%40": ("/dav/principals/alice%40foo.example/", Target(Kind.PRINCIPAL, "alice@foo.example")),
    "principal-capitals": ("/dav/principals/Alice@Foo.Example", Target(Kind.PRINCIPAL, "alice@foo.example")),
    "home": ("/dav/calendars/alice@foo.example/", Target(Kind.HOME, "alice@foo.example")),
    "calendar": ("/dav/calendars/alice@foo.example/work/", Target(Kind.CALENDAR, "alice@foo.example", "work")),
    "object": ("/dav/calendars/alice@foo.example/work/a%20b.ics",
               Target(Kind.OBJECT, "alice@foo.example", "work", "a b.ics")),
    "inbox": ("/dav/calendars/alice@foo.example/inbox/", Target(Kind.INBOX, "alice@foo.example")),
    "inbox-item": ("/dav/calendars/alice@foo.example/inbox/7.ics",
                   Target(Kind.INBOX_ITEM, "alice@foo.example", "inbox", "7.ics")),
    "outbox": ("/dav/calendars/alice@foo.example/outbox/", Target(Kind.OUTBOX, "alice@foo.example")),
    "dot-dot": ("/dav/calendars/alice@foo.example/../bob@foo.example/", None),
    "encoded-slash": ("/dav/calendars/alice@foo.example/a%2Fb/", None),
    "too-deep": ("/dav/calendars/a@x/c/o/more", None),
    "elsewhere": ("/other/", None),
}


@pytest.mark.parametrize(("path", "target"), PATHS.values(), ids=PATHS.keys())
def test_paths_name_their_targets(path: str, target: Target | None) -> None:
    assert parse_path(path) == target


def test_hrefs_round_trip_and_collections_end_in_a_slash() -> None:
    for target in [Target(Kind.HOME, "a@x"), Target(Kind.CALENDAR, "a@x", "work"), Target(Kind.INBOX, "a@x"),
                   Target(Kind.OBJECT, "a@x", "work", "odd name+1.ics")]:
        assert parse_path(target.href) == target
        assert target.href.endswith("/") == target.is_collection


def test_an_absolute_href_names_the_same_target() -> None:
    assert target_of_href("https://cal.foo.example/dav/calendars/a@x/work/1.ics") == Target(Kind.OBJECT, "a@x", "work",
                                                                                           "1.ics")
    assert paths.home_href("a@x") == "/dav/calendars/a@x/"


# --- sync tokens -----------------------------------------------------------------------------

def test_a_token_reads_back_as_its_count() -> None:
    assert read_token(token_of(SyncPoint(4, 17)), 4, 20, 0) == 17
    assert read_token("", 4, 20, 0) == 0


TOKENS = {
    "another-calendar": (token_of(SyncPoint(5, 3)), 4, 20, 0),
    "from-the-future": (token_of(SyncPoint(4, 21)), 4, 20, 0),
    "pruned": (token_of(SyncPoint(4, 3)), 4, 20, 10),
    "foreign": ("http://example.com/sync/1", 4, 20, 0),
    "garbled": ("urn:x-reefknot:sync:4:x", 4, 20, 0),
}


@pytest.mark.parametrize(("token", "calendar", "current", "pruned"), TOKENS.values(), ids=TOKENS.keys())
def test_a_token_this_calendar_cannot_answer_is_invalid(token: str, calendar: int, current: int, pruned: int) -> None:
    with pytest.raises(DavError) as caught:
        read_token(token, calendar, current, pruned)
    assert (caught.value.status, caught.value.condition) == (403, qname(DAV, "valid-sync-token"))


def test_the_token_at_the_pruned_mark_still_answers() -> None:
    assert read_token(token_of(SyncPoint(4, 10)), 4, 20, 10) == 10


# --- conditional requests --------------------------------------------------------------------

CONDITIONS = {
    "if-match-same": (Conditions(if_match='"abc"'), "abc", None, True),
    "if-match-other": (Conditions(if_match='"abc"'), "def", None, False),
    "if-match-escaped-quotes": (Conditions(if_match='\\"abc\\"'), "abc", None, True),
    "if-match-unquoted": (Conditions(if_match="abc"), "abc", None, True),
    "if-match-star-missing": (Conditions(if_match="*"), None, None, False),
    "if-match-list": (Conditions(if_match='"x", "abc"'), "abc", None, True),
    "if-none-match-star-new": (Conditions(if_none_match="*"), None, None, True),
    "if-none-match-star-exists": (Conditions(if_none_match="*"), "abc", None, False),
    "schedule-tag-same": (Conditions(if_schedule_tag_match='"s1"'), "abc", "s1", True),
    "schedule-tag-moved-on": (Conditions(if_schedule_tag_match='"s1"'), "abc", "s2", False),
    "none": (Conditions(), "abc", "s1", True),
}


@pytest.mark.parametrize(("conditions", "etag", "schedule_tag", "holds"), CONDITIONS.values(), ids=CONDITIONS.keys())
def test_conditions_hold_or_fail_with_412(conditions: Conditions, etag: str | None, schedule_tag: str | None,
                                          holds: bool) -> None:
    if holds:
        check_conditions(conditions, etag, schedule_tag)
        return
    with pytest.raises(DavError) as caught:
        check_conditions(conditions, etag, schedule_tag)
    assert caught.value.status == 412


def test_weak_tags_are_read_as_their_value() -> None:
    assert read_tags('W/"a", "b"') == frozenset({"a", "b"})


# --- responses -------------------------------------------------------------------------------

def test_a_response_splits_found_and_missing_properties() -> None:
    from gateway.core.dav.requests import PropRequest
    wanted = PropRequest(names=(qname(DAV, "getetag"), qname(DAV, "quota-used-bytes")))
    text = multistatus([response("/dav/x", wanted, {qname(DAV, "getetag"): "&quot;1&quot;"})])
    root = parse_body(text.encode())
    assert root is not None
    statuses = [s.text for s in root.iter(qname(DAV, "status"))]
    assert statuses == ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found"]
    assert root.findtext(f".//{qname(DAV, 'getetag')}") == '"1"'


def test_a_deleted_member_is_reported_by_status_alone() -> None:
    root = parse_body(multistatus([status_response("/dav/x/1.ics", 404)], "urn:t").encode())
    assert root is not None and root.findtext(qname(DAV, "sync-token")) == "urn:t"
    assert root.findtext(f".//{qname(DAV, 'status')}") == "HTTP/1.1 404 Not Found"


def test_an_error_body_names_its_precondition_and_href() -> None:
    error = DavError(403, "uid-in-use", "u1", condition=qname(CALDAV, "no-uid-conflict"), href="/dav/c/a@x/d/1.ics")
    root = parse_body(error_body(error).encode())
    assert root is not None and root.tag == qname(DAV, "error")
    conflict = root.find(qname(CALDAV, "no-uid-conflict"))
    assert conflict is not None and conflict.findtext(qname(DAV, "href")) == "/dav/c/a@x/d/1.ics"


def test_read_utc_reads_caldav_times() -> None:
    from gateway.core.dav.requests import read_utc
    assert read_utc("20270328T010000Z") == datetime(2027, 3, 28, 1, tzinfo=UTC)
