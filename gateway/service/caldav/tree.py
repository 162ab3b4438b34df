"""Which resource a request names for a signed-in principal, and what PROPFIND shows of it and its members.

A principal reaches only its own principal resource and home; anything else is a 403.
Members of a calendar are listed from their index columns, never parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from gateway.core.dav import paths
from gateway.core.dav.paths import Kind, Target
from gateway.core.dav.properties import (
    CalendarView,
    PrincipalView,
    calendar_properties,
    home_properties,
    inbox_properties,
    object_base,
    object_properties,
    outbox_properties,
    principal_properties,
    root_properties,
)
from gateway.core.dav.requests import PropRequest
from gateway.core.dav.responses import response
from gateway.core.dav.sync import SyncPoint, token_of
from gateway.core.dav.xml import DAV, DavError, qname
from gateway.store import collections, inbox, members
from gateway.store.collections import CalendarInfo
from gateway.store.directory import PrincipalRef

Actor = PrincipalRef  # the signed-in principal a request acts for
INBOX_DAYS = 30  # how long an applied message stays in a principal's CalDAV inbox


@dataclass(frozen=True)
class Request:
    """Who asks, when, and what they name."""

    actor: PrincipalRef
    target: Target
    now: datetime
    inbox_days: int = INBOX_DAYS

    @property
    def inbox_since(self) -> datetime:
        return self.now - timedelta(days=self.inbox_days)


def view_of(principal: PrincipalRef) -> PrincipalView:
    return PrincipalView(principal.address, tuple(sorted(principal.aliases)), principal.display_name,
                         principal.kind.value)


def check_access(actor: PrincipalRef, target: Target) -> None:
    """A principal reaches only what is its own (by any of its addresses)."""
    if target.address and target.address not in actor.addresses:
        raise DavError(403, "not-your-home", f"{actor.address} may not reach {target.href}",
                       condition=qname(DAV, "need-privileges"))


def own_target(actor: PrincipalRef, target: Target) -> Target:
    """The target with the actor's primary address, whichever alias the path used."""
    check_access(actor, target)
    if target.address and target.address != actor.address:
        return Target(target.kind, actor.address, target.calendar, target.name)
    return target


def calendar_of(session: Session, request: Request) -> CalendarInfo:
    """The calendar a target is in or names; 404 when there is none by that name."""
    found = collections.calendar_named(session, request.actor.id, request.target.calendar)
    if found is None:
        raise DavError(404, "no-such-calendar", request.target.calendar)
    return found


def calendar_view(calendar: CalendarInfo) -> CalendarView:
    return CalendarView(calendar.name, calendar.display_name, calendar.description, calendar.color,
                        calendar.sort_order, calendar.timezone, calendar.transparent, calendar.components,
                        token_of(SyncPoint(calendar.id, calendar.sync_seq)))


def propfind(session: Session, request: Request, depth: int, wanted: PropRequest) -> Iterator[str]:
    """The multistatus members of a PROPFIND: the target, and its members at Depth 1."""
    target, actor = request.target, request.actor
    principal = view_of(actor)
    kind = target.kind
    if kind in (Kind.ROOT, Kind.PRINCIPALS):
        yield response(target.href, wanted, root_properties(principal))
        if depth and kind is Kind.PRINCIPALS:
            yield response(paths.principal_href(actor.address), wanted, principal_properties(principal))
    elif kind is Kind.PRINCIPAL:
        yield response(target.href, wanted, principal_properties(principal))
    elif kind is Kind.HOME:
        yield from _home(session, request, principal, depth, wanted)
    elif kind is Kind.CALENDAR:
        calendar = calendar_of(session, request)
        yield response(target.href, wanted, calendar_properties(principal, calendar_view(calendar), collections.DEFAULT))
        if depth:
            yield from member_responses(session, calendar, principal, wanted)
    elif kind is Kind.OBJECT:
        member = members.member_named(session, calendar_of(session, request).id, target.name, with_text=False)
        if member is None:
            raise DavError(404, "no-such-object", target.href)
        yield response(target.href, wanted, object_properties(object_base(principal), member.etag, member.updated_at,
                                                               member.schedule_tag))
    elif kind is Kind.INBOX:
        yield response(target.href, wanted, inbox_properties(principal, inbox.inbox_tag(
            session, actor.id, request.inbox_since)))
        if depth:
            yield from _inbox_members(session, request, principal, wanted)
    elif kind is Kind.INBOX_ITEM:
        yield from _inbox_item(session, request, principal, wanted)
    else:
        yield response(target.href, wanted, outbox_properties(principal))


def _home(session: Session, request: Request, principal: PrincipalView, depth: int,
          wanted: PropRequest) -> Iterator[str]:
    actor = request.actor
    calendars = collections.calendars_of(session, actor.id)
    yield response(request.target.href, wanted, home_properties(principal, home_token(calendars), collections.DEFAULT))
    if depth:
        yield from home_members(session, request, principal, wanted, calendars)


def home_members(session: Session, request: Request, principal: PrincipalView, wanted: PropRequest,
                 calendars: list[CalendarInfo]) -> Iterator[str]:
    address = request.actor.address
    for calendar in calendars:
        yield response(paths.calendar_href(address, calendar.name), wanted,
                       calendar_properties(principal, calendar_view(calendar), collections.DEFAULT))
    yield response(paths.calendar_href(address, paths.INBOX), wanted,
                   inbox_properties(principal, inbox.inbox_tag(session, request.actor.id, request.inbox_since)))
    yield response(paths.calendar_href(address, paths.OUTBOX), wanted, outbox_properties(principal))


def home_token(calendars: list[CalendarInfo]) -> str:
    """A token for the home's own sync-collection: it changes when any calendar does."""
    return "urn:x-reefknot:home:" + ",".join(f"{c.id}.{c.sync_seq}" for c in calendars)


def member_responses(session: Session, calendar: CalendarInfo, principal: PrincipalView,
                     wanted: PropRequest) -> Iterator[str]:
    base = object_base(principal)
    collection_href = paths.calendar_href(principal.address, calendar.name)
    for member in members.members_of(session, calendar.id):
        yield response(collection_href + paths.segment(member.href), wanted,
                       object_properties(base, member.etag, member.updated_at, member.schedule_tag))


def _inbox_members(session: Session, request: Request, principal: PrincipalView, wanted: PropRequest) -> Iterator[str]:
    base = object_base(principal)
    collection_href = paths.calendar_href(principal.address, paths.INBOX)
    for item in inbox.items_of(session, request.actor.id, request.inbox_since):
        yield response(collection_href + item.href, wanted, object_properties(base, item.etag, item.received_at))


def inbox_item_id(target: Target) -> int:
    stem = target.name.removesuffix(".ics")
    if not stem.isdigit():
        raise DavError(404, "no-such-inbox-item", target.name)
    return int(stem)


def find_inbox_item(session: Session, request: Request) -> inbox.InboxItem:
    found = inbox.item(session, request.actor.id, inbox_item_id(request.target), request.inbox_since)
    if found is None:
        raise DavError(404, "no-such-inbox-item", request.target.name)
    return found


def _inbox_item(session: Session, request: Request, principal: PrincipalView, wanted: PropRequest) -> Iterator[str]:
    item = find_inbox_item(session, request)
    yield response(request.target.href, wanted, object_properties(object_base(principal), item.etag, item.received_at))


@dataclass(frozen=True)
class Resource:
    """What a GET returns: the text and its tags."""

    text: str
    etag: str
    schedule_tag: str = ""


def get_resource(session: Session, request: Request) -> Resource:
    """A calendar object or an inbox item, as stored; a collection has no body here (405)."""
    target = request.target
    if target.kind is Kind.INBOX_ITEM:
        item = find_inbox_item(session, request)
        return Resource(item.ical, item.etag)
    if target.kind is not Kind.OBJECT:
        raise DavError(405, "collection-has-no-body", target.href)
    member = members.member_named(session, calendar_of(session, request).id, target.name, with_text=True)
    if member is None:
        raise DavError(404, "no-such-object", target.href)
    return Resource(member.ical, member.etag, member.schedule_tag if member.organizer else "")
