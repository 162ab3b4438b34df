"""WebDAV response bodies written as text: multistatus members, property values and error bodies (RFC 4918 §13-14, §16).

A property value is its inner XML, already escaped, keyed by the property's Clark name.
The writer puts found properties in one 200 propstat and wanted but unknown ones in a
404 propstat; a multistatus is written as a head, members and a tail, so the edge can
stream a large one member by member.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.core.dav.requests import PropRequest
from gateway.core.dav.xml import DAV, NAMESPACE_DECLARATIONS, DavError, element, empty, escape, qname, text_element

XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'
EXPENSIVE = frozenset({qname("urn:ietf:params:xml:ns:caldav", "calendar-data")})  # never part of allprop


_PHRASES = {200: "OK", 201: "Created", 204: "No Content", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            412: "Precondition Failed", 424: "Failed Dependency", 507: "Insufficient Storage"}


def status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {_PHRASES.get(status, '')}".rstrip()


def href(value: str) -> str:
    return text_element(qname(DAV, "href"), value)


def response(target_href: str, wanted: PropRequest, values: Mapping[str, str]) -> str:
    """One ``DAV:response`` with the wanted properties of a resource that has ``values``."""
    if wanted.names_only:
        return _member(target_href, [(200, "".join(empty(name) for name in values))])
    found: list[str] = []
    missing: list[str] = []
    names = [n for n in values if n not in EXPENSIVE] + [n for n in wanted.names if n not in values or n in EXPENSIVE]
    for name in dict.fromkeys(names) if wanted.every else wanted.names:
        value = values.get(name)
        if value is None:
            missing.append(empty(name))
        else:
            found.append(element(name, value) if value else empty(name))
    groups = [(200, "".join(found))] if found else []
    if missing:
        groups.append((404, "".join(missing)))
    return _member(target_href, groups or [(200, "")])


def _member(target_href: str, groups: Iterable[tuple[int, str]]) -> str:
    propstats = "".join(
        element(qname(DAV, "propstat"), element(qname(DAV, "prop"), props) + text_element(qname(DAV, "status"),
                                                                                             status_line(status)))
        for status, props in groups
    )
    return element(qname(DAV, "response"), href(target_href) + propstats)


def status_response(target_href: str, status: int) -> str:
    """A member reported by status alone: a deleted one in a sync (404), one a multiget names that is not there."""
    return element(qname(DAV, "response"), href(target_href) + text_element(qname(DAV, "status"), status_line(status)))


def multistatus_head() -> str:
    return f"{XML_HEAD}<D:multistatus {NAMESPACE_DECLARATIONS}>"


def multistatus_tail(sync_token: str | None = None) -> str:
    token = text_element(qname(DAV, "sync-token"), sync_token) if sync_token is not None else ""
    return f"{token}</D:multistatus>"


def multistatus(members: Iterable[str], sync_token: str | None = None) -> str:
    return multistatus_head() + "".join(members) + multistatus_tail(sync_token)


def error_body(error: DavError) -> str:
    """The ``DAV:error`` body naming the precondition a request failed (RFC 4918 §16), with its href if it has one."""
    inner = href(error.href) if error.href else ""
    condition = element(error.condition, inner) if inner else empty(error.condition)
    detail = f"<!-- {escape(error.detail).replace('--', '- -')} -->" if error.detail else ""
    return f"{XML_HEAD}<D:error {NAMESPACE_DECLARATIONS}>{condition}{detail}</D:error>"


def hrefs(values: Iterable[str]) -> str:
    return "".join(href(v) for v in values)


def patch_response(target_href: str, groups: Iterable[tuple[int, Iterable[str]]]) -> str:
    """A PROPPATCH's member: each group of property names with the status it got (RFC 4918 §9.2.1)."""
    return _member(target_href, [(status, "".join(empty(n) for n in names)) for status, names in groups if names])
