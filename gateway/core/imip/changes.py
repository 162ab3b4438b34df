"""What changed between the last version a person was sent and this one, in sentences.

For the human part of an update (INTEROP rule 23): a time moved, a place changed, an
occurrence cancelled, people invited or removed. Only changes that matter to attendees
(``significance``) are told; each sentence is translated. Makes no scheduling decision.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from icalendar import Calendar, Component

from gateway.core.calendar.ical import components_of, duration_of, find_attendee, start_of
from gateway.core.calendar.instances import (
    MASTER,
    date_values,
    instance_key,
    override_from_master,
    recurrence_id_of,
    recurrence_key_of,
    rrules_of,
)
from gateway.core.imip.wording import (
    Translator,
    describe_dates,
    describe_rule,
    describe_span,
    join_words,
    one_line,
)
from gateway.core.itip.resource import is_cancelled
from gateway.core.itip.significance import diff_components


def describe_changes(tr: Translator, previous: Calendar, current: Calendar, zone: tzinfo | None) -> tuple[str, ...]:
    """Sentences saying what changed from ``previous`` to ``current``, master first."""
    before = _by_key(previous)
    lines: list[str] = []
    for key, new in sorted(_by_key(current).items()):
        old = before.get(key)
        if old is None and key != MASTER and MASTER in before:
            old = override_from_master(before[MASTER], key)
        if old is None:
            continue
        found = _component_changes(tr, old, new, zone)
        if key != MASTER:
            day = _occurrence(tr, new, zone)
            found = [tr.gettext("The occurrence on {date}: {change}").format(date=day, change=c) for c in found]
        lines.extend(found)
    return tuple(dict.fromkeys(lines))


def _by_key(calendar: Calendar) -> dict[str, Component]:
    return {recurrence_key_of(c): c for c in components_of(calendar)}


def _occurrence(tr: Translator, component: Component, zone: tzinfo | None) -> str:
    value = recurrence_id_of(component)
    return describe_dates(tr, [value], zone) if value is not None else ""


def _component_changes(tr: Translator, old: Component, new: Component, zone: tzinfo | None) -> list[str]:
    diff = diff_components(old, new)
    if not diff.changed:
        return []
    lines: list[str] = []
    if is_cancelled(new) and not is_cancelled(old):
        return [tr.gettext("It is cancelled.")]
    if _span(old) != _span(new):
        lines.append(tr.gettext("The time changed from {old} to {new}.").format(
            old=_when(tr, old, zone), new=_when(tr, new, zone)))
    lines.extend(_text_change(tr, "LOCATION", old, new))
    lines.extend(_text_change(tr, "SUMMARY", old, new))
    if str(old.get("DESCRIPTION", "")).split() != str(new.get("DESCRIPTION", "")).split():
        lines.append(tr.gettext("The description changed."))
    lines.extend(_rule_change(tr, old, new, zone))
    lines.extend(_status_change(tr, old, new))
    if diff.exdates_added:
        dropped = [v for v in date_values(new, "EXDATE") if instance_key(v) in diff.exdates_added]
        lines.append(tr.gettext("Cancelled occurrences: {dates}.").format(dates=describe_dates(tr, dropped, zone)))
    if diff.attendees_added:
        lines.append(tr.gettext("Newly invited: {names}.").format(names=_names(tr, new, diff.attendees_added)))
    if diff.attendees_removed:
        lines.append(tr.gettext("No longer invited: {names}.").format(names=_names(tr, old, diff.attendees_removed)))
    return lines


def _span(component: Component) -> tuple[str, str]:
    start = start_of(component)
    if start is None:
        return ("", "")
    return (instance_key(start), instance_key(start + duration_of(component)))


def _when(tr: Translator, component: Component, zone: tzinfo | None) -> str:
    start = start_of(component)
    if start is None:
        return "?"
    end: datetime | date = start + duration_of(component)
    return describe_span(tr, start, end, zone)


def _text_change(tr: Translator, name: str, old: Component, new: Component) -> list[str]:
    before, after = one_line(old.get(name)), one_line(new.get(name))
    if before == after:
        return []
    if name == "LOCATION":
        if not after:
            return [tr.gettext("The place was removed (it was {old}).").format(old=before)]
        if not before:
            return [tr.gettext("A place was added: {new}.").format(new=after)]
        return [tr.gettext("The place changed from {old} to {new}.").format(old=before, new=after)]
    return [tr.gettext("The title changed from {old} to {new}.").format(old=before or "—", new=after or "—")]


def _rule_change(tr: Translator, old: Component, new: Component, zone: tzinfo | None) -> list[str]:
    before = [describe_rule(tr, r, zone) for r in rrules_of(old)]
    after = [describe_rule(tr, r, zone) for r in rrules_of(new)]
    if before == after:
        return []
    if not after:
        return [tr.gettext("It no longer repeats.")]
    if not before:
        return [tr.gettext("It now repeats {rule}.").format(rule=join_words(tr, after))]
    return [tr.gettext("It now repeats {rule} (before: {old}).").format(
        rule=join_words(tr, after), old=join_words(tr, before))]


def _status_change(tr: Translator, old: Component, new: Component) -> list[str]:
    before = str(old.get("STATUS", "")).upper()
    after = str(new.get("STATUS", "")).upper()
    if before == after:
        return []
    if after == "TENTATIVE":
        return [tr.gettext("It is now tentative.")]
    if after == "CONFIRMED":
        return [tr.gettext("It is now confirmed.")]
    return []


def _names(tr: Translator, component: Component, addresses: frozenset[str]) -> str:
    names = []
    for address in sorted(addresses):
        prop = find_attendee(component, address)
        name = one_line(prop.params.get("CN", "")) if prop is not None else ""
        names.append(f"{name} <{address}>" if name else address)
    return join_words(tr, names)
