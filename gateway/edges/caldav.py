"""The CalDAV face on ``[http] listen``: HTTP Basic sign-in, WebDAV methods, and the answers written back (aiohttp).

Every request under ``/dav/`` is signed in with an app password (``reefknot users
password add``), Basic only over TLS, from a loopback peer or through a trusted
reverse proxy; ``/.well-known/caldav`` points clients at ``/dav/`` (RFC 6764 §5). The
work itself runs in the HTTP face's threads, one transaction a request, in
``gateway.service.caldav``; a refusal is its status with the RFC's error body, an
unexpected error a 500 that is logged and leaves nothing half-written. Multistatus
bodies are sent in pieces as they are written.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web

from gateway.adapters.deadline import DeadlineExceeded
from gateway.core.dav import paths
from gateway.core.dav.preconditions import Conditions, quoted
from gateway.core.dav.requests import read_mkcol, read_propfind, read_proppatch, read_report
from gateway.core.dav.requests import FreeBusyQuery, Multiget, Query, SyncCollection
from gateway.core.dav.responses import error_body, multistatus_head, multistatus_tail
from gateway.core.dav.xml import MAX_BODY, DavError, parse_body
from gateway.service.caldav import outbox, reports, tree, writes
from gateway.service.caldav.tree import Actor, Request
from gateway.service.credentials import Authenticator
from gateway.service.trust import Trust
from gateway.settings.config import HttpOptions
from gateway.store.db import Database

log = logging.getLogger(__name__)
DAV_HEADER = "1, 3, calendar-access, calendar-auto-schedule, extended-mkcol"
ALLOW = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, REPORT, MKCALENDAR, MKCOL, POST"
XML = "application/xml"
REALM = 'Basic realm="Reefknot", charset="UTF-8"'
PIECE = 256  # multistatus members written at a time
_T = TypeVar("_T")


class CalDavFace:
    """The CalDAV routes of the HTTP face; ``run`` is the face's way of running store work in its threads."""

    def __init__(self, db: Database, trust: Callable[[], Trust], clock: Callable[[], datetime],
                 run: Callable[..., Any], options: HttpOptions, authenticator: Authenticator | None = None) -> None:
        self.db, self.trust, self.clock, self.run, self.options = db, trust, clock, run, options
        self.authenticator = authenticator or Authenticator(db)

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", paths.WELL_KNOWN, self.well_known),
                web.route("*", paths.WELL_KNOWN + "/", self.well_known),
                web.route("PROPFIND", "/", self.handle),  # a client given only the host asks here first
                web.route("*", "/dav", self.handle),
                web.route("*", "/dav/{tail:.*}", self.handle)]

    async def well_known(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(paths.ROOT)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=200, headers=_dav_headers())
        try:
            actor = await self._sign_in(request)
            target = paths.parse_path(request.raw_path if request.path != "/" else paths.ROOT)
            if target is None:
                raise DavError(404, "no-such-resource", request.path)
            target = tree.own_target(actor, target)
            handler = self._handlers().get(request.method)
            if handler is None:
                raise DavError(405, "method-not-allowed", request.method)
            body = await _body(request)
            return await handler(request, Request(actor, target, self.clock(), self.options.inbox_days), body)
        except DavError as error:
            return _refusal(error)
        except web.HTTPException:
            raise
        except DeadlineExceeded as error:
            log.error("CalDAV %s %s stopped: %s", request.method, request.path, error)
            return web.Response(status=503, text="this request takes too long\n")
        except Exception:
            log.exception("CalDAV %s %s failed", request.method, request.path)
            return web.Response(status=500, text="internal error; nothing was changed\n")

    def _handlers(self) -> dict[str, Callable[[web.Request, Request, bytes], Any]]:
        return {"PROPFIND": self.propfind, "PROPPATCH": self.proppatch, "REPORT": self.report, "GET": self.get,
                "HEAD": self.get, "PUT": self.put, "DELETE": self.delete, "MKCALENDAR": self.mkcalendar,
                "MKCOL": self.mkcol, "POST": self.post}

    # --- signing in ------------------------------------------------------------------------

    async def _sign_in(self, request: web.Request) -> Actor:
        peer = _peer(request)
        if not self._secure(request, peer):
            raise DavError(403, "insecure-sign-in", "Basic sign-in needs TLS, a loopback peer or a trusted proxy")
        client = _client_address(request, peer, self.options.trusted_proxies)
        username, password = _basic(request.headers.get("Authorization", ""))
        now = self.clock()
        if username and self.authenticator.is_limited(username, client, now):
            raise DavError(429, "too-many-failed-sign-ins", "wait a minute and try again")
        actor = await self.run(self.authenticator.authenticate, username, password, client, now) if username else None
        if actor is None:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": REALM}, text="sign in with an app password\n")
        return actor

    def _secure(self, request: web.Request, peer: str) -> bool:
        tls = request.transport is not None and request.transport.get_extra_info("sslcontext") is not None
        return may_sign_in(peer, tls, self.options.trusted_proxies)

    # --- methods ----------------------------------------------------------------------------

    async def propfind(self, request: web.Request, dav: Request, body: bytes) -> web.StreamResponse:
        wanted = read_propfind(parse_body(body))
        depth = _depth(request, default=1)
        members = await self._work(lambda s: list(tree.propfind(s, dav, depth, wanted)))
        return await self._multistatus(request, members)

    async def proppatch(self, request: web.Request, dav: Request, body: bytes) -> web.StreamResponse:
        update = read_proppatch(parse_body(body))
        member = await self._work(lambda s: writes.patch_calendar(s, dav, update), write=True)
        return await self._multistatus(request, [member])

    async def report(self, request: web.Request, dav: Request, body: bytes) -> web.StreamResponse:
        report = read_report(parse_body(body))
        if isinstance(report, FreeBusyQuery):
            text = await self._work(lambda s: reports.free_busy_query(s, dav, report))
            return web.Response(text=text, content_type="text/calendar", charset="utf-8")
        if isinstance(report, Query) and _depth(request, default=1) == 0 and not _is_outlook(request):
            return await self._multistatus(request, [])
        if isinstance(report, Multiget):
            answer = await self._work(lambda s: reports.multiget(s, dav, report))
        elif isinstance(report, Query):
            answer = await self._work(lambda s: reports.query(s, dav, report))
        else:
            assert isinstance(report, SyncCollection)
            answer = await self._work(lambda s: reports.sync_collection(s, dav, report))
        return await self._multistatus(request, answer.members, answer.sync_token)

    async def get(self, request: web.Request, dav: Request, body: bytes) -> web.Response:
        found = await self._work(lambda s: tree.get_resource(s, dav))
        headers = {"ETag": quoted(found.etag)}
        if found.schedule_tag:
            headers["Schedule-Tag"] = quoted(found.schedule_tag)
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Type": "text/calendar; charset=utf-8"})
        return web.Response(text=found.text, content_type="text/calendar", charset="utf-8", headers=headers)

    async def put(self, request: web.Request, dav: Request, body: bytes) -> web.Response:
        conditions = _conditions(request)
        written = await self._work(lambda s: writes.put_object(s, dav, body, conditions,
                                                               self.trust().room_rules), write=True)
        headers = {}
        if written.etag:
            headers["ETag"] = quoted(written.etag)
        if written.schedule_tag:
            headers["Schedule-Tag"] = quoted(written.schedule_tag)
        return web.Response(status=201 if written.created else 204, headers=headers)

    async def delete(self, request: web.Request, dav: Request, body: bytes) -> web.Response:
        conditions = _conditions(request)
        reply = request.headers.get("Schedule-Reply", "T").strip().upper() != "F"
        await self._work(lambda s: writes.delete(s, dav, conditions, schedule_reply=reply), write=True)
        return web.Response(status=204)

    async def mkcalendar(self, request: web.Request, dav: Request, body: bytes) -> web.Response:
        update = read_mkcol(parse_body(body), calendar=True)
        await self._work(lambda s: writes.make_calendar(s, dav, update), write=True)
        return web.Response(status=201, headers={"Cache-Control": "no-cache"})

    async def mkcol(self, request: web.Request, dav: Request, body: bytes) -> web.Response:
        update = read_mkcol(parse_body(body), calendar=False)
        await self._work(lambda s: writes.make_calendar(s, dav, update), write=True)
        return web.Response(status=201)

    async def post(self, request: web.Request, dav: Request, body: bytes) -> web.Response:
        local_may_see = self.trust().policy.freebusy.local
        text = await self._work(lambda s: outbox.post_freebusy(s, dav, body, local_may_see))
        return web.Response(text=text, content_type=XML, charset="utf-8")

    # --- running and answering -------------------------------------------------------------

    async def _work(self, function: Callable[[Any], _T], *, write: bool = False) -> _T:
        """``function(session)`` in the face's threads, in one transaction (``write``) or one read."""
        def within() -> _T:
            with (self.db.transaction() if write else self.db.reading()) as session:
                return function(session)
        result: _T = await self.run(within)
        return result

    async def _multistatus(self, request: web.Request, members: Iterable[str],
                           sync_token: str | None = None) -> web.StreamResponse:
        answer = web.StreamResponse(status=207, headers={**_dav_headers(), "Content-Type": f"{XML}; charset=utf-8"})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            answer.enable_compression()
        await answer.prepare(request)
        piece = [multistatus_head()]
        for member in members:
            piece.append(member)
            if len(piece) >= PIECE:
                await answer.write("".join(piece).encode())
                piece = []
        piece.append(multistatus_tail(sync_token))
        await answer.write("".join(piece).encode())
        await answer.write_eof()
        return answer


def may_sign_in(peer: str, tls: bool, proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Whether a password may be sent on this connection: over TLS, from this machine, or via a trusted proxy."""
    if tls or peer == "unix":  # a unix socket: only this machine reaches it
        return True
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or any(address in network for network in proxies)


def _dav_headers() -> dict[str, str]:
    return {"DAV": DAV_HEADER, "Allow": ALLOW, "MS-Author-Via": "DAV"}


def _refusal(error: DavError) -> web.Response:
    if error.status >= 500:
        log.error("CalDAV refusal %s: %s", error.status, error)
    if error.condition:
        return web.Response(status=error.status, text=error_body(error), content_type=XML, charset="utf-8")
    return web.Response(status=error.status, text=f"{error}\n")


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise DavError(413, "body-too-large", f"over {MAX_BODY} bytes")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise DavError(413, "body-too-large", f"over {MAX_BODY} bytes")
    return body


def _depth(request: web.Request, default: int) -> int:
    value = request.headers.get("Depth", "").strip().lower()
    if value == "0":
        return 0
    return 1 if value in ("1", "infinity") else default


def _is_outlook(request: web.Request) -> bool:
    return request.headers.get("User-Agent", "").startswith("MSFT-")


def _conditions(request: web.Request) -> Conditions:
    headers = request.headers
    return Conditions(headers.get("If-Match"), headers.get("If-None-Match"), headers.get("If-Schedule-Tag-Match"))


def _basic(header: str) -> tuple[str, str]:
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    username, _, password = decoded.partition(":")
    return username, password


def _peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport is not None else None
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return "unix"


def _client_address(request: web.Request, peer: str,
                    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str:
    """Whom to count failed sign-ins against: the proxy's client when a trusted proxy says who it is."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    try:
        trusted = any(ipaddress.ip_address(peer) in network for network in proxies)
    except ValueError:
        trusted = False
    return forwarded.rsplit(",", 1)[-1].strip() or peer if trusted and forwarded else peer

