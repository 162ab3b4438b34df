"""The entry point of the apply direction: one validated iTIP message, one recipient's copy → a result.

Which side of the exchange the recipient is on follows from the method: REQUEST, ADD,
CANCEL, PUBLISH and DECLINECOUNTER go to attendees; REPLY, COUNTER and REFRESH go to
the organizer (RFC 5546 §1.4). Pure: the caller loads and saves the stored object.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from icalendar import Calendar

from gateway.core.calendar.ical import components_of, organizer_identities
from gateway.core.itip import merge, replies
from gateway.core.itip.plan import build_refresh
from gateway.core.itip.types import ApplyResult, Recipient, Stored, unchanged
from gateway.core.model import Method, Outcome

Applier = Callable[[Calendar, Stored, Recipient, datetime], ApplyResult]

TO_ATTENDEES = frozenset({Method.PUBLISH, Method.REQUEST, Method.ADD, Method.CANCEL, Method.DECLINECOUNTER})

_APPLIERS: dict[Method, Applier] = {
    Method.PUBLISH: lambda m, s, r, now: merge.apply_publish(m, s, r),
    Method.REQUEST: lambda m, s, r, now: merge.apply_request(m, s, r),
    Method.ADD: lambda m, s, r, now: _apply_add(m, s, r, now),
    Method.CANCEL: lambda m, s, r, now: merge.apply_cancel(m, s),
    Method.DECLINECOUNTER: lambda m, s, r, now: _apply_declinecounter(s),
    Method.REPLY: lambda m, s, r, now: replies.apply_reply(m, s, r),
    Method.COUNTER: lambda m, s, r, now: replies.apply_counter(m, s, r),
    Method.REFRESH: replies.apply_refresh,
}


def apply_itip(message: Calendar, method: Method, stored: Stored, recipient: Recipient, now: datetime) -> ApplyResult:
    """Apply one iTIP message (already validated) to one local recipient's copy of its UID."""
    problem = _wrong_side(message, method, stored, recipient)
    if problem is not None:
        return problem
    return _APPLIERS[method](message, stored, recipient, now)


def _wrong_side(message: Calendar, method: Method, stored: Stored, recipient: Recipient) -> ApplyResult | None:
    """Messages for attendees never change the organizer's own copy, nor one of another organizer."""
    if method not in TO_ATTENDEES:
        return None
    incoming = components_of(message)
    if any(recipient.is_organizer_of(c) for c in incoming + stored.components):
        return unchanged(Outcome.IGNORED, stored, "recipient-is-organizer")
    if method is Method.PUBLISH or not stored.components:
        return None
    known = set().union(*(organizer_identities(c) for c in stored.components))
    claimed = set().union(*(organizer_identities(c) for c in incoming))
    if known and claimed and not claimed & known:
        return unchanged(Outcome.REJECTED, stored, "organizer-changed", ", ".join(sorted(claimed)))
    if method is not Method.ADD and not any(recipient.attendee_in(c) for c in incoming + stored.components):
        return unchanged(Outcome.IGNORED, stored, "recipient-not-invited")
    return None


def _apply_add(message: Calendar, stored: Stored, recipient: Recipient, now: datetime) -> ApplyResult:
    """New instances; for an object we do not have, ask the organizer for it (RFC 5546 §3.2.4)."""
    if stored.components:
        return merge.apply_add(message, stored, recipient)
    asking = next((a for c in components_of(message) if (a := recipient.attendee_in(c))), recipient.address)
    refresh = build_refresh(message, asking, now)
    return unchanged(Outcome.NOT_FOUND, stored, "unknown-object").with_messages(refresh)


def _apply_declinecounter(stored: Stored) -> ApplyResult:
    """The organizer declined our proposal: kept for the attendee to see (RFC 5546 §3.2.8)."""
    if not stored.components:
        return unchanged(Outcome.NOT_FOUND, stored, "unknown-object")
    return unchanged(Outcome.RECORDED, stored, "counter-declined")
