"""The CalDAV calendar-query filter tree (RFC 4791 §9.7), and reading it from a request's XML.

Frozen values only; judging an object against a filter is ``gateway.core.dav.filters``'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from gateway.core.calendar.recurrence import FOREVER
from gateway.core.dav.xml import CALDAV, DavError, qname

DEFAULT_COLLATION = "i;ascii-casemap"  # RFC 4791 §9.7.5
COLLATIONS = ("i;ascii-casemap", "i;octet", "i;unicode-casemap")  # the CALDAV:supported-collation-set
TIME_RANGE_COMPONENTS = frozenset({"VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY", "VALARM"})  # §9.9
EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)  # a time range without a start
INVALID_FILTER = "invalid-filter"
UNSUPPORTED_COLLATION = "unsupported-collation"


@dataclass(frozen=True)
class TimeRange:
    """A CALDAV:time-range: aware UTC ``start`` (inclusive) and ``end`` (exclusive); None is unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    def bounds(self) -> tuple[datetime, datetime]:
        """Both ends, the unbounded ones as ``EARLIEST`` and ``FOREVER``."""
        return self.start or EARLIEST, self.end or FOREVER


@dataclass(frozen=True)
class TextMatch:
    """A CALDAV:text-match: a substring under a collation, or its negation (§9.7.5)."""

    text: str
    collation: str = DEFAULT_COLLATION
    negate: bool = False


@dataclass(frozen=True)
class ParamFilter:
    """A CALDAV:param-filter (§9.7.3)."""

    name: str
    is_not_defined: bool = False
    text_match: TextMatch | None = None


@dataclass(frozen=True)
class PropFilter:
    """A CALDAV:prop-filter (§9.7.2)."""

    name: str
    is_not_defined: bool = False
    time_range: TimeRange | None = None
    text_match: TextMatch | None = None
    param_filters: tuple[ParamFilter, ...] = ()


@dataclass(frozen=True)
class CompFilter:
    """A CALDAV:comp-filter (§9.7.1); the root of a filter is the one named VCALENDAR."""

    name: str
    is_not_defined: bool = False
    time_range: TimeRange | None = None
    prop_filters: tuple[PropFilter, ...] = ()
    comp_filters: tuple[CompFilter, ...] = ()


# --- reading the XML ------------------------------------------------------------------------


def parse_filter(element: Element) -> CompFilter:
    """The filter tree of a CALDAV:filter element; a malformed one is a 400 with CALDAV:valid-filter.

    An unsupported collation is a 403 with CALDAV:supported-collation (§7.5.1; a failed
    precondition that will always fail is a 403, §1.3).
    """
    if element.tag != qname(CALDAV, "filter"):
        raise _invalid(f"{element.tag} is not a CALDAV:filter")
    parts = _parts(element, ("comp-filter",))
    if len(parts["comp-filter"]) != 1:
        raise _invalid("a filter holds exactly one comp-filter")
    root = _parse_comp_filter(parts["comp-filter"][0])
    if root.name != "VCALENDAR":
        raise _invalid(f"the outermost comp-filter is {root.name}, not VCALENDAR")
    return root


def read_time_range(element: Element, *, both: bool = False) -> TimeRange:
    """A time-range-like element's ``start`` and ``end``; ValueError with a detail when they are wrong.

    Each is an iCalendar UTC date-time (``20260105T090000Z``); at least one is given (both,
    when ``both``), and the start comes before the end.
    """
    start, end = (_read_utc(element.get(name), name) for name in ("start", "end"))
    if start is None and end is None or both and (start is None or end is None):
        raise ValueError("a time range needs " + ("start and end" if both else "a start or an end"))
    if start is not None and end is not None and end <= start:
        raise ValueError("a time range ends after it starts")
    return TimeRange(start, end)


def _read_utc(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.strptime(text.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{what}={text!r} is not a UTC date-time") from None


def _parse_comp_filter(element: Element) -> CompFilter:
    name = _name_of(element)
    parts = _parts(element, ("is-not-defined", "time-range", "prop-filter", "comp-filter"))
    if _not_defined(parts):
        return CompFilter(name, is_not_defined=True)
    time_range = _one_time_range(parts)
    if time_range is not None and name not in TIME_RANGE_COMPONENTS:
        raise _invalid(f"a time-range on {name}")
    props = tuple(_parse_prop_filter(e) for e in parts["prop-filter"])
    return CompFilter(name, False, time_range, props, tuple(_parse_comp_filter(e) for e in parts["comp-filter"]))


def _parse_prop_filter(element: Element) -> PropFilter:
    name = _name_of(element)
    parts = _parts(element, ("is-not-defined", "time-range", "text-match", "param-filter"))
    if _not_defined(parts):
        return PropFilter(name, is_not_defined=True)
    if parts["time-range"] and parts["text-match"]:
        raise _invalid(f"prop-filter {name} holds both a time-range and a text-match")
    params = tuple(_parse_param_filter(e) for e in parts["param-filter"])
    return PropFilter(name, False, _one_time_range(parts), _one_text_match(parts), params)


def _parse_param_filter(element: Element) -> ParamFilter:
    name = _name_of(element)
    parts = _parts(element, ("is-not-defined", "text-match"))
    if _not_defined(parts):
        return ParamFilter(name, is_not_defined=True)
    return ParamFilter(name, False, _one_text_match(parts))


def _parse_text_match(element: Element) -> TextMatch:
    collation = element.get("collation", DEFAULT_COLLATION)
    if collation not in COLLATIONS:
        raise DavError(403, UNSUPPORTED_COLLATION, collation, condition=qname(CALDAV, "supported-collation"))
    negate = element.get("negate-condition", "no")
    if negate not in ("yes", "no"):
        raise _invalid(f"negate-condition={negate!r}")
    return TextMatch(element.text or "", collation, negate == "yes")


def _parts(element: Element, allowed: tuple[str, ...]) -> dict[str, list[Element]]:
    """The CALDAV children by local name; elements of other namespaces are ignored (RFC 4918 §17)."""
    found: dict[str, list[Element]] = {local: [] for local in allowed}
    prefix = f"{{{CALDAV}}}"
    for child in element:
        if not isinstance(child.tag, str) or not child.tag.startswith(prefix):
            continue
        local = child.tag[len(prefix):]
        if local not in found:
            raise _invalid(f"{local} inside {element.tag[len(prefix):]}")
        found[local].append(child)
    return found


def _not_defined(parts: dict[str, list[Element]]) -> bool:
    if not parts["is-not-defined"]:
        return False
    if sum(len(elements) for elements in parts.values()) > 1:
        raise _invalid("is-not-defined stands alone")
    return True


def _one_time_range(parts: dict[str, list[Element]]) -> TimeRange | None:
    found = _at_most_one(parts, "time-range")
    try:
        return read_time_range(found) if found is not None else None
    except ValueError as error:
        raise _invalid(str(error)) from None


def _one_text_match(parts: dict[str, list[Element]]) -> TextMatch | None:
    found = _at_most_one(parts, "text-match")
    return _parse_text_match(found) if found is not None else None


def _at_most_one(parts: dict[str, list[Element]], local: str) -> Element | None:
    if len(parts[local]) > 1:
        raise _invalid(f"more than one {local}")
    return parts[local][0] if parts[local] else None


def _name_of(element: Element) -> str:
    name = (element.get("name") or "").strip().upper()
    if not name:
        raise _invalid(f"{element.tag} without a name")
    return name


def _invalid(detail: str) -> DavError:
    return DavError(400, INVALID_FILTER, detail, condition=qname(CALDAV, "valid-filter"))


def plain_event_range(flt: CompFilter) -> TimeRange | None:
    """The range of a filter that asks for VEVENTs in a time range and nothing more (what most clients send).

    Such a filter is answered from an object's kept times, without reading the object.
    """
    if flt.is_not_defined or flt.prop_filters or flt.time_range or len(flt.comp_filters) != 1:
        return None
    (event,) = flt.comp_filters
    if event.name != "VEVENT" or event.is_not_defined or event.prop_filters or event.comp_filters:
        return None
    return event.time_range


def time_range_of(flt: CompFilter) -> TimeRange | None:
    """The time range a filter puts on the VEVENTs or VTODOs of an object, for a pre-filter by its hull; None when none.

    Every object that matches the filter has an instance there, but a VTODO without
    dates matches every range (§9.9), so an object whose hull is unknown must pass.
    """
    for child in flt.comp_filters:
        if child.name in ("VEVENT", "VTODO") and child.time_range is not None:
            return child.time_range
    return None
