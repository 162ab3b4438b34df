"""Free/busy time of one principal from its stored objects, and the VFREEBUSY that carries it.

Busy time follows RFC 4791 §7.10 and RFC 6638 §3.2: transparent and cancelled
occurrences are free, tentative ones and those the principal has not answered are
BUSY-TENTATIVE, and declined ones are free. The reply to a free/busy request is RFC 5546
§3.3.2. The occurrences themselves come from ``gateway.core.calendar.recurrence``. Reads no
clock, stores nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum
from operator import itemgetter

from icalendar import Calendar, Component, FreeBusy, vCalAddress, vPeriod

from gateway.core.addresses import as_uri, normalize_address
from gateway.core.calendar.ical import (
    attendees_of,
    components_of,
    dt_value,
    new_calendar,
    organizer_of,
    partstat_of,
    uid_of,
)
from gateway.core.calendar.recurrence import (
    Found,
    ObjectTimes,
    Span,
    instant_of,
    lone_event,
    object_spans,
    property_of,
    read_times,
    span_of,
    utc,
)
from gateway.core.model import NamedError, PartStat

_FREE_ANSWERS = frozenset({PartStat.DECLINED, PartStat.DELEGATED})
_BUSY_ANSWERS = frozenset({PartStat.ACCEPTED, PartStat.COMPLETED, PartStat.IN_PROCESS})


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
class FreeBusyRequest:
    """What a VFREEBUSY REQUEST asks (RFC 5546 §3.3.1): whose busy time, in which UTC window."""

    organizer: str
    attendees: tuple[str, ...]
    start: datetime
    end: datetime
    uid: str | None = None


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
        lone = lone_event(item) if isinstance(item, Calendar) else None
        if lone is not None:  # most objects: judged straight from the parsed event, nothing kept
            span = span_of(lone, default_zone)
            kind = fbtype_of(lone, owner) if span is not None and span[0] < hi and span[1] > lo else None
            if span is not None and kind is not None:
                spans[kind].append((*span, None))
            continue
        times = item if isinstance(item, ObjectTimes) else read_times(item, default_zone)
        if times.start < hi and times.end > lo:
            for _event, kind, found in object_spans(times, lo, hi, lambda e: e.judged(owner, fbtype_of)):
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
    value = property_of(component, "ATTENDEE")
    for prop in value if isinstance(value, list) else [value] if value is not None else []:
        # a cheap test first: normalizing every attendee of every event would dominate a scan
        if str(prop).strip(" <>").lower().endswith(endings) and normalize_address(prop) in owner:
            return partstat_of(prop)
    return None


def _upper(component: Component, name: str) -> str:
    value = property_of(component, name)
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
    return instant_of(value, zone)
