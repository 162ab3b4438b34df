"""What a WebDAV or CalDAV request body asks for: PROPFIND, PROPPATCH, MKCOL/MKCALENDAR and the REPORTs (RFC 4918, 4791, 6578).

Each reader takes the parsed root (None for an empty body) and returns a frozen value;
a body that is not what the method takes is a 400 naming what is wrong. An unknown
REPORT is a 403 with ``DAV:supported-report``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from gateway.core.dav.calendar_data import CalendarDataSpec, parse_calendar_data
from gateway.core.dav.filter_tree import CompFilter, parse_filter
from gateway.core.dav.xml import CALDAV, DAV, DavError, bad_request, qname

PROP = qname(DAV, "prop")
CALENDAR_DATA = qname(CALDAV, "calendar-data")
ALL_CALENDAR = CalendarDataSpec()


@dataclass(frozen=True)
class PropRequest:
    """The properties a request wants: by name, all of them (``allprop``), or only their names (``propname``)."""

    names: tuple[str, ...] = ()
    every: bool = False
    names_only: bool = False
    calendar_data: CalendarDataSpec = ALL_CALENDAR

    def wants(self, name: str) -> bool:
        return self.every or name in self.names


ALLPROP = PropRequest(every=True)


def read_propfind(root: Element | None) -> PropRequest:
    """An empty PROPFIND body means ``allprop`` (RFC 4918 §9.1)."""
    if root is None:
        return ALLPROP
    _expect(root, qname(DAV, "propfind"))
    for child in root:
        if child.tag == qname(DAV, "allprop"):
            include = root.find(qname(DAV, "include"))
            extra = tuple(c.tag for c in include) if include is not None else ()
            return PropRequest(names=extra, every=True)
        if child.tag == qname(DAV, "propname"):
            return PropRequest(names_only=True)
        if child.tag == PROP:
            return read_prop(child)
    raise bad_request("propfind needs prop, allprop or propname")


def read_prop(prop: Element | None) -> PropRequest:
    """A ``DAV:prop`` element listing wanted properties; ``calendar-data`` may carry what of the object to return."""
    if prop is None:
        return PropRequest()
    names = tuple(dict.fromkeys(child.tag for child in prop))
    data = prop.find(CALENDAR_DATA)
    return PropRequest(names=names, calendar_data=parse_calendar_data(data) if data is not None else ALL_CALENDAR)


@dataclass(frozen=True)
class PropertyUpdate:
    """A PROPPATCH or MKCALENDAR/MKCOL body: properties to set (name → element) and to remove, in order."""

    sets: tuple[tuple[str, Element], ...] = ()
    removes: tuple[str, ...] = ()
    resourcetype: tuple[str, ...] = ()  # extended MKCOL (RFC 5689): the resource types asked for


def read_proppatch(root: Element | None) -> PropertyUpdate:
    if root is None:
        raise bad_request("PROPPATCH needs a propertyupdate body")
    _expect(root, qname(DAV, "propertyupdate"))
    sets: list[tuple[str, Element]] = []
    removes: list[str] = []
    for action in root:
        prop = action.find(PROP)
        if prop is None:
            continue
        if action.tag == qname(DAV, "set"):
            sets.extend((child.tag, child) for child in prop)
        elif action.tag == qname(DAV, "remove"):
            removes.extend(child.tag for child in prop)
    return PropertyUpdate(tuple(sets), tuple(removes))


def read_mkcol(root: Element | None, *, calendar: bool) -> PropertyUpdate:
    """MKCALENDAR (RFC 4791 §5.3.1) or extended MKCOL (RFC 5689 §5.1); an empty body is a plain calendar."""
    if root is None:
        return PropertyUpdate(resourcetype=(qname(DAV, "collection"), qname(CALDAV, "calendar")) if calendar else ())
    _expect(root, qname(CALDAV, "mkcalendar") if calendar else qname(DAV, "mkcol"))
    sets = [(child.tag, child) for s in root.findall(qname(DAV, "set")) for prop in s.findall(PROP) for child in prop]
    types = [t for name, value in sets if name == qname(DAV, "resourcetype") for t in (c.tag for c in value)]
    if calendar:
        types = [qname(DAV, "collection"), qname(CALDAV, "calendar")]
    return PropertyUpdate(tuple((n, v) for n, v in sets if n != qname(DAV, "resourcetype")), (), tuple(types))


@dataclass(frozen=True)
class Multiget:
    """``calendar-multiget`` (RFC 4791 §7.9): these hrefs, with these properties."""

    props: PropRequest
    hrefs: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    """``calendar-query`` (RFC 4791 §7.8): the members matching the filter."""

    props: PropRequest
    filter: CompFilter


@dataclass(frozen=True)
class FreeBusyQuery:
    """``free-busy-query`` (RFC 4791 §7.10): busy time in [start, end)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class SyncCollection:
    """``sync-collection`` (RFC 6578 §3.2): changes since ``token``; at most ``limit`` members (None: all)."""

    props: PropRequest
    token: str = ""
    level: str = "1"
    limit: int | None = None


Report = Multiget | Query | FreeBusyQuery | SyncCollection


def read_report(root: Element | None) -> Report:
    if root is None:
        raise bad_request("REPORT needs a body")
    readers: dict[str, Callable[[Element], Report]] = {
        qname(CALDAV, "calendar-multiget"): _multiget,
        qname(CALDAV, "calendar-query"): _query,
        qname(CALDAV, "free-busy-query"): _free_busy,
        qname(DAV, "sync-collection"): _sync,
    }
    reader = readers.get(root.tag)
    if reader is None:
        raise DavError(403, "unsupported-report", root.tag, condition=qname(DAV, "supported-report"))
    return reader(root)


def _multiget(root: Element) -> Multiget:
    hrefs = tuple((h.text or "").strip() for h in root.findall(qname(DAV, "href")))
    return Multiget(_props_of(root), tuple(h for h in hrefs if h))


def _query(root: Element) -> Query:
    flt = root.find(qname(CALDAV, "filter"))
    if flt is None:
        raise DavError(400, "invalid-filter", "calendar-query needs a filter", condition=qname(CALDAV, "valid-filter"))
    return Query(_props_of(root), parse_filter(flt))


def _free_busy(root: Element) -> FreeBusyQuery:
    span = root.find(qname(CALDAV, "time-range"))
    if span is None or not span.get("start") or not span.get("end"):
        raise bad_request("free-busy-query needs a time-range with start and end")
    start, end = read_utc(span.get("start", "")), read_utc(span.get("end", ""))
    if end <= start:
        raise bad_request("time-range ends before it starts")
    return FreeBusyQuery(start, end)


def _sync(root: Element) -> SyncCollection:
    token = (root.findtext(qname(DAV, "sync-token")) or "").strip()
    level = (root.findtext(qname(DAV, "sync-level")) or "1").strip()
    if level not in ("1", "infinite"):
        raise bad_request(f"sync-level {level!r}")
    limit_text = root.findtext(f"{qname(DAV, 'limit')}/{qname(DAV, 'nresults')}")
    limit = None
    if limit_text is not None:
        if not limit_text.strip().isdigit() or int(limit_text) < 1:
            raise bad_request(f"limit {limit_text!r}")
        limit = int(limit_text)
    return SyncCollection(_props_of(root), token, level, limit)


def _props_of(root: Element) -> PropRequest:
    if root.find(qname(DAV, "allprop")) is not None:
        return ALLPROP
    return read_prop(root.find(PROP))


def read_utc(text: str) -> datetime:
    """An iCalendar UTC date-time as CalDAV writes it in attributes: ``20261203T120000Z``."""
    try:
        return datetime.strptime(text.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as error:
        raise bad_request(f"not a UTC date-time: {text!r}") from error


def _expect(root: Element, name: str) -> None:
    if root.tag != name:
        raise bad_request(f"expected {name}, got {root.tag}")
