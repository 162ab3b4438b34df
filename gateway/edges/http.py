"""The HTTP face: CalDAV under ``/dav/``, the free/busy URL and each principal's read-only calendar feed (aiohttp).

``GET /freebusy/{address}[,{address}...]?start=…&end=…`` answers ``text/calendar`` with
one VFREEBUSY (several addresses: their busy time together), if the policy's
``[freebusy] url`` allows: ``public``, or ``token`` with a partner's token in ``token=``
or ``Authorization: Bearer``. ``GET /calendars/{address}.ics?token=…`` is the principal's
calendar as stored, for any calendar program to subscribe to; the token is the one
``reefknot users feed`` prints. An object that is not valid iCalendar is left out of the
feed with a logged error; free/busy that is not fails with 500 (``gateway.core.calendar.export``
checks both). Database work runs in the face's own worker threads, never those that commit
incoming mail, each request within a budget (503 past it). Nothing here decides
free/busy or reads iCalendar: that is ``gateway.service.freebusy``'s.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import text as sql

from gateway.adapters import deadline
from gateway.adapters.metrics import CONTENT_TYPE, METRICS
from gateway.adapters.clock import utcnow
from gateway.core.dav.xml import MAX_BODY
from gateway.edges.caldav import CalDavFace
from gateway.settings.config import HttpOptions, Listener
from gateway.core.calendar.ical import serialize_calendar
from gateway.adapters.deadline import DeadlineExceeded
from gateway.service import freebusy, observability, publishing
from gateway.service.trust import Trust
from gateway.store.db import Database

log = logging.getLogger(__name__)
CALENDAR = "text/calendar"
HTTP_THREADS = 4  # the face's own: requests wait for each other, never for the threads that commit mail


class HttpError(Exception):
    """A request answered with an HTTP error status and a short text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class HttpFace:
    """The aiohttp application and its listener; ``trust`` gives the policy in force (it changes on SIGHUP)."""

    def __init__(self, db: Database, trust: Callable[[], Trust], clock: Callable[[], datetime] = utcnow,
                 budget: float | None = None, options: HttpOptions = HttpOptions()) -> None:
        """The requests' database work runs in the face's own threads; ``budget`` bounds each request's work
        in seconds (503 past it)."""
        self.db, self.trust, self.clock, self.budget, self.options = db, trust, clock, budget, options
        self.executor = ThreadPoolExecutor(HTTP_THREADS, thread_name_prefix="http")
        self.app = web.Application(client_max_size=MAX_BODY + 1024)
        self.caldav = CalDavFace(db, trust, clock, self._run_raw, options)
        self.app.add_routes([
            web.get("/freebusy/{addresses}", self.freebusy),
            web.get("/calendars/{address}.ics", self.feed),
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics),
            *self.caldav.routes(),
        ])
        self._runner: web.AppRunner | None = None

    async def start(self, listener: Listener, because: str = "") -> None:
        """Listen on ``listener``; ``because``, for the log line, says what made the daemon start the face."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        tls = _tls_context(self.options)
        site = (web.UnixSite(self._runner, listener.path, ssl_context=tls) if listener.path
                else web.TCPSite(self._runner, listener.host, listener.port, ssl_context=tls))
        await site.start()
        log.info("HTTP face on %s%s%s", listener, " (TLS)" if tls else "", f": {because}" if because else "")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def freebusy(self, request: web.Request) -> web.Response:
        try:
            reader = self._reader(request)
            addresses = [a for a in request.match_info["addresses"].split(",") if a]
            start, end = _window(request.query, self.clock())
            text = await self._run(self._published, addresses, start, end)
        except HttpError as error:
            return web.Response(status=error.status, text=error.args[0] + "\n")
        log.info("free/busy of %s for %s", ", ".join(addresses), reader)
        return web.Response(text=text, content_type=CALENDAR, charset="utf-8")

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the database answers (a load balancer's or monitor's probe), else 503."""
        try:
            await self._run_raw(self._database_answers)
        except Exception as error:  # whatever the database says, the probe's answer is "not healthy"
            log.error("health check: the database does not answer: %s", error)
            return web.Response(status=503, text="database unavailable\n")
        return web.Response(text="ok\n")

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus metrics: this process's counters and the queues as they stand."""
        body = await self._run_raw(lambda: METRICS.exposition(observability.queue_depths(self.db, self.clock())))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def _database_answers(self) -> None:
        with self.db.reading() as session:
            session.execute(sql("SELECT 1"))

    async def feed(self, request: web.Request) -> web.Response:
        address, token = request.match_info["address"], request.query.get("token", "")
        try:
            text = await self._run(self._calendar, address, token)
        except HttpError as error:
            return web.Response(status=error.status, text=error.args[0] + "\n")
        return web.Response(text=text, content_type=CALENDAR, charset="utf-8")

    def _reader(self, request: web.Request) -> str:
        token = request.query.get("token", "")
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        reader = self.trust().policy.freebusy_url_reader(token)
        if reader is None:
            raise HttpError(403 if token else 404, "free/busy is not available here" if not token else "bad token")
        return reader

    def _published(self, addresses: list[str], start: datetime, end: datetime) -> str:
        try:
            return serialize_calendar(publishing.freebusy_of(self.db, addresses, start, end, self.clock()))
        except publishing.UnknownCalendarUser as error:
            raise HttpError(404, f"no such calendar user: {error}") from error
        except publishing.InvalidFreeBusy as error:  # never hand a partner free/busy it cannot read
            log.error("free/busy of %s is not valid iCalendar: %s", ", ".join(addresses), error)
            raise HttpError(500, "free/busy could not be built") from error

    def _calendar(self, address: str, token: str) -> str:
        try:
            export = publishing.calendar_feed(self.db, address, token)
        except publishing.UnknownCalendarUser as error:
            raise HttpError(404, "no such calendar") from error
        for left_out in export.left_out:  # the rest of the calendar is still worth subscribing to
            log.error("calendar feed of %s left out %s", address, left_out.describe())
        return serialize_calendar(export.calendar)

    async def _run_raw(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in the face's threads within the budget; DeadlineExceeded is the caller's."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._bounded, function, *args)

    def _bounded(self, function: Callable[..., Any], *args: Any) -> Any:
        with deadline.within(self.budget):
            return function(*args)

    async def _run(self, function: Callable[..., str], *args: Any) -> str:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._within_budget, function, *args)

    def _within_budget(self, function: Callable[..., str], *args: Any) -> str:
        try:
            with deadline.within(self.budget):
                return function(*args)
        except DeadlineExceeded as error:
            log.error("HTTP request stopped: %s", error)
            raise HttpError(503, "this request takes too long; ask for a shorter window") from error


def _tls_context(options: HttpOptions) -> ssl.SSLContext | None:
    """TLS for the face when ``[http] tls_cert`` and ``tls_key`` are set: Basic sign-in from anywhere is then safe."""
    if not options.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(options.tls_cert, options.tls_key)
    return context


def _window(query: Any, now: datetime) -> tuple[datetime, datetime]:
    try:
        return freebusy.read_window(query.get("start"), query.get("end"), now)
    except freebusy.WindowError as error:
        raise HttpError(400, str(error)) from error
