"""Bounces of Reefknot's own mail: matched to their delivery, which fails, and shown on the organizer's copy.

A bounce is matched by the bounce address it was sent to (``bounce+<outbox id>.<token>``),
else by the Message-ID it returns when that message came from one of the local
recipients. The delivery becomes failed, the attendee's SCHEDULE-STATUS 5.1, and the
sender's inbox says why. A "delayed" warning changes nothing. The calendar inside a
bounce is never applied (INTEROP rule 7).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from gateway.core.itip.schedulestatus import ScheduleStatus
from gateway.core.mail import BounceReport
from gateway.core.model import Outcome
from gateway.service import outbound
from gateway.service.routing import Route
from gateway.store import inbox, outbox
from gateway.store.outbox import OutboxNotFound, OutboxState
from gateway.store.schema import OutboxMessage


def record_bounce(
    session: Session, routes: list[Route], report: BounceReport, sender: str, intake_id: int, now: datetime
) -> str:
    """Apply one delivery report; the reason the intake message is closed with."""
    found = _delivery_of(session, routes, report)
    if found is None:
        return "unmatched-delivery-report"
    row, route = found
    if not report.is_failure:
        return "delivery-delayed"
    failures = "; ".join(f"{address} {status}".strip() for address, status in report.failed_recipients)
    detail = f"to {row.recipient}: {failures or 'the delivery failed'} (reported by {sender or 'the mail system'})"
    if row.state in (OutboxState.QUEUED.value, OutboxState.SENT.value):
        outbox.mark_failed(row, now, f"bounced: {detail}")
    outbound.update_schedule_status(session, row, ScheduleStatus.NOT_DELIVERED, now)
    line = inbox.InboxRecord(route.principal.id, row.method, row.uid, sender, Outcome.BOUNCED, "delivery-failed",
                             detail, intake_id=intake_id)
    inbox.record(session, line, now)
    return "delivery-failed"


def _delivery_of(session: Session, routes: list[Route], report: BounceReport) -> tuple[OutboxMessage, Route] | None:
    for route in routes:
        if route.outbox_id is None or route.token is None:
            continue
        try:
            row = outbox.get(session, route.outbox_id)
        except OutboxNotFound:
            continue
        if (row.uid, row.recipient) == (route.token.uid, route.token.address):
            return row, route
    returned = outbox.find_by_message_id(session, report.original_message_id) if report.original_message_id else None
    if returned is None:
        return None
    sender = next((r for r in routes if returned.sender in r.principal.addresses), None)
    return (returned, sender) if sender is not None else None
