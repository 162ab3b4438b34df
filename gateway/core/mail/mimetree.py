"""A message's MIME tree (RFC 2046), parsed under a budget and walked. Knows nothing of calendars.

The message is read with the stdlib ``email`` parser in its ``compat32`` policy, the
only one that never raises when a malformed header is read (the default policy raises
``IndexError`` on a ``Message-ID`` like ``<<a@b>``). The parser is given a part budget
so that a MIME bomb stops it early. Every entity is then listed once, in order, with a
location such as "1.2" or "2/rfc822:1".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import Policy, compat32
from typing import Any

from gateway.core.mail.charsets import decode_bytes, decode_transfer
from gateway.core.mail.headers import content_type_of, param_of, raw_header
from gateway.core.model import NamedError

TOO_MANY_PARTS = "mime-too-many-parts"
TOO_DEEP = "mime-too-deep"

DSN_TYPE = "message/delivery-status"

_FEED_CHUNK = 64 * 1024
_TRAILING_EOL = re.compile(r"(?:\r\n|\r|\n)\Z")


class MailError(NamedError):
    """A message the gateway refuses to read at all (permanent)."""


@dataclass(frozen=True)
class Node:
    """One MIME entity with its position; ``forwarded`` when inside an attached message."""

    location: str
    entity: Message
    content_type: str
    forwarded: bool
    leaf: bool


# -- Parsing under a budget ---------------------------------------------------------


class _Budget:
    """Counts entities while the parser creates them, so a bomb is refused early."""

    def __init__(self, max_parts: int, max_depth: int) -> None:
        self.max_parts = max_parts
        self.max_depth = max_depth
        self.parts = 0

    def make(self, policy: Policy = compat32) -> _Entity:
        self.parts += 1
        if self.parts > self.max_parts:
            raise MailError(TOO_MANY_PARTS, f"more than {self.max_parts} MIME entities")
        return _Entity(self, policy)


class _Entity(Message):
    """A compat32 Message that knows its nesting depth and keeps its body as received.

    ``get_payload()`` replaces 8-bit bytes it cannot decode, so the body is kept as the
    parser sets it; the charset is applied later, after the transfer encoding.
    """

    def __init__(self, budget: _Budget, policy: Policy = compat32) -> None:
        super().__init__(policy)
        self.budget = budget
        self.depth = 0
        self.in_multipart = False
        self.raw_body = ""

    def set_payload(self, payload: Any, charset: Any = None) -> None:
        if isinstance(payload, str):
            self.raw_body = payload
        super().set_payload(payload, charset)

    def attach(self, payload: Message | str) -> None:
        if isinstance(payload, _Entity):
            payload.depth = self.depth + 1
            payload.in_multipart = self.get_content_maintype() == "multipart"
            if payload.depth > self.budget.max_depth:
                raise MailError(TOO_DEEP, f"MIME nesting deeper than {self.budget.max_depth}")
        super().attach(payload)

    def body_bytes(self) -> bytes:
        # The line break before a boundary belongs to the boundary (RFC 2046 §5.1.1).
        body = _TRAILING_EOL.sub("", self.raw_body, count=1) if self.in_multipart else self.raw_body
        return body.encode("utf-8", "surrogateescape")


def parse_tree(raw: bytes, max_parts: int, max_depth: int) -> Message:
    """The root entity of ``raw``; MailError past ``max_parts`` entities or ``max_depth``."""
    budget = _Budget(max_parts, max_depth)
    parser = BytesFeedParser(budget.make, policy=compat32)
    budget.parts = 0  # the parser calls the factory once to probe its signature
    try:
        # Fed in chunks so that the budget stops a bomb before all of it is split.
        for start in range(0, len(raw), _FEED_CHUNK):
            parser.feed(raw[start : start + _FEED_CHUNK])
        return parser.close()
    except RecursionError as exc:
        raise MailError(TOO_DEEP, "MIME nesting too deep for the parser") from exc


# -- Walking ------------------------------------------------------------------------


def walk_tree(root: Message) -> tuple[Node, ...]:
    """Every entity of the message, in order, the entities of attached messages included."""
    try:
        return tuple(_walk(root, "", forwarded=False))
    except RecursionError as exc:  # only when the caller allows extreme nesting
        raise MailError(TOO_DEEP, "MIME nesting too deep to walk") from exc


def _walk(root: Message, base: str, *, forwarded: bool) -> Iterator[Node]:
    """Every entity under a message root; locations like "1.2" and "2/rfc822:1"."""
    if root.is_multipart() and root.get_content_maintype() == "multipart":
        yield Node(base.removesuffix(":"), root, content_type_of(root), forwarded, leaf=False)
        for index, child in enumerate(children_of(root), 1):
            yield from _walk_part(child, f"{base}{index}", forwarded=forwarded)
    else:
        yield from _walk_part(root, f"{base}1", forwarded=forwarded)


def _walk_part(entity: Message, location: str, *, forwarded: bool) -> Iterator[Node]:
    # is_multipart() means "has a list payload": multipart/*, message/* and the field
    # groups of a delivery-status report, which is read as a leaf.
    ctype = content_type_of(entity)
    leaf = not entity.is_multipart() or ctype == DSN_TYPE
    yield Node(location, entity, ctype, forwarded, leaf)
    if leaf:
        return
    if entity.get_content_maintype() == "multipart":  # the parser's own reading of the type
        for index, child in enumerate(children_of(entity), 1):
            yield from _walk_part(child, f"{location}.{index}", forwarded=forwarded)
    else:
        for inner in children_of(entity):
            yield from _walk(inner, f"{location}/rfc822:", forwarded=True)


def children_of(entity: Message) -> list[Message]:
    """The entities directly inside ``entity``; none for a leaf."""
    # A string payload is never read through get_payload(): it raises on some charsets.
    payload = entity.get_payload() if entity.is_multipart() else None
    return (
        [item for item in payload if isinstance(item, Message)] if isinstance(payload, list) else []
    )


def parser_defects(nodes: Iterable[Node]) -> Iterator[str]:
    """The parser's defect notes, as words, with the location of their entity."""
    for node in nodes:
        for defect in node.entity.defects:
            words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__.removesuffix("Defect"))
            detail = f" ({defect})" if str(defect) else ""
            yield f"{node.location or 'message'}: {words.lower()}{detail}"


# -- Bodies -------------------------------------------------------------------------


def payload_bytes(entity: Message, location: str, defects: list[str]) -> bytes:
    """The body of a leaf with its transfer encoding undone; empty for a container."""
    if not isinstance(entity, _Entity) or entity.is_multipart():
        return b""
    encoding = (raw_header(entity, "Content-Transfer-Encoding") or "").strip(" \t\"'").lower()
    return decode_transfer(entity.body_bytes(), encoding, location, defects)


def body_text(node: Node, defects: list[str]) -> str:
    """The body of a leaf as text, in its declared charset or the best other fit."""
    data = payload_bytes(node.entity, node.location, defects)
    return decode_bytes(data, param_of(node.entity, "charset"), node.location, defects)
