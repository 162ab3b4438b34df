"""Which differences between two versions of one component matter to attendees (RFC 5546 §2.1.4).

Compares meaning, not text: times as instants, RRULEs as normalized parts, EXDATE and
RDATE as sets, attendees by address. What the organizer's copy records from replies
(PARTSTAT, RSVP, SCHEDULE-STATUS, comments), stamps, alarms and X- properties never
count. Knows nothing of messages or SEQUENCE.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from icalendar import Component

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import attendee_properties, dt_value, start_of
from gateway.core.calendar.instances import exdate_keys, instance_key, rrules_of

# Changes that question every attendee's answer (RFC 5546 §2.1.4, RFC 5545 §3.8.7.4).
RESETTING_PROPERTIES = ("DTSTART", "DTEND", "DURATION", "DUE", "RRULE", "RDATE", "EXDATE", "STATUS")
_NEVER_SIGNIFICANT = frozenset({
    "DTSTAMP", "LAST-MODIFIED", "CREATED", "SEQUENCE", "RECURRENCE-ID", "REQUEST-STATUS",
    "TRANSP", "COLOR",  # how each calendar user shows the event, not what the event is
})
# Attendee parameters that replies (or the server) write in the organizer's copy.
_ANSWER_PARAMETERS = frozenset({
    "PARTSTAT", "RSVP", "SCHEDULE-STATUS", "SCHEDULE-AGENT", "SCHEDULE-FORCE-SEND", "DELEGATED-TO", "DELEGATED-FROM",
})
_DEFAULT_STATUS = {"VEVENT": "CONFIRMED", "VTODO": "NEEDS-ACTION"}
_DEFAULT_RRULE_PARTS = {("INTERVAL", ("1",)), ("WKST", ("MO",))}


@dataclass(frozen=True)
class ComponentDiff:
    """How a component changed, as far as its attendees are concerned."""

    resets: bool = False  # every answer is in question: PARTSTAT back to NEEDS-ACTION
    content: bool = False  # something else every attendee should see (SUMMARY, LOCATION …)
    exdates_added: frozenset[str] = frozenset()  # instances newly excluded from a series
    attendees_added: frozenset[str] = frozenset()
    attendees_removed: frozenset[str] = frozenset()
    attendees_changed: frozenset[str] = frozenset()  # own parameters changed (ROLE, CN …)

    @property
    def changed(self) -> bool:
        """True when the change is worth a message to someone (and a SEQUENCE bump)."""
        return bool(
            self.resets or self.content or self.exdates_added
            or self.attendees_added or self.attendees_removed or self.attendees_changed
        )

    def concerns(self, attendee: str) -> bool:
        """True when an attendee who stays should be sent the new version."""
        return self.resets or self.content or attendee in self.attendees_changed


def diff_components(old: Component, new: Component) -> ComponentDiff:
    """Compare two versions of the same instance of one component."""
    added, removed, changed = _attendee_changes(old, new)
    old_exdates, new_exdates = exdate_keys(old), exdate_keys(new)
    return ComponentDiff(
        resets=_resets(old, new) or bool(old_exdates - new_exdates),
        content=_content_differs(old, new),
        exdates_added=frozenset(new_exdates - old_exdates),
        attendees_added=added,
        attendees_removed=removed,
        attendees_changed=changed,
    )


def _resets(old: Component, new: Component) -> bool:
    return (
        _instant(start_of(old)) != _instant(start_of(new))
        or _end_of(old) != _end_of(new)
        or _rrules(old) != _rrules(new)
        or _rdates(old) != _rdates(new)
        or _status(old) != _status(new)
    )


def _instant(value: datetime | date | None) -> str | None:
    return instance_key(value) if value is not None else None


def _end_of(component: Component) -> str | None:
    """The end (DTEND or DUE) as an instant, whether written as an end or as a DURATION."""
    for name in ("DTEND", "DUE"):
        end = dt_value(component.get(name))
        if isinstance(end, (datetime, date)):
            return instance_key(end)
    duration = dt_value(component.get("DURATION"))
    if not isinstance(duration, timedelta):
        return None
    start = start_of(component)
    return instance_key(start + duration) if start is not None else f"P{duration}"


def _rrules(component: Component) -> frozenset[frozenset[tuple[str, tuple[str, ...]]]]:
    """RRULEs as sets of parts, each part's values sorted: order never matters."""
    rules = set()
    for rule in rrules_of(component):
        parts = {(str(name).upper(), _rrule_values(values)) for name, values in rule.items()}
        rules.add(frozenset(parts - _DEFAULT_RRULE_PARTS))
    return frozenset(rules)


def _rrule_values(values: object) -> tuple[str, ...]:
    items = values if isinstance(values, list) else [values]
    keys = (instance_key(v) if isinstance(v, (datetime, date)) else str(v).upper() for v in items)
    return tuple(sorted(keys))


def _rdates(component: Component) -> frozenset[str]:
    """RDATE values as a set of instants; a PERIOD counts by its start and end."""
    found: set[str] = set()
    value = component.get("RDATE")
    for prop in value if isinstance(value, list) else [value] if value is not None else []:
        for item in getattr(prop, "dts", []):
            found.add(_rdate_key(getattr(item, "dt", None)))
    return frozenset(found)


def _rdate_key(value: object) -> str:
    if isinstance(value, (datetime, date)):
        return instance_key(value)
    if isinstance(value, tuple) and value and isinstance(value[0], (datetime, date)):
        end = value[1]
        return f"{instance_key(value[0])}/{instance_key(end) if isinstance(end, (datetime, date)) else end}"
    return str(value)


def _status(component: Component) -> str:
    value = str(component.get("STATUS", "")).strip().upper()
    return value or _DEFAULT_STATUS.get(str(component.name), "")


def _content_differs(old: Component, new: Component) -> bool:
    names = (set(old.keys()) | set(new.keys())) - _NEVER_SIGNIFICANT - set(RESETTING_PROPERTIES)
    names = {n for n in names if n != "ATTENDEE" and not n.upper().startswith("X-")}
    if any(_property_values(old, n) != _property_values(new, n) for n in names):
        return True
    return _subcomponents(old) != _subcomponents(new)


def _property_values(component: Component, name: str) -> Counter[tuple[str, tuple[tuple[str, str], ...]]]:
    """A property's values with their parameters, as a multiset: order never matters."""
    value = component.get(name)
    props = value if isinstance(value, list) else [value] if value is not None else []
    found: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for prop in props:
        if name == "ORGANIZER":
            text = normalize_address(prop) or str(prop)
            found[(text, _parameters(prop, exclude=_ANSWER_PARAMETERS))] += 1
        else:
            raw = prop.to_ical() if hasattr(prop, "to_ical") else str(prop)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            found[(text, _parameters(prop, exclude=frozenset()))] += 1
    return found


def _parameters(prop: object, *, exclude: frozenset[str]) -> tuple[tuple[str, str], ...]:
    params = getattr(prop, "params", {})
    items = []
    for name, value in params.items():
        upper = str(name).upper()
        if upper in exclude or upper.startswith("X-"):
            continue
        values: Iterable[object] = value if isinstance(value, list) else [value]
        items.append((upper, ",".join(sorted(str(v) for v in values))))
    return tuple(sorted(items))


def _subcomponents(component: Component) -> Counter[bytes]:
    """Subcomponents other than alarms (which are private to each copy)."""
    return Counter(c.to_ical() for c in component.subcomponents if c.name != "VALARM")


def _attendee_changes(old: Component, new: Component) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    before, after = _attendee_parameters(old), _attendee_parameters(new)
    added = frozenset(after.keys() - before.keys())
    removed = frozenset(before.keys() - after.keys())
    changed = frozenset(a for a in before.keys() & after.keys() if before[a] != after[a])
    return added, removed, changed


def _attendee_parameters(component: Component) -> dict[str, tuple[tuple[str, str], ...]]:
    found: dict[str, tuple[tuple[str, str], ...]] = {}
    for prop in attendee_properties(component):
        address = normalize_address(prop)
        if address is not None:
            found[address] = _parameters(prop, exclude=_ANSWER_PARAMETERS)
    return found
