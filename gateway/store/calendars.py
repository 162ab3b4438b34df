"""The principals' calendars: one row per (principal, UID) holding the master and its overrides, and their times.

Every read-modify-write of an object is serialized per object: ``load_object`` takes a
transaction lock named after (principal, UID) on PostgreSQL, held until commit, so that
two processes applying answers to one object never overwrite each other (SQLite's
``BEGIN IMMEDIATE`` serializes every writer already). The lock is taken before the row
is read, so it also serializes two writers creating the same UID. A UID whose object is
gone, or was cancelled before it arrived, keeps its ordering state as a tombstone for
``TOMBSTONE_LIFETIME``: an older message that arrives meanwhile is stale.

Each object sits in one of its principal's calendars under a resource name: where a
CalDAV client put it, else in the default calendar under a name made from its UID.
Every write gives it a new ETag, a Schedule-Tag that changes only when what matters to
scheduling does (``gateway.core.dav.scheduling``), the bounds of its occurrences, and a
line in its calendar's change log, so every client syncing the calendar sees it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, insert, select, text, update
from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.ical import (
    components_of,
    organizer_of,
    timezones_of,
    sequence_of,
    serialize_calendar,
)
from gateway.core.calendar.recurrence import FOREVER, ObjectTimes, read_times
from gateway.core.calendar.zones import zone_texts
from gateway.core.dav.scheduling import schedule_tag_of
from gateway.core.itip.ordering import SchedulingState
from gateway.core.itip.types import Stored
from gateway.store import collections
from gateway.store.caches import caches_of
from gateway.store.schema import CalendarObject, OrderingTombstone, Principal

_ROW_IDS = "reefknot.calendar-row-ids"
_TOMBSTONED = "reefknot.calendar-tombstoned"
TOMBSTONE_LIFETIME = timedelta(days=90)  # longer than any mail queue keeps retrying an older message


_TABLE = CalendarObject.__table__
_SELECT = select(_TABLE.c.id, _TABLE.c.ical, _TABLE.c.state, _TABLE.c.calendar_id, _TABLE.c.href).where(
    _TABLE.c.principal_id == bindparam("principal_id"), _TABLE.c.uid == bindparam("uid")
)
_INSERT = insert(_TABLE).returning(_TABLE.c.id)
_UPDATE = update(_TABLE).where(_TABLE.c.id == bindparam("row_id"))
_DELETE = delete(_TABLE).where(_TABLE.c.id == bindparam("row_id"))
_PRINCIPALS = Principal.__table__
_TOMBS = OrderingTombstone.__table__
_SELECT_TOMB = select(_TOMBS.c.state).where(
    _TOMBS.c.principal_id == bindparam("principal_id"), _TOMBS.c.uid == bindparam("uid")
)
_DELETE_TOMB = delete(_TOMBS).where(_TOMBS.c.principal_id == bindparam("principal_id"), _TOMBS.c.uid == bindparam("uid"))
_PRUNE_TOMBS = delete(_TOMBS).where(_TOMBS.c.principal_id == bindparam("principal_id"),
                                    _TOMBS.c.kept_until < bindparam("now"))
_LOCK_OBJECT = text("SELECT pg_advisory_xact_lock(:principal_id, :uid_key)")
_LOCK_CALENDAR = select(_PRINCIPALS.c.id).where(_PRINCIPALS.c.id == bindparam("principal_id")).with_for_update()
_CALENDAR_REVISION = select(_PRINCIPALS.c.calendar_revision).where(_PRINCIPALS.c.id == bindparam("principal_id"))
_NEW_CALENDAR_REVISION = update(_PRINCIPALS).where(_PRINCIPALS.c.id == bindparam("principal_id"))
_ORGANIZERS = select(_TABLE.c.organizer).where(
    _TABLE.c.principal_id == bindparam("principal_id"), _TABLE.c.organizer.in_(bindparam("addresses", expanding=True)),
).distinct()
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,200}")


@dataclass(frozen=True)
class Place:
    """Where an object is: a calendar (by row id) and its resource name in it."""

    calendar_id: int
    href: str


def name_for_uid(uid: str) -> str:
    """The resource name Reefknot gives an object no client named: its UID when that is a plain name."""
    return (uid if _PLAIN_NAME.fullmatch(uid) else hashlib.sha1(uid.encode("utf-8", "surrogateescape")).hexdigest()) + ".ics"


def load_object(session: Session, principal_id: int, uid: str) -> Stored:
    """The principal's copy of a UID with its applied versions (empty when it has none), locked until commit."""
    ids: dict[tuple[int, str], tuple[int, Place | None] | None] = session.info.setdefault(_ROW_IDS, {})
    if (principal_id, uid) not in ids and _is_postgresql(session):
        session.execute(_LOCK_OBJECT, {"principal_id": principal_id, "uid_key": _lock_key(uid)})
    row = session.execute(_SELECT, {"principal_id": principal_id, "uid": uid}).first()
    place = Place(row.calendar_id, row.href) if row is not None and row.calendar_id is not None else None
    ids[(principal_id, uid)] = (row.id, place) if row is not None else None
    if row is not None:
        return Stored(caches_of(session).parse(row.ical), SchedulingState.from_json(row.state))
    state = session.execute(_SELECT_TOMB, {"principal_id": principal_id, "uid": uid}).scalar()
    tombstoned: set[tuple[int, str]] = session.info.setdefault(_TOMBSTONED, set())
    if state is None:
        tombstoned.discard((principal_id, uid))
        return Stored()
    tombstoned.add((principal_id, uid))
    return Stored(None, SchedulingState.from_json(state))


def lock_calendar(session: Session, principal_id: int) -> None:
    """Serialize this transaction with every other one that locks the principal's calendar (a room deciding)."""
    if _is_postgresql(session):
        session.execute(_LOCK_CALENDAR, {"principal_id": principal_id})


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _lock_key(uid: str) -> int:
    """A UID as the signed 32-bit second key of a PostgreSQL advisory lock (collisions only serialize more)."""
    return zlib.crc32(uid.encode("utf-8", "surrogateescape")) - 2**31


def place_of(session: Session, principal_id: int, uid: str) -> Place | None:
    """Where an object loaded in this transaction is (None: it is not stored, or has no place yet)."""
    ids: dict[tuple[int, str], tuple[int, Place | None] | None] = session.info.get(_ROW_IDS, {})
    found = ids.get((principal_id, uid))
    return found[1] if found is not None else None


def save_object(session: Session, principal_id: int, uid: str, stored: Stored, now: datetime,
                *, place: Place | None = None) -> None:
    """Write the principal's copy of a UID (loaded before in this transaction); no components removes it.

    ``place`` is where a client put it; without one an object stays where it is, and a
    new one goes to the principal's default calendar.
    """
    ids: dict[tuple[int, str], tuple[int, Place | None] | None] = session.info.setdefault(_ROW_IDS, {})
    if (principal_id, uid) not in ids:
        load_object(session, principal_id, uid)
    found = ids[(principal_id, uid)]
    row_id, old_place = found if found is not None else (None, None)
    components = stored.components
    session.execute(_NEW_CALENDAR_REVISION, {"principal_id": principal_id, "calendar_revision": secrets.randbits(62)})
    if stored.calendar is None or not components:
        if row_id is not None:
            session.execute(_DELETE, {"row_id": row_id})
            ids[(principal_id, uid)] = None
            if old_place is not None:
                collections.record_change(session, old_place.calendar_id, old_place.href, now, deleted=True)
        _keep_tombstone(session, principal_id, uid, stored.state, now)
        return
    tombstoned: set[tuple[int, str]] = session.info.setdefault(_TOMBSTONED, set())
    if (principal_id, uid) in tombstoned:
        session.execute(_DELETE_TOMB, {"principal_id": principal_id, "uid": uid})
        tombstoned.discard((principal_id, uid))
    new_place = place or old_place or _default_place(session, principal_id, uid, now)
    values, _times = _object_values(session, stored, now)
    values.update(calendar_id=new_place.calendar_id, href=new_place.href)
    if row_id is None:
        inserted = session.execute(_INSERT, {"principal_id": principal_id, "uid": uid, **values})
        row_id = inserted.scalar_one()
    else:
        session.execute(_UPDATE, {"row_id": row_id, **values})
    ids[(principal_id, uid)] = (row_id, new_place)
    if old_place is not None and old_place != new_place:
        collections.record_change(session, old_place.calendar_id, old_place.href, now, deleted=True)
    collections.record_change(session, new_place.calendar_id, new_place.href, now)


def _object_values(session: Session, stored: Stored, now: datetime) -> tuple[dict[str, object], ObjectTimes | None]:
    """The columns of one version of an object: its text, tags and the bounds of its occurrences.

    An object whose times cannot be read (a value no reader can use) gets no hull, so
    every time-range query reads it, and a Schedule-Tag that changes with every version.
    """
    assert stored.calendar is not None
    components = stored.components
    text = with_zone_definitions(serialize_calendar(stored.calendar), stored.calendar)
    caches_of(session).parsed.put(text, stored.calendar)
    revision = secrets.randbits(62)  # a new name for every version: what the times cache is keyed by
    try:
        times: ObjectTimes | None = read_times(stored.calendar)
        schedule_tag = schedule_tag_of(stored.calendar)
    except ValueError:
        times, schedule_tag = None, f"{revision:x}"
    hulled = times is not None and bool(times.events) and all(c.name == "VEVENT" for c in components)
    return {
        "component": components[0].name,
        "organizer": organizer_of(components[0]),
        "sequence": max(sequence_of(c) for c in components),
        "ical": text,
        "state": stored.state.to_json(),
        "updated_at": now,
        "revision": revision,
        "etag": f"{revision:x}",
        "schedule_tag": schedule_tag,
        "hull_start": times.start if hulled and times else None,
        "hull_end": times.end if hulled and times and times.end < FOREVER else None,
    }, times


def with_zone_definitions(text: str, calendar: Calendar) -> str:
    """The text with a VTIMEZONE for each zone it names, as a client reading it needs (RFC 5545 §3.2.19).

    Reading drops IANA zones' definitions again, so what is parsed stays the same.
    """
    defined = [str(tz.get("TZID", "")) for tz in timezones_of(calendar)]
    zones = zone_texts(components_of(calendar), defined)
    if not zones:
        return text
    head, sep, rest = text.partition("\r\nBEGIN:")
    return f"{head}\r\n{zones.rstrip()}{sep}{rest}" if sep else text


def _default_place(session: Session, principal_id: int, uid: str, now: datetime) -> Place:
    return Place(collections.default_calendar_id(session, principal_id, now), name_for_uid(uid))


def _keep_tombstone(session: Session, principal_id: int, uid: str, state: SchedulingState, now: datetime) -> None:
    """Remember the versions of a UID that has no object now; forget the principal's expired tombstones."""
    tombstoned: set[tuple[int, str]] = session.info.setdefault(_TOMBSTONED, set())
    keys = {"principal_id": principal_id, "uid": uid}
    if (principal_id, uid) in tombstoned:
        session.execute(_DELETE_TOMB, keys)
        tombstoned.discard((principal_id, uid))
    session.execute(_PRUNE_TOMBS, {"principal_id": principal_id, "now": now})
    if state.is_empty:
        return
    session.execute(insert(_TOMBS), {**keys, "state": state.to_json(), "kept_until": now + TOMBSTONE_LIFETIME})
    tombstoned.add((principal_id, uid))


def times_of(session: Session, row_id: int, revision: int, text: str) -> ObjectTimes | None:
    """The times of one version of an object, kept by (row, revision); None when they cannot be read."""
    caches = caches_of(session)
    times = caches.times.get((row_id, revision))
    if times is None:
        try:
            times = read_times(caches.parse(text))
        except ValueError:
            return None
        caches.times.put((row_id, revision), times)
    return times


def load_times(session: Session, principal_id: int, *, except_uid: str | None = None) -> list[ObjectTimes]:
    """The times of every object of a principal (for free/busy), optionally without one UID.

    What ``read_times`` makes of each object is kept by the row's revision, and a
    principal's whole list by its calendar revision: a calendar asked about again is
    neither read, nor parsed, nor expanded again unless it changed.
    """
    revision = session.scalar(_CALENDAR_REVISION, {"principal_id": principal_id})
    caches = caches_of(session)
    cached = caches.calendar_times.get(principal_id)
    if cached is None or cached[0] != revision:
        cached = (revision, _read_times(session, principal_id))
        caches.calendar_times.put(principal_id, cached)
    return [times for uid, times in cached[1] if uid != except_uid]


def _read_times(session: Session, principal_id: int) -> list[tuple[str, ObjectTimes]]:
    rows = session.execute(select(_TABLE.c.id, _TABLE.c.uid, _TABLE.c.revision).where(
        _TABLE.c.principal_id == principal_id)).all()
    caches = caches_of(session)
    found = {(row.id, row.revision): caches.times.get((row.id, row.revision)) for row in rows}
    missing = [key for key, times in found.items() if times is None]
    for chunk in range(0, len(missing), 500):
        wanted = dict(missing[chunk:chunk + 500])
        texts = select(_TABLE.c.id, _TABLE.c.revision, _TABLE.c.ical).where(_TABLE.c.id.in_(wanted))
        for row in session.execute(texts):
            times = read_times(caches.parse(row.ical))
            caches.times.put((row.id, row.revision), times)
            found[(row.id, row.revision)] = times
    return [(row.uid, times) for row in rows if (times := found[(row.id, row.revision)]) is not None]


def known_organizers(session: Session, principal_id: int, addresses: Iterable[str]) -> frozenset[str]:
    """Which of the addresses organize an object in the principal's calendar, in one query."""
    wanted = sorted(set(addresses))
    if not wanted:
        return frozenset()
    return frozenset(session.scalars(_ORGANIZERS, {"principal_id": principal_id, "addresses": wanted}))


def list_objects(session: Session, principal_id: int, uid: str | None = None) -> list[str]:
    """The principal's stored objects as iCalendar texts, by UID."""
    query = select(CalendarObject.ical).where(CalendarObject.principal_id == principal_id)
    if uid is not None:
        query = query.where(CalendarObject.uid == uid)
    return list(session.scalars(query.order_by(CalendarObject.uid)))

