"""Checkpoints in work whose length depends on its input, where the caller may stop it.

Loops that grow with the input (recurrence expansion, clash checks) call ``checkpoint()``.
It calls whatever check the caller installed with ``watched_by`` (the processor installs
its processing deadline, ``gateway.adapters.deadline``), and does nothing when none is installed.
The core stays pure: it never reads a clock itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_check: ContextVar[Callable[[], None] | None] = ContextVar("checkpoint", default=None)


@contextmanager
def watched_by(check: Callable[[], None]) -> Iterator[None]:
    """Run the block with ``check`` called at every checkpoint; it stops the work by raising."""
    token = _check.set(check)
    try:
        yield
    finally:
        _check.reset(token)


def checkpoint() -> None:
    """Let the installed check stop the work here (it raises), if one is installed."""
    check = _check.get()
    if check is not None:
        check()
