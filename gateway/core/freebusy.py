"""Free/busy time of one principal from its stored objects, and the VFREEBUSY that carries it.

Busy time follows RFC 4791 §7.10 and RFC 6638 §3.2: transparent and cancelled
occurrences are free, tentative ones and those the principal has not answered are
BUSY-TENTATIVE, and declined ones are free. The reply to a free/busy request is RFC 5546
§3.3.2. Recurrences are expanded in the wall-clock time of each event's own zone, fast
enough to scan a whole calendar per request; ``read_times`` is the part of the work a
store can keep with each parsed object. Reads no clock, stores nothing.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from itertools import accumulate, repeat
from operator import itemgetter
from typing import Any, TypeVar, cast

from dateutil.rrule import rrule, rrulestr
from icalendar import Calendar, Component, FreeBusy, vCalAddress, vPeriod, vRecur

from gateway.core.addresses import as_uri, normalize_address
from gateway.core.ical import (
    attendees_of,
    components_of,
    dt_value,
    new_calendar,
    organizer_of,
    partstat_of,
    uid_of,
)
from gateway.core.instances import (
    date_values,
    instance_key,
    recurrence_id_of,
    recurrence_key_of,
    rrules_of,
)
from gateway.core.model import NamedError, PartStat

_ZERO = timedelta(0)
_DAY = timedelta(days=1)
_SLACK = timedelta(hours=3)  # around a wall-clock bound, so that no DST change can cut an instance off
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_FOREVER = datetime(9999, 1, 1, tzinfo=UTC)  # the end of an endless series
_MAX_EXPANDED_COUNT = 5000  # a COUNT series longer than this is treated as endless when finding its end
_WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_SIMPLE_RULE_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST"})
_FREE_ANSWERS = frozenset({PartStat.DECLINED, PartStat.DELEGATED})
_BUSY_ANSWERS = frozenset({PartStat.ACCEPTED, PartStat.COMPLETED, PartStat.IN_PROCESS})

Span = tuple[datetime, datetime]  # aware UTC start and end, the working form of a period
Found = tuple[datetime, datetime, datetime | None]  # a span and, for a master's instance, its wall-clock start
_T = TypeVar("_T")


class FbType(StrEnum):
    """Free/busy time types (RFC 5545 §3.2.9), strongest first."""

    BUSY = "BUSY"
    BUSY_UNAVAILABLE = "BUSY-UNAVAILABLE"
    BUSY_TENTATIVE = "BUSY-TENTATIVE"


class FreeBusyError(NamedError):
    """A free/busy request that cannot be answered."""


@dataclass(frozen=True)
class BusyPeriod:
    """One busy period: aware UTC start and end, and its FBTYPE."""

    start: datetime
    end: datetime
    fbtype: str = FbType.BUSY


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of an object: its instance key, aware UTC times and the component it comes from."""

    key: str
    start: datetime
    end: datetime
    component: Component = field(compare=False, repr=False)


@dataclass(frozen=True)
class FreeBusyRequest:
    """What a VFREEBUSY REQUEST asks (RFC 5546 §3.3.1): whose busy time, in which UTC window."""

    organizer: str
    attendees: tuple[str, ...]
    start: datetime
    end: datetime
    uid: str | None = None


# --- the times of a stored object -------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A master's recurrence set in wall-clock time of ``zone``: DTSTART, RRULEs and RDATEs,
    less the instances EXDATE removes or an override replaces."""

    first: datetime
    zone: tzinfo
    length: timedelta
    rules: tuple[Periodic | GeneralRule, ...]
    rdates: tuple[datetime, ...] = ()
    replaced: frozenset[datetime] = frozenset()

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        """Wall-clock starts in [lo, hi], in order."""
        if len(self.rules) == 1 and not self.rdates:
            found = self.rules[0].starts(lo, hi)
            if lo <= self.first <= hi and (not found or found[0] != self.first):
                found.insert(0, self.first)  # DTSTART is always an instance (RFC 5545 §3.8.5.3)
        else:
            every = {s for rule in self.rules for s in rule.starts(lo, hi)}
            every.update(s for s in (self.first, *self.rdates) if lo <= s <= hi)
            found = sorted(every)
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

    ``fbtypes`` remembers ``fbtype_of`` per owner, so that a kept index answers it once.
    """

    component: Component = field(compare=False, repr=False)
    start: datetime
    end: datetime
    series: Series | None = None
    fbtypes: dict[frozenset[str], FbType | None] = field(default_factory=dict, compare=False, repr=False)

    def fbtype_for(self, owner: frozenset[str]) -> FbType | None:
        if owner not in self.fbtypes:
            self.fbtypes[owner] = fbtype_of(self.component, owner)
        return self.fbtypes[owner]


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
    lone = _lone_event(calendar)
    if lone is not None:
        return _object_times((event,) if (event := _timed_single(lone, default_zone)) is not None else ())
    masters: list[Component] = []
    overrides: list[Component] = []
    for component in calendar.subcomponents:
        if component.name == "VEVENT":
            (overrides if _prop(component, "RECURRENCE-ID") is not None else masters).append(component)
    if len(masters) > 1:
        return _read_several(masters, overrides, default_zone)
    events = [_timed_master(masters[0], overrides, default_zone)] if masters else []
    events.extend(_timed_single(o, default_zone) for o in overrides)
    return _object_times(tuple(e for e in events if e is not None))


def _lone_event(calendar: Calendar) -> Component | None:
    """The VEVENT of an object that is one event and nothing else (no recurrence, no override)."""
    if len(calendar.subcomponents) != 1:
        return None
    event = calendar.subcomponents[0]
    if event.name != "VEVENT" or _prop(event, "RECURRENCE-ID") is not None or _recurs(event):
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
        return ObjectTimes((), _FOREVER, _FOREVER)
    return ObjectTimes(kept, min(e.start for e in kept), max(e.end for e in kept))


def _timed_single(component: Component, zone: tzinfo) -> TimedEvent | None:
    span = _span_of(component, zone)
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
    rules = tuple(r for r in (_rule_of(v, first, tz) for v in rrules_of(master)) if r is not None)
    rdates = tuple(_local(v, tz) for v in date_values(master, "RDATE"))
    series = Series(first, tz, length, rules, rdates, _replaced(master, overrides, tz))
    last = series.last_start()
    end = _to_utc(last + length, tz) if last is not None else _FOREVER
    return TimedEvent(master, _to_utc(min([first, *rdates]), tz), end, series)


def _replaced(master: Component, overrides: list[Component], tz: tzinfo) -> frozenset[datetime]:
    """Wall-clock starts in ``tz`` of the instances EXDATE removes or an override replaces.

    A RECURRENCE-ID written in another zone, or in UTC, finds its instance (INTEROP rule 14).
    """
    values = [*date_values(master, "EXDATE"), *(v for v in map(recurrence_id_of, overrides) if v is not None)]
    return frozenset(_local(v, tz) for v in values)


# --- busy time ----------------------------------------------------------------------------


def busy_periods(
    calendars: Iterable[Calendar | ObjectTimes],
    owner: frozenset[str],
    start: datetime,
    end: datetime,
    default_zone: tzinfo = UTC,
) -> list[BusyPeriod]:
    """The busy time of the principal known by ``owner`` in [start, end), merged and clipped.

    Each item is one stored object (one UID), parsed or already read by ``read_times``.
    Floating times and dates of parsed objects are read in ``default_zone`` (kept times
    were read in theirs); VTODO and VJOURNAL take no time.
    """
    lo, hi = utc(start), utc(end)
    spans: dict[FbType, list[Found]] = {kind: [] for kind in FbType}
    for item in calendars:
        lone = _lone_event(item) if isinstance(item, Calendar) else None
        if lone is not None:  # most objects: judged straight from the parsed event, nothing kept
            span = _span_of(lone, default_zone)
            kind = fbtype_of(lone, owner) if span is not None and span[0] < hi and span[1] > lo else None
            if span is not None and kind is not None:
                spans[kind].append((*span, None))
            continue
        times = item if isinstance(item, ObjectTimes) else read_times(item, default_zone)
        if times.start < hi and times.end > lo:
            for _event, kind, found in _object_spans(times, lo, hi, lambda e: e.fbtype_for(owner)):
                spans[kind].extend(found)
    return _periods(_resolve(spans), lo, hi)


def fbtype_of(component: Component, owner: frozenset[str]) -> FbType | None:
    """How an occurrence of the component keeps the owner busy; None when it leaves it free."""
    status = _upper(component, "STATUS")
    if status == "CANCELLED" or _upper(component, "TRANSP") == "TRANSPARENT":
        return None
    answer = _answer_of(component, owner)
    if answer in _FREE_ANSWERS:
        return None
    if status == "TENTATIVE":
        return FbType.BUSY_TENTATIVE
    if answer is None or answer in _BUSY_ANSWERS or organizer_of(component) in owner:
        return FbType.BUSY
    return FbType.BUSY_TENTATIVE  # NEEDS-ACTION, TENTATIVE, or a PARTSTAT nobody knows


def _answer_of(component: Component, owner: frozenset[str]) -> str | None:
    endings = tuple(owner)
    value = _prop(component, "ATTENDEE")
    for prop in value if isinstance(value, list) else [value] if value is not None else []:
        # a cheap test first: normalizing every attendee of every event would dominate a scan
        if str(prop).strip(" <>").lower().endswith(endings) and normalize_address(prop) in owner:
            return partstat_of(prop)
    return None


def _upper(component: Component, name: str) -> str:
    value = _prop(component, name)
    return str(value).strip().upper() if value is not None else ""


def merge_periods(periods: Iterable[BusyPeriod]) -> list[BusyPeriod]:
    """Periods merged by type, the strongest type winning where they overlap (several principals at once)."""
    spans: dict[FbType, list[Found]] = {kind: [] for kind in FbType}
    for period in periods:
        spans[FbType(period.fbtype)].append((utc(period.start), utc(period.end), None))
    return _periods(_resolve(spans))


def _resolve(spans: dict[FbType, list[Found]]) -> list[tuple[Span, FbType]]:
    """Each type's spans merged, minus the time a stronger type already covers, in time order."""
    found: list[tuple[Span, FbType]] = []
    stronger: list[Span] = []
    for kind in FbType:
        merged = _merge(spans[kind])
        found.extend((span, kind) for span in _subtract(merged, stronger))
        stronger = _merge([*stronger, *merged])
    return sorted(found, key=itemgetter(0))


def _merge(spans: Sequence[Span | Found]) -> list[Span]:
    """Overlapping and touching spans joined; empty spans dropped."""
    merged: list[Span] = []
    begin = finish = None
    for item in sorted(spans, key=itemgetter(0)):
        if item[1] <= item[0]:
            continue
        if finish is not None and item[0] <= finish:
            finish = max(finish, item[1])
            continue
        if begin is not None and finish is not None:
            merged.append((begin, finish))
        begin, finish = item[0], item[1]
    if begin is not None and finish is not None:
        merged.append((begin, finish))
    return merged


def _subtract(spans: list[Span], cuts: list[Span]) -> list[Span]:
    """The parts of merged ``spans`` outside merged ``cuts``."""
    left: list[Span] = []
    index = 0
    for begin, finish in spans:
        while index < len(cuts) and cuts[index][1] <= begin:
            index += 1
        probe = index
        while probe < len(cuts) and cuts[probe][0] < finish:
            if cuts[probe][0] > begin:
                left.append((begin, cuts[probe][0]))
            begin = max(begin, cuts[probe][1])
            probe += 1
        if begin < finish:
            left.append((begin, finish))
    return left


def _periods(
    found: list[tuple[Span, FbType]], lo: datetime | None = None, hi: datetime | None = None
) -> list[BusyPeriod]:
    """The merged spans as periods, clipped to [lo, hi) when given."""
    return [BusyPeriod(max(b, lo) if lo else b, min(f, hi) if hi else f, kind) for (b, f), kind in found]


# --- occurrences ----------------------------------------------------------------------------


def occurrences(calendar: Calendar, start: datetime, end: datetime, default_zone: tzinfo = UTC) -> list[Occurrence]:
    """The occurrences of one object's VEVENTs that overlap [start, end), in time order.

    A recurring master gives its instances less EXDATEs and the instances its overrides
    replace; each override gives its own time, wherever it moved.
    """
    found = []
    for event, _same, items in _object_spans(read_times(calendar, default_zone), utc(start), utc(end), _itself):
        for begin, finish, local in items:
            key = recurrence_key_of(event.component) if local is None else _instance_key(event.component, begin, local)
            found.append(Occurrence(key, begin, finish, event.component))
    return sorted(found, key=lambda o: (o.start, o.key))


def occurrence_of(component: Component, default_zone: tzinfo = UTC) -> Occurrence | None:
    """A component's own occurrence (the first, for a recurring master), or None without a start."""
    span = _span_of(component, default_zone)
    return Occurrence(recurrence_key_of(component), *span, component) if span is not None else None


def _itself(event: TimedEvent) -> TimedEvent:
    return event


def _instance_key(master: Component, begin: datetime, local: datetime) -> str:
    """The key of a master's instance, from the RECURRENCE-ID it has: DTSTART's value type and zone."""
    value = dt_value(_prop(master, "DTSTART"))
    if not isinstance(value, datetime):
        return instance_key(local.date())
    return instance_key(local if value.tzinfo is None else begin)


def _object_spans(
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


def _span_of(component: Component, zone: tzinfo) -> Span | None:
    """A component's own start and end in UTC; the common case (two aware times) read directly."""
    start = dt_value(_prop(component, "DTSTART"))
    if isinstance(start, datetime) and start.tzinfo is not None:
        end = dt_value(_prop(component, "DTEND"))
        if isinstance(end, datetime) and end.tzinfo is not None:
            return start.astimezone(UTC), end.astimezone(UTC)
    timing = _timing(component, zone)
    if timing is None:
        return None
    local, tz, length = timing
    return _to_utc(local, tz), _to_utc(local + length, tz)


def _timing(component: Component, zone: tzinfo) -> tuple[datetime, tzinfo, timedelta] | None:
    """Wall-clock start, its zone, and the wall-clock length of one occurrence (RFC 5545 §3.6.1)."""
    start = dt_value(_prop(component, "DTSTART")) or dt_value(_prop(component, "RECURRENCE-ID"))
    if not isinstance(start, (datetime, date)):
        return None
    tz = (start.tzinfo or zone) if isinstance(start, datetime) else zone
    local = _local(start, tz)
    end = dt_value(_prop(component, "DTEND"))
    if isinstance(end, (datetime, date)) and isinstance(end, datetime) == isinstance(start, datetime):
        return local, tz, _local(end, tz) - local
    duration = dt_value(_prop(component, "DURATION"))
    if isinstance(duration, timedelta):
        return local, tz, duration
    return local, tz, _ZERO if isinstance(start, datetime) else _DAY


def _zone_of(component: Component, zone: tzinfo) -> tzinfo:
    start = dt_value(_prop(component, "DTSTART"))
    return (start.tzinfo or zone) if isinstance(start, datetime) else zone


def _recurs(component: Component) -> bool:
    """``has_recurrence``, through the plain dict lookup."""
    return _prop(component, "RRULE") is not None or _prop(component, "RDATE") is not None


def _prop(component: Component, name: str) -> Any:
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


def _instant(value: datetime | date, tz: tzinfo) -> datetime:
    """Any date or date-time as aware UTC; floating times and dates are read in ``tz``."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return _to_utc(_local(value, tz), tz)


def utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is a caller's bug."""
    if value.tzinfo is None:
        raise ValueError("free/busy times must be timezone-aware")
    return value.astimezone(UTC)


# --- recurrence rules -----------------------------------------------------------------------


@dataclass(frozen=True)
class Periodic:
    """A DAILY or WEEKLY rule without filters, as arithmetic: every ``step`` days from ``base``,
    on the ``offsets`` days of each period; COUNT counts from the first start on or after
    DTSTART (``skip`` earlier days of the first period do not count), as dateutil does."""

    base: datetime
    step: int
    offsets: tuple[int, ...]
    skip: int = 0
    count: int | None = None
    until: datetime | None = None

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        """Wall-clock starts in [lo, hi], reached without walking from DTSTART."""
        if self.until is not None:
            hi = min(hi, self.until)
        per, period = len(self.offsets), timedelta(days=self.step)
        periods = range(max(0, (lo - self.base).days // self.step), max(0, (hi - self.base).days // self.step + 1))
        if not periods:
            return []
        opening = self.base + period * periods.start
        steps = len(periods) - 1
        columns = [  # one run per weekday, each a C-level sum: the hot loop of a calendar scan
            cast(list[datetime], list(accumulate(repeat(period, steps), initial=opening + timedelta(days=o))))
            for o in self.offsets
        ]
        found = columns[0] if per == 1 else [start for row in zip(*columns, strict=True) for start in row]
        numbered = periods.start * per - self.skip  # the COUNT index of found[0]
        ending = len(found) if self.count is None else max(0, min(len(found), self.count - numbered))
        return found[max(0, -numbered, bisect_left(found, lo)) : min(ending, bisect_right(found, hi))]

    def last_start(self) -> datetime | None:
        if self.count is None:
            return self.until
        period, slot = divmod(self.count - 1 + self.skip, len(self.offsets))
        last = self.base + timedelta(days=period * self.step + self.offsets[slot])
        return min(last, self.until) if self.until is not None else last


@dataclass(frozen=True)
class GeneralRule:
    """Any other rule, expanded by dateutil in naive wall-clock time; UNTIL is applied here,
    so that a rule with both COUNT and UNTIL (which dateutil refuses) keeps both."""

    rule: rrule = field(compare=False)
    count: int | None = None
    until: datetime | None = None

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        if self.until is not None:
            hi = min(hi, self.until)
        return list(self.rule.between(lo, hi, inc=True)) if lo <= hi else []

    def last_start(self) -> datetime | None:
        if self.until is not None:
            return self.until
        if self.count is None or self.count > _MAX_EXPANDED_COUNT:
            return None
        every = list(self.rule)
        return every[-1] if every else None


def _rule_of(recur: vRecur, first: datetime, tz: tzinfo) -> Periodic | GeneralRule | None:
    """An RRULE as arithmetic where it is simple, through dateutil otherwise; None when unreadable."""
    until, count = _until(recur, tz), _int_part(recur, "COUNT")
    freq = str(_part(recur, "FREQ") or "").upper()
    interval = max(_int_part(recur, "INTERVAL") or 1, 1)
    days = _plain_weekdays(recur)
    if set(recur) <= _SIMPLE_RULE_PARTS and days is not None and freq in ("DAILY", "WEEKLY"):
        if freq == "DAILY" and not days:
            return Periodic(first, interval, (0,), 0, count, until)
        if freq == "WEEKLY" or interval == 1:  # every day, on some weekdays, is weekly on them
            wkst = _WEEKDAYS.get(str(_part(recur, "WKST") or "MO").upper(), 0)
            position = (first.weekday() - wkst) % 7
            offsets = tuple(sorted({(d - wkst) % 7 for d in days or [first.weekday()]}))
            skip = sum(1 for o in offsets if o < position)
            step = 7 * interval if freq == "WEEKLY" else 7
            return Periodic(first - timedelta(days=position), step, offsets, skip, count, until)
    parts = vRecur({k: v for k, v in recur.items() if k.upper() != "UNTIL"})
    try:
        text = parts.to_ical().decode()  # type: ignore[no-untyped-call]  # icalendar leaves it unannotated
        expanded = rrulestr(text, dtstart=first)
    except (ValueError, TypeError, KeyError, OverflowError):
        return None  # a rule nobody can read: DTSTART and the RDATEs stand alone
    return GeneralRule(expanded, count, until) if isinstance(expanded, rrule) else None


def _part(rule: vRecur, name: str) -> object:
    value = rule.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _int_part(rule: vRecur, name: str) -> int | None:
    try:
        value = _part(rule, name)
        return int(str(value)) if value is not None else None
    except ValueError:
        return None


def _until(rule: vRecur, tz: tzinfo) -> datetime | None:
    """UNTIL as wall-clock time in ``tz``; a date UNTIL includes its whole day."""
    value = _part(rule, "UNTIL")
    if isinstance(value, datetime):
        return _local(value, tz)
    if isinstance(value, date):
        return datetime.combine(value, time.max)
    return None


def _plain_weekdays(rule: vRecur) -> list[int] | None:
    """BYDAY as weekday numbers; None when an entry has an ordinal (``-1SU``) or is unreadable."""
    value = rule.get("BYDAY") or []
    days = []
    for item in value if isinstance(value, list) else [value]:
        text = str(item).strip().upper()
        if text not in _WEEKDAYS:
            return None
        days.append(_WEEKDAYS[text])
    return days


# --- VFREEBUSY ------------------------------------------------------------------------------


def freebusy_reply(
    owner_address: str,
    organizer: str,
    start: datetime,
    end: datetime,
    periods: Iterable[BusyPeriod],
    now: datetime,
    uid: str | None = None,
) -> Calendar:
    """The owner's iTIP answer to a free/busy request (RFC 5546 §3.3.2): METHOD:REPLY, one VFREEBUSY.

    UID is the request's; a request without one gets a UID derived from the question,
    so the same question always gets the same answer.
    """
    calendar = new_calendar("REPLY")
    uid = uid or _derived_uid(owner_address, organizer, start=start, end=end)
    component = _vfreebusy(start, end, periods, now, uid)
    component.add("ORGANIZER", vCalAddress(as_uri(organizer)), encode=False)
    component.add("ATTENDEE", vCalAddress(as_uri(owner_address)), encode=False)
    calendar.add_component(component)
    return calendar


def freebusy_result(
    owners: Iterable[str], start: datetime, end: datetime, periods: Iterable[BusyPeriod], now: datetime
) -> Calendar:
    """Published busy time (RFC 5545 §3.6.4), no METHOD: the HTTP free/busy answer.

    One owner is the ORGANIZER; the busy time of several, aggregated with
    ``merge_periods``, names each of them as an ATTENDEE.
    """
    addresses = sorted(set(owners))
    calendar = new_calendar()
    component = _vfreebusy(start, end, periods, now, _derived_uid(*addresses, start=start, end=end))
    name = "ORGANIZER" if len(addresses) == 1 else "ATTENDEE"
    for address in addresses:
        component.add(name, vCalAddress(as_uri(address)), encode=False)
    calendar.add_component(component)
    return calendar


def _vfreebusy(start: datetime, end: datetime, periods: Iterable[BusyPeriod], now: datetime, uid: str) -> FreeBusy:
    lo, hi = utc(start), utc(end)
    component = FreeBusy()
    component.add("UID", uid)
    component.add("DTSTAMP", utc(now))
    component.add("DTSTART", lo)
    component.add("DTEND", hi)
    for period in merge_periods(periods):
        begin, finish = max(period.start, lo), min(period.end, hi)
        if begin < finish:
            value = vPeriod((begin, finish))
            value.params.pop("VALUE", None)  # PERIOD is FREEBUSY's only value type (RFC 5545 §3.8.2.6)
            value.params["FBTYPE"] = period.fbtype
            component.add("FREEBUSY", value, encode=False)
    return component


def _derived_uid(*addresses: str, start: datetime, end: datetime) -> str:
    text = "|".join([*addresses, utc(start).isoformat(), utc(end).isoformat()])
    return f"freebusy-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def read_freebusy_request(
    calendar: Calendar, max_window: timedelta | None = None, default_zone: tzinfo = UTC
) -> FreeBusyRequest:
    """The question a VFREEBUSY REQUEST asks; FreeBusyError names what makes it unanswerable."""
    components = [c for c in components_of(calendar) if c.name == "VFREEBUSY"]
    if not components:
        raise FreeBusyError("no-vfreebusy")
    component = components[0]
    organizer = organizer_of(component)
    if organizer is None:
        raise FreeBusyError("missing-organizer")
    attendees = tuple(attendees_of(component))
    if not attendees:
        raise FreeBusyError("missing-attendee")
    start = _window_bound(component, "DTSTART", default_zone)
    end = _window_bound(component, "DTEND", default_zone)
    if end <= start:
        raise FreeBusyError("empty-window", f"{start.isoformat()} to {end.isoformat()}")
    if max_window is not None and end - start > max_window:
        raise FreeBusyError("window-too-long", f"{end - start} > {max_window}")
    return FreeBusyRequest(organizer, attendees, start, end, uid_of(component) or None)


def _window_bound(component: Component, name: str, zone: tzinfo) -> datetime:
    value = dt_value(component.get(name))
    if not isinstance(value, (datetime, date)):
        raise FreeBusyError(f"missing-{name.lower()}")
    return _instant(value, zone)
