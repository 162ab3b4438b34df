"""Applying an organizer's message to a recipient's copy: REQUEST, ADD, CANCEL, PUBLISH (RFC 5546 §3.2.1–3.2.5).

Instances are merged one by one, each against its own version, so an instance update
that arrives without its master never wipes the series, and an old instance update
that arrives after a newer master changes nothing (INTEROP rules 13–14).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone

from icalendar import Calendar, Component

from gateway.core.calendar.ical import (
    components_of,
    copy_component,
    find_attendee,
    partstat_of,
    sequence_of,
    start_of,
    version_of,
)
from gateway.core.calendar.instances import (
    MASTER,
    add_date_value,
    date_values,
    exdate_keys,
    instance_key,
    instance_start,
    is_this_and_future,
    recurrence_key_of,
    rrules_of,
)
from gateway.core.itip.ordering import Order, SchedulingState, compare_organizer
from gateway.core.itip.types import (
    ApplyResult,
    Instances,
    Recipient,
    Stored,
    assemble,
    copy_instances,
    own,
    unchanged,
)
from gateway.core.model import Outcome, PartStat


def apply_request(message: Calendar, stored: Stored, recipient: Recipient) -> ApplyResult:
    """A new invitation or an update, for a recipient who is one of its attendees."""
    incoming = components_of(message)
    if not any(recipient.attendee_in(c) for c in incoming):
        return unchanged(Outcome.IGNORED, stored, "recipient-not-invited")
    return _merge(message, stored, recipient)


def apply_publish(message: Calendar, stored: Stored, recipient: Recipient) -> ApplyResult:
    """A published object: stored as sent, no one answers (RFC 5546 §3.2.1)."""
    return _merge(message, stored, recipient)


def _merge(message: Calendar, stored: Stored, recipient: Recipient) -> ApplyResult:
    def merge(instances: Instances, key: str, component: Component) -> None:
        previous = instances.get(key) or instances.get(MASTER)
        instances[key] = _keep_own_answer(copy_component(component), previous, recipient)
        if is_this_and_future(component):
            _drop_overrides(instances, after=key, older_than=sequence_of(component))

    parts = [(recurrence_key_of(c), recurrence_key_of(c), c) for c in components_of(message)]
    return _apply_newer(message, stored, parts, merge, after=_after_master_update)


def apply_add(message: Calendar, stored: Stored, recipient: Recipient) -> ApplyResult:
    """New instances of a recurring object (RFC 5546 §3.2.4), added as RDATEs with overrides.

    An ADD is versioned against the whole object: it changes the series.
    """
    def add(instances: Instances, key: str, component: Component) -> None:
        start = start_of(component)
        assert start is not None
        added = _keep_own_answer(copy_component(component), instances.get(key), recipient)
        added.add("RECURRENCE-ID", start)
        instances[key] = added
        if MASTER in instances:
            master = own(instances, MASTER)
            add_date_value(master, "RDATE", start)
            master["SEQUENCE"] = sequence_of(component)

    parts = [(instance_key(start), MASTER, c) for c in components_of(message) if (start := start_of(c)) is not None]
    return _apply_newer(message, stored, parts, add)


def apply_cancel(message: Calendar, stored: Stored) -> ApplyResult:
    """The whole object or some instances cancelled (RFC 5546 §3.2.5).

    A cancelled object stays in the calendar with STATUS:CANCELLED, as calendar servers
    keep it, so its owner sees what happened; a cancelled instance becomes an EXDATE.
    A CANCEL for a UID with no stored object is not found, but its version is kept: the
    invitation it cancels may still arrive, late, and must then be stale.
    """
    if not stored.components:
        return _remember_cancel(message, stored)

    def cancel(instances: Instances, key: str, component: Component) -> None:
        if key == MASTER:
            _cancel_all(instances, sequence_of(component))
        else:
            _cancel_instance(instances, key, component)

    parts = [(recurrence_key_of(c), recurrence_key_of(c), c) for c in components_of(message)]
    return _apply_newer(message, stored, parts, cancel, cancels=True)


def _remember_cancel(message: Calendar, stored: Stored) -> ApplyResult:
    """Not found; the versions of what the CANCEL cancels are kept for the object that is not there."""
    state = stored.state
    for component in components_of(message):
        key = recurrence_key_of(component)
        if compare_organizer(version_of(component), True, state.organizer_standing(key)) is Order.NEWER:
            state = state.with_instance(key, version_of(component), cancelled=True)
    if state == stored.state:
        return unchanged(Outcome.NOT_FOUND, stored, "unknown-object")
    return ApplyResult(Outcome.NOT_FOUND, Stored(None, state), "unknown-object", changed=True)


Change = Callable[[Instances, str, Component], None]


def _apply_newer(
    message: Calendar,
    stored: Stored,
    parts: Iterable[tuple[str, str, Component]],
    change: Change,
    after: Callable[[Instances, list[str], SchedulingState], None] | None = None,
    *,
    cancels: bool = False,
) -> ApplyResult:
    """Apply each part (instance key, key it is versioned under, component) that is newer
    than what was applied before the message; stale or duplicate when none is."""
    instances = copy_instances(stored)
    state = stored.state
    applied: list[str] = []
    seen: list[Order] = []
    for key, versioned_as, component in parts:
        order = compare_organizer(version_of(component), cancels, stored.state.organizer_standing(versioned_as))
        seen.append(order)
        if order is Order.NEWER:
            change(instances, key, component)
            state = state.with_instance(versioned_as, version_of(component), cancelled=cancels)
            applied.append(key)
    if not applied:
        return unchanged(_outcome_of(seen), stored, "")
    if after is not None:
        after(instances, applied, state)
    return ApplyResult(Outcome.APPLIED, Stored(assemble(message, stored, instances), state), changed=True)


def _cancel_all(instances: Instances, sequence: int) -> None:
    for key in list(instances):
        component = own(instances, key)
        component["STATUS"] = "CANCELLED"
        component["SEQUENCE"] = max(sequence, sequence_of(component))


def _cancel_instance(instances: Instances, key: str, cancel: Component) -> None:
    if MASTER not in instances:
        if key in instances:
            own(instances, key)["STATUS"] = "CANCELLED"
        return
    start = instance_start(instances[MASTER], key)
    if start is None:
        return
    master = own(instances, MASTER)
    if is_this_and_future(cancel):
        _end_series_before(master, start)
        _drop_overrides(instances, after=key, older_than=None)
    else:
        add_date_value(master, "EXDATE", start)
    instances.pop(key, None)


def _end_series_before(master: Component, start: datetime | date) -> None:
    """Truncate the series so that its last instance is the one before ``start``."""
    last = start - (timedelta(days=1) if not isinstance(start, datetime) else timedelta(seconds=1))
    if isinstance(last, datetime) and last.tzinfo is not None:
        last = last.astimezone(timezone.utc)  # RFC 5545 §3.3.10: UNTIL in UTC for a zoned DTSTART
    rules = []
    for rule in rrules_of(master):
        rule = type(rule)(dict(rule))
        rule.pop("COUNT", None)
        rule["UNTIL"] = [last]
        rules.append(rule)
    if rules:
        del master["RRULE"]
        for rule in rules:
            master.add("RRULE", rule)
    kept = [d for d in date_values(master, "RDATE") if instance_key(d) < instance_key(start)]
    if "RDATE" in master:
        del master["RDATE"]
        for value in kept:
            master.add("RDATE", value)


def _drop_overrides(instances: Instances, *, after: str, older_than: int | None) -> None:
    """Drop overrides after an instance (THISANDFUTURE), those not newer than ``older_than``."""
    for key in [k for k in instances if k != MASTER and k > after]:
        if older_than is None or sequence_of(instances[key]) <= older_than:
            del instances[key]


def _after_master_update(instances: Instances, keep: list[str], state: SchedulingState) -> None:
    _drop_superseded_overrides(instances, keep)
    _exclude_cancelled(instances, keep, state)


def _exclude_cancelled(instances: Instances, keep: list[str], state: SchedulingState) -> None:
    """A master older than an instance's cancellation (which arrived first) keeps that instance cancelled."""
    if MASTER not in keep or MASTER not in instances:
        return
    version = version_of(instances[MASTER])
    for key in state.cancelled_after(version):
        start = instance_start(instances[MASTER], key)
        if start is not None and key not in exdate_keys(instances[MASTER]):
            add_date_value(own(instances, MASTER), "EXDATE", start)
        instances.pop(key, None)


def _drop_superseded_overrides(instances: Instances, keep: Iterable[str]) -> None:
    """After a master update, drop overrides older than it (the update was the whole object)
    and overrides of instances that the master now excludes."""
    if MASTER not in keep:
        return
    master = instances[MASTER]
    excluded = exdate_keys(master)
    sequence = sequence_of(master)
    kept = set(keep)
    for key in [k for k in instances if k != MASTER and k not in kept]:
        if key in excluded or sequence_of(instances[key]) < sequence:
            del instances[key]


def _keep_own_answer(new: Component, old: Component | None, recipient: Recipient) -> Component:
    """Keep the recipient's own PARTSTAT across an update that did not change SEQUENCE.

    An organizer's update of the same sequence (a new DTSTAMP only) does not ask anyone
    to answer again; Outlook then omits PARTSTAT entirely.
    """
    address = recipient.attendee_in(new)
    if address is None:
        return new
    mine = find_attendee(new, address)
    assert mine is not None
    previous = find_attendee(old, address) if old is not None else None
    same_sequence = old is not None and sequence_of(old) == sequence_of(new)
    if previous is not None and same_sequence and partstat_of(mine) == PartStat.NEEDS_ACTION:
        mine.params["PARTSTAT"] = partstat_of(previous)
    else:
        mine.params["PARTSTAT"] = partstat_of(mine)
    return new


def _outcome_of(orders: list[Order]) -> Outcome:
    """Nothing applied: stale if anything was older, else a duplicate."""
    return Outcome.STALE if Order.OLDER in orders or not orders else Outcome.DUPLICATE
