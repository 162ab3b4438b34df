"""``reefknot serve``: the listeners, the processors and the IMAP pollers in one process, until SIGTERM.

Wiring and lifecycle only. The listeners and pollers make mail durable and wake the
processors; a processor applies queued mail through ``processing.process_queued`` in a
worker thread, at start, when woken, and every few seconds anyway (rows queued by
other processes, or left claimed by one that crashed once their lease runs out).
``[processing] workers = 0`` makes a process that only takes mail in.

One message never holds up the rest for long: each is processed within its budget
(``[processing] message_timeout``, held as ``processing-timeout`` past it), and an SMTP
commit goes before the processor's next message, so a client waits for its 250 at most
one message's budget. The HTTP face has its own threads, so no request takes those that
commit mail.

SIGTERM or SIGINT: stop accepting, let commits in progress answer, stop the pollers;
processors finish the message they are on (within its budget) and give back the rest
of their claim; the queue is drained once for at most ``DRAIN_LIMIT``; exit 0. A
processor that has not finished within ``STOP_LIMIT`` is abandoned: its claims are given
back, so another process or the next start takes them at once, and the process exits.
SIGHUP: ``reload()``. systemd is told READY once every listener listens, pinged while
``WATCHDOG_USEC`` is set, and told STOPPING.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

from sqlalchemy.exc import OperationalError

from gateway.adapters.clock import utcnow
from gateway.settings.config import Config, ConfigError, load_config
from gateway.edges import sdnotify
from gateway.edges.groupcommit import GroupCommitter
from gateway.edges.http import HttpFace
from gateway.edges.sender import Sender
from gateway.edges.heartbeat import keep_renewing
from gateway.edges.nexthop import NextHopClient
from gateway.edges.smtp import IntakeHandler, IntakeListener, Mode
from gateway.edges.waiting import wait_any
from gateway.service.delivery_attempts import ComposerUnavailable, composer_for
from gateway.service import retention
from gateway.service.http_needs import decide_http
from gateway.service.leases import renew_intake_claims
from gateway.service.localaddresses import LocalAddresses
from gateway.service.processing import Receipt, process_queued, release_claims
from gateway.adapters.dkim import KeyResolver
from gateway.service.trust import Trust, load_trust
from gateway.store.db import Database
from gateway.store.writers import WriteGate

log = logging.getLogger(__name__)
POLL_INTERVAL = 5.0  # seconds between looks at the queue when nobody wakes the processor
BATCH = 16  # rows claimed at a time (a heartbeat renews their lease while they are worked on)
INTAKE_THREADS = 8
DRAIN_LIMIT = 20.0  # seconds the final drain may take; what is left stays queued for the next start
CLOSE_LIMIT = 30.0  # seconds to wait for commits in progress and for pollers at shutdown
STOP_LIMIT = 10.0  # seconds past the message budget that a stopping processor may take to finish its message
MAX_BACKOFF = 30.0
HOUSEKEEPING_INTERVAL = 3600.0  # seconds between passes that forget what [retention] no longer keeps



class ServeError(Exception):
    """The daemon cannot start (a listener cannot bind, a certificate cannot be read)."""


class Daemon:
    """One ``reefknot serve`` process."""

    def __init__(self, config: Config, db: Database, config_path: str | None = None) -> None:
        self.config = config
        self.keys = KeyResolver()  # DKIM keys from DNS, kept across reloads
        self.trust = load_trust(config, self.keys)  # a SettingError here is a configuration error: exit 78
        self.db = db
        self.config_path = config_path
        self.gate = WriteGate.for_database(db)
        self.intake_pool = ThreadPoolExecutor(INTAKE_THREADS, thread_name_prefix="intake")
        self.committer = GroupCommitter(db, self.intake_pool, self.gate)
        self.local_addresses = LocalAddresses(db)  # what every listener's RCPT checks
        self.processor_pool = ThreadPoolExecutor(max(1, config.processing_workers), thread_name_prefix="processor")
        self.listeners: list[IntakeListener] = []
        self.pollers: list[threading.Thread] = []
        self.in_flight: set[int] = set()  # claimed by this process and not finished
        self.poller_stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self.sender: Sender | None = None
        self.http: HttpFace | None = None

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (0 after an orderly stop)."""
        self._loop = asyncio.get_running_loop()
        self._wake, self._stop = asyncio.Event(), asyncio.Event()
        self._install_signals()
        await self._loop.run_in_executor(self.processor_pool, self.db.ensure_schema)
        sending = self._start_sender()
        try:
            await self._start_listeners()
        except OSError as error:  # ssl.SSLError included
            await self._close_listeners()
            raise ServeError(str(error)) from error
        self._start_pollers()
        await self._start_http()
        processors = [asyncio.create_task(self._process_loop(), name=f"processor {n}")
                      for n in range(self.config.processing_workers)]
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
        renewing = asyncio.create_task(keep_renewing(  # set.copy: processor threads change the set meanwhile
            functools.partial(renew_intake_claims, self.db), self.in_flight.copy, "intake"), name="renewing claims")
        ready = (f"ready: {len(self.listeners)} listeners, {len(self.pollers)} IMAP pollers, {len(processors)} "
                 f"processors")
        sdnotify.notify(f"{sdnotify.READY}\n{sdnotify.status(ready)}")
        log.info("%s, database %s; %s", ready, self.db.engine.url.render_as_string(), _describe(self.trust))
        await self._stop.wait()
        log.info("stopping: no new mail is taken")
        sdnotify.notify(f"{sdnotify.STOPPING}\n{sdnotify.status('stopping: finishing the messages under way')}")
        await self._close_listeners()
        if self.http is not None:
            await self.http.close()
        await self._stop_pollers()
        watchdog.cancel()
        housekeeping.cancel()
        if processors and not await self._processors_stopped(processors):
            self._abandon()
        emptied = await self._drain_once() if processors else True
        renewing.cancel()
        if sending is not None:
            await sending
        self.intake_pool.shutdown(wait=True)
        self.processor_pool.shutdown(wait=True)
        log.info("stopped; %s", "the queue is empty" if emptied else "messages are left queued for the next start")
        return 0

    async def _processors_stopped(self, processors: list[asyncio.Task[None]]) -> bool:
        """Wait for the processors to finish the message they are on; False when one does not in time."""
        limit = self.config.message_timeout + STOP_LIMIT
        _, pending = await asyncio.wait(processors, timeout=limit)
        return not pending

    def _abandon(self) -> NoReturn:
        """A processor is stuck past every budget: give back what this process claimed, and exit at once."""
        stuck = sorted(self.in_flight)
        log.error("a processor did not stop within %.0f s; giving back intake %s and exiting",
                  self.config.message_timeout + STOP_LIMIT, ", ".join(map(str, stuck)) or "nothing")
        try:
            release_claims(self.db, stuck)
        except Exception:  # the database may be what it is stuck on: the lease runs out instead
            log.exception("could not give back the claims")
        logging.shutdown()
        os._exit(0)  # the stuck thread cannot be joined; its transaction dies with the process

    def _start_sender(self) -> asyncio.Task[None] | None:
        """Send the outbox when ``[outbound]`` is configured; a bare install never dials port 25."""
        if not self.config.sends_mail:
            log.warning("no [outbound] section: invitations and answers for outside people are queued and never "
                        "sent; add [outbound] (README \"Sending mail out\") to send them")
            return None
        try:
            self.sender = Sender(self.config, self.db, composer_for(self.config), gate=self.gate)
        except (ComposerUnavailable, OSError) as error:
            raise ServeError(f"cannot send outbound mail: {error}") from error
        assert self._stop is not None
        return asyncio.create_task(self.sender.run(self._stop), name="sender")

    async def _start_http(self) -> None:
        """CalDAV, the free/busy URL, the feeds and the metrics on ``[http] listen``, when ``decide_http`` says so."""
        assert self._loop is not None
        decision = await self._loop.run_in_executor(self.processor_pool, decide_http, self.config, self.trust, self.db)
        if not decision.listens:
            log.info("no HTTP face: the configuration has no [http] section and nothing needs one (CalDAV app "
                     "passwords, feed URLs, a free/busy URL); add [http] for /metrics and /healthz")
            return
        self.http = HttpFace(self.db, lambda: self.trust, budget=self.config.message_timeout,
                             options=self.config.http_options)
        try:
            await self.http.start(self.config.http, because="; ".join(decision.reasons))
        except OSError as error:
            await self._close_listeners()
            raise ServeError(f"[http] listen {self.config.http}: {error}") from error

    def stop(self) -> None:
        """Begin an orderly stop (SIGTERM, SIGINT)."""
        if self._stop is not None:
            self._stop.set()

    def wake(self) -> None:
        """Tell the processor there is new mail (from the event loop's thread)."""
        if self._wake is not None:
            self._wake.set()

    def wake_from_thread(self) -> None:
        """Tell the processor there is new mail (from a poller's thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.wake)
            except RuntimeError:  # the loop closed in between: the next start processes the row
                pass

    def reload(self) -> None:
        """SIGHUP: re-read the configuration and its policy files; on any error the running policy stays.

        Listeners, pollers and the sender keep the settings they started with.
        """
        sdnotify.notify(sdnotify.RELOADING)
        try:
            config = load_config(self.config_path)
            trust = load_trust(config, self.keys)
        except ConfigError as error:
            log.error("reload failed, keeping the running policy: %s", error)
        else:
            self.config, self.trust = config, trust
            log.info("reloaded %s: %s", config.source, _describe(trust))
        sdnotify.notify(sdnotify.READY)

    async def _start_listeners(self) -> None:
        for protocol, addresses, options in (
            ("smtp", self.config.smtp, self.config.smtp_options),
            ("lmtp", self.config.lmtp, self.config.lmtp_options),
        ):
            hop = options.next_hop
            client = NextHopClient(hop, hostname=options.hostname or socket.gethostname()) if hop else None
            for address in addresses:
                handler = IntakeHandler(
                    self.db, self.committer, self.wake, source=protocol, mode=Mode(options.mode),
                    lmtp=protocol == "lmtp", local=self.local_addresses, next_hop=client,
                )
                listener = IntakeListener(protocol, address, options, handler)
                self.listeners.append(listener)
                await listener.start()

    async def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.stop_accepting()
        closing = [listener.close() for listener in self.listeners]
        if closing:
            _, pending = await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=CLOSE_LIMIT)
            if pending:
                log.error("%d listeners still committing after %.0f s; closing anyway", len(pending), CLOSE_LIMIT)

    def _start_pollers(self) -> None:
        if not self.config.imap:
            return
        from gateway.edges.imap import (
            ImapPoller,  # only a daemon with [[imap]] entries needs it
        )

        for account in self.config.imap:
            poller = ImapPoller(account, self.db, self.wake_from_thread)
            thread = threading.Thread(target=poller.run, args=(self.poller_stop,), name=f"imap {account.name}",
                                      daemon=True)
            thread.start()
            self.pollers.append(thread)
            log.info("IMAP poller started for %s", account.name)

    async def _stop_pollers(self) -> None:
        self.poller_stop.set()
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + CLOSE_LIMIT
        for thread in self.pollers:
            await loop.run_in_executor(None, thread.join, max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("%s did not stop within %.0f s", thread.name, CLOSE_LIMIT)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    async def _process_loop(self) -> None:
        """Process the queue when woken and every POLL_INTERVAL; back off while the database is down."""
        assert self._wake is not None and self._stop is not None
        backoff = 0.0
        first = True
        while not self._stop.is_set():
            if not first:
                await wait_any(self._wake, self._stop, timeout=backoff or POLL_INTERVAL)
            if self._stop.is_set():
                return
            first = False
            self._wake.clear()
            try:
                await self._process_all(self._stop.is_set)
            except Exception as error:
                backoff = min(MAX_BACKOFF, backoff * 2 or 1.0)
                _log_failure(error, f"processing paused for {backoff:.0f} s")
                continue
            if backoff:
                log.info("processing resumed")
                backoff = 0.0

    async def _process_all(self, give_up: Callable[[], bool]) -> bool:
        """Call process_queued until nothing claimable is left (True) or ``give_up`` says so (False)."""
        loop = asyncio.get_running_loop()
        while not give_up():
            receipts = await loop.run_in_executor(self.processor_pool, self._process_batch, give_up)
            if not receipts:
                return True
        return False

    def _process_batch(self, give_up: Callable[[], bool]) -> list[Receipt]:
        trust = self.trust
        receipts = process_queued(self.db, utcnow(), BATCH, trust, self.gate, budget=self.config.message_timeout,
                                  stopping=give_up, in_flight=self.in_flight)
        if receipts and self.sender is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.sender.poke)  # applying may have queued answers
        return receipts

    async def _drain_once(self) -> bool:
        """The last pass over the queue before exit, bounded in time; True when nothing claimable is left."""
        deadline = time.monotonic() + DRAIN_LIMIT
        try:
            return await self._process_all(lambda: time.monotonic() > deadline)
        except Exception as error:
            _log_failure(error, "final drain skipped")
            return False

    async def _housekeeping(self) -> None:
        """Forget, every hour, the history ``[retention]`` no longer keeps (and once at start)."""
        assert self._loop is not None
        while True:
            try:
                pruned = await self._loop.run_in_executor(
                    self.processor_pool, lambda: self.gate.run(retention.prune, self.db, utcnow(), self.config.retention))
                if pruned.raw_messages or pruned.inbox_lines or pruned.outbox_rows:
                    log.info("retention: forgot %d raw messages, %d inbox lines, %d outbox rows",
                             pruned.raw_messages, pruned.inbox_lines, pruned.outbox_rows)
            except Exception as error:  # pruning is never worth stopping for; it is tried again in an hour
                _log_failure(error, "history not pruned this hour")
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        log.info("watchdog: pinging every %.1f s", interval)
        while True:
            sdnotify.notify(sdnotify.WATCHDOG)
            await asyncio.sleep(interval)


def _log_failure(error: Exception, consequence: str) -> None:
    if isinstance(error, OperationalError):
        log.error("database unavailable (%s): %s", str(error.orig).strip().splitlines()[0], consequence)
    else:
        log.exception("processor error: %s", consequence)


def _describe(trust: Trust) -> str:
    return f"policy: {trust.summary}"


def run_daemon(config: Config, config_path: str | None = None) -> int:
    """Build the daemon from the configuration and run it to the end; the exit status."""
    db = Database(config.database_url)
    daemon = Daemon(config, db, config_path)
    try:
        return asyncio.run(daemon.run())
    finally:
        db.dispose()
