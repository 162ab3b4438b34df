"""Group commit for the listeners: messages that arrive together become durable in one transaction.

Each message still gets its answer only after the transaction holding it has
committed, so nothing is acknowledged that is not on disk; the listeners just share one
fsync (SQLite: WAL, synchronous=FULL) and one trip to a worker thread. While one batch
commits, the next one gathers. If the commit fails, every message in the batch fails
with it (the transaction is atomic) and each client gets a temporary failure.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from gateway.adapters.clock import utcnow
from gateway.adapters.metrics import METRICS
from gateway.core.mail.envelope import Envelope
from gateway.service.handoff import HandedOn
from gateway.service.processing import take_in
from gateway.store.db import Database
from gateway.store.writers import WriteGate

log = logging.getLogger(__name__)
MAX_BATCH = 64
MAX_BATCH_BYTES = 32 * 2**20



class GroupCommitter:
    """``await enqueue(raw, envelope)`` returns the intake id once the message is committed."""

    def __init__(self, db: Database, executor: Executor, gate: WriteGate) -> None:
        self.db = db
        self.executor = executor
        self.gate = gate
        self._waiting: list[tuple[bytes, Envelope, HandedOn | None, asyncio.Future[int]]] = []
        self._committing: asyncio.Task[None] | None = None

    async def enqueue(self, raw: bytes, envelope: Envelope, handed_on: HandedOn | None = None) -> int:
        """``handed_on``: what the mailboxes took of it, committed with it."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        self._waiting.append((raw, envelope, handed_on, future))
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_all())
        return await asyncio.shield(future)  # a client that goes away does not take its message out of the batch

    async def drain(self) -> None:
        """Wait until every message handed in has been committed or failed."""
        while self._committing is not None:
            await asyncio.shield(self._committing)

    async def _commit_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch = self._take_batch()
                items = [(raw, envelope, handed) for raw, envelope, handed, _ in batch]
                try:
                    ids = await loop.run_in_executor(self.executor, self._commit, items)
                except Exception as error:
                    for *_, future in batch:
                        future.set_exception(error)
                else:
                    for (*_, future), intake_id in zip(batch, ids):
                        future.set_result(intake_id)
        finally:
            self._committing = None

    def _take_batch(self) -> list[tuple[bytes, Envelope, HandedOn | None, asyncio.Future[int]]]:
        size, count = 0, 0
        for raw, *_ in self._waiting[:MAX_BATCH]:
            if count and size + len(raw) > MAX_BATCH_BYTES:
                break
            size, count = size + len(raw), count + 1
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        return batch

    def _commit(self, items: list[tuple[bytes, Envelope, HandedOn | None]]) -> list[int]:
        messages = [(raw, envelope) for raw, envelope, _ in items]
        handed = [handed for *_, handed in items]
        ids = self.gate.run(lambda: take_in(self.db, messages, utcnow(), handed_on=handed), urgent=True)
        for _raw, envelope, _ in items:
            METRICS.taken_in.labels(envelope.source).inc()
        return ids


def _consume(future: asyncio.Future[int]) -> None:
    # The client may have gone away: its failure is logged by the handler or not at all, never as "never retrieved".
    if not future.cancelled():
        future.exception()
