"""Applying attendees' answers to the organizer's copy: REPLY, COUNTER, REFRESH (RFC 5546 §3.2.3, §3.2.6, §3.2.7).

A REPLY changes only the replying attendee: PARTSTAT, comment, SCHEDULE-STATUS and
delegation. Its own SUMMARY and times are ignored (Outlook renames the summary to
"Accepted: …"), a missing ORGANIZER is normal, and a reply for one instance of a
series becomes an override made from the master (INTEROP rule 12).
"""

from __future__ import annotations

import re
from datetime import datetime

from icalendar import Calendar, Component, vCalAddress

from gateway.core.addresses import as_uri, normalize_address
from gateway.core.calendar.ical import (
    attendee_properties,
    components_of,
    copy_calendar,
    copy_component,
    find_attendee,
    partstat_of,
    sequence_of,
    version_of,
)
from gateway.core.calendar.instances import MASTER, override_from_master, recurrence_key_of
from gateway.core.itip.ordering import Order, SchedulingState, compare
from gateway.core.itip.plan import build_request
from gateway.core.itip.types import (
    ApplyResult,
    Instances,
    Recipient,
    Stored,
    assemble,
    copy_instances,
    unchanged,
)
from gateway.core.model import Outcome

COMMENT_PARAM = "X-RESPONSE-COMMENT"  # where Google keeps an attendee's answer comment
_UNSAFE_PARAM_CHARS = re.compile(r'["\x00-\x1f\x7f]+')


def attribute_reply(message: Calendar, stored: Calendar | None, attendee: str) -> Calendar:
    """The message as ``attendee``'s answer where it names one attendee the stored object does not invite.

    A reply that came back through ``attendee``'s reply token but names an address the
    invitation was not sent to (the attendee's alias, a forwarding mailbox) is that
    attendee's answer (INTEROP rule 11). A reply naming another invited attendee is left
    as it is: whether that is allowed is for the trust rules to decide.
    """
    invited = {
        address for component in (components_of(stored) if stored is not None else [])
        for prop in attendee_properties(component) if (address := normalize_address(prop)) is not None
    }
    attributed = copy_calendar(message)
    for component in components_of(attributed):
        answers = attendee_properties(component)
        named = normalize_address(answers[0]) if len(answers) == 1 else None
        if named is None or named == attendee or named in invited:
            continue
        replacement = vCalAddress(as_uri(attendee))
        replacement.params.update(answers[0].params)
        component.pop("ATTENDEE")
        component.add("ATTENDEE", replacement, encode=False)
    return attributed


def organizer_problem(stored: Stored, recipient: Recipient) -> ApplyResult | None:
    """Why an answer cannot be applied to this recipient's copy, or None when it can."""
    if not stored.components:
        return unchanged(Outcome.NOT_FOUND, stored, "unknown-object")
    if not any(recipient.is_organizer_of(c) for c in stored.components):
        return unchanged(Outcome.IGNORED, stored, "recipient-not-organizer")
    return None


def apply_reply(message: Calendar, stored: Stored, recipient: Recipient) -> ApplyResult:
    """Record one attendee's answer, instance by instance."""
    problem = organizer_problem(stored, recipient)
    if problem is not None:
        return problem
    instances = copy_instances(stored)
    state = stored.state
    tally: dict[str, list[str]] = {"applied": [], "stale": [], "same": [], "missing": [], "uninvited": []}
    for component in components_of(message):
        answers = attendee_properties(component)
        replier = normalize_address(answers[0]) if len(answers) == 1 else None
        if replier is None:
            return unchanged(Outcome.REJECTED, stored, "reply-needs-exactly-one-attendee")
        key = recurrence_key_of(component)
        target = instances.get(key) or override_from_master(instances.get(MASTER), key)
        if target is None:
            tally["missing"].append(key)
            continue
        order = compare(version_of(component), state.reply_version(key, replier))
        if order is not Order.NEWER or _answers_an_older_version(component, target):
            tally["same" if order is Order.SAME else "stale"].append(key)
            continue
        answered = _record_answer(target, answers[0], component)
        if answered is None:
            tally["uninvited"].append(replier)
            continue
        instances[key] = answered
        state = state.with_reply(key, replier, version_of(component))
        tally["applied"].append(key)
    return _reply_result(message, stored, instances, state, tally)


def _reply_result(
    message: Calendar, stored: Stored, instances: Instances, state: SchedulingState, tally: dict[str, list[str]]
) -> ApplyResult:
    if tally["applied"]:
        return ApplyResult(Outcome.APPLIED, Stored(assemble(message, stored, instances), state), changed=True)
    if tally["uninvited"]:
        return unchanged(Outcome.UNINVITED, stored, "reply-from-uninvited", ", ".join(tally["uninvited"]))
    if tally["missing"]:
        return unchanged(Outcome.NOT_FOUND, stored, "unknown-instance", ", ".join(tally["missing"]))
    if tally["stale"]:
        return unchanged(Outcome.STALE, stored, "")
    return unchanged(Outcome.DUPLICATE, stored, "")


def _answers_an_older_version(reply: Component, target: Component) -> bool:
    """A reply that states a SEQUENCE lower than the object's answers a superseded version.

    A reply without SEQUENCE is taken as answering the current one: some clients omit it.
    """
    return "SEQUENCE" in reply and sequence_of(reply) < sequence_of(target)


def _record_answer(target: Component, answer: vCalAddress, reply: Component) -> Component | None:
    """The target with the replier's answer recorded, or None when the replier was not invited."""
    updated = copy_component(target)
    replier = normalize_address(answer)
    assert replier is not None
    attendee = find_attendee(updated, replier)
    if attendee is None:
        attendee = _admit_delegate(updated, answer)
        if attendee is None:
            return None
    attendee.params["PARTSTAT"] = partstat_of(answer)
    attendee.params.pop("RSVP", None)
    attendee.params["SCHEDULE-STATUS"] = _request_status(reply)
    _set_comment(attendee, _comment_of(reply, answer))
    if "DELEGATED-TO" in answer.params:
        attendee.params["DELEGATED-TO"] = answer.params["DELEGATED-TO"]
        _add_delegates(updated, replier, answer.params["DELEGATED-TO"])
    return updated


def _admit_delegate(component: Component, answer: vCalAddress) -> vCalAddress | None:
    """A reply from a delegate whose delegator is invited adds the delegate (RFC 5546 §3.2.2.3)."""
    delegators = _addresses_in(answer.params.get("DELEGATED-FROM"))
    if not any(find_attendee(component, d) is not None for d in delegators):
        return None
    replier = normalize_address(answer)
    assert replier is not None
    delegate = vCalAddress(as_uri(replier))
    delegate.params["DELEGATED-FROM"] = answer.params["DELEGATED-FROM"]
    component.add("ATTENDEE", delegate, encode=False)
    return find_attendee(component, replier)


def _add_delegates(component: Component, delegator: str, delegated_to: object) -> None:
    for delegate in _addresses_in(delegated_to):
        if find_attendee(component, delegate) is None:
            prop = vCalAddress(as_uri(delegate))
            prop.params.update({"PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE", "DELEGATED-FROM": as_uri(delegator)})
            component.add("ATTENDEE", prop, encode=False)


def _addresses_in(value: object) -> list[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    found = (normalize_address(str(item).strip().strip('"')) for item in items)
    return [a for a in found if a]


def _request_status(reply: Component) -> str:
    """The reply's REQUEST-STATUS code, else 2.0 (RFC 6638 §3.2.9, as recorded by servers)."""
    status = reply.get("REQUEST-STATUS")
    status = status[0] if isinstance(status, list) else status
    code = str(status.to_ical().decode() if hasattr(status, "to_ical") else status or "").split(";")[0]
    return code.strip() or "2.0"


def _comment_of(reply: Component, answer: vCalAddress) -> str:
    """The replier's comment: COMMENT, Google's parameter, or Apple's private comment."""
    for value in (reply.get("COMMENT"), answer.params.get(COMMENT_PARAM), reply.get("X-CALENDARSERVER-PRIVATE-COMMENT")):
        value = value[0] if isinstance(value, list) else value
        if value:
            return str(value)
    return ""


def _set_comment(attendee: vCalAddress, comment: str) -> None:
    text = _UNSAFE_PARAM_CHARS.sub(" ", comment).strip()
    if text:
        attendee.params[COMMENT_PARAM] = text
    else:
        attendee.params.pop(COMMENT_PARAM, None)


def apply_counter(message: Calendar, stored: Stored, recipient: Recipient) -> ApplyResult:
    """A proposal is recorded for the organizer to decide; nothing moves (RFC 5546 §3.2.7)."""
    problem = organizer_problem(stored, recipient)
    if problem is not None:
        return problem
    proposers = sorted({a for c in components_of(message) for a in _attendee_addresses(c)})
    return unchanged(Outcome.PROPOSAL, stored, "counter-proposal", ", ".join(proposers))


def apply_refresh(message: Calendar, stored: Stored, recipient: Recipient, now: datetime) -> ApplyResult:
    """Answer an attendee's REFRESH with the current REQUEST (RFC 5546 §3.2.6)."""
    problem = organizer_problem(stored, recipient)
    if problem is not None:
        return problem
    asking = [a for c in components_of(message) for a in _attendee_addresses(c)]
    invited = [a for a in asking if any(find_attendee(c, a) for c in stored.components)]
    if not invited:
        return unchanged(Outcome.UNINVITED, stored, "refresh-from-uninvited", ", ".join(asking))
    assert stored.calendar is not None
    answer = build_request(stored.calendar, invited[0], now)
    return ApplyResult(Outcome.ANSWERED, stored, "refresh-answered", messages=(answer,))


def _attendee_addresses(component: Component) -> list[str]:
    found = (normalize_address(a) for a in attendee_properties(component))
    return [a for a in found if a]
