"""A room's answer to a booking request, instance by instance (RFC 6638 §3.2 auto-scheduling of a resource).

Decides which instances of a REQUEST the room accepts and which it declines and why,
from the room's busy time, which the caller computes from the room's other objects.
Writes the room's REPLY (RFC 5546 §3.2.3) and the copy the room keeps. Whether a
sender may book the room at all is the policy's question, not this module's.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

from icalendar import Calendar, Component

from gateway.core.calendar.freebusy import BusyPeriod, merge_periods
from gateway.core.calendar.ical import attendees_of, copy_component, find_attendee
from gateway.core.calendar.instances import MASTER, has_recurrence, override_from_master
from gateway.core.calendar.recurrence import FOREVER, ObjectTimes, Occurrence, occurrence_of, occurrences, read_times, utc
from gateway.core.itip.resource import (
    SchedulingObject,
    is_cancelled,
    read_object,
    set_partstat,
)
from gateway.core.itip.types import Stored, assemble
from gateway.core.model import NamedError, PartStat
from gateway.core.trust.policy import BOOKING_TOO_FAR_AHEAD, BOOKING_TOO_LONG

Clash = Callable[[datetime, datetime], bool]


class Decline(StrEnum):
    """Why the room declines an instance, or the whole request."""

    CLASH = "clash"
    TOO_LONG = BOOKING_TOO_LONG  # the policy's names, so that a reason means one thing in every log
    OUTSIDE_BOOKING_WINDOW = BOOKING_TOO_FAR_AHEAD
    CANCELLED = "cancelled"
    ALL_INSTANCES_DECLINED = "all-instances-declined"


class BookingError(NamedError):
    """A request the room cannot answer at all."""


@dataclass(frozen=True)
class BookingRules:
    """The room's time rules; None is unbounded. ``booking_window``: how far ahead an instance may start."""

    max_duration: timedelta | None = None
    booking_window: timedelta | None = None


@dataclass(frozen=True)
class InstanceDecision:
    """The room's answer for one instance; ``reason`` names why it is declined."""

    key: str
    start: datetime
    end: datetime
    partstat: PartStat
    reason: str = ""


@dataclass(frozen=True)
class Booking:
    """The room's answer to one request.

    ``partstat`` and ``reason`` are the master's; ``decisions`` every instance judged (past
    instances are not); ``answers`` the PARTSTAT of each component the REPLY and the
    stored copy carry, master first; ``attendee`` the room's address as the request names it.
    """

    attendee: str
    partstat: PartStat
    reason: str
    decisions: tuple[InstanceDecision, ...]
    answers: tuple[tuple[str, PartStat], ...]

    @property
    def declined_instances(self) -> tuple[str, ...]:
        """Instance keys answered DECLINED in an override of their own."""
        return tuple(key for key, partstat in self.answers if key != MASTER and partstat == PartStat.DECLINED)


def decide_booking(
    request: Calendar,
    room: frozenset[str],
    busy: list[BusyPeriod],
    rules: BookingRules,
    now: datetime,
    horizon_end: datetime,
    default_zone: tzinfo = UTC,
) -> Booking:
    """The room's answer to a REQUEST (one UID: a master and overrides).

    Each instance the room attends that has not ended is judged: the master's up to
    ``horizon_end`` (or the series end), every override wherever it is. ``busy`` is the
    room's busy time without this UID; touching a BUSY or BUSY-TENTATIVE period is no clash.
    """
    obj = _read(request)
    attended = _attended(obj, room)
    if not attended:
        raise BookingError("room-not-invited", ", ".join(sorted(room)))
    clash = _clash_test(busy)
    judged = _instances(request, attended, now, horizon_end, default_zone)
    decisions = tuple(_decide(o, clash, rules, now) for o in judged)
    partstat, reason = _master_answer(obj, attended, decisions, rules, now, default_zone)
    answers = _answers(obj, attended, decisions, partstat)
    attendee = _room_address(next(iter(attended.values())), room)
    assert attendee is not None
    return Booking(attendee, partstat, reason, decisions, answers)


def booking_horizon(
    request: Calendar, room: frozenset[str], now: datetime, horizon_end: datetime, default_zone: tzinfo = UTC
) -> tuple[datetime, datetime] | None:
    """The span whose busy time ``decide_booking`` needs: from the first instance judged to the last."""
    found = _instances(request, _attended(_read(request), room), now, horizon_end, default_zone)
    if not found:
        return None
    return min(o.start for o in found), max(o.end for o in found)


def _read(request: Calendar) -> SchedulingObject:
    obj = read_object(request)
    assert obj is not None
    return obj


def _attended(obj: SchedulingObject, room: frozenset[str]) -> dict[str, Component]:
    """The components the room is an attendee of, by instance key."""
    return {key: c for key, c in obj.components.items() if _room_address(c, room) is not None}


def _room_address(component: Component, room: frozenset[str]) -> str | None:
    return next((a for a in attendees_of(component) if a in room), None)


def _instances(
    request: Calendar, attended: dict[str, Component], now: datetime, horizon_end: datetime, zone: tzinfo
) -> list[Occurrence]:
    """The occurrences the room attends that end after ``now``: a series up to the horizon, every other component."""
    wanted = {id(c) for c in attended.values()}
    found = {o.key: o for o in occurrences(request, now, max(horizon_end, now), zone) if id(o.component) in wanted}
    for key, component in attended.items():
        if key in found or (key == MASTER and has_recurrence(component)):
            continue
        own = occurrence_of(component, zone)
        if own is not None and own.end > utc(now):
            found[key] = own
    return sorted(found.values(), key=lambda o: (o.start, o.key))


def _clash_test(busy: Iterable[BusyPeriod]) -> Clash:
    """A test for overlap with the busy time: merged periods are disjoint, so ends are in order too."""
    merged = merge_periods(busy)
    starts, ends = [p.start for p in merged], [p.end for p in merged]

    def clashes(start: datetime, end: datetime) -> bool:
        index = bisect_right(ends, start)
        return index < len(starts) and starts[index] < end

    return clashes


def _decide(occurrence: Occurrence, clash: Clash, rules: BookingRules, now: datetime) -> InstanceDecision:
    reason = _problem(occurrence, rules, now)
    if not reason and clash(occurrence.start, occurrence.end):
        reason = Decline.CLASH
    partstat = PartStat.DECLINED if reason else PartStat.ACCEPTED
    return InstanceDecision(occurrence.key, occurrence.start, occurrence.end, partstat, reason)


def _problem(occurrence: Occurrence, rules: BookingRules, now: datetime) -> str:
    """The rule an occurrence breaks by itself, whatever else is booked, or ''."""
    if is_cancelled(occurrence.component):
        return Decline.CANCELLED
    if rules.max_duration is not None and occurrence.end - occurrence.start > rules.max_duration:
        return Decline.TOO_LONG
    if rules.booking_window is not None and occurrence.start > utc(now) + rules.booking_window:
        return Decline.OUTSIDE_BOOKING_WINDOW
    return ""


def _master_answer(
    obj: SchedulingObject,
    attended: dict[str, Component],
    decisions: tuple[InstanceDecision, ...],
    rules: BookingRules,
    now: datetime,
    zone: tzinfo,
) -> tuple[PartStat, str]:
    """The master's PARTSTAT: DECLINED when it breaks a rule itself or every instance it gives is declined."""
    live = [d for d in decisions if d.reason != Decline.CANCELLED]
    master = attended.get(MASTER)
    if master is None:  # instances only: their answers speak for themselves
        accepted = any(d.partstat == PartStat.ACCEPTED for d in live)
        return (PartStat.ACCEPTED, "") if accepted or not live else (PartStat.DECLINED, Decline.ALL_INSTANCES_DECLINED)
    own = occurrence_of(master, zone)
    problem = _problem(own, rules, now) if own is not None else ""
    if problem:
        return PartStat.DECLINED, problem
    overrides = obj.overrides
    generated = [d for d in live if d.key not in overrides]
    if generated and all(d.partstat == PartStat.DECLINED for d in generated):
        reasons = {d.reason for d in generated}
        return PartStat.DECLINED, reasons.pop() if len(reasons) == 1 else Decline.ALL_INSTANCES_DECLINED
    return PartStat.ACCEPTED, ""


def _answers(
    obj: SchedulingObject,
    attended: dict[str, Component],
    decisions: tuple[InstanceDecision, ...],
    master: PartStat,
) -> tuple[tuple[str, PartStat], ...]:
    """The PARTSTAT of each component to write: the master, each live override the room is in,
    and, under an accepted series, an override for each declined instance."""
    judged = {d.key: d for d in decisions}
    answers: dict[str, PartStat] = {}
    for key, component in attended.items():
        if key == MASTER:
            answers[key] = master
        elif not is_cancelled(component):
            answers[key] = judged[key].partstat if key in judged else master
    if master == PartStat.ACCEPTED and MASTER in attended:
        for decision in decisions:
            if decision.key not in obj.components and decision.partstat == PartStat.DECLINED:
                answers[decision.key] = PartStat.DECLINED
    return tuple(sorted(answers.items()))


def apply_booking(request: Calendar, room_address: str, booking: Booking) -> Calendar:
    """The room's stored copy: the request with the room's PARTSTAT on each answered component, no METHOD.

    A declined instance of an accepted series becomes an override of its own.
    """
    obj = _read(request)
    instances = dict(obj.components)
    for key, partstat in booking.answers:
        source = obj.components.get(key)
        component = copy_component(source) if source is not None else override_from_master(obj.master, key)
        prop = find_attendee(component, room_address) if component is not None else None
        if component is None or prop is None:
            continue
        set_partstat(prop, partstat.value)
        prop.params.pop("RSVP", None)
        instances[key] = component
    return assemble(request, Stored(), instances)


JUDGED_AHEAD = timedelta(days=366)  # how far ahead the instances of an endless series are judged, at least
JUDGED_AHEAD_AT_MOST = timedelta(days=20 * 366)  # and at most: as far as the room's other bookings reach


def judging_horizon_end(others: list[ObjectTimes], now: datetime) -> datetime:
    """How far an endless series is judged: a year ahead, and on to the room's furthest other booking.

    Past that, the room holds nothing an instance could clash with: a finite booking
    counts to its end, another endless series to a year past its start.
    """
    reach = [t.end if t.end < FOREVER else t.start + JUDGED_AHEAD for t in others]
    return min(max([now + JUDGED_AHEAD, *reach]), now + JUDGED_AHEAD_AT_MOST)


def clashes_without_end(request: Calendar, booking: Booking, others: list[ObjectTimes]) -> bool:
    """An endless series that clashes after every finite booking has ended clashes with an endless one:
    for ever, at more instances than any reply can list, so it is declined whole."""
    if read_times(request).end < FOREVER:
        return False
    finite_end = max((t.end for t in others if t.end < FOREVER), default=None)
    return any(d.reason == Decline.CLASH and (finite_end is None or d.start >= finite_end) for d in booking.decisions)
