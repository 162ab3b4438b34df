"""What one database handle remembers between transactions: parsed objects, their times, directory answers.

Each ``gateway.store.db.Database`` owns one ``StoreCaches`` and hands it to its sessions
(``caches_of``); two handles, even on one URL, share nothing, and a session made outside
a handle gets caches of its own. Every entry is keyed by what it was made from (an
object's exact text, a row's revision, the directory's revision), so a stale entry is
never found, only forgotten. The worker threads of one process share the caches: each
one locks around its own bookkeeping.

The parsed calendars handed out are shared and read-only: the core never changes a
calendar it is given, and an edit works on a copy (``gateway.core.calendar.ical.copy_calendar``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.ical import parse_calendar
from gateway.core.calendar.recurrence import ObjectTimes

class _Identified(Protocol):
    @property
    def id(self) -> int: ...


K = TypeVar("K")
V = TypeVar("V")
P = TypeVar("P", bound=_Identified)
PARSED_SIZE = 4096
# objects' times for free/busy, filled by reads only: each keeps its parsed components alive
# (TimedEvent.component), so a write that filled it would keep every message's calendar
TIMES_SIZE = 50_000
CALENDAR_TIMES_SIZE = 256  # principals whose whole list of times is kept
ANSWERS_SIZE = 32  # report answers kept; one initial sync of a 10,000-object calendar is about 1.5 MB
EXPANDED_SIZE = 20_000  # expanded objects kept: a year of months of a 1,000-series calendar, about 20 MB
CACHES = "reefknot.caches"  # session.info: the handle's caches


class Recent(Generic[K, V]):
    """The ``size`` most recently used entries, safe to share between threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class MadeOnce(Generic[K, V]):
    """A ``Recent`` whose missing entry is made by one thread while the others asking for it wait for that one."""

    def __init__(self, size: int) -> None:
        self.recent: Recent[K, V] = Recent(size)
        self._making: dict[K, threading.Event] = {}
        self._lock = threading.Lock()

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        value = self.recent.get(key)
        if value is not None:
            return value
        with self._lock:
            underway = self._making.get(key)
            if underway is None:
                self._making[key] = threading.Event()
        if underway is not None:
            underway.wait()
            value = self.recent.get(key)
            return value if value is not None else make()  # the maker failed: make it here
        try:
            value = make()
            self.recent.put(key, value)
            return value
        finally:
            with self._lock:
                self._making.pop(key).set()


@dataclass
class DirectoryAnswers(Generic[P]):
    """Answers about the directory as it stood at one revision (None: private to one transaction that changed it)."""

    revision: int | None
    by_address: dict[str, P | None] = field(default_factory=dict)
    by_id: dict[int, P] = field(default_factory=dict)
    limit: int = 100_000  # answers kept (most are for outside addresses); beyond it they start over

    def remember(self, found: dict[str, P | None]) -> None:
        if len(self.by_address) + len(found) > self.limit:
            self.by_address.clear()
        self.by_address.update(found)
        self.by_id.update((ref.id, ref) for ref in found.values() if ref is not None)


class StoreCaches:
    """The caches of one database handle."""

    def __init__(self) -> None:
        self.parsed: Recent[str, Calendar] = Recent(PARSED_SIZE)  # by the object's exact text
        self.times: Recent[tuple[int, int], ObjectTimes] = Recent(TIMES_SIZE)  # by (row id, revision)
        # by principal: (its calendar revision, the (UID, times) of every object)
        self.calendar_times: Recent[int, tuple[int | None, list[tuple[str, ObjectTimes]]]] = Recent(CALENDAR_TIMES_SIZE)
        self.directory: DirectoryAnswers[Any] = DirectoryAnswers(revision=None)  # of gateway.store.directory
        # CalDAV report answers, by the calendar's change count and the question: 20 clients syncing at once
        # an unchanged calendar share one answer
        self.answers: MadeOnce[tuple[Any, ...], Any] = MadeOnce(ANSWERS_SIZE)
        # one object's expanded calendar-data for one range, by (row id, revision, range): a changed object
        # is expanded again, the rest of the calendar is not
        self.expanded: Recent[tuple[int, int, Any], str] = Recent(EXPANDED_SIZE)

    def parse(self, text: str) -> Calendar:
        """The object a text holds, parsed once for every later load of the same text."""
        return self.parsed.get_or_make(text, lambda: parse_calendar(text))


def caches_of(session: Session) -> StoreCaches:
    """The caches of the handle that made the session; a session made elsewhere gets its own."""
    caches = session.info.get(CACHES)
    if caches is None:
        caches = session.info[CACHES] = StoreCaches()
    return caches
