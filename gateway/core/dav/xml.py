"""WebDAV XML: a hardened reader for request bodies, the namespaces, and escaping for the response writer.

Bodies are read with defusedxml: no DTD, no entity of any kind, no external reference;
a body too large or nested too deep is refused before it is parsed. Element names are
Clark notation, ``{namespace}local``, as ElementTree gives them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from gateway.core.model import NamedError

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CALSERVER = "http://calendarserver.org/ns/"
APPLE = "http://apple.com/ns/ical/"
PREFIXES = {DAV: "D", CALDAV: "C", CALSERVER: "CS", APPLE: "A"}

_SPECIAL = re.compile(r'[&<>"]')
MAX_BODY = 2 * 1024 * 1024  # a request body; a multiget of 10,000 hrefs fits
MAX_DEPTH = 32


def qname(namespace: str, local: str) -> str:
    """``{namespace}local``, an element name as ElementTree spells it."""
    return f"{{{namespace}}}{local}"


class DavError(NamedError):
    """A request refused: its HTTP status and, where the RFC names one, the precondition it failed.

    ``condition`` is a Clark name such as ``{urn:ietf:params:xml:ns:caldav}valid-calendar-data``;
    ``href`` fills it where the precondition carries one (``no-uid-conflict``).
    """

    def __init__(self, status: int, reason: str, detail: str = "", *, condition: str = "", href: str = "") -> None:
        super().__init__(reason, detail)
        self.status, self.condition, self.href = status, condition, href


def bad_request(detail: str) -> DavError:
    return DavError(400, "bad-request-body", detail)


def parse_body(body: bytes) -> Element | None:
    """The root element of a request body, or None for an empty one; hostile or malformed XML is a 400."""
    if len(body) > MAX_BODY:
        raise DavError(413, "body-too-large", f"over {MAX_BODY} bytes")
    if not body.strip():
        return None
    try:
        root: Element = safe_xml.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as error:
        raise bad_request(f"refused XML: {type(error).__name__}") from error
    except ParseError as error:
        raise bad_request(f"not well-formed XML: {error}") from error
    _check_depth(root)
    return root


def _check_depth(root: Element) -> None:
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise bad_request(f"nested deeper than {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in element)


def escape(text: str) -> str:
    """Text for element content or a double-quoted attribute."""
    if not _SPECIAL.search(text):
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


@lru_cache(maxsize=1024)
def tag(name: str) -> str:
    """A Clark name as a prefixed tag of the response (``D:href``); an unknown namespace gets its own xmlns."""
    namespace, _, local = name[1:].partition("}") if name.startswith("{") else ("", "", name)
    prefix = PREFIXES.get(namespace)
    if prefix is not None:
        return f"{prefix}:{local}"
    return f'X:{local} xmlns:X="{escape(namespace)}"' if namespace else local


@lru_cache(maxsize=1024)
def empty(name: str) -> str:
    """An empty element: ``<D:getetag/>``."""
    return f"<{tag(name)}/>"


@lru_cache(maxsize=1024)
def _tags(name: str) -> tuple[str, str]:
    opening = tag(name)
    return f"<{opening}>", f"</{opening.split(' ', 1)[0]}>"


def element(name: str, inner: str) -> str:
    """An element around already-written content."""
    opening, closing = _tags(name)
    return opening + inner + closing


def text_element(name: str, text: str) -> str:
    """An element around text, escaped."""
    return element(name, escape(text))


NAMESPACE_DECLARATIONS = " ".join(f'xmlns:{prefix}="{namespace}"' for namespace, prefix in PREFIXES.items())
