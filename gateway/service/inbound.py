"""Applying one intake message, as an ordered table of named steps: mail → iTIP → each local recipient's calendar.

The mail steps (``MAIL_STEPS``) run first, in order, until one settles the message:
a delivery report fails its delivery (``gateway.service.bounce_reports``), a plain
answer to a reply address becomes a REPLY (``gateway.service.plain_answers``), mail
without a calendar part is held (Outlook's TNEF) or ignored, then the local recipients
are found and the policy's limits checked. Each scheduling message then goes through
the recipient steps (``RECIPIENT_STEPS``) for each recipient, each step saying which
methods it applies to; a step may settle that recipient's message (held, a duplicate,
a free/busy answer, a private event left out). Like GNU Mailman's chains: to see why a
message ended where it did, read the table top to bottom.

Everything for one message happens in the caller's transaction: the new calendar
objects, the inbox lines, the ledger rows and the outbox rows commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from icalendar import Calendar
from sqlalchemy.orm import Session

from gateway.core.calendar.privacy import busy_only
from gateway.core.checkpoint import checkpoint
from gateway.core.imip.answering import Answered, answered_mail
from gateway.core.itip.messages import ItipMessage, PartProblem, read_itip
from gateway.core.itip.replies import attribute_reply
from gateway.core.itip.types import ApplyResult, Stored
from gateway.core.mail.calendarparts import MailError, ParsedMail, parse_mail
from gateway.core.model import Method, OutgoingMessage, Outcome
from gateway.core.trust.policy import Action, PrivateEvents
from gateway.service import freebusy, rooms, routing
from gateway.service.bounce_reports import record_bounce
from gateway.service.itip_delivery import apply_for, books_itself, deliver
from gateway.service.plain_answers import apply_plain_answer
from gateway.service.routing import Route
from gateway.service.trust import Judge, Judgement, Trust
from gateway.store import calendars, directory, inbox, ledger
from gateway.store.intake import IntakeState, Queued, finish

log = logging.getLogger(__name__)
ANSWERS = frozenset({Method.REPLY, Method.COUNTER, Method.REFRESH})  # what an attendee sends
STORED = frozenset({Method.REQUEST, Method.ADD, Method.PUBLISH})  # what puts an organizer's details in the store
EVERY_METHOD = frozenset(Method)
MAX_PARTS, MAX_DEPTH = 1000, 20  # MIME bounds when the policy sets none
OPEN_TRUST = Trust()


@dataclass(frozen=True)
class IntakeResult:
    """Where an intake message ends up, and why."""

    state: IntakeState
    reason: str = ""
    detail: str = ""
    method: str = ""  # the first scheduling part's, for the metrics; "": none was read


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


@dataclass
class Intake:
    """One intake message as the mail steps see it; ``routes`` and ``readings`` fill in as they run."""

    session: Session
    row: Queued
    mail: ParsedMail
    judge: Judge
    now: datetime
    routes: list[Route] = field(default_factory=list)
    readings: list[ItipMessage | PartProblem] = field(default_factory=list)

    @property
    def sender(self) -> str:
        return self.mail.from_address or self.row.envelope_sender

    @property
    def answered(self) -> Answered | None:
        """This mail, for what answers it to thread under (RFC 5322 §3.6.4)."""
        return answered_mail(self.mail.message_id, self.mail.references)

    @property
    def messages(self) -> list[ItipMessage]:
        return [r for r in self.readings if isinstance(r, ItipMessage)]

    def record(self, route: Route, problem: PartProblem) -> None:
        """An inbox line for a part that is not applied for this recipient."""
        line = inbox.InboxRecord(route.principal.id, problem.method, problem.uid, self.sender, problem.outcome,
                                 problem.reason, problem.detail, problem.text, self.row.id)
        inbox.record(self.session, line, self.now)

    def record_judgement(self, route: Route, message: ItipMessage, judgement: Judgement) -> None:
        """An inbox line for a message the policy holds or rejects."""
        outcome = Outcome.HELD if judgement.action is Action.HOLD else Outcome.REJECTED
        authority = judgement.authority
        reason = authority.reason if authority is not None and not authority.allowed else judgement.reason
        line = inbox.InboxRecord(route.principal.id, message.method.value, message.uid, self.sender, outcome,
                                 reason, judgement.detail, intake_id=self.row.id)
        inbox.record(self.session, line, self.now)


MailStep = Callable[[Intake], IntakeResult | None]
KEPT_IN_INBOX = frozenset({Outcome.APPLIED, Outcome.PROPOSAL, Outcome.UNINVITED})  # lines that keep the message


def _bounce(intake: Intake) -> IntakeResult | None:
    """A delivery report for mail Reefknot sent fails that delivery (when proven)."""
    report = intake.mail.bounce
    if report is None:
        return None
    reason = record_bounce(intake.session, intake.routes, report, intake.sender, intake.row.id, intake.now,
                           intake.judge)
    return IntakeResult(IntakeState.DONE if reason == "delivery-failed" else IntakeState.IGNORED, reason)


def _plain_answer(intake: Intake) -> IntakeResult | None:
    """Words without a calendar part, to a reply address: the attendee's answer in plain language."""
    answered = [r for r in intake.routes if r.token is not None and r.outbox_id is None]
    if intake.mail.calendar_parts or not answered:
        return None
    row = intake.row
    lines = [apply_plain_answer(intake.session, route, intake.mail, row.raw, row.id, intake.now) for route in answered]
    return IntakeResult(IntakeState.DONE, lines[0].reason, lines[0].detail)


def _no_calendar(intake: Intake) -> IntakeResult | None:
    """No calendar part: an Outlook rich-text (TNEF) invitation is held, anything else is not for Reefknot."""
    if intake.mail.calendar_parts:
        return None
    if not intake.mail.tnef:
        return IntakeResult(IntakeState.IGNORED, "no-calendar-part")
    for route in intake.routes:
        intake.record(route, PartProblem(Outcome.UNREADABLE, "tnef-invitation"))
    return IntakeResult(IntakeState.HELD, "tnef-invitation", "an Outlook rich-text (TNEF) attachment, no iCalendar part")


def _recipients(intake: Intake) -> IntakeResult | None:
    """The iTIP messages of the calendar parts, and who they are for: the envelope's local recipients, or
    without an envelope (``ingest`` with no ``--recipient``) the local principals the messages name."""
    intake.readings = [read_itip(part, sent=intake.mail.sent_at, now=intake.now) for part in intake.mail.calendar_parts]
    if not intake.row.recipients:
        addresses = sorted({a for m in intake.messages for a in m.participants})
        found = directory.resolve_many(intake.session, addresses)
        intake.routes = routing.in_lock_order({p.id: Route(p) for p in found.values() if p is not None})
    return None if intake.routes else IntakeResult(IntakeState.IGNORED, "no-local-recipient")


def _limits(intake: Intake) -> IntakeResult | None:
    """A message over a policy limit, or from a sender domain over its rate, is held or rejected whole."""
    over = intake.judge.limits(intake.session, intake.row.sender_domain, intake.messages, intake.now)
    if over is None:
        return None
    for route in intake.routes:
        for message in intake.messages:
            intake.record_judgement(route, message, over)
    return _judged(over)


MAIL_STEPS: tuple[tuple[str, MailStep], ...] = (
    ("bounce", _bounce),
    ("plain answer", _plain_answer),
    ("no calendar", _no_calendar),
    ("recipients", _recipients),
    ("limits", _limits),
)


@dataclass
class Delivery:
    """One scheduling message for one recipient as the recipient steps see it; each step fills in its part."""

    intake: Intake
    route: Route
    message: ItipMessage
    stored: Stored = field(default_factory=Stored)  # the recipient's copy before the message
    judgement: Judgement | None = None
    calendar: Calendar | None = None  # what is applied: the message's, attributed, or busy time only
    privacy: PrivateEvents = PrivateEvents.KEEP
    applied: ApplyResult | None = None
    answers: list[OutgoingMessage] = field(default_factory=list)

    @property
    def session(self) -> Session:
        return self.intake.session

    @property
    def decided(self) -> Judgement:
        assert self.judgement is not None, "the judge step runs first"
        return self.judgement

    def settle(self, problem: PartProblem) -> Settled:
        self.intake.record(self.route, problem)
        return Settled()


@dataclass(frozen=True)
class Settled:
    """A recipient step that settled the message for this recipient; ``refused``: the policy would not apply it."""

    refused: Judgement | None = None


RecipientStep = Callable[[Delivery], Settled | None]


def _judge(step: Delivery) -> Settled | None:
    """The policy's action for this message and recipient, from the facts about sender and calendar."""
    step.stored = calendars.load_object(step.session, step.route.principal.id, step.message.uid)
    step.calendar = step.message.calendar
    step.judgement = step.intake.judge.judge(step.session, step.route, step.message, step.stored.calendar,
                                             step.intake.now)
    return None


def _hold_or_reject(step: Delivery) -> Settled | None:
    """Held for the operator, or rejected (with a notice to an authenticated organizer when the rule asks)."""
    judgement = step.decided
    if judgement.action not in (Action.HOLD, Action.REJECT):
        return None
    step.intake.record_judgement(step.route, step.message, judgement)
    notice = step.intake.judge.notice(step.route, step.message, judgement, step.intake.now)
    if notice is not None:
        deliver(step.session, [notice], step.intake.now, answering=step.intake.answered)
    return Settled(refused=judgement)


def _duplicate(step: Delivery) -> Settled | None:
    """The same message again for the same recipient changes nothing."""
    message = step.message
    fingerprint = ledger.fingerprint(message.method.value, message.text)
    if ledger.claim(step.session, step.route.principal.id, fingerprint, step.intake.now):
        return None
    return step.settle(PartProblem(Outcome.DUPLICATE, "already-processed", method=message.method.value, uid=message.uid))


def _freebusy_answer(step: Delivery) -> Settled | None:
    """A VFREEBUSY REQUEST: answered when the policy lets the sender see this principal's time; recorded either way."""
    if not freebusy.is_freebusy(step.message.calendar):
        return None
    intake, judgement = step.intake, step.decided
    allowed = not intake.mail.is_noise and intake.judge.may_see_freebusy(judgement)
    answer = freebusy.answer_by_mail(step.session, step.route.principal, step.message.calendar, allowed, intake.now)
    if answer.reply is not None:
        deliver(step.session, [answer.reply], intake.now, answering=intake.answered)
    line = inbox.InboxRecord(step.route.principal.id, step.message.method.value, step.message.uid, intake.sender,
                             answer.outcome, answer.reason, answer.detail or judgement.detail, intake_id=intake.row.id)
    inbox.record(step.session, line, intake.now)
    return Settled()


def _token_reply(step: Delivery) -> Settled | None:
    """An answer to a reply address counts for the attendee its token names (an alias, a forwarded invitation)."""
    token = step.route.token
    if token is not None and token.uid == step.message.uid:
        step.calendar = attribute_reply(step.message.calendar, step.stored.calendar, token.address)
    return None


def _privacy(step: Delivery) -> Settled | None:
    """A private event is kept, kept as busy time only, or left out, as the policy says."""
    step.privacy = step.intake.judge.private_handling(step.session, step.route, step.message)
    if step.privacy is PrivateEvents.EXCLUDE:
        message = step.message
        return step.settle(PartProblem(Outcome.IGNORED, "private-event-excluded", method=message.method.value,
                                       uid=message.uid))
    if step.privacy is PrivateEvents.BUSY_ONLY:
        assert step.calendar is not None
        step.calendar = busy_only(step.calendar, step.route.principal.addresses)
    return None


def _apply(step: Delivery) -> Settled | None:
    """The message applied to the recipient's calendar (RFC 5546 §3.2 and §3.3)."""
    assert step.calendar is not None
    step.applied = apply_for(step.session, step.route.principal, step.message.method, step.message.uid,
                             step.calendar, step.intake.now, step.stored)
    step.answers = list(step.applied.messages)
    return None


def _inbox(step: Delivery) -> Settled | None:
    """The recipient's inbox line: what happened, and the message's text when someone must look at it."""
    applied, message, intake = step.applied, step.message, step.intake
    assert applied is not None
    notes = (applied.detail, message.note, "stored as busy time only" if step.privacy is PrivateEvents.BUSY_ONLY else "",
             "released by the operator" if intake.judge.released else "")
    keep = message.text if applied.outcome in KEPT_IN_INBOX else ""  # what a CalDAV client's inbox shows
    line = inbox.InboxRecord(step.route.principal.id, message.method.value, message.uid, intake.sender,
                             applied.outcome, applied.reason, "; ".join(d for d in notes if d), keep, intake.row.id)
    inbox.record(step.session, line, intake.now)
    return None


def _room_answer(step: Delivery) -> Settled | None:
    """A room or resource answers its own invitations, under the policy's booking rules."""
    assert step.applied is not None
    principal, judgement = step.route.principal, step.decided
    if books_itself(principal, step.message.method, step.applied):
        decline = judgement.reason if judgement.action is Action.AUTO_DECLINE else ""
        step.answers += rooms.answer(step.session, principal, step.message.uid, step.intake.now,
                                     step.intake.judge.trust.room_rules, decline=decline)
    return None


def _deliver(step: Delivery) -> Settled | None:
    """What the change requires: applied for local principals, queued for everyone else; nothing for noise."""
    if step.answers and not step.intake.mail.is_noise:
        deliver(step.session, step.answers, step.intake.now, step.intake.judge.trust.room_rules,
                answering=step.intake.answered)
    return None


RECIPIENT_STEPS: tuple[tuple[str, frozenset[Method], RecipientStep], ...] = (
    ("judge", EVERY_METHOD, _judge),
    ("hold or reject", EVERY_METHOD, _hold_or_reject),
    ("duplicate", EVERY_METHOD, _duplicate),
    ("free/busy answer", frozenset({Method.REQUEST}), _freebusy_answer),
    ("token reply", ANSWERS, _token_reply),
    ("privacy", STORED, _privacy),
    ("apply", EVERY_METHOD, _apply),
    ("inbox", EVERY_METHOD, _inbox),
    ("room answer", EVERY_METHOD, _room_answer),
    ("deliver", EVERY_METHOD, _deliver),
)


def _process_mail(session: Session, row: Queued, mail: ParsedMail, judge: Judge, now: datetime) -> IntakeResult:
    intake = Intake(session, row, mail, judge, now, routes=routing.routes_for(session, row.recipients, now))
    for _, mail_step in MAIL_STEPS:
        result = mail_step(intake)
        if result is not None:
            return _with_method(intake, result)
    refused: list[Judgement] = []
    for reading in intake.readings:
        for route in intake.routes:
            checkpoint()  # the processing budget: a message to many recipients stops between them
            if isinstance(reading, PartProblem):
                intake.record(route, reading)
            elif (settled := _through_recipient_steps(Delivery(intake, route, reading))) and settled.refused:
                refused.append(settled.refused)
    return _with_method(intake, _outcome(intake, refused))


def _with_method(intake: Intake, result: IntakeResult) -> IntakeResult:
    methods = [m.method.value for m in intake.messages]
    return replace(result, method=methods[0]) if methods else result


def _through_recipient_steps(delivery: Delivery) -> Settled | None:
    for _, methods, recipient_step in RECIPIENT_STEPS:
        if delivery.message.method in methods and (settled := recipient_step(delivery)) is not None:
            return settled
    return None


def _outcome(intake: Intake, refused: list[Judgement]) -> IntakeResult:
    """The intake message's end: held when a part could not be read or a recipient's copy is held, else done."""
    problems = [r for r in intake.readings if isinstance(r, PartProblem)]
    if any(p.outcome in (Outcome.UNREADABLE, Outcome.REJECTED) for p in problems):
        return IntakeResult(IntakeState.HELD, problems[0].reason, problems[0].detail)
    held = [j for j in refused if j.action is Action.HOLD]
    if held:
        return _judged(held[0])
    if len(problems) == len(intake.readings):
        return IntakeResult(IntakeState.IGNORED, problems[0].reason)
    if refused and len(refused) == len(intake.messages) * len(intake.routes):
        return _judged(refused[0])
    return IntakeResult(IntakeState.DONE)


def _judged(judgement: Judgement) -> IntakeResult:
    """A message held (quarantine: the rule and why) or rejected by policy."""
    state = IntakeState.HELD if judgement.action is Action.HOLD else IntakeState.IGNORED
    return IntakeResult(state, judgement.rule, judgement.detail)
