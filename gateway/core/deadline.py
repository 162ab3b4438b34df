"""A processing deadline for the work done on one message, checked where that work can grow.

The processor opens ``within(seconds)`` around one message; loops whose length depends
on the input (recurrence expansion, clash checks) call ``check()``, which raises
``DeadlineExceeded`` once the time is up. Outside ``within`` there is no deadline and
``check()`` costs one context-variable read. Reads only the monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[tuple[float, float] | None] = ContextVar("processing_deadline", default=None)  # (deadline, budget)


class DeadlineExceeded(Exception):
    """The work on one message took longer than its processing budget."""

    def __init__(self, budget: float) -> None:
        super().__init__(f"processing took longer than its budget of {budget:g} s")
        self.budget = budget


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` from now; None: no deadline."""
    if seconds is None:
        yield
        return
    token = _current.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _current.reset(token)


def check() -> None:
    """Raise ``DeadlineExceeded`` when the current deadline has passed."""
    current = _current.get()
    if current is not None and time.monotonic() > current[0]:
        raise DeadlineExceeded(current[1])
