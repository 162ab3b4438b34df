"""Bounces of Reefknot's own mail: matched to their delivery, which fails, and shown on the organizer's copy.

A bounce changes a delivery only when it proves it is about that delivery: it reached
the delivery's own bounce address (``bounce+<outbox id>.<token>``, whose token is the
secret), or it returns a Message-ID of ours and whoever reported it is authenticated
for the attendee's domain or for the local sender's (their mail system, or ours). A
Message-ID alone proves nothing: every attendee, and anyone they forwarded the mail
to, knows it. Such a bounce is recorded in the sender's inbox and changes nothing.

A matched failure fails the delivery, sets the attendee's SCHEDULE-STATUS 5.1 and says
why in the sender's inbox. A "delayed" warning changes nothing. The calendar inside a
bounce is never applied (INTEROP rule 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from gateway.core.addresses import domain_of
from gateway.core.itip.schedulestatus import ScheduleStatus
from gateway.core.mail.calendarparts import BounceReport
from gateway.core.model import Outcome
from gateway.core.trust.evidence import aligned
from gateway.service import delivery_attempts
from gateway.service.routing import Route
from gateway.store import inbox, outbox
from gateway.store.outbox import OutboxNotFound, OutboxRecord, OutboxState

DELIVERY_FAILED = "delivery-failed"
UNAUTHENTICATED_BOUNCE = "unauthenticated-bounce"


class Reporters(Protocol):
    """Who a bounce is proven to come from (``gateway.service.trust.Judge``), asked only when needed."""

    def authenticated_addresses(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class _Match:
    row: OutboxRecord
    route: Route
    by_bounce_address: bool


def record_bounce(
    session: Session, routes: list[Route], report: BounceReport, sender: str, intake_id: int, now: datetime,
    reporters: Reporters,
) -> str:
    """Apply one delivery report; the reason the intake message is closed with."""
    found = _delivery_of(session, routes, report)
    if found is None:
        return "unmatched-delivery-report"
    row, route = found.row, found.route
    if not report.is_failure:
        return "delivery-delayed"
    failures = "; ".join(f"{address} {status}".strip() for address, status in report.failed_recipients)
    detail = f"to {row.recipient}: {failures or 'the delivery failed'} (reported by {sender or 'the mail system'})"
    if not found.by_bounce_address and not _vouched(row, reporters):
        detail += (f"; not sent to the delivery's bounce address, and no authenticated reporter for"
                   f" {domain_of(row.recipient)} or {domain_of(row.sender)}: the delivery stays {row.state}")
        _record(session, route, row, sender, Outcome.RECORDED, UNAUTHENTICATED_BOUNCE, detail, intake_id, now)
        return UNAUTHENTICATED_BOUNCE
    if row.state in (OutboxState.QUEUED, OutboxState.SENT):
        outbox.mark_failed(session, row.id, now, f"bounced: {detail}")
    delivery_attempts.update_schedule_status(session, row, ScheduleStatus.NOT_DELIVERED, now)
    _record(session, route, row, sender, Outcome.BOUNCED, DELIVERY_FAILED, detail, intake_id, now)
    return DELIVERY_FAILED


def _vouched(row: OutboxRecord, reporters: Reporters) -> bool:
    """Whether an authenticated address of the bounce belongs to the attendee's or the local sender's organization."""
    domains = (domain_of(row.recipient), domain_of(row.sender))
    return any(aligned(domain_of(a), d) for a in reporters.authenticated_addresses() for d in domains if d)


def _record(session: Session, route: Route, row: OutboxRecord, sender: str, outcome: Outcome, reason: str,
            detail: str, intake_id: int, now: datetime) -> None:
    line = inbox.InboxRecord(route.principal.id, row.method, row.uid, sender, outcome, reason, detail,
                             intake_id=intake_id)
    inbox.record(session, line, now)


def _delivery_of(session: Session, routes: list[Route], report: BounceReport) -> _Match | None:
    for route in routes:
        if route.outbox_id is None or route.token is None:
            continue
        try:
            row = outbox.get(session, route.outbox_id)
        except OutboxNotFound:
            continue
        # The token names one principal's (event, party); the outbox id must be one of its deliveries, or a
        # party who saw one bounce address could fail another principal's delivery to it.
        named = (route.token.uid, route.token.address)
        if (row.uid, row.recipient) == named and row.sender in route.principal.addresses:
            return _Match(row, route, by_bounce_address=True)
    returned = outbox.find_by_message_id(session, report.original_message_id) if report.original_message_id else None
    if returned is None:
        return None
    sender = next((r for r in routes if returned.sender in r.principal.addresses), None)
    return _Match(returned, sender, by_bounce_address=False) if sender is not None else None
