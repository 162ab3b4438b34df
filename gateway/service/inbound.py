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

from gateway.core.calendar.privacy import busy_only
from gateway.core.checkpoint import checkpoint
from gateway.core.itip.messages import ItipMessage, PartProblem, read_itip
from gateway.core.itip.replies import attribute_reply
from gateway.core.mail.calendarparts import MailError, ParsedMail, parse_mail
from gateway.core.model import Method, Outcome
from gateway.core.trust.policy import Action, PrivateEvents
from gateway.service import freebusy, rooms, routing
from gateway.service.bounce_reports import record_bounce
from gateway.service.itip_delivery import apply_for, books_itself, deliver
from gateway.service.plain_answers import apply_plain_answer
from gateway.service.routing import Route
from gateway.service.trust import Judge, Judgement, Trust
from gateway.store import calendars, directory, inbox, ledger
from gateway.store.directory import PrincipalRef
from gateway.store.intake import IntakeState, Queued, finish

log = logging.getLogger(__name__)
ANSWERS = frozenset({Method.REPLY, Method.COUNTER, Method.REFRESH})  # what an attendee sends
STORED = frozenset({Method.REQUEST, Method.ADD, Method.PUBLISH})  # what puts an organizer's details in the store
MAX_PARTS, MAX_DEPTH = 1000, 20  # MIME bounds when the policy sets none
OPEN_TRUST = Trust()


@dataclass(frozen=True)
class IntakeResult:
    """Where an intake message ends up, and why."""

    state: IntakeState
    reason: str = ""
    detail: str = ""


def process_message(
    session: Session, row: Queued, now: datetime, trust: Trust = OPEN_TRUST, *, released: bool = False
) -> IntakeResult:
    """Apply every scheduling message in an intake message for its local recipients, as the policy says.

    ``released``: the operator released the message from quarantine; it is applied as if
    the policy had accepted it.
    """
    limits = trust.policy.limits
    try:
        mail = parse_mail(row.raw, max_parts=limits.max_parts or MAX_PARTS, max_depth=limits.max_mime_depth or MAX_DEPTH)
    except MailError as error:
        result = IntakeResult(IntakeState.HELD, error.reason, error.detail)
    else:
        judge = Judge(trust, mail, row.raw, row.envelope_sender, released=released)
        result = _process_mail(session, row, mail, judge, now)
    finish(session, row.id, result.state, now, result.reason, result.detail)
    log.info("intake %d %s: %s %s", row.id, row.message_id, result.state.value, result.reason)
    return result


def _process_mail(session: Session, row: Queued, mail: ParsedMail, judge: Judge, now: datetime) -> IntakeResult:
    routes = routing.routes_for(session, row.recipients, now)
    if mail.bounce is not None:
        reason = record_bounce(session, routes, mail.bounce, _sender(row, mail), row.id, now, judge)
        return IntakeResult(IntakeState.DONE if reason == "delivery-failed" else IntakeState.IGNORED, reason)
    if not mail.calendar_parts:
        return _without_calendar(session, row, mail, routes, now)
    readings = [read_itip(part, sent=mail.sent_at, now=now) for part in mail.calendar_parts]
    routes = routes if row.recipients else _named_principals(session, readings)
    if not routes:
        return IntakeResult(IntakeState.IGNORED, "no-local-recipient")
    problems = [r for r in readings if isinstance(r, PartProblem)]
    messages = [r for r in readings if isinstance(r, ItipMessage)]
    over_limit = judge.limits(session, row.sender_domain, messages, now)
    if over_limit is not None:
        for route in routes:
            for message in messages:
                _record_judgement(session, row, mail, route, message, over_limit, now)
        return _judged(over_limit)
    refused: list[Judgement] = []
    for reading in readings:
        for route in routes:
            checkpoint()  # the processing budget: a message to many recipients stops between them
            if isinstance(reading, PartProblem):
                _record(session, row, mail, route.principal, reading, now)
            elif (judgement := _apply_one(session, row, mail, route, reading, judge, now)) is not None:
                refused.append(judgement)
    if any(p.outcome in (Outcome.UNREADABLE, Outcome.REJECTED) for p in problems):
        return IntakeResult(IntakeState.HELD, problems[0].reason, problems[0].detail)
    held = [j for j in refused if j.action is Action.HOLD]
    if held:
        return _judged(held[0])
    if len(problems) == len(readings):
        return IntakeResult(IntakeState.IGNORED, problems[0].reason)
    if refused and len(refused) == len(messages) * len(routes):
        return _judged(refused[0])
    return IntakeResult(IntakeState.DONE)


def _judged(judgement: Judgement) -> IntakeResult:
    """A message held (quarantine: the rule and why) or rejected by policy."""
    state = IntakeState.HELD if judgement.action is Action.HOLD else IntakeState.IGNORED
    return IntakeResult(state, judgement.rule, judgement.detail)


def _without_calendar(session: Session, row: Queued, mail: ParsedMail, routes: list[Route], now: datetime) -> IntakeResult:
    """A plain answer to a reply address, an Outlook TNEF invitation, or mail that is not for Reefknot."""
    answered = [r for r in routes if r.token is not None and r.outbox_id is None]
    if answered:
        lines = [apply_plain_answer(session, route, mail, row.raw, row.id, now) for route in answered]
        return IntakeResult(IntakeState.DONE, lines[0].reason, lines[0].detail)
    if mail.tnef:
        problem = PartProblem(Outcome.UNREADABLE, "tnef-invitation")
        for route in routes:
            _record(session, row, mail, route.principal, problem, now)
        return IntakeResult(IntakeState.HELD, "tnef-invitation", "an Outlook rich-text (TNEF) attachment, no iCalendar part")
    return IntakeResult(IntakeState.IGNORED, "no-calendar-part")


def _named_principals(session: Session, readings: list[ItipMessage | PartProblem]) -> list[Route]:
    """Without an envelope (``ingest`` with no ``--recipient``): the local principals the messages name."""
    addresses = sorted({a for r in readings if isinstance(r, ItipMessage) for a in r.participants})
    found = directory.resolve_many(session, addresses)
    return [Route(p) for p in {p.id: p for p in found.values() if p is not None}.values()]


def _sender(row: Queued, mail: ParsedMail) -> str:
    return mail.from_address or row.envelope_sender


def _apply_one(
    session: Session, row: Queued, mail: ParsedMail, route: Route, message: ItipMessage, judge: Judge,
    now: datetime,
) -> Judgement | None:
    """Judge one message for one recipient and apply it if the policy says so; the judgement when it does not."""
    principal = route.principal
    stored = calendars.load_object(session, principal.id, message.uid)
    judgement = judge.judge(session, route, message, stored.calendar, now)
    if judgement.action in (Action.HOLD, Action.REJECT):
        _record_judgement(session, row, mail, route, message, judgement, now)
        notice = judge.notice(route, message, judgement, now)
        if notice is not None:
            deliver(session, [notice], now)
        return judgement
    if not ledger.claim(session, principal.id, ledger.fingerprint(message.method.value, message.text), now):
        line = PartProblem(Outcome.DUPLICATE, "already-processed", method=message.method.value, uid=message.uid)
        _record(session, row, mail, principal, line, now)
        return None
    if message.method is Method.REQUEST and freebusy.is_freebusy(message.calendar):
        _answer_freebusy(session, row, mail, route, message, judge, judgement, now)
        return None
    calendar = message.calendar
    if route.token is not None and message.method in ANSWERS and route.token.uid == message.uid:
        calendar = attribute_reply(calendar, stored.calendar, route.token.address)
    privacy = judge.private_handling(session, route, message) if message.method in STORED else PrivateEvents.KEEP
    if privacy is PrivateEvents.EXCLUDE:
        line = PartProblem(Outcome.IGNORED, "private-event-excluded", method=message.method.value, uid=message.uid)
        _record(session, row, mail, principal, line, now)
        return None
    if privacy is PrivateEvents.BUSY_ONLY:
        calendar = busy_only(calendar, principal.addresses)
    result = apply_for(session, principal, message.method, message.uid, calendar, now, stored)
    notes = (result.detail, message.note, "stored as busy time only" if privacy is PrivateEvents.BUSY_ONLY else "",
             "released by the operator" if judge.released else "")
    detail = "; ".join(d for d in notes if d)
    keep = message.text if result.outcome in (Outcome.PROPOSAL, Outcome.UNINVITED) else ""
    inbox.record(
        session,
        inbox.InboxRecord(
            principal.id, message.method.value, message.uid, _sender(row, mail),
            result.outcome, result.reason, detail, keep, row.id,
        ),
        now,
    )
    answers = list(result.messages)
    if books_itself(principal, message.method, result):
        decline = judgement.reason if judgement.action is Action.AUTO_DECLINE else ""
        answers += rooms.answer(session, principal, message.uid, now, judge.trust.room_rules, decline=decline)
    if answers and not mail.is_noise:
        deliver(session, answers, now, judge.trust.room_rules)
    return None


def _answer_freebusy(
    session: Session, row: Queued, mail: ParsedMail, route: Route, message: ItipMessage, judge: Judge,
    judgement: Judgement, now: datetime,
) -> None:
    """A VFREEBUSY REQUEST: answered when the policy lets the sender see this principal's time; recorded either way."""
    allowed = not mail.is_noise and judge.may_see_freebusy(judgement)
    answer = freebusy.answer_by_mail(session, route.principal, message.calendar, allowed, now)
    if answer.reply is not None:
        deliver(session, [answer.reply], now)
    line = inbox.InboxRecord(route.principal.id, message.method.value, message.uid, _sender(row, mail),
                             answer.outcome, answer.reason, answer.detail or judgement.detail, intake_id=row.id)
    inbox.record(session, line, now)


def _record_judgement(
    session: Session, row: Queued, mail: ParsedMail, route: Route, message: ItipMessage, judgement: Judgement,
    now: datetime,
) -> None:
    outcome = Outcome.HELD if judgement.action is Action.HOLD else Outcome.REJECTED
    authority = judgement.authority
    reason = authority.reason if authority is not None and not authority.allowed else judgement.reason
    line = inbox.InboxRecord(
        route.principal.id, message.method.value, message.uid, _sender(row, mail), outcome, reason,
        judgement.detail, intake_id=row.id,
    )
    inbox.record(session, line, now)


def _record(
    session: Session, row: Queued, mail: ParsedMail, principal: PrincipalRef, problem: PartProblem, now: datetime
) -> None:
    line = inbox.InboxRecord(
        principal.id, problem.method, problem.uid, _sender(row, mail),
        problem.outcome, problem.reason, problem.detail, problem.text, row.id,
    )
    inbox.record(session, line, now)

