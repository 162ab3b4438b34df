"""The processing budget of one message: a deadline that the core's checkpoints enforce.

The processor runs the work on one message inside ``within(seconds)``; every
``gateway.core.checkpoint`` reached after the deadline raises ``DeadlineExceeded``.
Outside ``within`` there is no deadline. Reads only the monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.core.checkpoint import watched_by


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
    end = time.monotonic() + seconds

    def expire() -> None:
        if time.monotonic() > end:
            raise DeadlineExceeded(seconds)

    with watched_by(expire):
        yield
