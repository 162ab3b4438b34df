"""CalDAV calendar-data in a REPORT (RFC 4791 §9.6): what of each object a client asks for, and that part written.

The whole object is the stored text as it is; a part — some components and properties
(§9.6.1), a recurrence set expanded (§9.6.5) or limited (§9.6.6) to a time range — is
written anew. Which objects match is ``filters``'; reads no store and no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, TypeVar
from xml.etree.ElementTree import Element

from icalendar import Calendar, Component, vText

from gateway.core.calendar.ical import dt_value, serialize_calendar
from gateway.core.calendar.instances import has_recurrence, is_this_and_future
from gateway.core.calendar.recurrence import Occurrence, instant_of, span_of
from gateway.core.dav.filter_tree import TimeRange, read_time_range
from gateway.core.dav.filters import instances_in_range
from gateway.core.dav.xml import CALDAV, DavError, qname

MEDIA_TYPE, VERSION = "text/calendar", "2.0"  # the one CALDAV:supported-calendar-data
INVALID_CALENDAR_DATA = "invalid-calendar-data"
UNSUPPORTED_CALENDAR_DATA = "unsupported-calendar-data"

_EXPANDED = ("VEVENT", "VTODO", "VJOURNAL")
_RECURRENCE = frozenset({"RRULE", "RDATE", "EXDATE", "EXRULE"})
_TIMES = ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID")
_C = TypeVar("_C", bound=Component)


@dataclass(frozen=True)
class PropSpec:
    """A CALDAV:prop: a property to return, without its value when ``novalue``."""

    name: str
    novalue: bool = False


@dataclass(frozen=True)
class CompSpec:
    """A CALDAV:comp: a component with the properties and subcomponents named; None is all of them."""

    name: str
    props: tuple[PropSpec, ...] | None = None  # None: CALDAV:allprop
    comps: tuple[CompSpec, ...] | None = None  # None: CALDAV:allcomp

    @property
    def everything(self) -> bool:
        return self.props is None and self.comps is None


@dataclass(frozen=True)
class CalendarDataSpec:
    """A requested CALDAV:calendar-data; the default asks for the whole object.

    ``limit_freebusy_set`` is read but not applied: the objects served hold no VFREEBUSY.
    """

    comp: CompSpec | None = None
    expand: TimeRange | None = None
    limit_recurrence_set: TimeRange | None = None
    limit_freebusy_set: TimeRange | None = None

    @property
    def whole(self) -> bool:
        return self.comp is None and self.expand is None and self.limit_recurrence_set is None


# --- reading the XML ------------------------------------------------------------------------


def parse_calendar_data(element: Element | None) -> CalendarDataSpec:
    """What a CALDAV:calendar-data element of a request asks for; None or an empty one is the whole object.

    Another media type or version than text/calendar 2.0 is a 403 with
    CALDAV:supported-calendar-data (§1.3: it would always fail); a malformed one is a 400.
    """
    if element is None:
        return CalendarDataSpec()
    _check_media_type(element)
    comps = _children(element, "comp")
    if len(comps) > 1:
        raise _invalid("calendar-data holds one comp at most")
    comp = _parse_comp(comps[0]) if comps else None
    if comp is not None and comp.name != "VCALENDAR":
        raise _invalid(f"the outermost comp is {comp.name}, not VCALENDAR")
    expand, limit = _time_range(element, "expand"), _time_range(element, "limit-recurrence-set")
    if expand is not None and limit is not None:
        raise _invalid("expand and limit-recurrence-set together")
    whole = comp is None or comp.everything
    return CalendarDataSpec(None if whole else comp, expand, limit, _time_range(element, "limit-freebusy-set"))


def _check_media_type(element: Element) -> None:
    media = element.get("content-type", MEDIA_TYPE).split(";", 1)[0].strip().lower()
    version = element.get("version", VERSION).strip()
    if media != MEDIA_TYPE or version != VERSION:
        raise DavError(403, UNSUPPORTED_CALENDAR_DATA, f"{media} version {version}",
                       condition=qname(CALDAV, "supported-calendar-data"))


def _parse_comp(element: Element) -> CompSpec:
    """An empty comp is all of it, as the RFC's own example (§7.8.1) reads ``<C:comp name="VTIMEZONE"/>``."""
    name = _name_of(element)
    every_prop, props = _children(element, "allprop"), _children(element, "prop")
    every_comp, comps = _children(element, "allcomp"), _children(element, "comp")
    if every_prop and props or every_comp and comps:
        raise _invalid(f"comp {name} names all and some at once")
    if not (every_prop or props or every_comp or comps):
        return CompSpec(name)
    return CompSpec(
        name,
        None if every_prop else tuple(_parse_prop(e) for e in props),
        None if every_comp else tuple(_parse_comp(e) for e in comps),
    )


def _parse_prop(element: Element) -> PropSpec:
    novalue = element.get("novalue", "no")
    if novalue not in ("yes", "no"):
        raise _invalid(f"novalue={novalue!r}")
    return PropSpec(_name_of(element), novalue == "yes")


def _time_range(element: Element, local: str) -> TimeRange | None:
    found = _children(element, local)
    if len(found) > 1:
        raise _invalid(f"more than one {local}")
    try:
        return read_time_range(found[0], both=True) if found else None
    except ValueError as error:
        raise _invalid(f"{local}: {error}") from None


def _children(element: Element, local: str) -> list[Element]:
    return element.findall(qname(CALDAV, local))


def _name_of(element: Element) -> str:
    name = (element.get("name") or "").strip().upper()
    if not name:
        raise _invalid(f"{element.tag} without a name")
    return name


def _invalid(detail: str) -> DavError:
    return DavError(400, INVALID_CALENDAR_DATA, detail)


# --- writing the part asked for ------------------------------------------------------------


def render_calendar_data(text: str, calendar: Calendar, spec: CalendarDataSpec, default_zone: tzinfo = UTC) -> str:
    """The ``calendar-data`` of one object: ``text`` unchanged when the whole is asked for, else the part.

    ``calendar`` is ``text`` parsed; floating times and dates are read in ``default_zone``.
    """
    if spec.whole:
        return text
    if spec.expand is not None:
        part = expand_calendar(calendar, spec.expand, default_zone)
    else:
        part = _with_timezones(calendar)
        if spec.limit_recurrence_set is not None:
            part = limit_recurrence_set(part, spec.limit_recurrence_set, default_zone)
    return serialize_calendar(_project(part, spec.comp) if spec.comp is not None else part)


def expand_calendar(calendar: Calendar, time_range: TimeRange, default_zone: tzinfo = UTC) -> Calendar:
    """§9.6.5: each instance in the range as a component of its own, its times in UTC; no VTIMEZONE.

    A master's instance carries a RECURRENCE-ID and no RRULE, RDATE, EXDATE or EXRULE;
    an override stands for its own instance; dates stay dates.
    """
    out = _shell(calendar)
    for component in calendar.subcomponents:
        if component.name not in (*_EXPANDED, "VTIMEZONE"):
            out.add_component(component)
    for name in _EXPANDED:
        for occurrence in instances_in_range(calendar, name, time_range, default_zone):
            out.add_component(_instance(occurrence, default_zone))
    return out


def limit_recurrence_set(calendar: Calendar, time_range: TimeRange, default_zone: tzinfo = UTC) -> Calendar:
    """§9.6.6: the object less the overrides that touch neither the range nor an instance in it."""
    out = _shell(calendar)
    for component in calendar.subcomponents:
        if "RECURRENCE-ID" not in component or _override_in_range(component, time_range, default_zone):
            out.add_component(component)
    return out


def _override_in_range(override: Component, time_range: TimeRange, zone: tzinfo) -> bool:
    lo, hi = time_range.bounds()
    replaced = dt_value(override.get("RECURRENCE-ID"))
    if isinstance(replaced, (datetime, date)):
        moment = instant_of(replaced, zone)
        if moment < hi and (lo <= moment or is_this_and_future(override)):
            return True
    span = span_of(override, zone)
    if span is None:
        return False
    start, end = span
    return lo <= start < hi if start == end else lo < end and hi > start


def _instance(occurrence: Occurrence, zone: tzinfo) -> Component:
    source = occurrence.component
    out = _shell(source, skip=_RECURRENCE)
    for sub in source.subcomponents:
        out.add_component(sub)
    if has_recurrence(source) and "RECURRENCE-ID" not in source:
        _place_instance(out, source, occurrence)
    else:
        for name in _TIMES:
            value = dt_value(source.get(name))
            if isinstance(value, datetime):
                _set(out, name, instant_of(value, zone))
    return out


def _place_instance(out: Component, master: Component, occurrence: Occurrence) -> None:
    """A master's instance: DTSTART and RECURRENCE-ID at the instance, its end moved with it."""
    first = dt_value(master.get("DTSTART"))
    if isinstance(first, date) and not isinstance(first, datetime):
        day = datetime.strptime(occurrence.key, "%Y%m%d").date()  # a date's instance key is the date
        for name in ("DTSTART", "RECURRENCE-ID"):
            _set(out, name, day)
        for name in ("DTEND", "DUE"):
            end = dt_value(master.get(name))
            if isinstance(end, date) and not isinstance(end, datetime):
                _set(out, name, end + (day - first))
        return
    for name in ("DTSTART", "RECURRENCE-ID"):
        _set(out, name, occurrence.start)
    for name in ("DTEND", "DUE"):
        if isinstance(dt_value(master.get(name)), datetime):
            _set(out, name, occurrence.end)


def _set(component: Component, name: str, value: datetime | date) -> None:
    component.pop(name, None)
    component.add(name, value)


def _project(component: _C, spec: CompSpec) -> _C:
    """The component with only what ``spec`` names (§9.6.1)."""
    if spec.everything:
        return component
    wanted = {p.name: p for p in spec.props} if spec.props is not None else None
    out = _shell(component, keep=wanted)
    for sub in component.subcomponents:
        if spec.comps is None:
            out.add_component(sub)
            continue
        inner = next((c for c in spec.comps if c.name == sub.name), None)
        if inner is not None:
            out.add_component(_project(sub, inner))
    return out


def _shell(component: _C, *, skip: frozenset[str] = frozenset(), keep: dict[str, PropSpec] | None = None) -> _C:
    """A new component of the same kind with the properties (not subcomponents) of ``component``.

    ``keep`` names the only properties kept, those with ``novalue`` emptied; values are
    shared, never changed.
    """
    out = type(component)()  # icalendar gives each component name, X- ones too, a class of its own
    for name, value in component.items():
        if name in skip or keep is not None and name not in keep:
            continue
        novalue = keep is not None and keep[name].novalue
        values = value if isinstance(value, list) else [value]
        for item in values:
            out.add(name, _emptied(item) if novalue else item, encode=False)
    return out


def _emptied(value: Any) -> vText:
    return vText("", params=dict(getattr(value, "params", {})))


def _with_timezones(calendar: Calendar) -> Calendar:
    """The object with a VTIMEZONE for each zone it uses: reading it dropped those of IANA zones."""
    out = _shell(calendar)
    for component in calendar.subcomponents:
        out.add_component(component)
    out.add_missing_timezones()
    return out
