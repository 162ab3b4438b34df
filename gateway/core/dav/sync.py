"""Sync tokens (RFC 6578 §3.2): one calendar's change counter as an opaque URI, and back.

A token names a calendar and the count of changes made to it when the token was given.
Members changed after that count are what a client with the token has not seen; a count
at or below the calendar's pruned mark is one whose deletions are forgotten, and the
client must start over (``DAV:valid-sync-token``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.dav.xml import DAV, DavError, qname

_PREFIX = "urn:x-reefknot:sync:"


@dataclass(frozen=True)
class SyncPoint:
    """A calendar and a change count."""

    calendar_id: int
    seq: int


def token_of(point: SyncPoint) -> str:
    return f"{_PREFIX}{point.calendar_id}:{point.seq}"


def invalid_token(detail: str) -> DavError:
    return DavError(403, "invalid-sync-token", detail, condition=qname(DAV, "valid-sync-token"))


def read_token(token: str, calendar_id: int, current: int, pruned_through: int) -> int:
    """The change count a client's token stands for in this calendar: 0 for the empty token (initial sync).

    A token for another calendar, from the future, malformed, or pruned is refused.
    """
    if not token:
        return 0
    if not token.startswith(_PREFIX):
        raise invalid_token("not a token of this server")
    calendar, _, seq = token[len(_PREFIX):].partition(":")
    if not (calendar.isdigit() and seq.isdigit()) or int(calendar) != calendar_id:
        raise invalid_token("not a token of this calendar")
    count = int(seq)
    if count > current:
        raise invalid_token("a token this calendar never gave")
    if count < pruned_through:
        raise invalid_token("too old: the changes since were forgotten; sync again from the start")
    return count


def ctag_of(point: SyncPoint) -> str:
    """The collection tag (``CS:getctag``) of a calendar in this state: the token itself."""
    return token_of(point)
