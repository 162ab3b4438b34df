"""Calendar objects as members of a collection: what PROPFIND, GET and the REPORTs read, by resource name or time.

Reads only; writing an object is ``gateway.store.calendars``'. A time-range read skips,
in SQL, every object whose occurrences all lie outside the range (its hull); an object
with an unknown hull is always read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.store.collections import MemberChange
from gateway.store.schema import CalendarChange, CalendarObject

_TABLE = CalendarObject.__table__
_HEAD = (_TABLE.c.href, _TABLE.c.etag, _TABLE.c.schedule_tag, _TABLE.c.uid, _TABLE.c.component,
         _TABLE.c.updated_at, _TABLE.c.organizer, _TABLE.c.id, _TABLE.c.revision)
_CHUNK = 500


@dataclass(frozen=True)
class Member:
    """One object of a calendar: its name, tags and, when asked for, its text."""

    href: str
    etag: str
    schedule_tag: str
    uid: str
    component: str
    updated_at: datetime
    organizer: str | None
    row_id: int
    revision: int  # with the row id, names this version (what the times cache is keyed by)
    ical: str = ""


def _member(row: object, with_text: bool) -> Member:
    values = row._mapping  # type: ignore[attr-defined]
    return Member(values["href"], values["etag"], values["schedule_tag"], values["uid"], values["component"],
                  values["updated_at"], values["organizer"], values["id"], values["revision"],
                  values["ical"] if with_text else "")


def members_of(session: Session, calendar_id: int, *, with_text: bool = False) -> Iterator[Member]:
    """Every object of a calendar, by name."""
    columns = (*_HEAD, _TABLE.c.ical) if with_text else _HEAD
    query = select(*columns).where(_TABLE.c.calendar_id == calendar_id).order_by(_TABLE.c.href)
    for row in session.execute(query.execution_options(yield_per=_CHUNK)):
        yield _member(row, with_text)


def member_named(session: Session, calendar_id: int, href: str, *, with_text: bool = True) -> Member | None:
    columns = (*_HEAD, _TABLE.c.ical) if with_text else _HEAD
    row = session.execute(select(*columns).where(_TABLE.c.calendar_id == calendar_id, _TABLE.c.href == href)).first()
    return _member(row, with_text) if row is not None else None


def members_named(session: Session, calendar_id: int, hrefs: Iterable[str], *, with_text: bool) -> dict[str, Member]:
    """The named objects of a calendar that exist, by name."""
    wanted = list(dict.fromkeys(hrefs))
    columns = (*_HEAD, _TABLE.c.ical) if with_text else _HEAD
    found: dict[str, Member] = {}
    for start in range(0, len(wanted), _CHUNK):
        query = select(*columns).where(_TABLE.c.calendar_id == calendar_id,
                                       _TABLE.c.href.in_(wanted[start:start + _CHUNK]))
        found.update((m.href, m) for m in (_member(row, with_text) for row in session.execute(query)))
    return found


def members_overlapping(session: Session, calendar_id: int, start: datetime | None, end: datetime | None,
                        components: Iterable[str] = ()) -> Iterator[Member]:
    """The objects of a calendar that may have an occurrence in [start, end), with their text; of these kinds only."""
    query = select(*_HEAD, _TABLE.c.ical).where(_TABLE.c.calendar_id == calendar_id)
    if end is not None:
        query = query.where(or_(_TABLE.c.hull_start.is_(None), _TABLE.c.hull_start < end))
    if start is not None:
        query = query.where(or_(_TABLE.c.hull_end.is_(None), _TABLE.c.hull_end > start))
    kinds = list(components)
    if kinds:
        query = query.where(_TABLE.c.component.in_(kinds))
    for row in session.execute(query.order_by(_TABLE.c.href).execution_options(yield_per=_CHUNK)):
        yield _member(row, True)


def member_with_uid(session: Session, principal_id: int, uid: str) -> tuple[int, Member] | None:
    """Where a principal's UID is (calendar id and member), for ``no-uid-conflict``."""
    row = session.execute(select(_TABLE.c.calendar_id, *_HEAD).where(
        _TABLE.c.principal_id == principal_id, _TABLE.c.uid == uid)).first()
    return (row.calendar_id, _member(row, False)) if row is not None else None


def uids_in(session: Session, calendar_id: int) -> list[str]:
    return list(session.scalars(select(_TABLE.c.uid).where(_TABLE.c.calendar_id == calendar_id)))


def changed_since(session: Session, calendar_id: int, seq: int, limit: int | None,
                  *, with_text: bool) -> list[tuple[MemberChange, Member | None]]:
    """Members changed after ``seq``, oldest change first, each with the object as it is now (None: deleted).

    From 0 (an initial sync) only the members there are, no deletions.
    """
    changes = CalendarChange.__table__
    columns = (*_HEAD, _TABLE.c.ical) if with_text else _HEAD
    query = (select(changes.c.href.label("change_href"), changes.c.seq, changes.c.deleted, *columns)
             .select_from(changes.outerjoin(_TABLE, (_TABLE.c.calendar_id == changes.c.calendar_id)
                                            & (_TABLE.c.href == changes.c.href)))
             .where(changes.c.calendar_id == calendar_id, changes.c.seq > seq).order_by(changes.c.seq))
    if not seq:
        query = query.where(changes.c.deleted.is_(False))
    if limit is not None:
        query = query.limit(limit)
    found = []
    for row in session.execute(query.execution_options(yield_per=_CHUNK)):
        change = MemberChange(row.change_href, row.seq, row.deleted)
        found.append((change, _member(row, with_text) if row.id is not None else None))
    return found
