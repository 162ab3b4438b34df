"""Finding the calendar parts of an email (RFC 6047, INTEROP rules 1–7). Knows nothing of iTIP.

``parse_mail`` is the entry point: it reads the MIME tree (``mimetree``), the header
fields (``mailheaders``) and any bounce report (``bounces``) into one ParsedMail. A
calendar part is returned as decoded text, not parsed: iCalendar is another module's
job; header oddities and broken encodings become defect notes, never exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import Message
from email.utils import parsedate_to_datetime

from gateway.core.mail.bounces import (
    EMBEDDED_MESSAGE_TYPES,
    failed_recipients,
    looks_like_bounce,
    report_actions,
    returned_message_id,
)
from gateway.core.mail.charsets import NEWLINE
from gateway.core.mail.headers import (
    addresses_of,
    filename_of,
    first_address_of,
    header_text,
    is_auto_submitted,
    is_bulk,
    is_no_reply,
    message_id_in,
    message_ids_in,
    raw_header,
)
from gateway.core.mail.mimetree import (
    DSN_TYPE,
    TOO_DEEP,
    TOO_MANY_PARTS,
    MailError,
    Node,
    body_text,
    parse_tree,
    parser_defects,
    walk_tree,
)

__all__ = [
    "CALENDAR_SUFFIXES",
    "CALENDAR_TYPES",
    "DSN_TYPE",
    "EMBEDDED_MESSAGE_TYPES",
    "NOT_A_MAIL",
    "TNEF_TYPES",
    "TOO_DEEP",
    "TOO_MANY_PARTS",
    "BounceReport",
    "CalendarPart",
    "MailError",
    "ParsedMail",
    "parse_mail",
]

NOT_A_MAIL = "not-a-mail-message"

CALENDAR_TYPES = frozenset({"text/calendar", "application/ics", "text/x-vcalendar"})
CALENDAR_SUFFIXES = (".ics", ".ical", ".ifb")
TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
TRACE_FIELDS = frozenset({"received", "authentication-results"})  # kept in order: it says which A-R fields count

_ICAL_FOLD = re.compile(r"\r\n[ \t]")
_METHOD_PARAM = re.compile(r"(?:^|;)\s*method\s*=\s*[\"']?\s*([A-Za-z0-9-]+)", re.IGNORECASE)


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
    actions: frozenset[str] = frozenset()

    @property
    def is_failure(self) -> bool:
        """A report of a failed delivery; a non-standard bounce names no actions and counts as one."""
        return bool(self.failed_recipients) or "failed" in self.actions or not self.actions


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
    trace_fields: tuple[tuple[str, str], ...] = ()  # Received and Authentication-Results, top first (trust decides)
    dkim_signed: bool = False
    sent_at: datetime | None = None  # the Date field, aware; None when absent or unreadable

    @property
    def is_noise(self) -> bool:
        """Never answer this mail automatically (INTEROP rule 17); its calendar may still apply."""
        return self.auto_submitted or self.bulk or self.no_reply_sender or self.bounce is not None


def parse_mail(raw: bytes, *, max_parts: int = 1000, max_depth: int = 20) -> ParsedMail:
    """Read ``raw`` (the message as delivered) into a ParsedMail.

    Raises MailError only when the message has more than ``max_parts`` MIME entities or
    is nested deeper than ``max_depth``; any other oddity becomes a defect note.
    """
    root = parse_tree(raw, max_parts, max_depth)
    if not root.keys():
        return _empty_mail(f"{NOT_A_MAIL}: no header fields")
    defects: list[str] = []
    nodes = walk_tree(root)
    defects.extend(parser_defects(nodes))
    calendars = _dedupe(_calendar_parts(nodes, defects))
    from_address = first_address_of(root, "From")
    subject = header_text(root, "Subject")
    bounce = (
        _read_bounce(nodes, calendars)
        if looks_like_bounce(root, nodes, from_address, subject)
        else None
    )
    return ParsedMail(
        message_id=message_id_in(raw_header(root, "Message-ID")),
        subject=subject,
        from_address=from_address,
        reply_to=addresses_of(root, "Reply-To"),
        sender_header=first_address_of(root, "Sender"),
        in_reply_to=message_id_in(raw_header(root, "In-Reply-To")),
        references=message_ids_in(raw_header(root, "References")),
        auto_submitted=is_auto_submitted(root),
        bulk=is_bulk(root),
        no_reply_sender=is_no_reply(from_address),
        calendar_parts=() if bounce is not None else calendars,
        bounce=bounce,
        tnef=any(_is_tnef(node) for node in nodes),
        text_body=_text_body(nodes, defects),
        defects=tuple(defects),
        trace_fields=tuple((k, str(v)) for k, v in root.raw_items() if k.lower() in TRACE_FIELDS),
        dkim_signed="DKIM-Signature" in root,
        sent_at=_sent_at(raw_header(root, "Date")),
    )


def _sent_at(field: str | None) -> datetime | None:
    """The Date field (RFC 5322 §3.6.1); an unknown zone (``-0000``) is read as UTC."""
    try:
        value = parsedate_to_datetime(field) if field else None
    except (TypeError, ValueError, IndexError):
        return None
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


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


def _read_bounce(nodes: tuple[Node, ...], calendars: tuple[CalendarPart, ...]) -> BounceReport:
    return BounceReport(returned_message_id(nodes), failed_recipients(nodes), calendars, report_actions(nodes))


# -- Calendar parts -----------------------------------------------------------------


def _calendar_parts(nodes: Iterable[Node], defects: list[str]) -> Iterator[CalendarPart]:
    for node in nodes:
        if node.leaf and _is_calendar(node):
            part = _read_calendar(node, defects)
            if part is not None:
                yield part


def _is_calendar(node: Node) -> bool:
    filename = (filename_of(node.entity) or "").lower()
    return node.content_type in CALENDAR_TYPES or filename.endswith(CALENDAR_SUFFIXES)


def _read_calendar(node: Node, defects: list[str]) -> CalendarPart | None:
    text = NEWLINE.sub("\r\n", body_text(node, defects).replace("\x00", ""))
    if not text.strip():
        defects.append(f"{node.location}: empty calendar part")
        return None
    return CalendarPart(
        text=text,
        content_type=node.content_type,
        declared_method=_declared_method(node.entity),
        filename=filename_of(node.entity),
        location=node.location,
    )


def _declared_method(entity: Message) -> str | None:
    """The ``method`` parameter, however it is spelled (``METHOD=``, quoted, ``;;``)."""
    match = _METHOD_PARAM.search(raw_header(entity, "Content-Type") or "")
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


# -- The rest of the message --------------------------------------------------------


def _is_tnef(node: Node) -> bool:
    """An Outlook TNEF part, which may hide a calendar that cannot be read (INTEROP rule 6)."""
    if not node.leaf:
        return False
    return (
        node.content_type in TNEF_TYPES or (filename_of(node.entity) or "").lower() == "winmail.dat"
    )


def _text_body(nodes: Iterable[Node], defects: list[str]) -> str | None:
    """The first inline text/plain of the message itself (not of an attached message)."""
    for node in nodes:
        if node.leaf and not node.forwarded and _is_inline_text(node):
            return NEWLINE.sub("\n", body_text(node, defects).replace("\x00", ""))
    return None


def _is_inline_text(node: Node) -> bool:
    disposition = (
        (raw_header(node.entity, "Content-Disposition") or "").split(";")[0].strip().lower()
    )
    return (
        node.content_type == "text/plain"
        and disposition != "attachment"
        and not filename_of(node.entity)
    )
