"""Reading and writing iCalendar (RFC 5545) leniently, and the per-component facts iTIP needs.

Knows nothing of iTIP semantics: it answers "what is this component's UID, instance,
version, organizer, attendees", tolerating the ways real senders bend the format
(INTEROP rules 5, 8, 13, 15, 16).
"""

from __future__ import annotations

import copy
import functools
import pickle
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar, cast

from dateutil import parser as dateparser
from icalendar import Calendar, Component, vCalAddress

from gateway.core.addresses import normalize_address
from gateway.core.calendar.values import normalize_values
from gateway.core.model import NamedError

SCHEDULING_COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")
MAX_SEQUENCE = 2**31 - 1  # RFC 5545 INTEGER is a signed 32-bit value
PRODID = "-//Reefknot//Calendar Gateway//EN"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TZID_PROP_IN_EVENT = re.compile(r"^TZID[:;].*$", re.MULTILINE)
_Copied = TypeVar("_Copied", Component, Calendar)


class CalendarError(NamedError):
    """iCalendar text that cannot be read at all."""


@dataclass(frozen=True, order=True)
class Version:
    """The ordering key of a scheduling message: SEQUENCE, then DTSTAMP (RFC 5546 §2.1.5)."""

    sequence: int
    stamp: datetime

    def to_json(self) -> list[object]:
        return [self.sequence, self.stamp.isoformat()]

    @classmethod
    def from_json(cls, value: list[object]) -> Version:
        return cls(int(str(value[0])), datetime.fromisoformat(str(value[1])))


def parse_calendar(text: str) -> Calendar:
    """Parse one VCALENDAR, forgiving what real senders get wrong.

    NUL bytes are removed, any line ending is accepted, a stray ``TZID`` property inside
    a component (Zoom) is dropped, and a value with one clear meaning in a non-canonical
    form is rewritten canonically (``icalvalues``; what stays unreadable is for the
    caller to ask ``invalid_values``). Raises CalendarError when nothing usable remains.
    """
    cleaned = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    cleaned, iana_zones = _strip_stray_tzid_properties(cleaned)
    if "BEGIN:VCALENDAR" not in cleaned.upper():
        raise CalendarError("not-icalendar", "no BEGIN:VCALENDAR")
    try:
        calendars = Calendar.from_ical(cleaned.replace("\n", "\r\n"), multiple=True)
    except Exception as exc:  # icalendar raises ValueError, KeyError, IndexError …
        raise CalendarError("broken-icalendar", str(exc)[:200]) from exc
    if not calendars:
        raise CalendarError("not-icalendar", "no VCALENDAR component")
    calendar = calendars[0]
    if not isinstance(calendar, Calendar):
        raise CalendarError("not-icalendar", f"top level is {calendar.name}")
    normalized = normalize_values(calendar)
    normalized.subcomponents[0:0] = [z for block in iana_zones if (z := _zone_definition(block)) is not None]
    return normalized


def _strip_stray_tzid_properties(text: str) -> tuple[str, list[str]]:
    """Take out what must not be parsed with the rest: TZID properties inside VEVENT/VTODO (Zoom;
    only VTIMEZONE may have one), dropped, and VTIMEZONE blocks of IANA zones, returned apart.

    The times of the calendar are then read as the IANA database defines its zones
    (INTEROP rule 15), while the sender's definition is kept to be handed on as it came."""
    out: list[str] = []
    iana: list[str] = []
    stack: list[str] = []
    zone: list[str] | None = None
    for line in text.split("\n"):
        upper = line.upper()
        if zone is not None:
            zone.append(line)
            if upper.startswith("END:VTIMEZONE"):
                if _is_iana_zone_block(zone):
                    iana.append("\r\n".join(zone) + "\r\n")
                else:
                    out.extend(zone)
                zone = None
            continue
        if upper.startswith("BEGIN:VTIMEZONE"):
            zone = [line]
            continue
        if upper.startswith("BEGIN:"):
            stack.append(upper[6:].strip())
        elif upper.startswith("END:") and stack:
            stack.pop()
        elif stack and stack[-1] in SCHEDULING_COMPONENTS and _TZID_PROP_IN_EVENT.match(upper):
            continue
        out.append(line)
    if zone is not None:
        out.extend(zone)
    return "\n".join(out), iana


def _is_iana_zone_block(lines: list[str]) -> bool:
    tzids = [line.split(":", 1)[1].strip() for line in lines if line.upper().startswith("TZID:")]
    return len(tzids) == 1 and is_iana_zone(tzids[0])


@functools.lru_cache(maxsize=256)
def _zone_definition(block: str) -> Component | None:
    """One VTIMEZONE block, parsed once for every object that carries the same text; shared, never changed.

    A definition that cannot be read is left out: the zone's times do not depend on it.
    """
    try:
        zone = Component.from_ical(block)
    except Exception:  # icalendar raises ValueError, KeyError, IndexError …
        return None
    return zone if zone.name == "VTIMEZONE" else None


@functools.lru_cache(maxsize=1024)
def is_iana_zone(tzid: str) -> bool:
    """True when a TZID names a zone of the IANA time zone database."""
    if not tzid or "/" not in tzid and tzid.upper() != "UTC":
        return False
    try:
        zoneinfo.ZoneInfo(tzid)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def serialize_calendar(calendar: Calendar) -> str:
    """The calendar as RFC 5545 text: CRLF line endings, folded at 75 octets (§3.1)."""
    return "".join(fold_line(line) + "\r\n" for line in calendar.content_lines() if line)


def fold_line(line: str, limit: int = 75) -> str:
    """Fold one content line at ``limit`` octets without splitting a UTF-8 character.

    A fold never separates a backslash from the character it escapes, which some
    clients mis-read. (icalendar's own folding does the same, a character at a time.)
    """
    if line.isascii() and len(line) <= limit:
        return line
    data = line.encode("utf-8")
    pieces: list[bytes] = []
    start, width = 0, limit
    while len(data) - start > width:
        cut = start + width
        while data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            cut -= 1
        if data[cut - 1] == 0x5C and cut - 1 > start:  # keep "\\x" together
            cut -= 1
        pieces.append(data[start:cut])
        start, width = cut, limit - 1  # continuation lines start with a space
    pieces.append(data[start:])
    return b"\r\n ".join(pieces).decode("utf-8")


def new_calendar(method: str | None = None) -> Calendar:
    """An empty VCALENDAR with our PRODID and, when given, a METHOD."""
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    if method:
        calendar.add("METHOD", method)
    return calendar


def merge_calendars(calendars: Iterable[Calendar]) -> Calendar:
    """Many calendars as one stream: each VTIMEZONE once, and one for every zone used."""
    merged = new_calendar()
    zones: set[str] = set()
    for calendar in calendars:
        for component in calendar.subcomponents:
            if component.name == "VTIMEZONE":
                if str(component.get("TZID")) in zones:
                    continue
                zones.add(str(component.get("TZID")))
            merged.add_component(component)
    merged.add_missing_timezones()
    return merged


def method_of(calendar: Calendar) -> str | None:
    """The METHOD property, upper-cased, or None."""
    value = calendar.get("METHOD")
    return str(value).strip().upper() or None if value is not None else None


def components_of(calendar: Calendar) -> list[Component]:
    """The top-level scheduling components (VEVENT, VTODO, VJOURNAL, VFREEBUSY)."""
    return [c for c in calendar.subcomponents if c.name in SCHEDULING_COMPONENTS]


def timezones_of(calendar: Calendar) -> list[Component]:
    """The VTIMEZONE components."""
    return [c for c in calendar.subcomponents if c.name == "VTIMEZONE"]


def uid_of(component: Component) -> str:
    """The UID, byte-identical to what was sent (folding undone), or empty."""
    value = component.get("UID")
    return str(value) if value is not None else ""


def dt_value(prop: object) -> datetime | date | timedelta | None:
    """The ``dt`` of a date-time-like property; None for a missing or broken one."""
    if prop is None:
        return None
    try:
        value = getattr(prop, "dt", None)
    except Exception:  # icalendar's vBroken raises on attribute access
        return None
    return value if isinstance(value, (datetime, date, timedelta)) else None


def as_utc(value: datetime | date) -> datetime | date:
    """A date unchanged, an aware datetime in UTC, a floating datetime unchanged."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc)
    return value


def sequence_of(component: Component) -> int:
    """SEQUENCE, 0 when missing or unreadable, clamped to RFC 5545's integer range.

    When SEQUENCE is 0 and Exchange's X-MICROSOFT-CDO-APPT-SEQUENCE is larger, that is
    the real counter (INTEROP rule 13).
    """
    sequence = _int_value(component.get("SEQUENCE"))
    if sequence == 0:
        sequence = _int_value(component.get("X-MICROSOFT-CDO-APPT-SEQUENCE"))
    return min(max(sequence, 0), MAX_SEQUENCE)


def _int_value(prop: object) -> int:
    if prop is None:
        return 0
    try:
        return int(str(prop).strip())
    except ValueError:
        return 0


def dtstamp_of(component: Component) -> datetime:
    """DTSTAMP as an aware UTC datetime, read leniently; the epoch when absent or unreadable."""
    prop = component.get("DTSTAMP")
    if prop is None:
        return _EPOCH
    value = dt_value(prop)
    if not isinstance(value, (datetime, date)):
        raw = prop.to_ical() if hasattr(prop, "to_ical") else prop
        value = _parse_loose_datetime(raw.decode() if isinstance(raw, bytes) else str(raw))
    if value is None:
        return _EPOCH
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _parse_loose_datetime(text: str) -> datetime | None:
    try:
        return dateparser.parse(text.strip())
    except (ValueError, OverflowError):
        return None


def version_of(component: Component) -> Version:
    """The ordering key (SEQUENCE, DTSTAMP) of a component."""
    return Version(sequence_of(component), dtstamp_of(component))


def organizer_of(component: Component) -> str | None:
    """The organizer's normalized address, or None."""
    return normalize_address(component.get("ORGANIZER"))


def organizer_identities(component: Component) -> set[str]:
    """Every address that names the organizer: the address, its EMAIL and its SENT-BY (INTEROP rule 9).

    iCloud organizes from tokens like ``2_…@imip.me.com`` with the person in ``EMAIL``.
    """
    prop = component.get("ORGANIZER")
    if prop is None:
        return set()
    params = getattr(prop, "params", {})
    found = (normalize_address(v) for v in (prop, params.get("EMAIL"), params.get("SENT-BY")))
    return {a for a in found if a}


def attendee_properties(component: Component) -> list[vCalAddress]:
    """The ATTENDEE properties directly inside the component (never those inside a VALARM)."""
    value = component.get("ATTENDEE")
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def attendees_of(component: Component) -> list[str]:
    """The normalized addresses of the component's attendees, in order, invalid ones skipped."""
    found = (normalize_address(a) for a in attendee_properties(component))
    return [a for a in found if a is not None]


def find_attendee(component: Component, address: str) -> vCalAddress | None:
    """The ATTENDEE property of the given normalized address, or None."""
    for prop in attendee_properties(component):
        if normalize_address(prop) == address:
            return prop
    return None


def partstat_of(prop: vCalAddress) -> str:
    """An attendee's PARTSTAT, upper-cased; NEEDS-ACTION when absent (RFC 5545 default)."""
    return str(prop.params.get("PARTSTAT", "NEEDS-ACTION")).upper()


def set_attendees(component: Component, attendees: Iterable[vCalAddress]) -> None:
    """Replace the component's ATTENDEE properties."""
    if "ATTENDEE" in component:
        del component["ATTENDEE"]
    for prop in attendees:
        component.add("ATTENDEE", prop, encode=False)


def copy_component(component: Component) -> Component:
    """A deep copy, so that no caller's object is ever mutated."""
    return _deep_copy(component)


def copy_calendar(calendar: Calendar) -> Calendar:
    """A deep copy of a whole calendar."""
    return _deep_copy(calendar)


def _deep_copy(value: _Copied) -> _Copied:
    # A pickle round trip builds the same object graph as copy.deepcopy (both go through
    # __reduce_ex__; icalendar defines no __deepcopy__) about five times faster, since
    # the walk runs in C. The bytes never leave this call, so nothing untrusted is loaded.
    # A value some tzinfo cannot pickle is copied the slow way.
    try:
        return cast(_Copied, pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)))
    except (pickle.PicklingError, TypeError, AttributeError):
        return copy.deepcopy(value)


def start_of(component: Component) -> datetime | date | None:
    """DTSTART's value, or None."""
    value = dt_value(component.get("DTSTART"))
    return value if isinstance(value, (datetime, date)) else None


def duration_of(component: Component) -> timedelta:
    """The length of one occurrence: DTEND/DUE minus DTSTART, or DURATION, else zero."""
    start = start_of(component)
    for name in ("DTEND", "DUE"):
        end = dt_value(component.get(name))
        if start is not None and isinstance(end, (datetime, date)):
            try:
                return end - start
            except TypeError:
                return timedelta(0)
    value = dt_value(component.get("DURATION"))
    return value if isinstance(value, timedelta) else timedelta(0)


