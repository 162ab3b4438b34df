"""The principals' calendar collections and their change logs: what CalDAV sync tokens and collection tags are read from.

Every change to a member of a calendar goes through ``record_change``: the calendar's
counter goes up by one (its row update also serializes writers of one calendar on
PostgreSQL, so counters commit in order) and the member's change row is set to it. A
member's row is kept while it exists; a deleted member's row (a tombstone) is kept for
``TOMBSTONE_DAYS`` and then forgotten, after which older tokens are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.store.schema import CalendarChange, CalendarCollection

DEFAULT = "default"
TOMBSTONE_DAYS = 30
_CALENDARS = CalendarCollection.__table__
_CHANGES = CalendarChange.__table__
_BUMP = (update(_CALENDARS).where(_CALENDARS.c.id == bindparam("bump_id"))
         .values(sync_seq=_CALENDARS.c.sync_seq + 1).returning(_CALENDARS.c.sync_seq))


def _upsert_change(dialect_insert: Any) -> Any:
    """One statement that writes a member's change row whether or not it has one yet."""
    statement = dialect_insert(_CHANGES)
    return statement.on_conflict_do_update(
        index_elements=[_CHANGES.c.calendar_id, _CHANGES.c.href],
        set_={"seq": statement.excluded.seq, "deleted": statement.excluded.deleted,
              "changed_at": statement.excluded.changed_at},
    )


_SET_CHANGE = {"sqlite": _upsert_change(sqlite.insert), "postgresql": _upsert_change(postgresql.insert)}
_DEFAULT_ID = select(_CALENDARS.c.id).where(_CALENDARS.c.principal_id == bindparam("principal_id"),
                                            _CALENDARS.c.name == DEFAULT)


@dataclass(frozen=True)
class CalendarInfo:
    """One calendar collection as CalDAV shows it."""

    id: int
    principal_id: int
    name: str
    display_name: str
    description: str
    color: str
    sort_order: int
    timezone: str
    transparent: bool
    components: tuple[str, ...]
    sync_seq: int
    pruned_through: int

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT


@dataclass(frozen=True)
class MemberChange:
    """A member changed since a sync point: its name, the count it changed at, and whether it is gone."""

    href: str
    seq: int
    deleted: bool


def _info(row: CalendarCollection) -> CalendarInfo:
    return CalendarInfo(row.id, row.principal_id, row.name, row.display_name, row.description, row.color,
                        row.sort_order, row.timezone, row.transparent, tuple(filter(None, row.components.split(","))),
                        row.sync_seq, row.pruned_through)


def add_calendar(session: Session, principal_id: int, name: str, now: datetime, *, display_name: str = "",
                 components: tuple[str, ...] = ("VEVENT", "VTODO", "VJOURNAL")) -> CalendarInfo:
    row = CalendarCollection(principal_id=principal_id, name=name, display_name=display_name, description="",
                             color="", sort_order=0, timezone="", transparent=False, components=",".join(components),
                             created_at=now, sync_seq=0, pruned_through=0)
    session.add(row)
    session.flush()
    return _info(row)


def calendars_of(session: Session, principal_id: int) -> list[CalendarInfo]:
    """The principal's calendars, the default first."""
    rows = session.scalars(select(CalendarCollection).where(CalendarCollection.principal_id == principal_id)
                           .order_by(CalendarCollection.name != DEFAULT, CalendarCollection.sort_order,
                                     CalendarCollection.name))
    return [_info(row) for row in rows]


def calendar_named(session: Session, principal_id: int, name: str) -> CalendarInfo | None:
    row = session.scalars(select(CalendarCollection).where(
        CalendarCollection.principal_id == principal_id, CalendarCollection.name == name)).first()
    return _info(row) if row is not None else None


def calendar_by_id(session: Session, calendar_id: int) -> CalendarInfo | None:
    row = session.get(CalendarCollection, calendar_id)
    return _info(row) if row is not None else None


def default_calendar(session: Session, principal_id: int, now: datetime) -> CalendarInfo:
    """Where invitations and new objects go (``schedule-default-calendar-URL``); made when missing."""
    found = calendar_named(session, principal_id, DEFAULT)
    return found if found is not None else add_calendar(session, principal_id, DEFAULT, now, display_name="Calendar")


def default_calendar_id(session: Session, principal_id: int, now: datetime) -> int:
    """The id of the principal's default calendar, made when missing: one indexed read on every new object."""
    found = session.execute(_DEFAULT_ID, {"principal_id": principal_id}).scalar()
    return int(found) if found is not None else default_calendar(session, principal_id, now).id


def update_calendar(session: Session, calendar_id: int, **values: object) -> None:
    """Change a calendar's own properties; its clients see a new collection tag."""
    session.execute(update(_CALENDARS).where(_CALENDARS.c.id == calendar_id)
                    .values(sync_seq=_CALENDARS.c.sync_seq + 1, **values))


def remove_calendar(session: Session, calendar_id: int) -> None:
    """Delete a calendar with its members and change log (the caller removes the members' objects first)."""
    session.execute(delete(_CHANGES).where(_CHANGES.c.calendar_id == calendar_id))
    session.execute(delete(_CALENDARS).where(_CALENDARS.c.id == calendar_id))


def record_change(session: Session, calendar_id: int, href: str, now: datetime, *, deleted: bool = False) -> int:
    """Note that a member changed (or is gone); returns the calendar's new change count.

    A deletion also forgets the calendar's deletions older than ``TOMBSTONE_DAYS``.
    """
    if deleted:
        prune_tombstones(session, now, calendar_id=calendar_id)
    seq = session.execute(_BUMP, {"bump_id": calendar_id}).scalar_one()
    session.execute(_SET_CHANGE[session.get_bind().dialect.name],
                    {"calendar_id": calendar_id, "href": href, "seq": seq, "deleted": deleted, "changed_at": now})
    return int(seq)


def changes_since(session: Session, calendar_id: int, seq: int, limit: int | None = None) -> list[MemberChange]:
    """Members changed after ``seq``, oldest change first; at most ``limit``."""
    query = (select(_CHANGES.c.href, _CHANGES.c.seq, _CHANGES.c.deleted)
             .where(_CHANGES.c.calendar_id == calendar_id, _CHANGES.c.seq > seq).order_by(_CHANGES.c.seq))
    if limit is not None:
        query = query.limit(limit)
    return [MemberChange(row.href, row.seq, row.deleted) for row in session.execute(query)]


def count_changes_since(session: Session, calendar_id: int, seq: int) -> int:
    query = select(func.count()).select_from(_CHANGES).where(_CHANGES.c.calendar_id == calendar_id,
                                                              _CHANGES.c.seq > seq)
    return int(session.scalar(query) or 0)


def prune_tombstones(session: Session, now: datetime, days: int = TOMBSTONE_DAYS, *,
                     calendar_id: int | None = None) -> int:
    """Forget deleted members older than ``days`` (of one calendar, or all); older tokens are refused from then on."""
    cutoff = now - timedelta(days=days)
    old = (_CHANGES.c.deleted.is_(True)) & (_CHANGES.c.changed_at < cutoff)
    if calendar_id is not None:
        old = old & (_CHANGES.c.calendar_id == calendar_id)
    marks = session.execute(select(_CHANGES.c.calendar_id, func.max(_CHANGES.c.seq)).where(old)
                            .group_by(_CHANGES.c.calendar_id)).all()
    for calendar_id, seq in marks:
        session.execute(update(_CALENDARS).where(_CALENDARS.c.id == calendar_id, _CALENDARS.c.pruned_through < seq)
                        .values(pruned_through=seq))
    return int(session.execute(delete(_CHANGES).where(old)).rowcount or 0)
