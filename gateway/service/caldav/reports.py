"""The REPORTs on a calendar or inbox: calendar-multiget, calendar-query, sync-collection and free-busy-query (RFC 4791 §7, 6578).

Members are found by their index columns (names, change counts, time hulls) and parsed
only when a filter or a partial ``calendar-data`` needs the object; the stored text is
returned as it is otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.ical import serialize_calendar
from gateway.core.dav import paths
from gateway.core.dav.calendar_data import CalendarDataSpec, render_calendar_data
from gateway.core.dav.expansion import Found, expand_text, instances_between
from gateway.core.dav.filter_tree import CompFilter, TimeRange, plain_event_range, time_range_of
from gateway.core.dav.filters import matches
from gateway.core.dav.paths import Kind
from gateway.core.dav.properties import LAST_MODIFIED, PrincipalView, object_base, object_properties
from gateway.core.dav.requests import (
    CALENDAR_DATA,
    FreeBusyQuery,
    Multiget,
    PropRequest,
    Query,
    Report,
    SyncCollection,
)
from gateway.core.dav.responses import response, status_response
from gateway.core.dav.sync import SyncPoint, read_token, token_of
from gateway.core.dav.xml import DavError, escape, qname
from gateway.service import freebusy
from gateway.service.caldav.tree import Request, calendar_of, home_members, home_token, view_of
from gateway.store import calendars, collections, inbox, members
from gateway.store.caches import caches_of
from gateway.store.collections import CalendarInfo
from gateway.store.members import Member


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
    return _answered_once(session, request, calendar, report, lambda: _query(session, request, calendar, report))


def _answered_once(session: Session, request: Request, calendar: CalendarInfo, report: Report,
                   make: Callable[[], Multistatus]) -> Multistatus:
    """The answer to the same question about the calendar in the same state is worked out once, and kept."""
    key = (calendar.id, calendar.sync_seq, calendar.pruned_through, request.target.href, view_of(request.actor),
           report)
    answer: Multistatus = caches_of(session).answers.get_or_make(key, make)
    return answer


def _query(session: Session, request: Request, calendar: CalendarInfo, report: Query) -> Multistatus:
    principal = view_of(request.actor)
    span = time_range_of(report.filter)
    kinds = [f.name for f in report.filter.comp_filters if not f.is_not_defined]
    found = members.members_overlapping(session, calendar.id, span.start if span else None,
                                        span.end if span else None, kinds)
    matching = _Matcher(session, report.filter)
    renderer = _Renderer(session, principal, report.props, matching.range)
    answer = []
    for member in found:
        instances = matching.instances(member)
        if instances or (instances is None and matching.matches(member)):
            answer.append(renderer.render(request.target.href + paths.segment(member.href), member, instances))
    return Multistatus(answer)


class _Matcher:
    """Judges members against a filter: a plain VEVENT time range from the object's kept times, else in full."""

    def __init__(self, session: Session, flt: CompFilter) -> None:
        self.session, self.filter = session, flt
        self.parse = caches_of(session).parse
        self.range = plain_event_range(flt)

    def instances(self, member: Member) -> Found | None:
        """For a plain time range, the member's instances in it from its kept times; None to judge it in full."""
        if self.range is None or member.component != "VEVENT":
            return None
        times = calendars.times_of(self.session, member.row_id, member.revision, member.ical)
        if times is None or member.ical.count("BEGIN:VEVENT") != len(times.events):
            return None
        return instances_between(times, *self.range.bounds())

    def matches(self, member: Member) -> bool:
        return matches(self.parse(member.ical), self.filter)


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
    return _answered_once(session, request, calendar, report, lambda: _sync(session, request, calendar, report))


def _sync(session: Session, request: Request, calendar: CalendarInfo, report: SyncCollection) -> Multistatus:
    principal = view_of(request.actor)
    since = read_token(report.token, calendar.id, calendar.sync_seq, calendar.pruned_through)
    limit = report.limit + 1 if report.limit is not None else None
    changes = members.changed_since(session, calendar.id, since, limit, with_text=report.props.wants(CALENDAR_DATA))
    truncated = report.limit is not None and len(changes) > report.limit
    if truncated:
        changes = changes[:report.limit]
    renderer = _Renderer(session, principal, report.props)
    collection_href = request.target.href
    out = []
    for change, member in changes:
        href = collection_href + paths.segment(change.href)
        out.append(renderer.render(href, member) if member is not None else status_response(href, 404))
    seq = changes[-1][0].seq if truncated else calendar.sync_seq
    if truncated:
        out.append(status_response(collection_href, 507))
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

    def __init__(self, session: Session, principal: PrincipalView, props: PropRequest,
                 query_range: TimeRange | None = None) -> None:
        self.session, self.base, self.props = session, object_base(principal), props
        self.with_data = props.wants(CALENDAR_DATA)
        self.dated = props.wants(LAST_MODIFIED) or props.names_only
        self.spec = props.calendar_data
        self.parse = caches_of(session).parse
        self.expansions = caches_of(session).expanded
        self.expanding = self.spec.expand is not None and self.spec == CalendarDataSpec(expand=self.spec.expand)
        self.query_range = query_range

    def render(self, href: str, member: Member, instances: Found | None = None) -> str:
        """``instances``: the member's in the query's range, when the expansion asks for that same range."""
        values = object_properties(self.base, member.etag, member.updated_at, member.schedule_tag, dated=self.dated)
        if self.with_data:
            values[CALENDAR_DATA] = escape(self.calendar_data(member, instances))
        return response(href, self.props, values)

    def calendar_data(self, member: Member, instances: Found | None) -> str:
        if self.spec.whole:
            return member.ical
        if self.expanding and self.spec.expand is not None and member.component == "VEVENT":
            written = self._expanded(member, self.spec.expand, instances)
            if written is not None:
                return written
        calendar: Calendar = self.parse(member.ical)
        return render_calendar_data(member.ical, calendar, self.spec)

    def _expanded(self, member: Member, span: TimeRange, instances: Found | None) -> str | None:
        key = (member.row_id, member.revision, span)
        kept = self.expansions.get(key)
        if kept is not None:
            return kept
        times = calendars.times_of(self.session, member.row_id, member.revision, member.ical)
        if times is None:
            return None
        if instances is None or span != self.query_range:
            instances = instances_between(times, *span.bounds())
        written = expand_text(member.ical, times, instances)
        if written is not None:
            self.expansions.put(key, written)
        return written


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



