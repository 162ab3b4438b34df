"""Property values read leniently into RFC 5545 canonical form, or the value that cannot be read named (§3.3).

Not for: which properties a method needs (``itip.validate``) or what a value means to
scheduling. icalendar keeps a value it cannot read as ``vBroken`` text, and would store
and export it as written, where free/busy, rooms and clients cannot read it. Here such a
value is rewritten canonically when its meaning is unambiguous, and otherwise reported
(``invalid_values``), so that the message is held instead of stored.

Read leniently (INTEROP rule 13 "parse leniently", widened to every date-time value):

- ISO 8601 extended forms: ``2023-07-01T12:57:00``, ``2023-07-01T125700``, ``2023-07-01``;
- a time without seconds (``T1257``) and fractional seconds (``T125700.000Z``, Java senders),
  to the second;
- a UTC offset (``12:57:00+02:00``) without TZID: the same instant in UTC;
- a DATE without ``VALUE=DATE`` in DTSTART, DTEND, DUE, RECURRENCE-ID, EXDATE, RDATE: the
  parameter is added;
- DTSTAMP, CREATED, LAST-MODIFIED, COMPLETED must be UTC date-times: a zoned time is
  converted, a floating one read as UTC (as ``ical.dtstamp_of`` orders it), a DATE read
  as midnight UTC of that day;
- an RRULE whose UNTIL is one of the forms above, a GEO written with a comma.

Held as ``invalid-value``: anything else icalendar cannot read (a seven-digit time
``T1257000``, 30 February, ``SEQUENCE:abc``, ``DURATION:1H``), a value that contradicts
its own ``VALUE`` parameter (``VALUE=DATE`` with a time: all-day or not is the sender's
to say), and a UTC offset together with a TZID.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from icalendar import Calendar, Component, vDDDLists, vDDDTypes, vGeo, vRecur
from icalendar.prop import vBroken

DATE_OR_TIME = ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID")  # DATE-TIME, or DATE with VALUE=DATE
DATE_OR_TIME_LISTS = ("EXDATE", "RDATE")
UTC_STAMPS = ("DTSTAMP", "CREATED", "LAST-MODIFIED", "COMPLETED")  # RFC 5545 §3.8.7, §3.8.2.1: UTC only
DATE_TIME_PROPERTIES = DATE_OR_TIME + DATE_OR_TIME_LISTS + UTC_STAMPS
REASON = "invalid-value"

_LOOSE = re.compile(
    r"(?P<y>\d{4})-?(?P<m>\d{2})-?(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):?(?P<M>\d{2})(?::?(?P<S>\d{2}))?(?:[.,]\d{1,9})?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class InvalidValue:
    """One property value that cannot be read as its type: where it is, what it says, and why not."""

    component: str
    name: str
    value: str
    why: str

    def describe(self) -> str:
        """The inbox detail: the property first, so that "what was wrong" is one look."""
        return f"{self.name} in {self.component}: {self.value[:80]!r} ({self.why})"


class _Unreadable(ValueError):
    """A value the lenient reading does not accept either."""


def normalize_values(calendar: Calendar) -> Calendar:
    """Rewrite, in place, every value of a just-parsed calendar that has one clear meaning, canonically."""
    for component in calendar.walk():
        for name in list(component.keys()):
            value = component[name]
            if isinstance(value, list):
                component[name] = [_normalized(name, v) for v in value]
            else:
                component[name] = _normalized(name, value)
    return calendar


def invalid_values(calendar: Calendar) -> tuple[InvalidValue, ...]:
    """Every value in the calendar that cannot be read as its type (after ``normalize_values``)."""
    return tuple(_invalid_in(calendar))


def _invalid_in(calendar: Calendar) -> Iterator[InvalidValue]:
    for component in calendar.walk():
        for name, prop in _properties(component):
            why = _why_invalid(name, prop)
            if why is not None:
                yield InvalidValue(str(component.name), name, _text(prop), why)


def _properties(component: Component) -> Iterator[tuple[str, Any]]:
    for name, value in component.items():
        for prop in value if isinstance(value, list) else [value]:
            yield str(name).upper(), prop


def _why_invalid(name: str, prop: Any) -> str | None:
    if isinstance(prop, vBroken):
        return str(prop.parse_error or f"not a {prop.expected_type}")[:120]
    if name not in DATE_TIME_PROPERTIES or not isinstance(prop, (vDDDTypes, vDDDLists)):
        return None
    values = _dts(prop)
    if name in UTC_STAMPS:
        ok = all(isinstance(v, datetime) and v.utcoffset() == timedelta(0) for v in values)
        return None if ok else "not a UTC date-time"
    kind = str(prop.params.get("VALUE", "DATE-TIME")).upper()
    if kind == "DATE" and any(isinstance(v, datetime) for v in values):
        return "VALUE=DATE with a date-time"
    if kind == "DATE-TIME" and any(not isinstance(v, datetime) for v in values):
        return "VALUE=DATE-TIME with a date"
    return None


def _dts(prop: vDDDTypes | vDDDLists) -> list[object]:
    return [d.dt for d in prop.dts] if isinstance(prop, vDDDLists) else [prop.dt]


def _text(prop: Any) -> str:
    if isinstance(prop, vBroken):
        return str(prop)  # as written; to_ical would escape it as TEXT
    raw = prop.to_ical() if hasattr(prop, "to_ical") else prop
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _normalized(name: str, prop: Any) -> Any:
    """The canonical property for ``prop``, or ``prop`` itself when it is canonical or cannot be helped."""
    name = name.upper()
    try:
        if isinstance(prop, vBroken):
            return _repaired(name, prop)
        if name in UTC_STAMPS and isinstance(prop, vDDDTypes):
            return _as_utc_stamp(prop)
        if name in DATE_TIME_PROPERTIES and isinstance(prop, (vDDDTypes, vDDDLists)):
            return _with_value_date(prop)
    except (ValueError, TypeError, KeyError):  # _Unreadable, or icalendar refusing the repaired text
        return prop
    return prop


def _repaired(name: str, prop: vBroken) -> Any:
    raw, params = str(prop).strip(), prop.params
    if name in UTC_STAMPS:
        return _as_utc_stamp(_rebuilt(vDDDTypes(_loose_value(raw, None)), params))
    if name in DATE_OR_TIME:
        return _with_value_date(_rebuilt(vDDDTypes(_loose_value(raw, params.get("TZID"))), params))
    if name in DATE_OR_TIME_LISTS and "/" not in raw:
        values = [_loose_value(item, params.get("TZID")) for item in raw.split(",")]
        return _with_value_date(_rebuilt(vDDDLists(values), params))
    if name in ("RRULE", "EXRULE"):
        return _rebuilt(vRecur.from_ical(_canonical_until(raw)), params)
    if name == "GEO" and raw.count(",") == 1 and ";" not in raw:
        return _rebuilt(vGeo(vGeo.from_ical(raw.replace(",", ";"))), params)
    return prop


def _rebuilt(new: Any, params: Any) -> Any:
    """The new property with the sender's other parameters kept (an unknown zone's TZID too)."""
    for key, value in params.items():
        if key.upper() != "VALUE" and key not in new.params:
            new.params[key] = value
    declared = str(params.get("VALUE", "")).upper()
    if declared and declared != str(new.params.get("VALUE", "DATE-TIME")).upper():
        raise _Unreadable("VALUE contradicts the value")
    return new


def _loose_value(text: str, tzid: object) -> date | datetime:
    """A DATE or DATE-TIME in any of the forms the module docstring lists; _Unreadable otherwise."""
    match = _LOOSE.fullmatch(text.strip())
    if match is None:
        raise _Unreadable(text)
    try:
        day = date(int(match["y"]), int(match["m"]), int(match["d"]))
        if match["H"] is None:
            return day
        canonical = f"{day:%Y%m%d}T{match['H']}{match['M']}{match['S'] or '00'}"
        zone = (match["zone"] or "").upper()
        if zone and tzid is not None:
            raise _Unreadable("a UTC offset and a TZID")
        if zone and zone != "Z":
            return _with_offset(canonical, zone).astimezone(timezone.utc)
        zone_name = str(tzid) if tzid is not None else None  # a VTIMEZONE of the calendar, or IANA
        value = vDDDTypes.from_ical(canonical + zone, timezone=zone_name)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as error:
        raise _Unreadable(text) from error
    if not isinstance(value, (date, datetime)):
        raise _Unreadable(text)
    return value


def _with_offset(canonical: str, zone: str) -> datetime:
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    local = datetime.strptime(canonical, "%Y%m%dT%H%M%S")
    return local.replace(tzinfo=timezone(-offset if zone[0] == "-" else offset))


def _canonical_until(rule: str) -> str:
    parts = rule.split(";")
    for index, part in enumerate(parts):
        key, _, value = part.partition("=")
        if key.strip().upper() == "UNTIL":
            parts[index] = f"{key}={vDDDTypes(_loose_value(value, None)).to_ical().decode()}"
    return ";".join(parts)


def _as_utc_stamp(prop: vDDDTypes) -> vDDDTypes:
    """A UTC-only property as UTC: zoned converted, floating read as UTC, a date as its midnight UTC."""
    value = prop.dt
    if isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() == timedelta(0):
        return prop
    if isinstance(value, datetime) and value.tzinfo is None and "TZID" in prop.params:
        value = _loose_value(f"{value:%Y%m%dT%H%M%S}", prop.params["TZID"])  # icalendar ignores it here
    if isinstance(value, datetime):
        utc = value.astimezone(timezone.utc) if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, date):
        utc = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    else:
        return prop
    new = vDDDTypes(utc)
    for key, param in prop.params.items():
        if key.upper() not in ("TZID", "VALUE"):
            new.params[key] = param
    return new


def _with_value_date(prop: Any) -> Any:
    """A DATE value says so with VALUE=DATE (RFC 5545 §3.3.4); many senders leave it out."""
    values = _dts(prop)
    if values and all(isinstance(v, date) and not isinstance(v, datetime) for v in values):
        if "VALUE" not in prop.params:
            prop.params["VALUE"] = "DATE"
    return prop
