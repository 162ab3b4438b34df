"""Instances of a recurring object: instance keys, RECURRENCE-IDs, EXDATE and RDATE values, overrides.

An instance key names one occurrence by its UTC instant (or its date), so that a
RECURRENCE-ID written in any zone finds the same instance (INTEROP rule 14). Knows
nothing of iTIP.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timezone

from icalendar import Component
from icalendar.prop import vRecur

from gateway.core.calendar.ical import as_utc, copy_component, dt_value, duration_of, start_of

MASTER = ""  # the instance key of a master component (no RECURRENCE-ID)


def instance_key(value: datetime | date | None) -> str:
    """A comparable key for a RECURRENCE-ID: the same instant gives the same key in any zone."""
    if value is None:
        return MASTER
    value = as_utc(value)
    if isinstance(value, datetime):
        return value.strftime("%Y%m%dT%H%M%S") + ("Z" if value.tzinfo else "")
    return value.strftime("%Y%m%d")


def recurrence_id_of(component: Component) -> datetime | date | None:
    """The RECURRENCE-ID value, or None for a master component."""
    value = dt_value(component.get("RECURRENCE-ID"))
    return value if isinstance(value, (datetime, date)) else None


def recurrence_key_of(component: Component) -> str:
    """The instance key of a component (MASTER for the master)."""
    return instance_key(recurrence_id_of(component))


def is_this_and_future(component: Component) -> bool:
    """True when the RECURRENCE-ID carries RANGE=THISANDFUTURE."""
    prop = component.get("RECURRENCE-ID")
    params = getattr(prop, "params", {}) if prop is not None else {}
    return str(params.get("RANGE", "")).upper() == "THISANDFUTURE"


def has_recurrence(component: Component) -> bool:
    """True when the component is a recurring master (RRULE or RDATE)."""
    return "RRULE" in component or "RDATE" in component


def rrules_of(component: Component) -> list[vRecur]:
    """The RRULE values (usually one)."""
    value = component.get("RRULE")
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def date_values(component: Component, name: str) -> Iterator[datetime | date]:
    """Every date or date-time in a list-valued property such as EXDATE or RDATE."""
    value = component.get(name)
    if value is None:
        return
    for prop in value if isinstance(value, list) else [value]:
        for item in getattr(prop, "dts", []):
            dt = dt_value(item)
            if isinstance(dt, (datetime, date)):
                yield dt


def add_date_value(component: Component, name: str, value: datetime | date) -> None:
    """Append one value to EXDATE or RDATE, keeping the values already there."""
    existing = list(date_values(component, name))
    if instance_key(value) in {instance_key(v) for v in existing}:
        return
    if name in component:
        del component[name]
    for item in [*existing, value]:
        component.add(name, item)


def instance_start(master: Component, key: str) -> datetime | date | None:
    """The RECURRENCE-ID value for an instance key, written in the master's DTSTART zone."""
    start = start_of(master)
    if key == MASTER or start is None:
        return None
    if len(key) == 8:
        return date(int(key[:4]), int(key[4:6]), int(key[6:]))
    moment = datetime.strptime(key.rstrip("Z"), "%Y%m%dT%H%M%S")
    if key.endswith("Z"):
        moment = moment.replace(tzinfo=timezone.utc)
        if isinstance(start, datetime) and start.tzinfo is not None:
            return moment.astimezone(start.tzinfo)
    return moment


def exdate_keys(component: Component) -> set[str]:
    """The instance keys a component's EXDATEs exclude."""
    return {instance_key(d) for d in date_values(component, "EXDATE")}


def override_from_master(master: Component | None, key: str) -> Component | None:
    """The instance of a recurring master at ``key`` as a standalone override component.

    None when there is no master, it does not recur, or it excludes the instance. The
    end (DTEND or DUE) keeps the master's length; a DURATION is kept as it is.
    """
    if master is None or key == MASTER or not has_recurrence(master) or key in exdate_keys(master):
        return None
    start = instance_start(master, key)
    if start is None or start_of(master) is None:
        return None
    length = duration_of(master)
    override = copy_component(master)
    for name in ("RRULE", "RDATE", "EXDATE", "EXRULE", "DTSTART", "DTEND", "DUE", "RECURRENCE-ID"):
        override.pop(name, None)
    override.add("DTSTART", start)
    override.add("RECURRENCE-ID", start)
    for name in ("DTEND", "DUE"):
        if isinstance(dt_value(master.get(name)), (datetime, date)):
            override.add(name, start + length)
    return override
