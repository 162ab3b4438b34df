"""Applying one intake message: mail → calendar parts → iTIP → each local recipient's calendar.

Everything for one message happens in the caller's transaction: the new calendar
objects, the inbox lines, the ledger rows and the outbox rows commit together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from gateway.core.itip.messages import ItipMessage, PartProblem, read_itip
from gateway.core.mail import MailError, ParsedMail, parse_mail
from gateway.core.model import Outcome
from gateway.service.delivery import apply_for, deliver
from gateway.store import directory, inbox, ledger
from gateway.store.directory import PrincipalRef
from gateway.store.intake import IntakeState, finish
from gateway.store.schema import IntakeMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """Where an intake message ends up, and why."""

    state: IntakeState
    reason: str = ""
    detail: str = ""


def process_message(session: Session, row: IntakeMessage, now: datetime) -> Verdict:
    """Apply every scheduling message in an intake message for its local recipients."""
    try:
        mail = parse_mail(row.raw)
    except MailError as error:
        verdict = Verdict(IntakeState.HELD, error.reason, error.detail)
    else:
        verdict = _process_mail(session, row, mail, now)
    finish(row, verdict.state, now, verdict.reason, verdict.detail)
    log.info("intake %d %s: %s %s", row.id, row.message_id, verdict.state.value, verdict.reason)
    return verdict


def _process_mail(session: Session, row: IntakeMessage, mail: ParsedMail, now: datetime) -> Verdict:
    if mail.bounce is not None:
        return Verdict(IntakeState.IGNORED, "delivery-report")
    if not mail.calendar_parts:
        if mail.tnef:
            _record_for_all(session, row, mail, PartProblem(Outcome.UNREADABLE, "tnef-invitation"), now)
            return Verdict(IntakeState.HELD, "tnef-invitation", "an Outlook rich-text (TNEF) attachment, no iCalendar part")
        return Verdict(IntakeState.IGNORED, "no-calendar-part")
    readings = [read_itip(part) for part in mail.calendar_parts]
    principals = _local_recipients(session, row, readings)
    if not principals:
        return Verdict(IntakeState.IGNORED, "no-local-recipient")
    problems = [r for r in readings if isinstance(r, PartProblem)]
    for reading in readings:
        for principal in principals:
            if isinstance(reading, PartProblem):
                _record(session, row, mail, principal, reading, now)
            else:
                _apply_one(session, row, mail, principal, reading, now)
    if any(p.outcome in (Outcome.UNREADABLE, Outcome.REJECTED) for p in problems):
        return Verdict(IntakeState.HELD, problems[0].reason, problems[0].detail)
    if len(problems) == len(readings):
        return Verdict(IntakeState.IGNORED, problems[0].reason)
    return Verdict(IntakeState.DONE)


def _local_recipients(session: Session, row: IntakeMessage, readings: list[ItipMessage | PartProblem]) -> list[PrincipalRef]:
    """The envelope's local recipients; without an envelope, the local principals the messages name."""
    addresses = list(row.recipients) or sorted(
        {a for r in readings if isinstance(r, ItipMessage) for a in r.participants}
    )
    found = directory.resolve_many(session, addresses)
    return list({p.id: p for p in found.values() if p is not None}.values())


def _sender(row: IntakeMessage, mail: ParsedMail) -> str:
    return mail.from_address or row.envelope_sender


def _apply_one(
    session: Session, row: IntakeMessage, mail: ParsedMail, principal: PrincipalRef, message: ItipMessage, now: datetime
) -> None:
    if not ledger.claim(session, principal.id, ledger.fingerprint(message.method.value, message.text), now):
        line = PartProblem(Outcome.DUPLICATE, "already-processed", method=message.method.value, uid=message.uid)
        _record(session, row, mail, principal, line, now)
        return
    result = apply_for(session, principal, message.method, message.uid, message.calendar, now)
    detail = "; ".join(d for d in (result.detail, message.note) if d)
    keep = message.text if result.outcome in (Outcome.PROPOSAL, Outcome.UNINVITED) else ""
    inbox.record(
        session,
        inbox.InboxRecord(
            principal.id, message.method.value, message.uid, _sender(row, mail),
            result.outcome, result.reason, detail, keep, row.id,
        ),
        now,
    )
    if result.messages and not mail.is_noise:
        deliver(session, result.messages, now)


def _record(
    session: Session, row: IntakeMessage, mail: ParsedMail, principal: PrincipalRef, problem: PartProblem, now: datetime
) -> None:
    line = inbox.InboxRecord(
        principal.id, problem.method, problem.uid, _sender(row, mail),
        problem.outcome, problem.reason, problem.detail, problem.text, row.id,
    )
    inbox.record(session, line, now)


def _record_for_all(session: Session, row: IntakeMessage, mail: ParsedMail, problem: PartProblem, now: datetime) -> None:
    for principal in _local_recipients(session, row, []):
        _record(session, row, mail, principal, problem, now)
