"""One SQLite writer at a time within a process, the SMTP/LMTP intake before the processor.

SQLite allows one writer, and every transaction here takes the write lock at BEGIN
(``db._begin_immediate``). Threads that meet a held lock wait in SQLite's busy handler,
which sleeps in growing steps (1, 2, 5, 10 … 100 ms): a processor committing one
message after another keeps winning, and a client waiting for its 250 starves. So
within one ``reefknot serve`` the threads take turns here instead, in order of arrival,
and an intake commit (a client is waiting for its reply) goes before the processor's
next message. SQLite's own lock still orders this process against other processes.
PostgreSQL needs none of this: ``WriteGate.for_database`` gives a gate that never waits.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.store.db import Database

T = TypeVar("T")


class WriteGate:
    """A first-come lock with two classes of waiters: urgent ones (intake) are let in before the others."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._mutex = threading.Lock()
        self._held = False
        self._urgent: deque[threading.Lock] = deque()
        self._others: deque[threading.Lock] = deque()

    @classmethod
    def for_database(cls, db: Database) -> WriteGate:
        return cls(enabled=db.is_sqlite)

    def run(self, function: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        """Call ``function(*args)`` while holding the gate."""
        if not self.enabled:
            return function(*args)
        self._acquire(urgent)
        try:
            return function(*args)
        finally:
            self._release()

    def _acquire(self, urgent: bool) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            (self._urgent if urgent else self._others).append(turn)
        turn.acquire()  # released by the holder, which hands the gate over without letting it go

    def _release(self) -> None:
        with self._mutex:
            queue = self._urgent or self._others
            if queue:
                queue.popleft().release()
            else:
                self._held = False
