"""Applying one intake message: mail → calendar parts → iTIP → each local recipient's calendar.

Mail that comes back to Reefknot's own reply and bounce addresses is routed by its
token: a bounce fails its delivery (``bounced``), a plain answer becomes a REPLY
(``answers``), and a calendar answer from an alias counts for the attendee the token names.

Everything for one message happens in the caller's transaction: the new calendar
objects, the inbox lines, the ledger rows and the outbox rows commit together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from gateway.core.itip.messages import ItipMessage, PartProblem, read_itip
from gateway.core.itip.replies import attribute_reply
from gateway.core.mail import MailError, ParsedMail, parse_mail
from gateway.core.model import Method, Outcome
from gateway.service import routing
from gateway.service.answers import apply_plain_answer
from gateway.service.bounced import record_bounce
from gateway.service.delivery import apply_for, deliver
from gateway.service.routing import Route
from gateway.store import calendars, directory, inbox, ledger
from gateway.store.directory import PrincipalRef
from gateway.store.intake import IntakeState, finish
from gateway.store.schema import IntakeMessage

log = logging.getLogger(__name__)
ANSWERS = frozenset({Method.REPLY, Method.COUNTER, Method.REFRESH})  # what an attendee sends


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
    routes = routing.routes_for(session, row.recipients, now)
    if mail.bounce is not None:
        reason = record_bounce(session, routes, mail.bounce, _sender(row, mail), row.id, now)
        return Verdict(IntakeState.DONE if reason == "delivery-failed" else IntakeState.IGNORED, reason)
    if not mail.calendar_parts:
        return _without_calendar(session, row, mail, routes, now)
    readings = [read_itip(part) for part in mail.calendar_parts]
    routes = routes if row.recipients else _named_principals(session, readings)
    if not routes:
        return Verdict(IntakeState.IGNORED, "no-local-recipient")
    problems = [r for r in readings if isinstance(r, PartProblem)]
    for reading in readings:
        for route in routes:
            if isinstance(reading, PartProblem):
                _record(session, row, mail, route.principal, reading, now)
            else:
                _apply_one(session, row, mail, route, reading, now)
    if any(p.outcome in (Outcome.UNREADABLE, Outcome.REJECTED) for p in problems):
        return Verdict(IntakeState.HELD, problems[0].reason, problems[0].detail)
    if len(problems) == len(readings):
        return Verdict(IntakeState.IGNORED, problems[0].reason)
    return Verdict(IntakeState.DONE)


def _without_calendar(session: Session, row: IntakeMessage, mail: ParsedMail, routes: list[Route], now: datetime) -> Verdict:
    """A plain answer to a reply address, an Outlook TNEF invitation, or mail that is not for Reefknot."""
    answered = [r for r in routes if r.token is not None and r.outbox_id is None]
    if answered:
        lines = [apply_plain_answer(session, route, mail, row.raw, row.id, now) for route in answered]
        return Verdict(IntakeState.DONE, lines[0].reason, lines[0].detail)
    if mail.tnef:
        problem = PartProblem(Outcome.UNREADABLE, "tnef-invitation")
        for route in routes:
            _record(session, row, mail, route.principal, problem, now)
        return Verdict(IntakeState.HELD, "tnef-invitation", "an Outlook rich-text (TNEF) attachment, no iCalendar part")
    return Verdict(IntakeState.IGNORED, "no-calendar-part")


def _named_principals(session: Session, readings: list[ItipMessage | PartProblem]) -> list[Route]:
    """Without an envelope (``ingest`` with no ``--recipient``): the local principals the messages name."""
    addresses = sorted({a for r in readings if isinstance(r, ItipMessage) for a in r.participants})
    found = directory.resolve_many(session, addresses)
    return [Route(p) for p in {p.id: p for p in found.values() if p is not None}.values()]


def _sender(row: IntakeMessage, mail: ParsedMail) -> str:
    return mail.from_address or row.envelope_sender


def _apply_one(
    session: Session, row: IntakeMessage, mail: ParsedMail, route: Route, message: ItipMessage, now: datetime
) -> None:
    principal = route.principal
    if not ledger.claim(session, principal.id, ledger.fingerprint(message.method.value, message.text), now):
        line = PartProblem(Outcome.DUPLICATE, "already-processed", method=message.method.value, uid=message.uid)
        _record(session, row, mail, principal, line, now)
        return
    calendar = message.calendar
    if route.token is not None and message.method in ANSWERS and route.token.uid == message.uid:
        stored = calendars.load_object(session, principal.id, message.uid)
        calendar = attribute_reply(calendar, stored.calendar, route.token.address)
    result = apply_for(session, principal, message.method, message.uid, calendar, now)
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

