"""What an iMIP message says to a person: the facts its human parts and subject show.

From one outgoing iTIP message this builds ``MailText``: what kind of mail it is, what
the event is called, when (in the reader's zone where known, the zone named), where,
who else is invited and how they answered, what changed since the last mail, and
whether the reader can answer by plain reply (INTEROP rule 23). Every value is plain
text on one line (descriptions excepted), so templates and headers only place it.
Knows nothing of MIME.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import StrEnum

from icalendar import Calendar, Component

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import (
    attendee_properties,
    components_of,
    duration_of,
    find_attendee,
    start_of,
)
from gateway.core.calendar.instances import MASTER, date_values, recurrence_key_of, rrules_of
from gateway.core.imip.changes import describe_changes
from gateway.core.imip.people import (
    Person,
    attendee_list,
    display_name,
    first_partstat,
    person_of,
    replier_of,
)
from gateway.core.imip.wording import (
    Translator,
    describe_dates,
    describe_rule,
    describe_span,
    join_words,
    one_line,
    zone_name,
)
from gateway.core.itip.resource import is_cancelled
from gateway.core.mail.plainreply import answer_word
from gateway.core.model import Method, OutgoingMessage, PartStat

MAX_DESCRIPTION = 4000


class MailKind(StrEnum):
    """What a person is told by a message; one subject and headline each."""

    INVITATION = "invitation"
    UPDATE = "update"
    ADD = "add"
    CANCEL = "cancel"
    REPLY = "reply"
    REFRESH = "refresh"
    COUNTER = "counter"
    DECLINECOUNTER = "declinecounter"
    FREEBUSY = "freebusy"
    PUBLISH = "publish"


@dataclass(frozen=True)
class MailText:
    """The facts the templates place; every field is already in the reader's language."""

    kind: MailKind
    method: str
    language: str
    subject: str
    headline: str
    summary: str
    when: str
    zone: str
    recurrence: str
    location: str
    description: str
    organizer: Person | None
    attendees: tuple[Person, ...]
    changes: tuple[str, ...]
    one_occurrence: bool  # the mail is about single occurrences of a series, not the series
    occurrences: tuple[str, ...]
    comment: str
    busy: tuple[str, ...]
    plain_reply: bool
    answer_words: tuple[str, str, str]  # accept, decline, tentative


@dataclass(frozen=True)
class _Scene:
    """The inputs every part of the text is built from."""

    tr: Translator
    message: OutgoingMessage
    recipient: str
    zone: tzinfo | None
    components: list[Component]

    @property
    def main(self) -> Component:
        return self.components[0]


def describe_message(
    message: OutgoingMessage,
    *,
    recipient: str,
    previous: Calendar | None,
    language: str,
    zone: tzinfo | None,
    tr: Translator,
) -> MailText:
    """The facts of one message for one reader; ``zone`` None shows times in the event's zone."""
    components = sorted(components_of(message.calendar), key=lambda c: (c.name != "VFREEBUSY", recurrence_key_of(c)))
    if not components:
        raise ValueError("an iMIP message needs a component")
    scene = _Scene(tr, message, recipient, zone, components)
    kind = mail_kind(message, previous)
    summary = one_line(scene.main.get("SUMMARY")) or tr.gettext("(no title)")
    when = _when(scene, long=True)
    replier = replier_of(scene.main, tr) if kind is MailKind.REPLY else None
    return MailText(
        kind=kind,
        method=message.method.value,
        language=language,
        subject=_subject(scene, kind, summary),
        headline=_headline(scene, kind, summary, replier),
        summary=summary,
        when=when,
        zone=_zone_label(scene),
        recurrence=_recurrence(scene),
        location=one_line(scene.main.get("LOCATION")),
        description=_description(scene.main),
        organizer=person_of(scene.main.get("ORGANIZER")),
        attendees=_attendees(scene, kind),
        changes=describe_changes(tr, previous, message.calendar, zone) if previous is not None else (),
        one_occurrence=kind is not MailKind.FREEBUSY and all(recurrence_key_of(c) != MASTER for c in components),
        occurrences=_occurrences(scene, kind),
        comment=_comment(scene.main, replier),
        busy=_busy(scene) if kind is MailKind.FREEBUSY else (),
        plain_reply=kind in (MailKind.INVITATION, MailKind.UPDATE),
        answer_words=(
            answer_word(PartStat.ACCEPTED, language),
            answer_word(PartStat.DECLINED, language),
            answer_word(PartStat.TENTATIVE, language),
        ),
    )


_ANSWERS_SHOWN = (MailKind.INVITATION, MailKind.UPDATE, MailKind.ADD, MailKind.PUBLISH)
_ATTENDEES_SHOWN = (*_ANSWERS_SHOWN, MailKind.CANCEL, MailKind.DECLINECOUNTER)


def mail_kind(message: OutgoingMessage, previous: Calendar | None) -> MailKind:
    """The kind of mail a message makes; a REQUEST with nothing sent before is an invitation."""
    if any(c.name == "VFREEBUSY" for c in components_of(message.calendar)):
        return MailKind.FREEBUSY
    if message.method is Method.REQUEST:
        return MailKind.UPDATE if previous is not None else MailKind.INVITATION
    return {
        Method.PUBLISH: MailKind.PUBLISH,
        Method.REPLY: MailKind.REPLY,
        Method.ADD: MailKind.ADD,
        Method.CANCEL: MailKind.CANCEL,
        Method.REFRESH: MailKind.REFRESH,
        Method.COUNTER: MailKind.COUNTER,
        Method.DECLINECOUNTER: MailKind.DECLINECOUNTER,
    }[message.method]


def _span(component: Component) -> tuple[datetime | date | None, datetime | date | None]:
    start = start_of(component)
    if start is None:
        return None, None
    length = duration_of(component)
    return start, (start + length if length else None)


def _when(scene: _Scene, *, long: bool) -> str:
    start, end = _span(scene.main)
    return describe_span(scene.tr, start, end, scene.zone, long=long) if start is not None else ""


def _zone_label(scene: _Scene) -> str:
    start = start_of(scene.main)
    if not isinstance(start, datetime) or start.tzinfo is None:
        return ""
    return zone_name(scene.zone or start.tzinfo, start)


def _subject(scene: _Scene, kind: MailKind, summary: str) -> str:
    tr = scene.tr
    when = _when(scene, long=False)
    patterns = {
        MailKind.INVITATION: tr.gettext("Invitation: {summary} @ {when}"),
        MailKind.UPDATE: tr.gettext("Updated invitation: {summary} @ {when}"),
        MailKind.ADD: tr.gettext("New occurrence: {summary} @ {when}"),
        MailKind.CANCEL: tr.gettext("Cancelled: {summary} @ {when}"),
        MailKind.REFRESH: tr.gettext("Please send the current version: {summary}"),
        MailKind.COUNTER: tr.gettext("New time proposed: {summary} @ {when}"),
        MailKind.DECLINECOUNTER: tr.gettext("Counter proposal declined: {summary} @ {when}"),
        MailKind.PUBLISH: tr.gettext("Event: {summary} @ {when}"),
    }
    if kind is MailKind.REPLY:
        pattern = _reply_subject(tr, first_partstat(scene.main))
    elif kind is MailKind.FREEBUSY:
        return tr.gettext("Free/busy: {name}, {period}").format(name=_freebusy_owner(scene), period=when)
    else:
        pattern = patterns[kind]
    if not when:
        pattern = pattern.replace(" @ {when}", "")
    return pattern.format(summary=summary, when=when)


def _reply_subject(tr: Translator, partstat: str) -> str:
    if partstat == PartStat.ACCEPTED:
        return tr.gettext("Accepted: {summary} @ {when}")
    if partstat == PartStat.DECLINED:
        return tr.gettext("Declined: {summary} @ {when}")
    if partstat == PartStat.TENTATIVE:
        return tr.gettext("Tentative: {summary} @ {when}")
    if partstat == PartStat.DELEGATED:
        return tr.gettext("Delegated: {summary} @ {when}")
    return tr.gettext("Answer: {summary} @ {when}")


def _headline(scene: _Scene, kind: MailKind, summary: str, replier: Person | None) -> str:
    tr = scene.tr
    who = _sender_name(scene)
    if kind is MailKind.REPLY and replier is not None:
        return _reply_headline(tr, first_partstat(scene.main), replier.name, summary)
    if kind is MailKind.CANCEL and scene.main.get("RECURRENCE-ID") is not None:
        count = len(scene.components)
        return tr.ngettext("{name} has cancelled an occurrence of “{summary}”.",
                           "{name} has cancelled {n} occurrences of “{summary}”.", count).format(
            name=who, summary=summary, n=count)
    patterns = {
        MailKind.INVITATION: tr.gettext("{name} invites you to “{summary}”."),
        MailKind.UPDATE: tr.gettext("{name} has changed “{summary}”."),
        MailKind.ADD: tr.gettext("{name} has added an occurrence to “{summary}”."),
        MailKind.CANCEL: tr.gettext("{name} has cancelled “{summary}”."),
        MailKind.REFRESH: tr.gettext("{name} asks for the current version of “{summary}”."),
        MailKind.COUNTER: tr.gettext("{name} proposes a change to “{summary}”."),
        MailKind.DECLINECOUNTER: tr.gettext(
            "{name} has declined your proposal for “{summary}”; it stays as it is."),
        MailKind.FREEBUSY: tr.gettext("When {name} is busy."),
        MailKind.PUBLISH: tr.gettext("{name} shares the event “{summary}”."),
    }
    name = _freebusy_owner(scene) if kind is MailKind.FREEBUSY else who
    return patterns[kind].format(name=name, summary=summary)


def _reply_headline(tr: Translator, partstat: str, name: str, summary: str) -> str:
    if partstat == PartStat.ACCEPTED:
        pattern = tr.gettext("{name} has accepted “{summary}”.")
    elif partstat == PartStat.DECLINED:
        pattern = tr.gettext("{name} has declined “{summary}”.")
    elif partstat == PartStat.TENTATIVE:
        pattern = tr.gettext("{name} has tentatively accepted “{summary}”.")
    elif partstat == PartStat.DELEGATED:
        pattern = tr.gettext("{name} has delegated “{summary}” to someone else.")
    else:
        pattern = tr.gettext("{name} has not decided about “{summary}” yet.")
    return pattern.format(name=name, summary=summary)


def _sender_name(scene: _Scene) -> str:
    return display_name(scene.components, scene.message.sender) or scene.message.sender


def _attendees(scene: _Scene, kind: MailKind) -> tuple[Person, ...]:
    if kind not in _ATTENDEES_SHOWN:
        return ()
    organizer = normalize_address(scene.main.get("ORGANIZER"))
    return attendee_list(scene.main, scene.tr, leave_out=(scene.recipient, organizer),
                         with_answers=kind in _ANSWERS_SHOWN)


def _recurrence(scene: _Scene) -> str:
    master = scene.components[0] if recurrence_key_of(scene.components[0]) == MASTER else None
    if master is None:
        return ""
    rules = [describe_rule(scene.tr, rule, scene.zone) for rule in rrules_of(master)]
    if not rules:
        return ""
    text = join_words(scene.tr, rules)
    excluded = list(date_values(master, "EXDATE"))
    if excluded:
        dates = describe_dates(scene.tr, excluded, scene.zone)
        text = scene.tr.gettext("{rule}, except {dates}").format(rule=text, dates=dates)
    return text


def _occurrences(scene: _Scene, kind: MailKind) -> tuple[str, ...]:
    """The single occurrences the message is about, with their own times; none when "when" says it all."""
    if len(scene.components) == 1:
        return ()
    lines = []
    for component in scene.components:
        if recurrence_key_of(component) == MASTER:
            continue
        start, end = _span(component)
        if start is None:
            continue
        when = describe_span(scene.tr, start, end, scene.zone)
        if is_cancelled(component) or kind is MailKind.CANCEL:
            when = scene.tr.gettext("{when} (cancelled)").format(when=when)
        lines.append(when)
    return tuple(lines)


def _description(component: Component) -> str:
    text = str(component.get("DESCRIPTION", ""))[: MAX_DESCRIPTION * 2]
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    if not text.replace("\n", "").isprintable():  # rare: only then look at each character
        text = "".join(ch for ch in text if ch == "\n" or ch.isprintable())
    return text.strip()[:MAX_DESCRIPTION]


def _comment(component: Component, replier: Person | None) -> str:
    comment = component.get("COMMENT")
    if isinstance(comment, list):
        comment = comment[0] if comment else None
    if comment is None and replier is not None:
        prop = find_attendee(component, replier.address)
        comment = prop.params.get("X-RESPONSE-COMMENT") if prop is not None else None
    return one_line(comment, MAX_DESCRIPTION)


def _freebusy_owner(scene: _Scene) -> str:
    props = attendee_properties(scene.main)
    person = person_of(props[0]) if props else None
    return person.name if person is not None else _sender_name(scene)


def _busy(scene: _Scene) -> tuple[str, ...]:
    value = scene.main.get("FREEBUSY")
    lines = []
    for prop in value if isinstance(value, list) else [value] if value is not None else []:
        fbtype = str(getattr(prop, "params", {}).get("FBTYPE", "BUSY")).upper()
        if fbtype == "FREE":
            continue
        period = getattr(prop, "dt", None)
        if not isinstance(period, tuple) or not isinstance(period[0], datetime):
            continue
        start, end = period
        end = start + end if not isinstance(end, datetime) else end
        when = describe_span(scene.tr, start, end, scene.zone)
        if fbtype == "BUSY-TENTATIVE":
            when = scene.tr.gettext("{when} (tentative)").format(when=when)
        elif fbtype == "BUSY-UNAVAILABLE":
            when = scene.tr.gettext("{when} (unavailable)").format(when=when)
        lines.append(when)
    return tuple(lines)
