"""Server-side scheduling rules of CalDAV (RFC 6638 §3.2): the Schedule-Tag, and what an attendee may change.

Pure: takes stored and new objects, returns verdicts; never mutates its inputs. Not
for: which iTIP messages a change needs, SCHEDULE-AGENT, SCHEDULE-FORCE-SEND and
SCHEDULE-STATUS (``gateway.core.itip``), nor HTTP preconditions (the CalDAV service).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from icalendar import Calendar, Component
from icalendar.prop import vRecur

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import (
    components_of,
    dt_value,
    sequence_of,
    start_of,
)
from gateway.core.calendar.instances import (
    MASTER,
    exdate_keys,
    instance_key,
    override_from_master,
    recurrence_key_of,
)
from gateway.core.itip.resource import (
    SCHEDULE_AGENT,
    SCHEDULE_FORCE_SEND,
    SCHEDULE_STATUS,
    SCHEDULING_PARAMETERS,
)


View = dict[str, frozenset[str]]  # a component as comparable facts: entry name -> canonical values


@dataclass(frozen=True)
class _Lens:
    """What one comparison looks past: properties by name, whole address entries, their parameters."""

    ignores_property: Callable[[str], bool]
    ignores_entry: Callable[[str, object], bool]
    ignored_parameters: Callable[[str, object], frozenset[str]]


_ADDRESS_PROPERTIES = ("ORGANIZER", "ATTENDEE")
_END_PROPERTIES = ("DTEND", "DUE", "DURATION")  # one "END" entry: an end written as an end or a length
_SKIPPED_PARAMETERS = frozenset({"VALUE", "TZID"})  # folded into the canonical value
_DEFAULT_PARAMETERS = frozenset({
    ("ROLE", "REQ-PARTICIPANT"), ("CUTYPE", "INDIVIDUAL"), ("RSVP", "FALSE"), ("SCHEDULE-AGENT", "SERVER"),
})
_ENUMERATED_PARAMETERS = frozenset({"ROLE", "CUTYPE", "PARTSTAT", "RSVP", SCHEDULE_AGENT, SCHEDULE_FORCE_SEND})
_DEFAULT_RRULE_PARTS = frozenset({"INTERVAL=1", "WKST=MO"})

# §3.2.10: what the server writes when it merges a REPLY must not move the organizer's tag.
_STAMPS = frozenset({"DTSTAMP", "LAST-MODIFIED", "CREATED"})
_CLIENT_STATE_PREFIXES = ("X-MOZ-", "X-APPLE-", "X-CALENDARSERVER-")  # alarm acks, travel time, …
_ANSWER_PARAMETERS = frozenset({"PARTSTAT", "RSVP", SCHEDULE_STATUS, SCHEDULE_FORCE_SEND, "DELEGATED-TO"})

# §3.2.2.1: what an attendee may change in its own copy, besides VALARMs and new EXDATEs.
_ATTENDEE_PRIVATE = _STAMPS | {"TRANSP", "SEQUENCE", "CATEGORIES", "COMMENT", "EXDATE"}
_OWN_PARAMETERS = frozenset({"PARTSTAT", "RSVP", "CN", "DELEGATED-TO", *SCHEDULING_PARAMETERS})


def schedule_tag_of(calendar: Calendar) -> str:
    """A short, stable digest of what the organizer decided: the Schedule-Tag (RFC 6638 §3.2.10).

    Merging attendees' replies leaves it alone: answer parameters (PARTSTAT, RSVP,
    SCHEDULE-STATUS, SCHEDULE-FORCE-SEND, DELEGATED-TO), delegates a reply brought in,
    stamps, TRANSP, VALARMs, clients' X-MOZ-/X-APPLE-/X-CALENDARSERVER- state, and an
    override that is the master's instance with only answers added. Anything else the
    organizer changes (times, summary, attendees, SEQUENCE) changes it. Values are
    compared by meaning: property order, folding and time zones of the same instant
    do not count.
    """
    instances = [(recurrence_key_of(c), c) for c in components_of(calendar)]
    master = next((c for key, c in instances if key == MASTER), None)
    lines = []
    for key, component in instances:
        view = _view_of(component, _TAG_LENS)
        if not _is_plain_instance(view, master, key):
            lines.append(f"{key}|{component.name}|{_view_text(view)}")
    return hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()[:16]


def _is_plain_instance(view: View, master: Component | None, key: str) -> bool:
    """An override that says nothing the master does not already say (answers aside)."""
    derived = override_from_master(master, key) if key != MASTER else None
    return derived is not None and _view_of(derived, _TAG_LENS) == view


def attendee_change_refusal(old: Calendar, new: Calendar, attendee: str) -> str | None:
    """Why an attendee's change to its copy is not allowed, or None (RFC 6638 §3.2.2.1).

    Allowed: its own ATTENDEE parameters (PARTSTAT, RSVP, CN, DELEGATED-TO, SCHEDULE-*)
    and the delegates it names, VALARMs, TRANSP, CATEGORIES, COMMENT, X- properties,
    stamps, a SEQUENCE not raised, EXDATEs added (declined instances, with their
    overrides dropped), and overrides that are the master's instance with those changes.
    The detail names the first other change; the caller answers 403
    ``CALDAV:allowed-attendee-scheduling-object-change``.
    """
    before, after = _by_instance(old), _by_instance(new)
    if len(after) != len(components_of(new)):
        return "two components for one instance"
    lens = _attendee_lens(normalize_address(attendee) or attendee.strip().lower())
    new_master = after.get(MASTER)
    for key in sorted(before.keys() - after.keys()):
        if key == MASTER or new_master is None or key not in exdate_keys(new_master):
            return f"{_where(key)} removed"
    for key, component in sorted(after.items()):
        problem = _instance_refusal(before, key, component, lens)
        if problem is not None:
            return problem
    old_master = before.get(MASTER)
    if old_master is not None and new_master is not None and exdate_keys(old_master) - exdate_keys(new_master):
        return "EXDATE removed (master)"
    return None


def _old_instance(before: dict[str, Component], key: str) -> Component | None:
    """The stored override, else the instance as the stored master has it."""
    return before.get(key) or override_from_master(before.get(MASTER), key)


def _instance_refusal(before: dict[str, Component], key: str, component: Component, lens: _Lens) -> str | None:
    base = _old_instance(before, key)
    where = _where(key)
    if base is None:
        return f"{where} added"
    if component.name != base.name:
        return f"{base.name} became {component.name} ({where})"
    if sequence_of(component) > sequence_of(base):
        return f"SEQUENCE raised ({where})"
    return _view_difference(_view_of(base, lens), _view_of(component, lens), where)


def _view_difference(old: View, new: View, where: str) -> str | None:
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) != new.get(name):
            change = "added" if name not in old else "removed" if name not in new else "changed"
            return f"{name} {change} ({where})"
    return None


def _where(key: str) -> str:
    return "master" if key == MASTER else f"instance {key}"


def _view_of(component: Component, lens: _Lens) -> View:
    """A component as a comparable set of facts, as the lens sees it."""
    found: dict[str, set[str]] = {}
    for name, prop in _properties(component):
        if lens.ignores_property(name) or name in _END_PROPERTIES:
            continue
        if name in _ADDRESS_PROPERTIES:
            if not lens.ignores_entry(name, prop):
                found.setdefault(f"{name} {_address_text(prop)}", set()).add(
                    _parameters_text(prop, lens.ignored_parameters(name, prop))
                )
        else:
            found.setdefault(name, set()).update(_value_texts(prop))
    end = _end_text(component)
    if end is not None:
        found["END"] = {end}
    for sub in component.subcomponents:
        if sub.name != "VALARM":  # alarms are each calendar user's own
            found.setdefault(f"BEGIN:{sub.name}", set()).add(_view_text(_view_of(sub, lens)))
    return {name: frozenset(values) for name, values in found.items()}


def _properties(component: Component) -> Iterator[tuple[str, object]]:
    for name, value in component.items():
        for prop in value if isinstance(value, list) else [value]:
            yield str(name).upper(), prop


def _view_text(view: View) -> str:
    return "\n".join(f"{name}={sorted(values)}" for name, values in sorted(view.items()))


def _value_texts(prop: object) -> set[str]:
    """Canonical values: instants for times (a list property gives one per value), RRULE parts sorted."""
    params = _parameters_text(prop, frozenset())
    items = getattr(prop, "dts", None)
    if items is not None:
        return {f"{_time_text(getattr(item, 'dt', item))};{params}" for item in items}
    if isinstance(prop, vRecur):
        return {_recur_text(prop)}
    if hasattr(prop, "dt"):
        return {f"{_time_text(dt_value(prop))};{params}"}
    raw = prop.to_ical() if hasattr(prop, "to_ical") else str(prop)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return {f"{text};{params}"}


def _time_text(value: object) -> str:
    if isinstance(value, (datetime, date)):
        return instance_key(value)
    if isinstance(value, timedelta):
        return f"{int(value.total_seconds())}s"
    if isinstance(value, tuple):  # a PERIOD: start and end or length
        return "/".join(_time_text(v) for v in value)
    return str(value)


def _end_text(component: Component) -> str | None:
    """Where the component ends, whether written as DTEND, DUE or a DURATION from DTSTART."""
    for name in ("DTEND", "DUE"):
        end = dt_value(component.get(name))
        if isinstance(end, (datetime, date)):
            return _time_text(end)
    length = dt_value(component.get("DURATION"))
    if not isinstance(length, timedelta):
        return None
    start = start_of(component)
    return _time_text(start + length) if start is not None else _time_text(length)


def _recur_text(rule: vRecur) -> str:
    parts = set()
    for name, values in rule.items():
        items = values if isinstance(values, list) else [values]
        texts = sorted(instance_key(v) if isinstance(v, (datetime, date)) else str(v).upper() for v in items)
        parts.add(f"{str(name).upper()}={','.join(texts)}")
    return ";".join(sorted(parts - _DEFAULT_RRULE_PARTS))


def _address_text(prop: object) -> str:
    return normalize_address(prop) or str(prop).strip().lower()


def _parameters_text(prop: object, ignored: frozenset[str]) -> str:
    """Parameters as sorted text, without X- ones, defaults, and those the lens ignores."""
    items = []
    for name, value in getattr(prop, "params", {}).items():
        upper = str(name).upper()
        if upper in ignored or upper in _SKIPPED_PARAMETERS or upper.startswith("X-"):
            continue
        values = value if isinstance(value, list) else [value]
        text = ",".join(sorted(str(v) for v in values))
        text = text.upper() if upper in _ENUMERATED_PARAMETERS else text
        if (upper, text) not in _DEFAULT_PARAMETERS:
            items.append(f"{upper}={text}")
    return ";".join(sorted(items))


def _by_instance(calendar: Calendar) -> dict[str, Component]:
    return {recurrence_key_of(c): c for c in components_of(calendar)}


def _addresses_in(value: object) -> set[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    found = (normalize_address(str(item).strip().strip('"')) for item in items)
    return {a for a in found if a}


def _tag_ignores_property(name: str) -> bool:
    return name in _STAMPS or name == "TRANSP" or name.startswith(_CLIENT_STATE_PREFIXES)


def _tag_ignores_entry(name: str, prop: object) -> bool:
    """A delegate the server added when it merged a delegation reply."""
    return name == "ATTENDEE" and "DELEGATED-FROM" in getattr(prop, "params", {})


def _tag_ignored_parameters(name: str, prop: object) -> frozenset[str]:
    return _ANSWER_PARAMETERS if name == "ATTENDEE" else frozenset({SCHEDULE_STATUS, SCHEDULE_FORCE_SEND})


_TAG_LENS = _Lens(_tag_ignores_property, _tag_ignores_entry, _tag_ignored_parameters)


def _attendee_lens(address: str) -> _Lens:
    """What the attendee ``address`` may change in its own copy (RFC 6638 §3.2.2.1)."""

    def ignores_property(name: str) -> bool:
        return name in _ATTENDEE_PRIVATE or name.startswith("X-")

    def ignores_entry(name: str, prop: object) -> bool:  # the delegates it names
        return name == "ATTENDEE" and address in _addresses_in(getattr(prop, "params", {}).get("DELEGATED-FROM"))

    def ignored_parameters(name: str, prop: object) -> frozenset[str]:
        if name == "ORGANIZER":
            return frozenset(SCHEDULING_PARAMETERS)
        return _OWN_PARAMETERS if normalize_address(prop) == address else frozenset({SCHEDULE_STATUS})

    return _Lens(ignores_property, ignores_entry, ignored_parameters)
