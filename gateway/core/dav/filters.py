"""CalDAV calendar-query filters (RFC 4791 §9.7) judged against one object (the tree itself: ``filter_tree``).

Time ranges follow §9.9, over the instances ``gateway.core.calendar.recurrence`` expands;
text matches follow §9.7.5 with the collations of §7.5. Not for choosing what is sent
back (``calendar_data``), nor for running the REPORT (``gateway.service.caldav``).
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from icalendar import Calendar, Component, Event, vDuration

from gateway.core.calendar.ical import dt_value
from gateway.core.calendar.instances import recurrence_key_of
from gateway.core.calendar.recurrence import (
    Occurrence,
    instant_of,
    occurrences,
    span_of,
)
from gateway.core.dav.filter_tree import (
    CompFilter,
    ParamFilter,
    PropFilter,
    TextMatch,
    TimeRange,
)


_DATED = ("VEVENT", "VTODO", "VJOURNAL")  # what the recurrence engine expands, through a stand-in VEVENT
_TICK = timedelta(microseconds=1)  # the length an instant is given, so that the engine keeps it
_EDGE = timedelta(seconds=1)  # around a window, for §9.9's closed ends
_PROBE = timedelta(days=366)  # the first try of a range open at the end
_MAX_REPEATS = 1_000  # VALARM REPEAT values judged
_STAND_IN = ("UID", "DTSTART", "RECURRENCE-ID", "RRULE", "RDATE", "EXDATE")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


# --- judging an object ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """One object being judged: its expansions, worked out once per window."""

    calendar: Calendar
    zone: tzinfo
    expanded: dict[tuple[str, datetime, datetime], list[Occurrence]] = field(default_factory=dict)

    def instances(self, name: str, lo: datetime, hi: datetime) -> list[Occurrence]:
        key = (name, lo, hi)
        if key not in self.expanded:
            self.expanded[key] = expand_instances(self.calendar, name, lo, hi, self.zone)
        return self.expanded[key]


def matches(calendar: Calendar, flt: CompFilter, default_zone: tzinfo = UTC) -> bool:
    """True when one stored object passes the filter; floating times and dates are read in ``default_zone``."""
    if flt.name != calendar.name or flt.is_not_defined:
        return flt.name != calendar.name and flt.is_not_defined  # VCALENDAR is always there
    return _component_matches(calendar, flt, _Scope(calendar, default_zone), None)


def _component_matches(component: Component, flt: CompFilter, scope: _Scope, parent: Component | None) -> bool:
    if flt.time_range is not None and not _in_time_range(component, flt.time_range, scope, parent):
        return False
    return all(_prop_matches(component, p, scope.zone) for p in flt.prop_filters) and all(
        _subcomponent_matches(component, c, scope) for c in flt.comp_filters
    )


def _subcomponent_matches(component: Component, flt: CompFilter, scope: _Scope) -> bool:
    found = [c for c in component.subcomponents if c.name == flt.name]
    if flt.is_not_defined:
        return not found
    return any(_component_matches(c, flt, scope, component) for c in found)


def _in_time_range(component: Component, time_range: TimeRange, scope: _Scope, parent: Component | None) -> bool:
    if component.name in _DATED and parent is scope.calendar:
        return _has_instance(component, time_range, scope)
    if component.name == "VALARM" and parent is not None:
        return _alarm_in_range(component, parent, time_range, scope)
    if component.name == "VFREEBUSY":
        return _freebusy_in_range(component, time_range, scope.zone)
    return False


# --- instances in a time range (§9.9) -------------------------------------------------------


def _has_instance(component: Component, time_range: TimeRange, scope: _Scope) -> bool:
    """True when §9.9 puts an instance of the component in the range.

    A range open at the end (DAVx5 asks from a date on) is tried for its first year
    first, which is enough for a series still running: an endless one would otherwise be
    expanded to its cap. Each rule only widens with the end, so the shorter try is sound.
    """
    windows = [time_range]
    if time_range.start is not None and time_range.end is None:
        windows.insert(0, TimeRange(time_range.start, time_range.start + _PROBE))
    return any(any(o.component is component for o in _instances_in_range(scope, str(component.name), w)) for w in windows)


def instances_in_range(
    calendar: Calendar, name: str, time_range: TimeRange, default_zone: tzinfo = UTC
) -> list[Occurrence]:
    """The instances of an object's VEVENTs, VTODOs or VJOURNALs (``name``) that §9.9 puts in the range.

    Each carries the component it comes from; an instant's end is its start.
    """
    return _instances_in_range(_Scope(calendar, default_zone), name, time_range)


def _instances_in_range(scope: _Scope, name: str, time_range: TimeRange) -> list[Occurrence]:
    lo, hi = time_range.bounds()
    found = scope.instances(name, lo - _EDGE, hi + _EDGE)
    if name != "VTODO":
        return [o for o in found if _overlaps(o.start, o.end, lo, hi)]
    kept = [o for o in found if _todo_in_range(o, lo, hi)]
    undated = (c for c in scope.calendar.subcomponents if c.name == "VTODO" and "DTSTART" not in c)
    return kept + [o for o in (_undated_todo(c, lo, hi, scope.zone) for c in undated) if o is not None]


def expand_instances(calendar: Calendar, name: str, lo: datetime, hi: datetime, zone: tzinfo) -> list[Occurrence]:
    """Every instance of an object's ``name`` components overlapping [lo, hi), instants included.

    Each component stands in as a VEVENT for the recurrence engine: a VTODO's DUE as its
    DTEND, an instant with a length of one microsecond, which the engine would drop.
    """
    stand_ins = Calendar()
    sources: dict[int, tuple[Component, bool]] = {}
    for component in calendar.subcomponents:
        if component.name == name and "DTSTART" in component:
            event, instant = _stand_in(component, zone)
            stand_ins.add_component(event)
            sources[id(event)] = (component, instant)
    found = []
    for o in occurrences(stand_ins, lo, hi, zone) if sources else ():
        source, instant = sources[id(o.component)]
        found.append(Occurrence(o.key, o.start, o.start if instant else o.end, source))
    return found


def _stand_in(component: Component, zone: tzinfo) -> tuple[Event, bool]:
    event = Event()
    for name in _STAND_IN:
        if name in component:
            event[name] = component[name]
    end = "DUE" if component.name == "VTODO" else "DTEND"
    if component.name != "VJOURNAL" and end in component:
        event["DTEND"] = component[end]
    elif component.name != "VJOURNAL" and "DURATION" in component:
        event["DURATION"] = component["DURATION"]
    span = span_of(event, zone)
    instant = span is not None and span[0] == span[1]
    if instant:
        event.pop("DTEND", None)
        event["DURATION"] = vDuration(_TICK)
    return event, instant


def _overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
    """§9.9 for a VEVENT or VJOURNAL: an instant is in [lo, hi); a span overlaps it."""
    return lo <= start < hi if start == end else lo < end and hi > start


def _todo_in_range(todo: Occurrence, lo: datetime, hi: datetime) -> bool:
    """§9.9 for a VTODO with a DTSTART: its end is DUE, or DTSTART+DURATION."""
    start, end = todo.start, todo.end
    if "DUE" in todo.component:
        return (lo < end or lo <= start) and (hi > start or hi >= end)
    if "DURATION" in todo.component:
        return lo <= end and (hi > start or hi >= end)
    return lo <= start < hi


def _undated_todo(todo: Component, lo: datetime, hi: datetime, zone: tzinfo) -> Occurrence | None:
    """§9.9 for a VTODO without a DTSTART: by DUE, else by COMPLETED and CREATED."""
    due, done, made = (_instant(todo.get(name), zone) for name in ("DUE", "COMPLETED", "CREATED"))
    if due is not None:
        ok = lo < due <= hi
    elif done is not None and made is not None:
        ok = (lo <= made or lo <= done) and (hi >= made or hi >= done)
    elif done is not None:
        ok = lo <= done <= hi
    else:
        ok = made is None or hi > made
    moment = due or done or made or lo
    return Occurrence(recurrence_key_of(todo), moment, moment, todo) if ok else None


def _alarm_in_range(alarm: Component, parent: Component, time_range: TimeRange, scope: _Scope) -> bool:
    """§9.9 for a VALARM: some trigger time, repetitions included, is in [lo, hi)."""
    lo, hi = time_range.bounds()
    trigger = alarm.get("TRIGGER")
    value = dt_value(trigger)
    repeats = _repeats(alarm)
    if isinstance(value, (datetime, date)):
        bases = [instant_of(value, scope.zone)]
    elif isinstance(value, timedelta):
        from_end = str(getattr(trigger, "params", {}).get("RELATED", "START")).upper() == "END"
        reach = abs(value) + repeats[-1] + _EDGE
        bases = [(e if from_end else s) + value for s, e in _parent_spans(parent, lo - reach, hi + reach, scope)]
    else:
        return False
    return any(lo <= base + step < hi for base in bases for step in repeats)


def _repeats(alarm: Component) -> list[timedelta]:
    """The offsets of an alarm's triggers from the first: REPEAT times DURATION (RFC 5545 §3.6.6)."""
    step = dt_value(alarm.get("DURATION"))
    try:
        count = min(int(str(alarm.get("REPEAT", 0))), _MAX_REPEATS)
    except ValueError:
        count = 0
    return [step * n for n in range(count + 1)] if isinstance(step, timedelta) else [timedelta(0)]


def _parent_spans(parent: Component, lo: datetime, hi: datetime, scope: _Scope) -> list[tuple[datetime, datetime]]:
    if parent.name in _DATED and "DTSTART" in parent:
        return [(o.start, o.end) for o in scope.instances(parent.name, lo, hi) if o.component is parent]
    due = _instant(parent.get("DUE"), scope.zone)
    return [(due, due)] if due is not None else []


def _freebusy_in_range(freebusy: Component, time_range: TimeRange, zone: tzinfo) -> bool:
    """§9.9 for a VFREEBUSY: by DTSTART and DTEND, else by its FREEBUSY periods."""
    lo, hi = time_range.bounds()
    start, end = _instant(freebusy.get("DTSTART"), zone), _instant(freebusy.get("DTEND"), zone)
    if start is not None and end is not None:
        return lo <= end and hi > start
    periods = (getattr(p, "dt", (None, None)) for p in _properties(freebusy, "FREEBUSY"))
    return any(lo < (begin + until if isinstance(until, timedelta) else until) and hi > begin
               for begin, until in periods if isinstance(begin, datetime) and isinstance(until, (datetime, timedelta)))


def _instant(prop: Any, zone: tzinfo) -> datetime | None:
    value = dt_value(prop)
    return instant_of(value, zone) if isinstance(value, (datetime, date)) else None


# --- properties, parameters, text -----------------------------------------------------------


def _prop_matches(component: Component, flt: PropFilter, zone: tzinfo) -> bool:
    found = _properties(component, flt.name)
    if flt.is_not_defined:
        return not found
    return any(_one_prop_matches(prop, flt, zone) for prop in found)


def _one_prop_matches(prop: Any, flt: PropFilter, zone: tzinfo) -> bool:
    if flt.time_range is not None and not _value_in_range(prop, flt.time_range, zone):
        return False
    if flt.text_match is not None and not match_text([text_of(prop)], flt.text_match):
        return False
    return all(_param_matches(prop, p) for p in flt.param_filters)


def _value_in_range(prop: Any, time_range: TimeRange, zone: tzinfo) -> bool:
    """A date-time value is an instant in the range; a date is the day it names, in ``zone``."""
    lo, hi = time_range.bounds()
    value = dt_value(prop)
    if isinstance(value, datetime):
        return lo <= instant_of(value, zone) < hi
    if isinstance(value, date):
        return lo < instant_of(value + timedelta(days=1), zone) and hi > instant_of(value, zone)
    return False


def _param_matches(prop: Any, flt: ParamFilter) -> bool:
    value = getattr(prop, "params", {}).get(flt.name)
    if flt.is_not_defined or value is None:
        return flt.is_not_defined and value is None
    if flt.text_match is None:
        return True
    return match_text([str(v) for v in (value if isinstance(value, list) else [value])], flt.text_match)


def _properties(component: Component, name: str) -> list[Any]:
    value = component.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def text_of(prop: Any) -> str:
    """A property's value as text-match sees it: text unescaped, anything else as iCalendar writes it."""
    if isinstance(prop, str):
        return str(prop)
    categories = getattr(prop, "cats", None)
    if categories is not None:
        return ",".join(str(c) for c in categories)
    try:
        written = prop.to_ical()
    except (AttributeError, TypeError, ValueError):  # not a property icalendar can write
        return str(prop)
    return written.decode("utf-8", "replace") if isinstance(written, bytes) else str(written)


def match_text(values: list[str], text_match: TextMatch) -> bool:
    """True when one of ``values`` holds the substring under its collation, or, negated, none does."""
    fold = _FOLDS[text_match.collation]
    wanted = fold(text_match.text)
    return any(wanted in fold(v) for v in values) != text_match.negate


def _fold_ascii(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def _fold_unicode(text: str) -> str:
    """RFC 5051's i;unicode-casemap, as near as Python's case folding and NFKD bring it."""
    return unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())


_FOLDS: dict[str, Callable[[str], str]] = {"i;octet": str, "i;ascii-casemap": _fold_ascii, "i;unicode-casemap": _fold_unicode}
