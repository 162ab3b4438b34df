"""A plain HTTP/1.1 CalDAV client for the benchmark: one keep-alive connection, Basic auth, timed requests.

Times each request from the first byte sent to the last byte of the body read. Knows no
CalDAV beyond reading a 207 multistatus (RFC 4918 §13) into its hrefs, ETags and the
RFC 6578 sync-token; which requests to send is ``workload``'s and ``operations``'.
"""

from __future__ import annotations

import base64
import http.client
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

DAV = "{DAV:}"
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, http.client.CannotSendRequest)


@dataclass(frozen=True)
class Reply:
    """One response: status, headers (names in lower case), the whole body, and the milliseconds it took."""

    status: int
    headers: dict[str, str]
    body: bytes
    ms: float


class DavError(Exception):
    """A request that did not get the answer its operation needs; carries what was sent and what came back."""

    def __init__(self, method: str, path: str, status: int, detail: str = "") -> None:
        super().__init__(f"{method} {path}: HTTP {status}" + (f" {detail}" if detail else ""))
        self.method, self.path, self.status, self.detail = method, path, status, detail

    @property
    def short(self) -> str:
        return f"{self.method} → HTTP {self.status}" + (f" {self.detail}" if self.detail else "")


@dataclass
class Multistatus:
    """A 207 body read: each member href with its ETag (None when the response is a 404: a removal)."""

    members: dict[str, str | None] = field(default_factory=dict)
    token: str = ""


def read_multistatus(body: bytes) -> Multistatus:
    result = Multistatus()
    root = ET.fromstring(body)
    for response in root.iter(f"{DAV}response"):
        href = (response.findtext(f"{DAV}href") or "").strip()
        etag = response.findtext(f"{DAV}propstat/{DAV}prop/{DAV}getetag")
        status = response.findtext(f"{DAV}status") or ""
        result.members[href] = None if " 404 " in status else (etag or "").strip()
    result.token = (root.findtext(f"{DAV}sync-token") or "").strip()
    return result


class DavClient:
    """One client: a single persistent connection (reopened when the server closes it), as a calendar program keeps."""

    def __init__(self, host: str, port: int, user: str = "", password: str = "", timeout: float = 600.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.auth = {"Authorization": f"Basic {credentials}"} if user else {}
        self.connection = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        """Send one request; a connection the server closed while idle is reopened once, untimed."""
        sent = {"User-Agent": "reefknot-bench/1 (like DAVx5)", **self.auth, **(headers or {})}
        if body:
            sent.setdefault("Content-Type", "application/xml; charset=utf-8")
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.connection.request(method, path, body=body or None, headers=sent)
                response = self.connection.getresponse()
                data = response.read()
            except STALE:
                self.connection.close()
                self.connection = self._connect()
                if attempt == 2:
                    raise
                continue
            ms = (time.perf_counter() - started) * 1000
            if response.will_close:
                self.connection.close()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data, ms)
        raise AssertionError("unreachable")

    def expect(self, method: str, path: str, statuses: tuple[int, ...], body: bytes = b"",
               headers: dict[str, str] | None = None) -> Reply:
        """``request``, raising DavError unless the status is one of ``statuses``."""
        reply = self.request(method, path, body, headers)
        if reply.status not in statuses:
            raise DavError(method, path, reply.status, summary_of(reply.body))
        return reply

    def close(self) -> None:
        self.connection.close()


def summary_of(body: bytes, limit: int = 80) -> str:
    """The first words of an error body, on one line."""
    text = " ".join(body.decode("utf-8", "replace").split())
    return text[:limit] + ("…" if len(text) > limit else "")
