"""The REPORTs on a calendar or inbox: calendar-multiget, calendar-query, sync-collection and free-busy-query (RFC 4791 §7, 6578).

Members are found by their index columns (names, change counts, time hulls) and parsed
only when a filter or a partial ``calendar-data`` needs the object; the stored text is
returned as it is otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.ical import serialize_calendar
from gateway.core.dav import paths
from gateway.core.dav.calendar_data import CalendarDataSpec, render_calendar_data
from gateway.core.dav.filters import matches, time_range_of
from gateway.core.dav.paths import Kind
from gateway.core.dav.properties import PrincipalView, object_base, object_properties
from gateway.core.dav.requests import CALENDAR_DATA, FreeBusyQuery, Multiget, PropRequest, Query, SyncCollection
from gateway.core.dav.responses import response, status_response
from gateway.core.dav.sync import SyncPoint, read_token, token_of
from gateway.core.dav.xml import DavError, escape, qname
from gateway.service import freebusy
from gateway.service.caldav.tree import Request, calendar_of, home_members, home_token, view_of
from gateway.store import collections, inbox, members
from gateway.store.caches import caches_of
from gateway.store.members import Member

WHOLE = CalendarDataSpec()


@dataclass(frozen=True)
class Multistatus:
    """A report's answer: its members and, for a sync, the new token."""

    members: list[str]
    sync_token: str | None = None


def multiget(session: Session, request: Request, report: Multiget) -> Multistatus:
    principal = view_of(request.actor)
    if request.target.kind is Kind.INBOX:
        return Multistatus(list(_inbox_multiget(session, request, principal, report)))
    calendar = calendar_of(session, request)
    collection_href = request.target.href
    names = {href: _member_name(href, request) for href in report.hrefs}
    found = members.members_named(session, calendar.id, [n for n in names.values() if n],
                                  with_text=report.props.wants(CALENDAR_DATA))
    renderer = _Renderer(session, principal, report.props)
    out = []
    for href, name in names.items():
        member = found.get(name) if name else None
        out.append(renderer.render(collection_href + paths.segment(member.href), member) if member is not None
                   else status_response(href, 404))
    return Multistatus(out)


def _member_name(href: str, request: Request) -> str:
    target = paths.target_of_href(href)
    if target is None or target.calendar != request.target.calendar or not target.name:
        return ""
    return target.name if target.address in request.actor.addresses else ""


def query(session: Session, request: Request, report: Query) -> Multistatus:
    principal = view_of(request.actor)
    if request.target.kind is Kind.INBOX:
        return Multistatus(list(_inbox_query(session, request, principal, report)))
    calendar = calendar_of(session, request)
    span = time_range_of(report.filter)
    kinds = [f.name for f in report.filter.comp_filters if not f.is_not_defined]
    found = members.members_overlapping(session, calendar.id, span.start if span else None,
                                        span.end if span else None, kinds)
    renderer = _Renderer(session, principal, report.props)
    parse = caches_of(session).parse
    return Multistatus([renderer.render(request.target.href + paths.segment(m.href), m)
                        for m in found if matches(parse(m.ical), report.filter)])


def sync_collection(session: Session, request: Request, report: SyncCollection) -> Multistatus:
    """Changes since the client's token; with a ``limit`` that cuts them short, a 507 and a token for what was sent."""
    principal = view_of(request.actor)
    if request.target.kind is Kind.HOME:
        calendars = collections.calendars_of(session, request.actor.id)
        return Multistatus(list(home_members(session, request, principal, report.props, calendars)),
                           home_token(calendars))
    if request.target.kind is not Kind.CALENDAR:
        raise DavError(403, "unsupported-report", "sync-collection is served on calendars and the home",
                       condition=qname("DAV:", "supported-report"))
    calendar = calendar_of(session, request)
    since = read_token(report.token, calendar.id, calendar.sync_seq, calendar.pruned_through)
    changes = collections.changes_since(session, calendar.id, since,
                                        report.limit + 1 if report.limit is not None else None)
    if not since:
        changes = [c for c in changes if not c.deleted]
    truncated = report.limit is not None and len(changes) > report.limit
    if truncated:
        changes = changes[:report.limit]
    live = members.members_named(session, calendar.id, [c.href for c in changes if not c.deleted],
                                 with_text=report.props.wants(CALENDAR_DATA))
    renderer = _Renderer(session, principal, report.props)
    out = []
    for change in changes:
        href = request.target.href + paths.segment(change.href)
        member = live.get(change.href)
        out.append(renderer.render(href, member) if member is not None else status_response(href, 404))
    seq = changes[-1].seq if truncated else calendar.sync_seq
    if truncated:
        out.append(status_response(request.target.href, 507))
    return Multistatus(out, token_of(SyncPoint(calendar.id, seq)))


def free_busy_query(session: Session, request: Request, report: FreeBusyQuery) -> str:
    """The principal's busy time in the window as one VFREEBUSY (RFC 4791 §7.10)."""
    if request.target.kind is not Kind.CALENDAR:
        raise DavError(403, "unsupported-report", "free-busy-query is served on calendars",
                       condition=qname("DAV:", "supported-report"))
    calendar_of(session, request)
    return serialize_calendar(freebusy.published(session, [request.actor], report.start, report.end, request.now))


class _Renderer:
    """Writes one member's response, parsing its object only when a partial or expanded ``calendar-data`` needs it."""

    def __init__(self, session: Session, principal: PrincipalView, props: PropRequest) -> None:
        self.base, self.props = object_base(principal), props
        self.with_data = props.wants(CALENDAR_DATA)
        self.spec = props.calendar_data
        self.parse = caches_of(session).parse

    def render(self, href: str, member: Member) -> str:
        values = object_properties(self.base, member.etag, member.updated_at, member.schedule_tag)
        if self.with_data:
            values[CALENDAR_DATA] = escape(self.calendar_data(member.ical))
        return response(href, self.props, values)

    def calendar_data(self, text: str) -> str:
        if self.spec == WHOLE:
            return text
        calendar: Calendar = self.parse(text)
        return render_calendar_data(text, calendar, self.spec)


def _inbox_items(session: Session, request: Request) -> list[inbox.InboxItem]:
    return inbox.items_of(session, request.actor.id, request.inbox_since)


def _inbox_multiget(session: Session, request: Request, principal: PrincipalView, report: Multiget) -> Iterator[str]:
    items = {paths.calendar_href(request.actor.address, paths.INBOX) + i.href: i for i in _inbox_items(session, request)}
    for href in report.hrefs:
        target = paths.target_of_href(href)
        item = items.get(target.href) if target is not None else None
        yield _inbox_response(principal, report.props, item.href, item) if item else status_response(href, 404)


def _inbox_query(session: Session, request: Request, principal: PrincipalView, report: Query) -> Iterable[str]:
    parse = caches_of(session).parse
    return [_inbox_response(principal, report.props, item.href, item) for item in _inbox_items(session, request)
            if matches(parse(item.ical), report.filter)]


def _inbox_response(principal: PrincipalView, props: PropRequest, name: str, item: inbox.InboxItem) -> str:
    values = object_properties(object_base(principal), item.etag, item.received_at)
    if props.wants(CALENDAR_DATA):
        values[CALENDAR_DATA] = escape(item.ical)
    return response(paths.calendar_href(principal.address, paths.INBOX) + name, props, values)


