"""Is this calendar a well-formed iTIP message? RFC 5546 §3's restriction tables, as real mail allows.

Not for: whether the message concerns a recipient, whether it is newer than what is
stored, or whether its sender may send it (``apply``, ``ordering``, the trust rules).
Every refusal is an ``ItipError`` whose ``rule`` is a kebab-case name for the inbox
record. The tables are data (``RESTRICTIONS``); the checks below only read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType

from icalendar import Calendar, Component

from gateway.core.calendar.ical import attendee_properties, components_of, dt_value, uid_of
from gateway.core.calendar.instances import recurrence_key_of
from gateway.core.calendar.recurrence import recurrence_limit
from gateway.core.model import Method, NamedError

MAX_COMPONENTS = 1000  # scheduling components in one message
MAX_ATTENDEES = 5000  # ATTENDEE properties in one component

VEVENT, VTODO, VJOURNAL, VFREEBUSY = "VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY"


class ItipError(NamedError):
    """An iTIP message that breaks a rule of RFC 5546 §3; ``rule`` names it."""

    @property
    def rule(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Restriction:
    """What one (component, method) row of RFC 5546 §3 demands of every component, by property name.

    ``required``: at least one (else ``missing-<property>``); ``exactly_one``: one and only
    one, because who is speaking must be unambiguous (else ``<method>-needs-exactly-one-<property>``);
    ``forbidden``: none (else ``<property>-not-allowed``).
    """

    required: tuple[str, ...] = ()
    exactly_one: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()


# RFC 5546 §3.2 (VEVENT), §3.3 (VFREEBUSY), §3.4 (VTODO), §3.5 (VJOURNAL). A pair that is
# absent is a method the component type does not take. Only the presence rules that
# decide whether a message can be applied are kept; these table entries are relaxed on
# purpose, because real senders break them and nothing is lost by accepting:
#
# - DTSTAMP (1 everywhere): Outlook and Thunderbird forwards drop it; ``messages.read_itip``
#   then gives it the mail's Date (INTEROP rule 13).
# - SEQUENCE (1 in ADD, CANCEL, COUNTER, DECLINECOUNTER): a missing SEQUENCE is 0, an
#   absurd one is clamped (INTEROP rule 13).
# - SUMMARY, and DESCRIPTION for VJOURNAL ("1, can be null"): absent reads as empty.
# - PRIORITY (VTODO tables): absent means undefined (RFC 5545 §3.8.1.9).
# - DTSTART for VTODO: RFC 5545 makes it optional and to-dos without a start are common.
# - ORGANIZER in PUBLISH: ticketing and travel senders omit it; a PUBLISH is informational.
# - ORGANIZER in a VEVENT/VTODO REPLY: Outlook omits it; the UID finds the organizer's
#   copy (INTEROP rule 12).
# - ATTENDEE in REQUEST (1+): webinar senders (Zoom) invite with no attendee list; whether
#   the message concerns the recipient is decided when applying.
# - ATTENDEE in PUBLISH (0): calendar exports keep the attendee list; it is harmless.
# - UID in VFREEBUSY PUBLISH: RFC 5546's own §4.3.1 example has none, and a published
#   busy-time snapshot is never matched by UID.
# - Properties and VALARMs a table sets to 0 (REQUEST-STATUS in PUBLISH, REQUEST and
#   CANCEL; DTSTART, SEQUENCE, SUMMARY … in REFRESH; VALARM in REPLY and CANCEL): Google
#   puts VALARMs in replies; applying ignores them all.
# - STATUS values per method: iCloud cancels without STATUS:CANCELLED (INTEROP rule 14).
# - Parameters (PARTSTAT missing or unknown, X- parameters), X- properties, and VERSION
#   and PRODID at calendar level are not checked (INTEROP rule 16).
#
# Three rules are stricter than the tables, because the engine needs them:
# - COUNTER needs an ATTENDEE (table: 0+): the organizer must learn who proposes.
# - REPLY names exactly one ATTENDEE for every component type, VTODO included (its table
#   allows 1+): whose answer it is must be unambiguous (INTEROP rule 22).
# - PUBLISH carries one UID like every other method (table: any number): the engine
#   applies one object per message.
RESTRICTIONS: Mapping[tuple[str, Method], Restriction] = MappingProxyType({
    (VEVENT, Method.PUBLISH): Restriction(required=("UID", "DTSTART")),
    (VEVENT, Method.REQUEST): Restriction(required=("UID", "DTSTART", "ORGANIZER")),
    (VEVENT, Method.REPLY): Restriction(required=("UID",), exactly_one=("ATTENDEE",)),
    (VEVENT, Method.ADD): Restriction(required=("UID", "DTSTART", "ORGANIZER"), forbidden=("RECURRENCE-ID",)),
    (VEVENT, Method.CANCEL): Restriction(required=("UID", "ORGANIZER")),
    (VEVENT, Method.REFRESH): Restriction(required=("UID", "ORGANIZER"), exactly_one=("ATTENDEE",)),
    (VEVENT, Method.COUNTER): Restriction(required=("UID", "DTSTART", "ORGANIZER", "ATTENDEE")),
    (VEVENT, Method.DECLINECOUNTER): Restriction(required=("UID", "ORGANIZER", "ATTENDEE")),
    (VFREEBUSY, Method.PUBLISH): Restriction(required=("DTSTART", "DTEND"), forbidden=("RECURRENCE-ID",)),
    (VFREEBUSY, Method.REQUEST): Restriction(
        required=("UID", "DTSTART", "DTEND", "ORGANIZER", "ATTENDEE"), forbidden=("RECURRENCE-ID",)
    ),
    (VFREEBUSY, Method.REPLY): Restriction(
        required=("UID", "DTSTART", "DTEND", "ORGANIZER"), exactly_one=("ATTENDEE",), forbidden=("RECURRENCE-ID",)
    ),
    (VTODO, Method.PUBLISH): Restriction(required=("UID",)),
    (VTODO, Method.REQUEST): Restriction(required=("UID", "ORGANIZER")),
    (VTODO, Method.REPLY): Restriction(required=("UID",), exactly_one=("ATTENDEE",)),
    (VTODO, Method.ADD): Restriction(required=("UID", "ORGANIZER"), forbidden=("RECURRENCE-ID",)),
    (VTODO, Method.CANCEL): Restriction(required=("UID", "ORGANIZER")),
    (VTODO, Method.REFRESH): Restriction(required=("UID",), exactly_one=("ATTENDEE",)),
    (VTODO, Method.COUNTER): Restriction(required=("UID", "ORGANIZER", "ATTENDEE")),
    (VTODO, Method.DECLINECOUNTER): Restriction(required=("UID", "ORGANIZER", "ATTENDEE")),
    (VJOURNAL, Method.PUBLISH): Restriction(required=("UID", "DTSTART")),
    (VJOURNAL, Method.ADD): Restriction(required=("UID", "DTSTART", "ORGANIZER"), forbidden=("RECURRENCE-ID",)),
    (VJOURNAL, Method.CANCEL): Restriction(required=("UID", "ORGANIZER")),
})

# RFC 5545 §3.6: properties that MUST NOT occur more than once in a component; those
# that change what is scheduled, or for whom, are checked (DESCRIPTION may repeat in a
# VJOURNAL, RRULE only SHOULD NOT).
AT_MOST_ONCE = (
    "UID", "DTSTAMP", "DTSTART", "DTEND", "DUE", "DURATION", "RECURRENCE-ID", "SEQUENCE",
    "ORGANIZER", "STATUS", "SUMMARY", "CLASS", "LOCATION", "PRIORITY", "TRANSP", "GEO",
    "CREATED", "LAST-MODIFIED", "URL", "COMPLETED", "PERCENT-COMPLETE",
)  # fmt: skip

# RFC 5545 §3.6.1, §3.6.2: an end is given one way or the other, never both.
EXCLUSIVE = (("DTEND", "DURATION", "dtend-and-duration"), ("DUE", "DURATION", "due-and-duration"))


def resolve_method(declared: str | None, body: str | None) -> tuple[Method | None, str | None]:
    """The effective method of a calendar part, and a note when the two sources disagree.

    ``declared`` is the Content-Type ``method`` parameter, ``body`` the calendar's METHOD;
    case, quotes, stray semicolons and spaces are ignored (INTEROP rule 3). The body wins a
    disagreement (Google sends COUNTER as ``method=REPLY``). ``(None, None)`` when neither
    says: a plain .ics, not an iTIP message. The method that wins must be one of RFC 5546's
    eight, else ItipError('unknown-method').
    """
    declared_name, body_name = _clean_method(declared), _clean_method(body)
    chosen = body_name or declared_name
    if chosen is None:
        return None, None
    try:
        method = Method(chosen)
    except ValueError:
        raise ItipError("unknown-method", chosen[:64]) from None
    if declared_name is None or body_name is None or declared_name == body_name:
        return method, None
    return method, f"Content-Type method={declared_name[:64]} but METHOD:{body_name}; the body wins"


def _clean_method(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip().strip("\"'; \t").strip().upper() or None


def validate_itip(
    calendar: Calendar,
    method: Method,
    *,
    max_components: int = MAX_COMPONENTS,
    max_attendees: int = MAX_ATTENDEES,
) -> None:
    """Check one iTIP message against RFC 5546 §3; raise ItipError naming the rule broken."""
    components = components_of(calendar)
    restriction = _check_message(components, method, max_components)
    for component in components:
        for check in _COMPONENT_CHECKS:
            check(component, method, restriction, max_attendees)


def _check_message(components: list[Component], method: Method, max_components: int) -> Restriction:
    """The rules about the message as a whole; returns the table row its components follow."""
    if not components:
        raise ItipError("no-scheduling-component")
    if len(components) > max_components:
        raise ItipError("too-many-components", f"{len(components)} > {max_components}")
    kinds = sorted({str(c.name) for c in components})
    if len(kinds) > 1:
        raise ItipError("mixed-component-types", ", ".join(kinds))
    restriction = RESTRICTIONS.get((kinds[0], method))
    if restriction is None:
        raise ItipError("method-not-allowed-for-component", f"{method} of {kinds[0]}")
    uids = sorted({uid_of(c) for c in components} - {""})
    if len(uids) > 1:
        raise ItipError("uid-mismatch", ", ".join(u[:64] for u in uids[:3]))
    _check_instances(components)
    return restriction


def _check_instances(components: list[Component]) -> None:
    """One component per instance: two masters, or two copies of one override, are ambiguous."""
    seen: set[str] = set()
    for component in components:
        key = recurrence_key_of(component)
        if key in seen:
            raise ItipError("duplicate-instance", key or "master")
        seen.add(key)


Check = Callable[[Component, Method, Restriction, int], None]


def _check_attendee_limit(component: Component, method: Method, restriction: Restriction, limit: int) -> None:
    count = len(attendee_properties(component))
    if count > limit:
        raise ItipError("too-many-attendees", f"{_where(component)}: {count} > {limit}")


def _check_presence(component: Component, method: Method, restriction: Restriction, limit: int) -> None:
    for name in restriction.required:
        if _count(component, name) == 0:
            raise ItipError(f"missing-{name.lower()}", _where(component))
    for name in restriction.exactly_one:
        count = _count(component, name)
        if count != 1:
            raise ItipError(f"{method.lower()}-needs-exactly-one-{name.lower()}", f"{_where(component)}: {count}")
    for name in restriction.forbidden:
        if _count(component, name):
            raise ItipError(f"{name.lower()}-not-allowed", f"{method} of {component.name}")


def _check_cardinality(component: Component, method: Method, restriction: Restriction, limit: int) -> None:
    for name in AT_MOST_ONCE:
        if _count(component, name) > 1:
            raise ItipError("duplicate-property", f"{_where(component)}: {name}")
    for first, second, rule in EXCLUSIVE:
        if _count(component, first) and _count(component, second):
            raise ItipError(rule, _where(component))


def _check_end_after_start(component: Component, method: Method, restriction: Restriction, limit: int) -> None:
    """An end before the start (RFC 5545 §3.8.2.2, §3.8.2.3); an end equal to it is accepted."""
    start = dt_value(component.get("DTSTART"))
    for name in ("DTEND", "DUE"):
        if _earlier(dt_value(component.get(name)), start):
            raise ItipError("end-before-start", f"{_where(component)}: {name}")


def _check_recurrence(component: Component, method: Method, restriction: Restriction, limit: int) -> None:
    """A recurrence Reefknot would not expand, or not within its bounds (``recurrence.recurrence_limit``)."""
    beyond = recurrence_limit(component)
    if beyond is not None:
        raise ItipError(beyond[0], f"{_where(component)}: {beyond[1]}")


_COMPONENT_CHECKS: tuple[Check, ...] = (
    _check_attendee_limit,
    _check_presence,
    _check_cardinality,
    _check_end_after_start,
    _check_recurrence,
)


def _count(component: Component, name: str) -> int:
    """How many times a property appears directly in the component (never in a VALARM)."""
    value = component.get(name)
    if value is None:
        return 0
    return len(value) if isinstance(value, list) else 1


def _earlier(end: object, start: object) -> bool:
    """True when both are dates, or both date-times, and the end comes first.

    A date against a date-time, or a floating time against a zoned one, has no order
    without the reader's zone: not judged here.
    """
    if not isinstance(end, date) or not isinstance(start, date):
        return False
    if isinstance(end, datetime) != isinstance(start, datetime):
        return False
    try:
        return end < start
    except TypeError:
        return False


def _where(component: Component) -> str:
    uid = uid_of(component)[:64] or "no UID"
    key = recurrence_key_of(component)
    return f"{component.name} {uid}" + (f" instance {key}" if key else "")
