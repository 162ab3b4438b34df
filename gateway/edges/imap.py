"""IMAP poller: take new mail from one mailbox into the intake queue, then move it out. No parsing here.

The poller remembers the folder's UIDVALIDITY and the last UID it took
(``gateway.store.mailboxes``). After every connect and every IDLE wake-up (RFC 2177) it
searches for higher UIDs, fetches them with ``BODY.PEEK[]`` so that ``\\Seen`` is never
set, commits them to the intake queue together with the new last UID, wakes the
processors, and only then moves them to the processed folder: MOVE (RFC 6851), else
COPY, ``\\Deleted`` and UID EXPUNGE of exactly those UIDs (RFC 4315).

A crash between the commit and the move leaves messages in the folder whose UIDs are
at most the stored last UID: the next connect moves them without taking them again.
A new UIDVALIDITY means the old UIDs name nothing: every message still in the folder
is unprocessed (processed ones were moved out) and is taken; a message committed just
before the change may be taken twice, which the engine's ledger makes harmless.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from imapclient import IMAPClient

from gateway.adapters.clock import utcnow
from gateway.adapters.metrics import METRICS, MailboxState
from gateway.settings.config import ImapAccount
from gateway.core.mail.envelope import Envelope
from gateway.core.mail.mailbox import MailboxKey, MailboxPosition
from gateway.edges.imap_session import (
    ensure_folder,
    open_connection,
    return_path_of,
    shutdown,
    uid_set,
)
from gateway.service import polled_mailboxes
from gateway.service.processing import take_in
from gateway.store.db import Database

log = logging.getLogger(__name__)
SOURCE = "imap"
BATCH_MESSAGES = 100  # messages fetched, committed and moved together
BATCH_BYTES = 8 * 2**20
STOP_CHECK = 0.5  # seconds between looks at the stop event while idling
LOCK_RETRY = 30.0  # seconds between attempts to take a mailbox another process polls
DELETED = b"\\Deleted"



class ConnectionClosed(Exception):
    """The session cannot go on (BYE, end of stream, an answer that makes no sense): reconnect."""


class Backoff:
    """Exponential delays from ``first`` to ``cap`` seconds, each drawn from its upper half."""

    def __init__(self, first: float = 1.0, cap: float = 300.0) -> None:
        self.first, self.cap, self.failures = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0


class ImapPoller:
    """Polls one ``[[imap]]`` mailbox: ``run`` for the daemon, ``poll_once`` for tests and tools."""

    def __init__(
        self,
        account: ImapAccount,
        db: Database,
        wake: Callable[[], None],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.account = account
        self.db = db
        self.wake = wake
        self.clock = clock
        self.key = MailboxKey(account.host, account.username, account.folder)
        self.lock = polled_mailboxes.lock_for(db, self.key)
        self._client: IMAPClient | None = None
        self._position = MailboxPosition()
        self._processed = account.processed_folder
        self._state = "stopped"
        METRICS.add_mailbox(account.name)

    def run(self, stop: threading.Event) -> None:
        """Take mail until ``stop`` is set; reconnect with backoff on any error; never raises."""
        backoff = Backoff()
        try:
            while not stop.is_set():
                try:
                    if not self._ready():
                        stop.wait(LOCK_RETRY)
                        continue
                    self._catch_up(stop)
                    backoff.reset()
                    self._wait_for_mail(stop)
                except Exception as error:
                    self._show_error()
                    delay = backoff.next()
                    self._set_state("retrying", f"{type(error).__name__}: {error}; retrying in {delay:.1f} s")
                    self._drop_connection()
                    stop.wait(delay)
        finally:
            self.close()

    def poll_once(self) -> int:
        """Connect if needed and take every new message; the number taken (0 when another process polls)."""
        if not self._ready():
            return 0
        try:
            return self._catch_up()
        except Exception:
            self._show_error()
            self._drop_connection()
            raise

    def close(self) -> None:
        """Log out and release the mailbox lock; never raises."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except Exception:
                shutdown(client)
        try:
            self.lock.release()
        except Exception:
            log.exception("%s: releasing the mailbox lock failed", self.account.name)
        self._set_state("stopped", "stopped")
        METRICS.show_mailbox(self.account.name, MailboxState.STOPPED)

    # -- connecting ---------------------------------------------------------------

    def _ready(self) -> bool:
        """Hold the mailbox lock and a selected connection; False while another process polls."""
        if not self.lock.held():
            self._drop_connection()
            if not self.lock.acquire():
                self._set_state("waiting", "another process polls this mailbox; waiting for its lock")
                METRICS.show_mailbox(self.account.name, MailboxState.WAITING)
                return False
        if self._client is None:
            self._connect()
        return True

    def _connect(self) -> None:
        self._set_state("connecting", f"connecting ({self.account.security})")
        METRICS.show_mailbox(self.account.name, MailboxState.CONNECTING)
        client = open_connection(self.account)
        try:
            selected = client.select_folder(self.account.folder)
            uidvalidity = int(selected[b"UIDVALIDITY"])
            self._processed = ensure_folder(client, self.account.processed_folder)
        except BaseException:
            shutdown(client)
            raise
        self._client = client
        self._position = self._check_uidvalidity(uidvalidity)
        features = [c for c in ("IDLE", "MOVE", "UIDPLUS") if self._server_has(c)]
        self._set_state(
            "connected",
            f"connected; UIDVALIDITY {uidvalidity}, last UID {self._position.last_uid}; "
            f"server has {' '.join(features) or 'none of IDLE MOVE UIDPLUS'}",
        )
        METRICS.show_mailbox(self.account.name, MailboxState.CONNECTED)
        self._move_taken()

    def _check_uidvalidity(self, uidvalidity: int) -> MailboxPosition:
        position, before = polled_mailboxes.position_under(self.db, self.key, uidvalidity, self.clock())
        if before.uidvalidity and before.uidvalidity != uidvalidity:
            log.warning(
                "%s: UIDVALIDITY changed from %d to %d (last UID was %d): taking every message in the folder",
                self.account.name, before.uidvalidity, uidvalidity, before.last_uid,
            )
        return position

    def _drop_connection(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            shutdown(client)

    # -- taking mail --------------------------------------------------------------

    def _catch_up(self, stop: threading.Event | None = None) -> int:
        """Take every message above the last UID taken (until ``stop``); the number taken."""
        client = self._connected()
        METRICS.show_mailbox(self.account.name, MailboxState.POLLING)
        last = self._position.last_uid
        # "n:*" always includes the highest UID, even one at or below n (RFC 3501 6.4.8).
        uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
        taken = 0
        for batch in self._batches(client, uids):
            if stop is not None and stop.is_set():
                break  # every batch so far is committed and moved: a clean place to stop
            taken += self._take(client, batch)
        if taken:
            log.info("%s: took %d messages, last UID %d", self.account.name, taken, self._position.last_uid)
        METRICS.count_poll(self.account.name, self.clock().timestamp())
        METRICS.show_mailbox(self.account.name, MailboxState.CONNECTED)
        return taken

    def _batches(self, client: IMAPClient, uids: list[int]) -> Iterator[list[int]]:
        """Groups of UIDs small enough to hold in memory at once (at least one message each)."""
        for start in range(0, len(uids), BATCH_MESSAGES):
            chunk = uids[start:start + BATCH_MESSAGES]
            sizes = client.fetch(chunk, ["RFC822.SIZE"])  # a list: IMAPClient keys the answer by it
            batch: list[int] = []
            total = 0
            for uid in chunk:
                size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
                if batch and total + size > BATCH_BYTES:
                    yield batch
                    batch, total = [], 0
                batch.append(uid)
                total += size
            if batch:
                yield batch

    def _take(self, client: IMAPClient, uids: list[int]) -> int:
        fetched = client.fetch(uids, ["BODY.PEEK[]"])
        present = [u for u in uids if b"BODY[]" in fetched.get(u, {})]
        missing = [u for u in uids if u not in present]
        if missing and client.search(["UID", uid_set(missing)]):
            raise ConnectionClosed(f"UIDs {uid_set(missing)} are in the folder but FETCH returned no body")
        messages = [(bytes(fetched[u][b"BODY[]"]), self._envelope(fetched[u][b"BODY[]"])) for u in present]
        # UIDs that vanished since the search (expunged by another client) are passed over.
        position = MailboxPosition(self._position.uidvalidity, max(uids))
        ids = self._commit(messages, position)
        self._position = position
        log.debug("%s: UIDs %s committed as intake %s", self.account.name, uid_set(present), ids)
        self._wake()
        self._move(present)
        return len(present)

    def _commit(self, messages: list[tuple[bytes, Envelope]], position: MailboxPosition) -> list[int]:
        ids = take_in(self.db, messages, self.clock(), mailbox=(self.key, position))
        METRICS.taken_in.labels(SOURCE).inc(len(ids))
        return ids

    def _envelope(self, raw: bytes) -> Envelope:
        return Envelope(return_path_of(raw), self.account.recipients, SOURCE)

    def _wake(self) -> None:
        try:
            self.wake()
        except Exception:
            log.exception("%s: waking the processors failed", self.account.name)

    def _move(self, uids: list[int]) -> None:
        """Move committed messages to the processed folder."""
        if not uids:
            return
        client = self._connected()
        messages = uid_set(uids)
        if self._server_has("MOVE"):
            client.move(messages, self._processed)
            return
        client.copy(messages, self._processed)
        client.add_flags(messages, [DELETED], silent=True)
        if self._server_has("UIDPLUS"):
            client.uid_expunge(messages)
        # Without UIDPLUS, EXPUNGE would also remove other clients' deleted mail: leave them flagged.

    def _move_taken(self) -> None:
        """Move messages taken before but still in the folder (a crash between commit and move)."""
        last = self._position.last_uid
        if not last:
            return
        client = self._connected()
        uids = sorted(u for u in client.search(["UID", f"1:{last}", "NOT", "DELETED"]) if u <= last)
        if uids:
            log.info("%s: moving %d messages taken before but not yet moved", self.account.name, len(uids))
            for start in range(0, len(uids), 1000):
                self._move(uids[start:start + 1000])

    # -- waiting ------------------------------------------------------------------

    def _wait_for_mail(self, stop: threading.Event) -> None:
        METRICS.show_mailbox(self.account.name, MailboxState.IDLE)
        if self._server_has("IDLE"):
            self._idle(stop)
            return
        stop.wait(self.account.poll_interval)
        if not stop.is_set():
            self._connected().noop()

    def _server_has(self, capability: str) -> bool:
        return bool(self._connected().has_capability(capability))

    def _idle(self, stop: threading.Event) -> None:
        """IDLE until new mail, the renewal time or ``stop``; raise ConnectionClosed when the server goes."""
        client = self._connected()
        client.idle()
        renew_at = time.monotonic() + self.account.idle_timeout
        while not stop.is_set():
            wait = min(STOP_CHECK, renew_at - time.monotonic())
            if wait <= 0:
                break
            started = time.monotonic()
            responses = client.idle_check(timeout=wait)
            for bye in (r for r in responses if r[:1] == (b"BYE",)):
                words = (w.decode(errors="replace") if isinstance(w, bytes) else str(w) for w in bye[1:])
                raise ConnectionClosed(f"BYE while idling: {' '.join(words)}")
            if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                break
            if not responses and time.monotonic() - started < wait / 2:
                break  # readable but no response: end of stream, which DONE will report
        client.idle_done()

    def _connected(self) -> IMAPClient:
        if self._client is None:
            raise ConnectionClosed("not connected")
        return self._client

    def _show_error(self) -> None:
        METRICS.count_mailbox_error(self.account.name)
        METRICS.show_mailbox(self.account.name, MailboxState.ERROR)

    def _set_state(self, state: str, message: str) -> None:
        if state != self._state:
            self._state = state
            level = logging.WARNING if state == "retrying" else logging.INFO
            log.log(level, "%s: %s", self.account.name, message)
