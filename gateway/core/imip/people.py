"""The people an iMIP mail names: organizer, attendees with their answers, the one who replies.

Names come from CN parameters, cleaned to one line of plain text; answers and roles are
translated labels. Knows nothing of MIME or templates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from icalendar import Component, vCalAddress

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import attendee_properties, partstat_of
from gateway.core.imip.wording import Translator, one_line
from gateway.core.model import PartStat

MAX_NAME = 200


@dataclass(frozen=True)
class Person:
    """Someone named in the mail: display name (or address), address, and a note such as their answer."""

    name: str
    address: str
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} <{self.address}>" if self.name != self.address else self.address


def person_of(prop: object, note: str = "") -> Person | None:
    """The person an ORGANIZER or ATTENDEE property names, or None for a non-mail address."""
    address = normalize_address(prop)
    if address is None:
        return None
    params = getattr(prop, "params", {})
    return Person(one_line(params.get("CN", ""), MAX_NAME) or address, address, note)


def display_name(components: Iterable[Component], address: str) -> str:
    """The CN the components give an address (as organizer or attendee), else empty."""
    for component in components:
        for prop in [component.get("ORGANIZER"), *attendee_properties(component)]:
            if prop is not None and normalize_address(prop) == address:
                name = one_line(prop.params.get("CN", ""), MAX_NAME)
                if name:
                    return name
    return ""


def first_partstat(component: Component) -> str:
    """The answer of the first attendee (a REPLY names exactly one, RFC 5546 §3.2.3)."""
    props = attendee_properties(component)
    return partstat_of(props[0]) if props else PartStat.NEEDS_ACTION.value


def replier_of(component: Component, tr: Translator) -> Person | None:
    props = attendee_properties(component)
    return person_of(props[0], answer_label(tr, partstat_of(props[0]))) if props else None


def attendee_list(
    component: Component, tr: Translator, *, leave_out: Iterable[str | None], with_answers: bool
) -> tuple[Person, ...]:
    """The attendees, each once, in order, without the ones left out (the reader, the organizer)."""
    seen = set(leave_out)
    people = []
    for prop in attendee_properties(component):
        address = normalize_address(prop)
        if address is None or address in seen:
            continue
        seen.add(address)
        notes = [answer_label(tr, partstat_of(prop))] if with_answers else []
        notes += _role_notes(tr, prop)
        person = person_of(prop, ", ".join(notes))
        if person is not None:
            people.append(person)
    return tuple(people)


def _role_notes(tr: Translator, prop: vCalAddress) -> list[str]:
    notes = []
    if str(prop.params.get("CUTYPE", "")).upper() == "ROOM":
        notes.append(tr.gettext("room"))
    if str(prop.params.get("ROLE", "")).upper() == "OPT-PARTICIPANT":
        notes.append(tr.gettext("optional"))
    return notes


def answer_label(tr: Translator, partstat: str) -> str:
    labels = {
        PartStat.ACCEPTED.value: tr.pgettext("answer", "accepted"),
        PartStat.DECLINED.value: tr.pgettext("answer", "declined"),
        PartStat.TENTATIVE.value: tr.pgettext("answer", "tentative"),
        PartStat.DELEGATED.value: tr.pgettext("answer", "delegated"),
        PartStat.NEEDS_ACTION.value: tr.pgettext("answer", "not answered yet"),
    }
    return labels.get(partstat, partstat.lower())
