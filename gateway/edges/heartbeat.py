"""A task that renews the claims a process holds, every ``leases.RENEW_EVERY`` seconds, until cancelled.

The renewal runs in its own thread, outside the SQLite write gate, so that a long message
in a processor does not hold its own claims' renewal back behind it. A renewal that
fails is logged and tried at the next beat; if the database stays away, the claims
lapse and other processes take the rows, as they would from a process that died.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import datetime

from gateway.adapters.clock import utcnow
from gateway.service.leases import RENEW_EVERY

log = logging.getLogger(__name__)


async def keep_renewing(
    renew: Callable[[Collection[int], datetime], int], held: Callable[[], Collection[int]], what: str,
    *, every: float = RENEW_EVERY, clock: Callable[[], datetime] = utcnow,
) -> None:
    """Call ``renew(ids, now)`` for the ids ``held()`` names, every ``every`` seconds, for as long as it runs."""
    while True:
        await asyncio.sleep(every)
        ids = list(held())
        if not ids:
            continue
        try:
            await asyncio.to_thread(renew, ids, clock())
        except Exception as error:
            log.warning("%s claims not renewed (they lapse unless the next renewal works): %s: %s",
                        what, type(error).__name__, str(error).splitlines()[0] if str(error) else "")
