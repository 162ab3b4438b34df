"""The fate of one attempt to hand an outbound message to the smarthost: Postfix's retry schedule, in small.

An attempt ends delivered, refused for now (4xx, or no answer at all), refused for good
(5xx; RCPT TO refused with RFC 3463 ``5.1.x`` is a bad address), or impossible (the
message could not be composed). ``decide_attempt`` turns that, the message's age and
its attempt count into sent, again later (and when), or failed, with the SCHEDULE-STATUS
the organizer's copy gets (RFC 6638 §3.2.9). Knows nothing about SMTP sessions or the
database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.core.itip.schedulestatus import ScheduleStatus

MAX_DOUBLINGS = 32  # beyond this the delay is at its maximum anyway


class AttemptResult(StrEnum):
    """How one attempt ended; the names appear in ``last_error`` and the logs."""

    DELIVERED = "delivered"
    DEFERRED = "deferred"  # 4xx, no connection, a timeout, TLS or AUTH trouble: worth trying again
    REFUSED = "refused"  # 5xx to the message
    BAD_ADDRESS = "bad-address"  # 5.1.x to RCPT TO: the recipient does not exist
    UNCOMPOSABLE = "uncomposable"  # the message could not be built


@dataclass(frozen=True)
class Attempt:
    """One attempt's result and what the server said (or the error), on one line."""

    result: AttemptResult
    detail: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff from ``minimum``, doubling up to ``maximum``, for at most ``lifetime`` after queueing."""

    minimum: timedelta = timedelta(minutes=5)
    maximum: timedelta = timedelta(hours=1)
    lifetime: timedelta = timedelta(days=5)

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th attempt was deferred."""
        doublings = min(max(attempts - 1, 0), MAX_DOUBLINGS)
        return min(self.maximum, self.minimum * (1 << doublings))


class Disposition(StrEnum):
    """Where an attempt leaves the message: sent, to be tried again, or given up on."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class AfterAttempt:
    """What becomes of the message: its disposition, the organizer's status code, the reason, the next attempt."""

    disposition: Disposition
    status: ScheduleStatus
    reason: str
    next_attempt_at: datetime | None = None


def decide_attempt(
    attempt: Attempt, *, policy: RetryPolicy, created_at: datetime, attempts: int, now: datetime,
    due_at: datetime | None = None,
) -> AfterAttempt:
    """Sent on delivery; again later on a deferral while younger than the lifetime; failed otherwise.

    An attempt made before the message was due (``due_at``, forced by ``reefknot outbox
    flush``) that is deferred does not count: the message keeps its schedule, and the
    attempt at ``due_at`` is the one that judges its age. A refusal counts whenever it comes.
    """
    if attempt.result is AttemptResult.DELIVERED:
        return AfterAttempt(Disposition.SENT, ScheduleStatus.SENT, attempt.detail)
    if attempt.result is AttemptResult.DEFERRED and due_at is not None and now < due_at:
        return AfterAttempt(Disposition.RETRY, ScheduleStatus.SENT, attempt.detail, due_at)
    if attempt.result is AttemptResult.DEFERRED:
        if now - created_at >= policy.lifetime:
            reason = f"lifetime-exceeded: {attempts} attempts, the last: {attempt.detail}"
            return AfterAttempt(Disposition.FAILED, ScheduleStatus.NOT_DELIVERED, reason)
        return AfterAttempt(Disposition.RETRY, ScheduleStatus.SENT, attempt.detail, now + policy.delay(attempts))
    bad_address = attempt.result is AttemptResult.BAD_ADDRESS
    status = ScheduleStatus.INVALID_USER if bad_address else ScheduleStatus.NOT_DELIVERED
    return AfterAttempt(Disposition.FAILED, status, f"{attempt.result.value}: {attempt.detail}")
