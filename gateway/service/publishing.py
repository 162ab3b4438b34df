"""What leaves for calendar programs and partners: a principal's calendar, and free/busy by address, each checked.

One service for both faces: ``reefknot calendar export`` and the HTTP calendar feed
share ``calendar_export``; ``reefknot freebusy`` and the free/busy URL share
``freebusy_of``. An object that is not valid iCalendar is left out of an export and
named (``gateway.core.calendar.export``); free/busy that is not valid is never handed out.
"""

from __future__ import annotations

from datetime import datetime

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.addresses import normalize_address
from gateway.core.calendar.export import Export, LeftOut, check_object, export_objects
from gateway.service import freebusy
from gateway.store import calendars, directory
from gateway.store.db import Database


class UnknownCalendarUser(Exception):
    """An address that is no local principal's (or a feed token that does not match)."""


class InvalidFreeBusy(Exception):
    """Free/busy that would not be valid iCalendar; ``problem`` says why."""

    def __init__(self, problem: LeftOut) -> None:
        super().__init__(problem.describe())
        self.problem = problem


def calendar_export(session: Session, principal_id: int, uid: str | None = None) -> Export:
    """The principal's stored objects (or the one with ``uid``) as one checked calendar."""
    return export_objects(calendars.list_objects(session, principal_id, uid))


def calendar_feed(db: Database, address: str, token: str) -> Export:
    """The calendar a feed token opens (``reefknot users feed``); UnknownCalendarUser when it opens none."""
    with db.reading() as session:
        principal = directory.by_feed_token(session, address, token)
        if principal is None:
            raise UnknownCalendarUser(address)
        return calendar_export(session, principal.id)


def freebusy_of(db: Database, addresses: list[str], start: datetime, end: datetime, now: datetime) -> Calendar:
    """One VFREEBUSY for the principals at these addresses together, checked before it leaves."""
    with db.reading() as session:
        found = directory.resolve_many(session, addresses)
        missing = [a for a in addresses if found.get(normalize_address(a) or "") is None]
        if missing or not addresses:
            raise UnknownCalendarUser(", ".join(missing))
        principals = [p for p in found.values() if p is not None]
        published = freebusy.published(session, principals, start, end, now)
    problem = check_object(published)
    if problem is not None:
        raise InvalidFreeBusy(problem)
    return published
