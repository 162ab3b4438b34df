"""The sender: takes due rows from the outbox, composes each, hands it to the smarthost, records the result.

A pass claims a batch (its lease, renewed while the pass runs, keeps other senders
off; a sender that dies lets go within ``leases.LEASE``), sends it over one SMTP
session (``gateway.edges.smarthost``) and records every attempt through
``gateway.service.delivery_attempts``, which decides sent, deferred or failed. ``run``
makes passes until stopped: when poked, and every few seconds anyway; ``flush`` goes
once through the whole queue, backoff or not. Database work runs in worker threads
(behind the SQLite write gate when one is given), so the event loop keeps serving. A row that cannot be composed
fails with its reason; no row stops the loop. Nothing here reads iCalendar.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from gateway.adapters.clock import utcnow
from gateway.adapters.metrics import METRICS, DeliveryResult
from gateway.settings.config import Config
from gateway.core.mail.retry import Attempt, AttemptResult
from gateway.edges.smarthost import SmarthostSession, read_password
from gateway.edges.heartbeat import keep_renewing
from gateway.edges.waiting import wait_any
from gateway.service import delivery_attempts
from gateway.service.delivery_attempts import Compose, OutboxRecord, SendResult
from gateway.service.leases import LEASE, renew_outbox_claims
from gateway.store.db import Database
from gateway.store.writers import WriteGate

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH = 10  # rows claimed per pass
MAX_BACKOFF = 30.0  # seconds, while the database is unavailable
FAILURES = {AttemptResult.REFUSED: DeliveryResult.REFUSED, AttemptResult.BAD_ADDRESS: DeliveryResult.BAD_ADDRESS,
            AttemptResult.UNCOMPOSABLE: DeliveryResult.UNCOMPOSABLE}



class Sender:
    """Sends the outbox to ``[outbound] smarthost``; ``compose`` gives each row's final, signed bytes."""

    def __init__(
        self, config: Config, db: Database, compose: Compose, *,
        clock: Callable[[], datetime] = utcnow, gate: WriteGate | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.compose = compose
        self.clock = clock
        self.gate = gate
        self.policy = delivery_attempts.retry_policy(config)
        self.password = read_password(config.outbound)
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Look at the outbox now (call from the event loop's thread)."""
        self._wake.set()

    async def send_due(self, limit: int = BATCH) -> list[SendResult]:
        """One pass: up to ``limit`` rows due now, each attempted once and recorded."""
        now = self.clock()
        rows = await self._store(delivery_attempts.claim_due, self.db, now, now + LEASE, limit)
        return await self._send_claimed(rows)

    async def flush(self) -> list[SendResult]:
        """Every queued row, due or in backoff, attempted once each, in batches by id (``reefknot outbox flush``).

        As with ``postqueue -f``, the backoff does not hold a row back; how an early attempt
        counts is ``gateway.core.mail.retry``'s rule. A row another sender holds is its to send.
        """
        results: list[SendResult] = []
        after_id = 0
        while rows := await self._claim_queued(after_id):
            after_id = rows[-1].id
            results.extend(await self._send_claimed(rows))
        return results

    async def _claim_queued(self, after_id: int) -> list[OutboxRecord]:
        now = self.clock()
        return await self._store(delivery_attempts.claim_queued, self.db, now, now + LEASE, BATCH, after_id)

    async def _send_claimed(self, rows: list[OutboxRecord]) -> list[SendResult]:
        if not rows:
            return []
        unsent = {row.id for row in rows}
        renewing = asyncio.create_task(keep_renewing(
            functools.partial(renew_outbox_claims, self.db), lambda: unsent, "outbox", clock=self.clock))
        try:
            async with SmarthostSession(self.config.smarthost, self.config.outbound, self.password) as session:
                results = []
                for row in rows:
                    results.append(await self._send(session, row))
                    unsent.discard(row.id)
                return results
        finally:
            renewing.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Make passes until ``stop`` is set; a database outage pauses the sender, growing to MAX_BACKOFF."""
        backoff = 0.0
        while not stop.is_set():
            self._wake.clear()
            try:
                while not stop.is_set() and await self.send_due():
                    pass
            except Exception as error:
                backoff = min(MAX_BACKOFF, backoff * 2 or 1.0)
                log.error("sender paused for %.0f s: %s: %s", backoff, type(error).__name__, error)
            else:
                if backoff:
                    log.info("sender resumed")
                backoff = 0.0
            await wait_any(self._wake, stop, timeout=backoff or self.config.outbound.poll_interval)

    async def _send(self, session: SmarthostSession, row: OutboxRecord) -> SendResult:
        attempt = await self._attempt(session, row)
        result: SendResult = await self._store(delivery_attempts.record_attempt, self.db, row.id, attempt, self.policy,
                                               self.clock())
        METRICS.count_delivery(_delivery_result(attempt, result))
        return result

    async def _attempt(self, session: SmarthostSession, row: OutboxRecord) -> Attempt:
        try:
            data = await asyncio.to_thread(self.compose, row)
        except Exception as error:
            log.debug("outbox %d %s: composing failed", row.id, row.message_id, exc_info=True)
            return Attempt(AttemptResult.UNCOMPOSABLE, " ".join(f"{type(error).__name__}: {error}".split()))
        return await session.send(delivery_attempts.envelope_sender(row, self.config.reply_domain), row.recipient, data)

    async def _store(self, function: Callable[..., T], *args: Any) -> T:
        if self.gate is None:
            return await asyncio.to_thread(function, *args)
        return await asyncio.to_thread(self.gate.run, function, *args)


def _delivery_result(attempt: Attempt, result: SendResult) -> DeliveryResult:
    """The metric's name for an attempt's end: the row's new state, and for a failure what made it fail."""
    if result.state.value == "sent":
        return DeliveryResult.SENT
    if result.state.value == "queued":
        return DeliveryResult.DEFERRED
    if attempt.result is AttemptResult.DEFERRED:  # deferred once too often: the lifetime ran out
        return DeliveryResult.EXPIRED
    return FAILURES.get(attempt.result, DeliveryResult.REFUSED)
