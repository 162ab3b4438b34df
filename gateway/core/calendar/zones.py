"""VTIMEZONE definitions for the TZIDs an object uses: the one it carried, else one written for a known zone.

An object keeps the definitions it came with, an IANA zone's too (its times are read as
the IANA database defines the zone, ``gateway.core.calendar.ical``): the sender's may
reach further than one written here, whose rules stop in 2038. Only a TZID that came
without one gets a definition from here, for whatever hands the object on (an iMIP
message, a CalDAV client, the store; RFC 5545 §3.2.19). It starts at the object's first
date, which keeps it short.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from icalendar import Calendar, Component, Timezone

from gateway.core.calendar.ical import copy_component, dt_value, timezones_of

_FIRST_OF = ("DTSTART", "DUE", "RECURRENCE-ID")


def timezones_for(components: list[Component], source: Calendar) -> list[Component]:
    """The VTIMEZONE of every TZID used: the stored one, else generated for a known zone."""
    stored = {str(tz.get("TZID", "")): tz for tz in timezones_of(source)}
    zones: list[Component] = []
    for tzid in sorted(tzids_used(components) - {"UTC"}):
        if tzid in stored:
            zones.append(copy_component(stored[tzid]))
            continue
        generated = generated_timezone(tzid, first_date(components))
        if generated is not None:
            zones.append(generated)
    return zones


def zone_texts(components: list[Component], defined: Iterable[str] = ()) -> str:
    """The VTIMEZONE text of every TZID used and not in ``defined``, for a writer that adds them to stored text."""
    first = first_date(components)
    year_start = date(first.year, 1, 1) if first is not None else None
    return "".join(_zone_text(tzid, year_start) for tzid in sorted(tzids_used(components) - {"UTC", *defined}))


@functools.lru_cache(maxsize=512)
def _zone_text(tzid: str, first: date | None) -> str:
    zone = generated_timezone(tzid, first)
    return zone.to_ical().decode() if zone is not None else ""


def generated_timezone(tzid: str, first: date | None) -> Timezone | None:
    """A VTIMEZONE for an IANA (or well-known Windows) zone from ``first`` (a day before it) on."""
    start = first - timedelta(days=1) if first is not None else Timezone.DEFAULT_FIRST_DATE
    last = max(Timezone.DEFAULT_LAST_DATE, start + timedelta(days=2 * 366))
    try:
        return Timezone.from_tzid(tzid, first_date=start, last_date=last)
    except ValueError:
        return None  # a TZID nobody can define; receivers cope (INTEROP rule 15)


def first_date(components: list[Component]) -> date | None:
    starts = [_as_date(dt_value(c.get(n))) for c in components for n in _FIRST_OF]
    known = [d for d in starts if d is not None]
    return min(known) if known else None


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else None


def tzids_used(components: list[Component]) -> set[str]:
    found: set[str] = set()
    for component in components:
        for _name, value in component.property_items(recursive=True, sorted=False):
            params = getattr(value, "params", None)
            if params is not None and params.get("TZID"):
                found.add(str(params["TZID"]))
    return found
