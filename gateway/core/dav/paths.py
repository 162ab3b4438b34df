"""Where each CalDAV resource lives under ``/dav/``, both ways: a request path read into a ``Target``, and hrefs written.

``/dav/principals/{address}/`` is a principal; ``/dav/calendars/{address}/`` its calendar
home, holding its calendars, ``inbox/`` and ``outbox/`` (RFC 6638 §2.1-2.2). An address
may come as ``@`` or ``%40``; hrefs are written with ``@``, which a path segment allows
(RFC 3986 §3.3). Knows nothing of who exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "/dav/"
WELL_KNOWN = "/.well-known/caldav"
INBOX, OUTBOX = "inbox", "outbox"
RESERVED = frozenset({INBOX, OUTBOX})
_PLAIN = re.compile(r"[A-Za-z0-9@+:!$&'()*,;=~._-]*")
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


class Kind(StrEnum):
    """What a path names."""

    ROOT = "root"
    PRINCIPALS = "principals"
    PRINCIPAL = "principal"
    HOME = "home"
    CALENDAR = "calendar"
    OBJECT = "object"
    INBOX = "inbox"
    INBOX_ITEM = "inbox-item"
    OUTBOX = "outbox"


@dataclass(frozen=True)
class Target:
    """A resource a request names: its kind, the principal's address, the calendar and the member name."""

    kind: Kind
    address: str = ""
    calendar: str = ""
    name: str = ""

    @property
    def is_collection(self) -> bool:
        return self.kind not in (Kind.OBJECT, Kind.INBOX_ITEM)

    @property
    def href(self) -> str:
        return href_of(self)


def parse_path(raw_path: str) -> Target | None:
    """The target of a request path (percent-encoded as sent), or None when it names nothing Reefknot serves."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith(ROOT.rstrip("/")):
        return None
    parts = [unquote(p) for p in path[len(ROOT):].split("/") if p]
    if any(p in (".", "..") or "/" in p for p in parts):
        return None
    if not parts:
        return Target(Kind.ROOT)
    head, rest = parts[0], parts[1:]
    if head == "principals":
        return _principal(rest)
    if head == "calendars":
        return _in_home(rest)
    return None


def _principal(rest: list[str]) -> Target | None:
    if not rest:
        return Target(Kind.PRINCIPALS)
    return Target(Kind.PRINCIPAL, rest[0].lower()) if len(rest) == 1 else None


def _in_home(rest: list[str]) -> Target | None:
    if not rest or len(rest) > 3:
        return None
    address = rest[0].lower()
    if len(rest) == 1:
        return Target(Kind.HOME, address)
    collection = rest[1]
    if collection == INBOX:
        return Target(Kind.INBOX, address) if len(rest) == 2 else Target(Kind.INBOX_ITEM, address, INBOX, rest[2])
    if collection == OUTBOX:
        return Target(Kind.OUTBOX, address) if len(rest) == 2 else None
    if len(rest) == 2:
        return Target(Kind.CALENDAR, address, collection)
    return Target(Kind.OBJECT, address, collection, rest[2])


def segment(text: str) -> str:
    """One path segment, percent-encoded where it must be (RFC 3986 §2.1: UTF-8 octets as %XX)."""
    if _PLAIN.fullmatch(text):
        return text
    return "".join(c if _PLAIN.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def unquote(text: str) -> str:
    """A percent-encoded segment read back; a malformed escape stays as it is."""
    if "%" not in text:
        return text
    return _ESCAPES.sub(lambda run: bytes.fromhex(run.group(0).replace("%", "")).decode("utf-8", "replace"), text)


def principal_href(address: str) -> str:
    return f"{ROOT}principals/{segment(address)}/"


def home_href(address: str) -> str:
    return f"{ROOT}calendars/{segment(address)}/"


def calendar_href(address: str, calendar: str) -> str:
    return f"{home_href(address)}{segment(calendar)}/"


def object_href(address: str, calendar: str, name: str) -> str:
    return f"{calendar_href(address, calendar)}{segment(name)}"


def href_of(target: Target) -> str:
    """The canonical href of a target: collections end in ``/``."""
    match target.kind:
        case Kind.ROOT:
            return ROOT
        case Kind.PRINCIPALS:
            return f"{ROOT}principals/"
        case Kind.PRINCIPAL:
            return principal_href(target.address)
        case Kind.HOME:
            return home_href(target.address)
        case Kind.INBOX | Kind.OUTBOX:
            return calendar_href(target.address, target.kind.value)
        case Kind.CALENDAR:
            return calendar_href(target.address, target.calendar)
        case _:
            return object_href(target.address, target.calendar, target.name)


def target_of_href(href: str) -> Target | None:
    """The target an href names, given as a path or an absolute URL (as some clients write multiget hrefs)."""
    if "://" in href:
        href = "/" + href.split("://", 1)[1].partition("/")[2]
    return parse_path(href)
