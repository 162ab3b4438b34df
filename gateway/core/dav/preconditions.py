"""Conditional requests: ``If-Match``, ``If-None-Match`` and ``If-Schedule-Tag-Match`` against a resource (RFC 7232, 6638 §8.3).

Entity tags are compared strongly. Some clients send quotes escaped (``\\"abc\\"``) or
no quotes at all; both are read as the tag they mean. A failed condition is a 412.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.dav.xml import DavError

ANY = "*"


@dataclass(frozen=True)
class Conditions:
    """The conditional headers of a request, as sent (None: absent)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_schedule_tag_match: str | None = None


def read_tags(header: str) -> frozenset[str]:
    """The tags a header lists, unquoted; ``*`` stands for itself."""
    tags = set()
    for part in header.replace('\\"', '"').split(","):
        value = part.strip()
        if value.startswith("W/"):
            value = value[2:]
        value = value.strip('"')
        if value:
            tags.add(value)
    return frozenset(tags)


def quoted(tag: str) -> str:
    return f'"{tag}"'


def check_conditions(conditions: Conditions, etag: str | None, schedule_tag: str | None = None) -> None:
    """Refuse with 412 unless every condition holds for a resource with ``etag`` (None: it does not exist)."""
    if conditions.if_match is not None:
        wanted = read_tags(conditions.if_match)
        if etag is None or (ANY not in wanted and etag not in wanted):
            raise DavError(412, "if-match-failed", "the resource changed, or is not there")
    if conditions.if_none_match is not None:
        unwanted = read_tags(conditions.if_none_match)
        if etag is not None and (ANY in unwanted or etag in unwanted):
            raise DavError(412, "if-none-match-failed", "the resource exists")
    if conditions.if_schedule_tag_match is not None:
        wanted = read_tags(conditions.if_schedule_tag_match)
        if schedule_tag is None or schedule_tag not in wanted:
            raise DavError(412, "if-schedule-tag-match-failed", "the organizer changed the event since")
