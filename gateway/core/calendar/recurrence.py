"""Recurrence expansion of stored objects: each VEVENT's times and instances, in UTC. Knows nothing of busy time.

Recurrences are expanded in the wall-clock time of each event's own zone (RFC 5545
§3.8.5), fast enough to scan a whole calendar per request; ``read_times`` is the part of
the work a store can keep with each parsed object. The rules themselves are
``gateway.core.calendar.rrules``. Reads no clock, stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, TypeVar, cast

from icalendar import Calendar, Component

from gateway.core.calendar.ical import dt_value, uid_of
from gateway.core.calendar.instances import (
    date_values,
    instance_key,
    recurrence_id_of,
    recurrence_key_of,
    rrules_of,
)
from gateway.core.calendar.rrules import (
    MAX_COUNT,
    MAX_INSTANCES,
    GeneralRule,
    Periodic,
    Stepped,
    count_of,
    expansion_refusal,
    rule_of,
)
from gateway.core.checkpoint import checkpoint

_ZERO = timedelta(0)
_DAY = timedelta(days=1)
_SLACK = timedelta(hours=3)  # around a wall-clock bound, so that no DST change can cut an instance off
_YEAR = timedelta(days=365)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)  # the end of an endless series

MAX_DATES = 1_000  # RDATE or EXDATE values of one component
MAX_PER_YEAR = 1_100  # instances of one rule in its first year: three a day, every day (1,095) and no more
TOO_MANY_INSTANCES = "too-many-instances"
UNSUPPORTED_RECURRENCE = "unsupported-recurrence"

Span = tuple[datetime, datetime]  # aware UTC start and end, the working form of a period
Found = tuple[datetime, datetime, datetime | None]  # a span and, for a master's instance, its wall-clock start
_T = TypeVar("_T")


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of an object: its instance key, aware UTC times and the component it comes from."""

    key: str
    start: datetime
    end: datetime
    component: Component = field(compare=False, repr=False)


# --- the times of a stored object -------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A master's recurrence set in wall-clock time of ``zone``: DTSTART, RRULEs and RDATEs,
    less the instances EXDATE removes or an override replaces."""

    first: datetime
    zone: tzinfo
    length: timedelta
    rules: tuple[Periodic | Stepped | GeneralRule, ...]
    rdates: tuple[datetime, ...] = ()
    replaced: frozenset[datetime] = frozenset()

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        """Wall-clock starts in [lo, hi], in order: at most ``MAX_INSTANCES`` of them."""
        checkpoint()
        if len(self.rules) == 1 and not self.rdates:
            found = self.rules[0].starts(lo, hi)
            if lo <= self.first <= hi and (not found or found[0] != self.first):
                found.insert(0, self.first)  # DTSTART is always an instance (RFC 5545 §3.8.5.3)
        else:
            every = {s for rule in self.rules for s in rule.starts(lo, hi)}
            every.update(s for s in (self.first, *self.rdates) if lo <= s <= hi)
            found = sorted(every)[:MAX_INSTANCES]
        return [s for s in found if s not in self.replaced] if self.replaced else found

    def last_start(self) -> datetime | None:
        """The latest wall-clock start of any instance, or None for an endless series."""
        lasts = [rule.last_start() for rule in self.rules]
        if None in lasts:
            return None
        return max([self.first, *self.rdates, *(s for s in lasts if s is not None)])


@dataclass(frozen=True)
class TimedEvent:
    """One VEVENT's times, read once: UTC bounds of all its occurrences and, for a master, its series.

    ``verdicts`` remembers, per owner, what ``judged`` was told about the component
    (free/busy's FBTYPE, its one judge), so that a kept index answers it once.
    """

    component: Component = field(compare=False, repr=False)
    start: datetime
    end: datetime
    series: Series | None = None
    verdicts: dict[frozenset[str], object] = field(default_factory=dict, compare=False, repr=False)

    def judged(self, owner: frozenset[str], judge: Callable[[Component, frozenset[str]], _T]) -> _T:
        """``judge(component, owner)``, worked out once per owner."""
        if owner not in self.verdicts:
            self.verdicts[owner] = judge(self.component, owner)
        return cast(_T, self.verdicts[owner])


@dataclass(frozen=True)
class ObjectTimes:
    """The times of one stored object (one UID): what free/busy needs from it, without its text."""

    events: tuple[TimedEvent, ...]
    start: datetime
    end: datetime


def read_times(calendar: Calendar, default_zone: tzinfo = UTC) -> ObjectTimes:
    """Read the VEVENT times of one object; floating times and dates are read in ``default_zone``.

    A store may keep the result with the parsed object and pass it to ``busy_periods``.
    A calendar holding several UIDs is read as that many objects.
    """
    lone = lone_event(calendar)
    if lone is not None:
        return _object_times((event,) if (event := _timed_single(lone, default_zone)) is not None else ())
    masters: list[Component] = []
    overrides: list[Component] = []
    for component in calendar.subcomponents:
        if component.name == "VEVENT":
            (overrides if property_of(component, "RECURRENCE-ID") is not None else masters).append(component)
    if len(masters) > 1:
        return _read_several(masters, overrides, default_zone)
    events = [_timed_master(masters[0], overrides, default_zone)] if masters else []
    events.extend(_timed_single(o, default_zone) for o in overrides)
    return _object_times(tuple(e for e in events if e is not None))


def lone_event(calendar: Calendar) -> Component | None:
    """The VEVENT of an object that is one event and nothing else (no recurrence, no override)."""
    if len(calendar.subcomponents) != 1:
        return None
    event = calendar.subcomponents[0]
    if event.name != "VEVENT" or property_of(event, "RECURRENCE-ID") is not None or _recurs(event):
        return None
    return event


def _read_several(masters: list[Component], overrides: list[Component], zone: tzinfo) -> ObjectTimes:
    events: list[TimedEvent | None] = []
    for uid in dict.fromkeys(uid_of(m) for m in masters):
        own = [o for o in overrides if uid_of(o) == uid]
        events.append(_timed_master(next(m for m in masters if uid_of(m) == uid), own, zone))
    events.extend(_timed_single(o, zone) for o in overrides)
    return _object_times(tuple(e for e in events if e is not None))


def _object_times(kept: tuple[TimedEvent, ...]) -> ObjectTimes:
    if len(kept) == 1:
        return ObjectTimes(kept, kept[0].start, kept[0].end)
    if not kept:
        return ObjectTimes((), FOREVER, FOREVER)
    return ObjectTimes(kept, min(e.start for e in kept), max(e.end for e in kept))


def _timed_single(component: Component, zone: tzinfo) -> TimedEvent | None:
    span = span_of(component, zone)
    if span is None or span[1] <= span[0]:
        return None
    return TimedEvent(component, *span)


def _timed_master(master: Component, overrides: list[Component], zone: tzinfo) -> TimedEvent | None:
    if not _recurs(master):
        single = _timed_single(master, zone)
        if single is None or not overrides:
            return single
        tz = _zone_of(master, zone)
        return None if _local(single.start, tz) in _replaced(master, overrides, tz) else single
    timing = _timing(master, zone)
    if timing is None or timing[2] <= _ZERO:
        return None
    first, tz, length = timing
    rules = tuple(r for r in (rule_of(v, first, tz) for v in rrules_of(master)) if r is not None)
    rdates = tuple(_local(v, tz) for v in date_values(master, "RDATE"))
    series = Series(first, tz, length, rules, rdates, _replaced(master, overrides, tz))
    last = series.last_start()
    end = _to_utc(last + length, tz) if last is not None else FOREVER
    return TimedEvent(master, _to_utc(min([first, *rdates]), tz), end, series)


def _replaced(master: Component, overrides: list[Component], tz: tzinfo) -> frozenset[datetime]:
    """Wall-clock starts in ``tz`` of the instances EXDATE removes or an override replaces.

    A RECURRENCE-ID written in another zone, or in UTC, finds its instance (INTEROP rule 14).
    """
    values = [*date_values(master, "EXDATE"), *(v for v in map(recurrence_id_of, overrides) if v is not None)]
    return frozenset(_local(v, tz) for v in values)


# --- limits ---------------------------------------------------------------------------------


def recurrence_limit(component: Component) -> tuple[str, str] | None:
    """The named reason and a detail when a component's recurrence is more than Reefknot expands; None within limits.

    ``unsupported-recurrence``: a sub-daily rule with BY parts. ``too-many-instances``: more
    than ``MAX_DATES`` RDATE or EXDATE values, a COUNT above ``MAX_COUNT``, or a rule with
    more than ``MAX_PER_YEAR`` instances in its first year.
    """
    for name in ("RDATE", "EXDATE"):
        values = sum(1 for _ in date_values(component, name))
        if values > MAX_DATES:
            return TOO_MANY_INSTANCES, f"{values} {name} values, more than {MAX_DATES:,}"
    recurs = rrules_of(component)
    timing = _timing(component, UTC) if recurs else None
    for recur in recurs:
        refusal = expansion_refusal(recur)
        if refusal:
            return UNSUPPORTED_RECURRENCE, f"{refusal}: a sub-daily rule may not filter by BY parts"
        count = count_of(recur)
        if count is not None and count > MAX_COUNT:
            return TOO_MANY_INSTANCES, f"RRULE COUNT={count}, more than {MAX_COUNT:,}"
        if timing is None:
            continue
        first, zone, _length = timing
        rule = rule_of(recur, first, zone)
        if rule is not None and len(rule.starts(first, first + _YEAR)) > MAX_PER_YEAR:
            return TOO_MANY_INSTANCES, f"RRULE {_rule_text(recur)}: more than {MAX_PER_YEAR:,} instances in a year"
    return None


def _rule_text(recur: Any) -> str:
    return str(recur.to_ical().decode())[:200]


# --- occurrences ----------------------------------------------------------------------------


def occurrences(calendar: Calendar, start: datetime, end: datetime, default_zone: tzinfo = UTC) -> list[Occurrence]:
    """The occurrences of one object's VEVENTs that overlap [start, end), in time order.

    A recurring master gives its instances less EXDATEs and the instances its overrides
    replace; each override gives its own time, wherever it moved.
    """
    found = []
    for event, _same, items in object_spans(read_times(calendar, default_zone), utc(start), utc(end), _itself):
        for begin, finish, local in items:
            key = recurrence_key_of(event.component) if local is None else _instance_key(event.component, begin, local)
            found.append(Occurrence(key, begin, finish, event.component))
    return sorted(found, key=lambda o: (o.start, o.key))


def occurrence_of(component: Component, default_zone: tzinfo = UTC) -> Occurrence | None:
    """A component's own occurrence (the first, for a recurring master), or None without a start."""
    span = span_of(component, default_zone)
    return Occurrence(recurrence_key_of(component), *span, component) if span is not None else None


def _itself(event: TimedEvent) -> TimedEvent:
    return event


def _instance_key(master: Component, begin: datetime, local: datetime) -> str:
    """The key of a master's instance, from the RECURRENCE-ID it has: DTSTART's value type and zone."""
    value = dt_value(property_of(master, "DTSTART"))
    if not isinstance(value, datetime):
        return instance_key(local.date())
    return instance_key(local if value.tzinfo is None else begin)


def object_spans(
    times: ObjectTimes, lo: datetime, hi: datetime, judge: Callable[[TimedEvent], _T | None]
) -> list[tuple[TimedEvent, _T, list[Found]]]:
    """Each event of one object that ``judge`` tags, with its spans overlapping [lo, hi).

    An event is judged only when its bounds touch the window, and before it is expanded.
    """
    found: list[tuple[TimedEvent, _T, list[Found]]] = []
    for event in times.events:
        if event.start >= hi or event.end <= lo:
            continue
        tag = judge(event)
        if tag is None:
            continue
        spans: list[Found] = [(event.start, event.end, None)]
        if event.series is not None:
            spans = _series_spans(event.series, lo, hi)
        if spans:
            found.append((event, tag, spans))
    return found


def _series_spans(series: Series, lo: datetime, hi: datetime) -> list[Found]:
    """A series' instances overlapping [lo, hi) as UTC spans with their wall-clock starts."""
    tz, length = series.zone, series.length
    starts = series.starts(_local(lo, tz) - length - _SLACK, _local(hi, tz) + _SLACK)
    offset, zero, epoch, epoch_utc = tz.utcoffset, _ZERO, _EPOCH, _EPOCH_UTC
    begins = [epoch_utc + (s - epoch - (offset(s) or zero)) for s in starts]
    ends = [epoch_utc + (e - epoch - (offset(e) or zero)) for e in [s + length for s in starts]]
    return [(b, f, s) for b, f, s in zip(begins, ends, starts, strict=True) if f > lo and b < hi]


# --- reading times --------------------------------------------------------------------------


def span_of(component: Component, zone: tzinfo) -> Span | None:
    """A component's own start and end in UTC; the common case (two aware times) read directly."""
    start = dt_value(property_of(component, "DTSTART"))
    if isinstance(start, datetime) and start.tzinfo is not None:
        end = dt_value(property_of(component, "DTEND"))
        if isinstance(end, datetime) and end.tzinfo is not None:
            return start.astimezone(UTC), end.astimezone(UTC)
    timing = _timing(component, zone)
    if timing is None:
        return None
    local, tz, length = timing
    return _to_utc(local, tz), _to_utc(local + length, tz)


def _timing(component: Component, zone: tzinfo) -> tuple[datetime, tzinfo, timedelta] | None:
    """Wall-clock start, its zone, and the wall-clock length of one occurrence (RFC 5545 §3.6.1)."""
    start = dt_value(property_of(component, "DTSTART")) or dt_value(property_of(component, "RECURRENCE-ID"))
    if not isinstance(start, (datetime, date)):
        return None
    tz = (start.tzinfo or zone) if isinstance(start, datetime) else zone
    local = _local(start, tz)
    end = dt_value(property_of(component, "DTEND"))
    if isinstance(end, (datetime, date)) and isinstance(end, datetime) == isinstance(start, datetime):
        return local, tz, _local(end, tz) - local
    duration = dt_value(property_of(component, "DURATION"))
    if isinstance(duration, timedelta):
        return local, tz, duration
    return local, tz, _ZERO if isinstance(start, datetime) else _DAY


def _zone_of(component: Component, zone: tzinfo) -> tzinfo:
    start = dt_value(property_of(component, "DTSTART"))
    return (start.tzinfo or zone) if isinstance(start, datetime) else zone


def _recurs(component: Component) -> bool:
    """``has_recurrence``, through the plain dict lookup."""
    return property_of(component, "RRULE") is not None or property_of(component, "RDATE") is not None


def property_of(component: Component, name: str) -> Any:
    """A property by its upper-case name: icalendar stores names upper-cased, and the plain
    dict lookup skips the case folding of ``Component.get``, which dominates a calendar scan."""
    return dict.get(component, name)


def _local(value: datetime | date, tz: tzinfo) -> datetime:
    """A value as naive wall-clock time in ``tz``: aware ones converted, floating ones and dates as they are."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value
        if value.tzinfo is not tz:
            value = value.astimezone(tz)
        return datetime.combine(value.date(), value.time())  # several times faster than replace()
    return datetime(value.year, value.month, value.day)


def _to_utc(local: datetime, tz: tzinfo) -> datetime:
    """Naive wall-clock time in ``tz`` as aware UTC (the earlier reading of an ambiguous time)."""
    return _EPOCH_UTC + (local - _EPOCH - (tz.utcoffset(local) or _ZERO))


def instant_of(value: datetime | date, tz: tzinfo) -> datetime:
    """Any date or date-time as aware UTC; floating times and dates are read in ``tz``."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return _to_utc(_local(value, tz), tz)


def utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is a caller's bug."""
    if value.tzinfo is None:
        raise ValueError("free/busy times must be timezone-aware")
    return value.astimezone(UTC)
