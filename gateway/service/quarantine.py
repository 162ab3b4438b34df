"""What a held message is, for the operator deciding whether to release or drop it (``reefknot quarantine show``).

Reads the message as the pipeline would (``gateway.core.mail``) and names what it
asks: method, UID, summary, organizer, attendees, and the rule that held it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway.core.calendar.ical import (
    CalendarError,
    attendees_of,
    components_of,
    method_of,
    organizer_of,
    parse_calendar,
    uid_of,
)
from gateway.core.mail.calendarparts import parse_mail
from gateway.store import intake
from gateway.store.intake import IntakeState


@dataclass(frozen=True)
class HeldPart:
    """One calendar part of a held message."""

    method: str
    uid: str
    summary: str
    organizer: str
    attendees: tuple[str, ...]
    problem: str = ""  # why it could not be read, if it could not


@dataclass(frozen=True)
class HeldMessage:
    """A held message: its envelope and headers, why it is held, what its calendar parts ask."""

    id: int
    sender: str
    recipients: tuple[str, ...]
    subject: str
    from_address: str
    message_id: str
    reason: str
    detail: str
    parts: tuple[HeldPart, ...]
    raw: bytes


def describe_held(session: Session, intake_id: int) -> HeldMessage:
    """The held message ``intake_id``; ``intake.IntakeNotFound`` when no message by that id is held."""
    row = intake.load(session, intake_id, states=(IntakeState.HELD,))
    reason, detail = intake.outcome_of(session, intake_id)
    mail = parse_mail(row.raw)
    return HeldMessage(row.id, row.envelope_sender, row.recipients, mail.subject, mail.from_address or "",
                       row.message_id, reason, detail, tuple(_part(p.text) for p in mail.calendar_parts), row.raw)


def _part(text: str) -> HeldPart:
    try:
        calendar = parse_calendar(text)
    except CalendarError as error:
        return HeldPart("", "", "", "", (), problem=str(error))
    components = components_of(calendar)
    first = components[0] if components else None
    if first is None:
        return HeldPart(method_of(calendar) or "", "", "", "", (), problem="no scheduling component")
    attendees = tuple(dict.fromkeys(a for c in components for a in attendees_of(c)))
    return HeldPart(method_of(calendar) or "", uid_of(first), str(first.get("SUMMARY", "")),
                    organizer_of(first) or "", attendees)
