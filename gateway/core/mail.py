"""Finding the calendar parts of an email (RFC 6047, INTEROP rules 1–7). Knows nothing of iTIP.

The message is read with the stdlib ``email`` parser in its ``compat32`` policy, the
only one that never raises when a malformed header is read (the default policy raises
``IndexError`` on a ``Message-ID`` like ``<<a@b>``); headers are decoded here instead.
A calendar part is returned as decoded text, not parsed: iCalendar is another module's
job. The parser is given a part budget so that a MIME bomb stops it early.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import HeaderParser
from email.policy import Policy, compat32
from email.utils import collapse_rfc2231_value, getaddresses
from typing import Any

from gateway.core.addresses import normalize_address
from gateway.core.model import NamedError

TOO_MANY_PARTS = "mime-too-many-parts"
TOO_DEEP = "mime-too-deep"
NOT_A_MAIL = "not-a-mail-message"

CALENDAR_TYPES = frozenset({"text/calendar", "application/ics", "text/x-vcalendar"})
CALENDAR_SUFFIXES = (".ics", ".ical", ".ifb")
TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
EMBEDDED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
DSN_TYPE = "message/delivery-status"

_FEED_CHUNK = 64 * 1024
_NEWLINE = re.compile(r"\r\n|\r|\n")
_TRAILING_EOL = re.compile(r"(?:\r\n|\r|\n)\Z")
_HEADER_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ICAL_FOLD = re.compile(r"\r\n[ \t]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_METHOD_PARAM = re.compile(r"(?:^|;)\s*method\s*=\s*[\"']?\s*([A-Za-z0-9-]+)", re.IGNORECASE)
_STATUS_CODE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_CHARSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,39}")
# Codecs that decode bytes but are not mail charsets (some are slow on large input).
_NOT_CHARSETS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"})
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]")
_NO_REPLY = re.compile(
    r"(?:^|[-+._])(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon|postmaster)(?:[-+._]|$)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (?:status notification|failure|has failed)"
    r"|mail delivery failed|failure notice|non-?delivery|could not be delivered",
    re.IGNORECASE,
)


class MailError(NamedError):
    """A message the gateway refuses to read at all (permanent)."""


@dataclass(frozen=True)
class CalendarPart:
    """One calendar body of a message: decoded text with CRLF line endings, not unfolded."""

    text: str
    content_type: str
    declared_method: str | None
    filename: str | None
    location: str


@dataclass(frozen=True)
class BounceReport:
    """A delivery failure report (RFC 3464), or an obvious non-standard bounce.

    ``calendar_parts`` are the calendars the bounce returned (usually our own REQUEST):
    reported only, never to be applied (INTEROP rule 7). A failed recipient's status is
    ``""`` when the report gives none.
    """

    original_message_id: str | None
    failed_recipients: tuple[tuple[str, str], ...]
    calendar_parts: tuple[CalendarPart, ...]


@dataclass(frozen=True)
class ParsedMail:
    """What the gateway needs from one email message; addresses are normalized."""

    message_id: str | None
    subject: str
    from_address: str | None
    reply_to: tuple[str, ...]
    sender_header: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    auto_submitted: bool
    bulk: bool
    no_reply_sender: bool
    calendar_parts: tuple[CalendarPart, ...]
    bounce: BounceReport | None
    tnef: bool
    text_body: str | None
    defects: tuple[str, ...]

    @property
    def is_noise(self) -> bool:
        """Never answer this mail automatically (INTEROP rule 17); its calendar may still apply."""
        return self.auto_submitted or self.bulk or self.no_reply_sender or self.bounce is not None


@dataclass(frozen=True)
class _Node:
    """One MIME entity with its position; ``forwarded`` when inside an attached message."""

    location: str
    entity: Message
    content_type: str
    forwarded: bool
    leaf: bool


def parse_mail(raw: bytes, *, max_parts: int = 1000, max_depth: int = 20) -> ParsedMail:
    """Read ``raw`` (the message as delivered) into a ParsedMail.

    Raises MailError only when the message has more than ``max_parts`` MIME entities or
    is nested deeper than ``max_depth``; any other oddity becomes a defect note.
    """
    root = _parse_tree(raw, max_parts, max_depth)
    if not root.keys():
        return _empty_mail(f"{NOT_A_MAIL}: no header fields")
    defects: list[str] = []
    try:
        nodes = tuple(_walk(root, "", forwarded=False))
    except RecursionError as exc:  # only when the caller allows extreme nesting
        raise MailError(TOO_DEEP, "MIME nesting too deep to walk") from exc
    defects.extend(_parser_defects(nodes))
    calendars = _dedupe(_calendar_parts(nodes, defects))
    from_address = _first_address(root, "From")
    subject = _header_text(root, "Subject")
    bounce = (
        _read_bounce(nodes, calendars)
        if _looks_like_bounce(root, nodes, from_address, subject)
        else None
    )
    return ParsedMail(
        message_id=_message_id(_raw_header(root, "Message-ID")),
        subject=subject,
        from_address=from_address,
        reply_to=_addresses(root, "Reply-To"),
        sender_header=_first_address(root, "Sender"),
        in_reply_to=_message_id(_raw_header(root, "In-Reply-To")),
        references=_message_ids(_raw_header(root, "References")),
        auto_submitted=_is_auto_submitted(root),
        bulk=_is_bulk(root),
        no_reply_sender=_is_no_reply(from_address),
        calendar_parts=() if bounce is not None else calendars,
        bounce=bounce,
        tnef=any(_is_tnef(node) for node in nodes),
        text_body=_text_body(nodes, defects),
        defects=tuple(defects),
    )


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
    parser sets it; the charset is applied here, after the transfer encoding.
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


def _parse_tree(raw: bytes, max_parts: int, max_depth: int) -> Message:
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


def _walk(root: Message, base: str, *, forwarded: bool) -> Iterator[_Node]:
    """Every entity under a message root; locations like "1.2" and "2/rfc822:1"."""
    if root.is_multipart() and root.get_content_maintype() == "multipart":
        yield _Node(base.removesuffix(":"), root, _content_type(root), forwarded, leaf=False)
        for index, child in enumerate(_children(root), 1):
            yield from _walk_part(child, f"{base}{index}", forwarded=forwarded)
    else:
        yield from _walk_part(root, f"{base}1", forwarded=forwarded)


def _walk_part(entity: Message, location: str, *, forwarded: bool) -> Iterator[_Node]:
    # is_multipart() means "has a list payload": multipart/*, message/* and the field
    # groups of a delivery-status report, which is read as a leaf.
    ctype = _content_type(entity)
    leaf = not entity.is_multipart() or ctype == DSN_TYPE
    yield _Node(location, entity, ctype, forwarded, leaf)
    if leaf:
        return
    if entity.get_content_maintype() == "multipart":  # the parser's own reading of the type
        for index, child in enumerate(_children(entity), 1):
            yield from _walk_part(child, f"{location}.{index}", forwarded=forwarded)
    else:
        for inner in _children(entity):
            yield from _walk(inner, f"{location}/rfc822:", forwarded=True)


def _children(entity: Message) -> list[Message]:
    # A string payload is never read through get_payload(): it raises on some charsets.
    payload = entity.get_payload() if entity.is_multipart() else None
    return (
        [item for item in payload if isinstance(item, Message)] if isinstance(payload, list) else []
    )


def _parser_defects(nodes: Iterable[_Node]) -> Iterator[str]:
    for node in nodes:
        for defect in node.entity.defects:
            words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__.removesuffix("Defect"))
            detail = f" ({defect})" if str(defect) else ""
            yield f"{node.location or 'message'}: {words.lower()}{detail}"


def _empty_mail(defect: str) -> ParsedMail:
    return ParsedMail(
        message_id=None,
        subject="",
        from_address=None,
        reply_to=(),
        sender_header=None,
        in_reply_to=None,
        references=(),
        auto_submitted=False,
        bulk=False,
        no_reply_sender=False,
        calendar_parts=(),
        bounce=None,
        tnef=False,
        text_body=None,
        defects=(defect,),
    )


# -- Calendar parts -----------------------------------------------------------------


def _calendar_parts(nodes: Iterable[_Node], defects: list[str]) -> Iterator[CalendarPart]:
    for node in nodes:
        if node.leaf and _is_calendar(node):
            part = _read_calendar(node, defects)
            if part is not None:
                yield part


def _is_calendar(node: _Node) -> bool:
    filename = (_filename(node.entity) or "").lower()
    return node.content_type in CALENDAR_TYPES or filename.endswith(CALENDAR_SUFFIXES)


def _read_calendar(node: _Node, defects: list[str]) -> CalendarPart | None:
    data = _payload_bytes(node, defects)
    text = _decode_bytes(data, _param(node.entity, "charset"), node.location, defects)
    text = _NEWLINE.sub("\r\n", text.replace("\x00", ""))
    if not text.strip():
        defects.append(f"{node.location}: empty calendar part")
        return None
    return CalendarPart(
        text=text,
        content_type=node.content_type,
        declared_method=_declared_method(node.entity),
        filename=_filename(node.entity),
        location=node.location,
    )


def _declared_method(entity: Message) -> str | None:
    """The ``method`` parameter, however it is spelled (``METHOD=``, quoted, ``;;``)."""
    match = _METHOD_PARAM.search(_raw_header(entity, "Content-Type") or "")
    return match.group(1).upper() if match else None


def _dedupe(parts: Iterable[CalendarPart]) -> tuple[CalendarPart, ...]:
    """One part per distinct calendar; a copy that declares a method replaces one that does not."""
    kept: dict[str, CalendarPart] = {}
    for part in parts:
        key = _comparable(part.text)
        first = kept.get(key)
        if first is None or (first.declared_method is None and part.declared_method):
            kept[key] = part  # reassignment keeps the first copy's position
    return tuple(kept.values())


def _comparable(text: str) -> str:
    lines = _ICAL_FOLD.sub("", text).split("\r\n")
    return "\n".join(line.rstrip() for line in lines if line.strip())


# -- Decoding -----------------------------------------------------------------------


def _payload_bytes(node: _Node, defects: list[str]) -> bytes:
    """The part's body with its transfer encoding undone."""
    if not isinstance(node.entity, _Entity) or node.entity.is_multipart():
        return b""
    data = node.entity.body_bytes()
    encoding = (_raw_header(node.entity, "Content-Transfer-Encoding") or "").strip(" \t\"'").lower()
    if encoding == "base64":
        return _decode_base64(data, node.location, defects)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    if encoding not in ("", "7bit", "8bit", "binary"):
        defects.append(f"{node.location}: unknown transfer encoding {encoding!r}, read as is")
    return data


def _decode_base64(data: bytes, location: str, defects: list[str]) -> bytes:
    compact = re.sub(rb"\s+", b"", data)
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error:
        defects.append(f"{location}: broken base64, decoded what could be read")
    decoded = bytearray()
    for chunk in re.split(rb"=+", _B64_JUNK.sub(b"", compact)):
        chunk = chunk[: len(chunk) - 1] if len(chunk) % 4 == 1 else chunk
        decoded += base64.b64decode(chunk + b"=" * (-len(chunk) % 4))
    return bytes(decoded)


def _decode_bytes(data: bytes, charset: str, location: str, defects: list[str]) -> str:
    """Declared charset, else UTF-8 (INTEROP rule 5), else cp1252, else Latin-1."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        charset = "utf-16"
    declared = _codec(charset) if charset else None
    if charset and declared is None:
        defects.append(f"{location}: unknown charset {charset!r}, tried others")
    for candidate in (declared, "utf-8", "cp1252"):
        if candidate is None:
            continue
        try:
            text = data.decode(candidate)
        except (LookupError, UnicodeError):
            if candidate == declared:
                defects.append(f"{location}: text does not fit charset {charset!r}, tried others")
            continue
        return text.removeprefix("\ufeff")
    return data.decode("latin-1")


def _to_text(data: bytes, charset: str = "") -> str:
    """Like _decode_bytes, for text whose defects are not worth a note (headers, reports)."""
    return _decode_bytes(data, charset, "", [])


def _codec(charset: str) -> str | None:
    """The codec for a charset name, or None for unknown names and codecs that are no charset."""
    if not _CHARSET_NAME.fullmatch(charset):
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    return None if name in _NOT_CHARSETS else name


# -- Headers ------------------------------------------------------------------------


def _raw_header(entity: Message, name: str) -> str | None:
    """The first ``name`` field, unfolded, 8-bit bytes decoded; encoded words left alone."""
    wanted = name.lower()
    for key, value in entity.raw_items():
        if key.lower() == wanted:
            text = str(value)
            if not text.isascii():
                text = _to_text(text.encode("utf-8", "surrogateescape"))
            return _HEADER_FOLD.sub("", text).strip()
    return None


def _header_text(entity: Message, name: str) -> str:
    """A header's human text with RFC 2047 encoded words decoded."""
    return _decode_words(_raw_header(entity, name) or "")


def _decode_words(text: str) -> str:
    """Decode RFC 2047 words; adjacent words of one charset are joined before decoding."""
    pieces: list[str] = []
    pending, pending_charset, position = b"", "", 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[position : match.start()]
        if position and gap.isspace():
            gap = ""  # whitespace between two encoded words is not text
        charset = match.group(1).split("*")[0].lower()
        if gap or charset != pending_charset:
            pieces += [_to_text(pending, pending_charset), gap]
            pending = b""
        pending += _decode_word(match.group(2).upper(), match.group(3))
        pending_charset, position = charset, match.end()
    pieces += [_to_text(pending, pending_charset), text[position:]]
    return "".join(pieces)


def _decode_word(encoding: str, data: str) -> bytes:
    raw = data.encode("ascii", "replace")
    if encoding == "Q":
        return binascii.a2b_qp(raw, header=True)
    return _decode_base64(raw, "", [])


def _content_type(entity: Message) -> str:
    value = _raw_header(entity, "Content-Type")
    if value is None:
        return entity.get_default_type()
    ctype = value.split(";")[0].strip(" \t\"'").lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


def _param(entity: Message, name: str) -> str:
    """A Content-Type parameter, lower-cased, quotes and RFC 2231 encoding removed."""
    value = entity.get_param(name, "")
    text = collapse_rfc2231_value(value) if isinstance(value, tuple) else str(value)
    return text.strip(" \t\"'").lower()


def _filename(entity: Message) -> str | None:
    name = _decode_words(entity.get_filename() or "").strip()
    return name or None


def _addresses(entity: Message, name: str) -> tuple[str, ...]:
    found = (
        normalize_address(address) for _, address in getaddresses([_raw_header(entity, name) or ""])
    )
    return tuple(address for address in found if address)


def _first_address(entity: Message, name: str) -> str | None:
    return next(iter(_addresses(entity, name)), None)


def _message_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    found = _MSG_ID.findall(value) or value.split()
    return tuple(f"<{item.strip('<>')}>" for item in found if item.strip("<>"))


def _message_id(value: str | None) -> str | None:
    return next(iter(_message_ids(value)), None)


# -- Classification -----------------------------------------------------------------


def _is_auto_submitted(root: Message) -> bool:
    value = _raw_header(root, "Auto-Submitted")
    return value is not None and value.split(";")[0].strip().lower() != "no"


def _is_bulk(root: Message) -> bool:
    precedence = (_raw_header(root, "Precedence") or "").strip().lower()
    return precedence in ("bulk", "list", "junk") or bool(_raw_header(root, "List-Id"))


def _is_no_reply(address: str | None) -> bool:
    return address is not None and bool(_NO_REPLY.search(address.partition("@")[0]))


def _is_tnef(node: _Node) -> bool:
    if not node.leaf:
        return False
    return (
        node.content_type in TNEF_TYPES or (_filename(node.entity) or "").lower() == "winmail.dat"
    )


def _text_body(nodes: Iterable[_Node], defects: list[str]) -> str | None:
    """The first inline text/plain of the message itself (not of an attached message)."""
    for node in nodes:
        if node.leaf and not node.forwarded and _is_inline_text(node):
            data = _payload_bytes(node, defects)
            text = _decode_bytes(data, _param(node.entity, "charset"), node.location, defects)
            return _NEWLINE.sub("\n", text.replace("\x00", ""))
    return None


def _is_inline_text(node: _Node) -> bool:
    disposition = (
        (_raw_header(node.entity, "Content-Disposition") or "").split(";")[0].strip().lower()
    )
    return (
        node.content_type == "text/plain"
        and disposition != "attachment"
        and not _filename(node.entity)
    )


# -- Bounces ------------------------------------------------------------------------


def _looks_like_bounce(
    root: Message, nodes: Iterable[_Node], sender: str | None, subject: str
) -> bool:
    if (
        _content_type(root) == "multipart/report"
        and _param(root, "report-type") == "delivery-status"
    ):
        return True
    if any(node.content_type == DSN_TYPE and not node.forwarded for node in nodes):
        return True
    local = (sender or "").partition("@")[0]
    return local in ("mailer-daemon", "postmaster") and bool(_BOUNCE_SUBJECT.search(subject))


def _read_bounce(nodes: tuple[_Node, ...], calendars: tuple[CalendarPart, ...]) -> BounceReport:
    failed = tuple(
        recipient
        for node in nodes
        if node.content_type == DSN_TYPE and not node.forwarded
        for recipient in _failed_recipients(node.entity)
    )
    return BounceReport(_returned_message_id(nodes), failed, calendars)


def _failed_recipients(dsn: Message) -> Iterator[tuple[str, str]]:
    for fields in _dsn_blocks(dsn):
        if fields.get("action", "").split("(")[0].strip().lower() != "failed":
            continue
        recipient = fields.get("final-recipient") or fields.get("original-recipient", "")
        address = normalize_address(recipient.rpartition(";")[2])
        status = _STATUS_CODE.search(fields.get("status", ""))
        if address:
            yield address, status.group(1) if status else ""


def _dsn_blocks(dsn: Message) -> list[dict[str, str]]:
    """The field groups of a message/delivery-status body (RFC 3464 §2.1)."""
    if dsn.is_multipart():
        return [_fields(block) for block in _children(dsn)]
    text = _to_text(_payload_bytes(_Node("", dsn, DSN_TYPE, False, True), []))
    blocks = re.split(r"\n[ \t]*\n", _NEWLINE.sub("\n", text))
    return [
        _fields(HeaderParser(policy=compat32).parsestr(block.strip() + "\n")) for block in blocks
    ]


def _fields(block: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key in block:
        fields.setdefault(key.lower(), _raw_header(block, key) or "")
    return fields


def _returned_message_id(nodes: tuple[_Node, ...]) -> str | None:
    for node in nodes:
        if node.forwarded:
            continue
        if node.content_type in EMBEDDED_MESSAGE_TYPES:
            returned = _children(node.entity)
            return _message_id(_raw_header(returned[0], "Message-ID")) if returned else None
        if node.content_type == "text/rfc822-headers":
            headers = HeaderParser(policy=compat32).parsestr(_to_text(_payload_bytes(node, [])))
            return _message_id(_raw_header(headers, "Message-ID"))
    return None
