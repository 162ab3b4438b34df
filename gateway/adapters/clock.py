"""The wall clock, read only at the edges (commands, listeners, pollers, the sender); the core takes ``now``."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)
