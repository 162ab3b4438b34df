"""Rendering one iTIP message as one iMIP mail to one recipient (RFC 6047; INTEROP rules 18–24).

Structure: ``multipart/mixed`` → ``multipart/alternative`` (text/plain, text/html,
``text/calendar; charset=UTF-8; method=…``) → ``invite.ics`` (``application/ics``). Every
part is quoted-printable or base64, so the whole mail is 7-bit and a relay cannot break
its DKIM body hash. Names and subjects go through the SMTP policy of ``email`` (see
``mimewriter``): a value with a line break is refused, never written, and every property is
cleaned to one line first, so no property of the event can inject a header.

Pure: the clock (``now``), the identifiers and the templates come in as arguments. The
words come from a ``Renderer`` that the caller owns (``gateway.adapters.templates`` loads the
packaged or the operator's templates and catalogs): ``imiptext`` decides what is said,
the templates only how it is laid out. Signing (``gateway.adapters.dkim``) and sending are
not done here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Protocol

from icalendar import Calendar

from gateway.core.addresses import normalize_address
from gateway.core.calendar.ical import (
    components_of,
    method_of,
    serialize_calendar,
)
from gateway.core.imip.answering import MESSAGE_ID, Answered, thread_fields
from gateway.core.imip.people import display_name
from gateway.core.imip.text import MailText, describe_message
from gateway.core.imip.wording import Translator, one_line, resolve_zone
from gateway.core.mail.mimewriter import (
    Multipart,
    Part,
    address_header,
    plain_header,
    text_header,
    write_message,
)
from gateway.core.model import OutgoingMessage

TEXT_TEMPLATE = "imip.txt"
HTML_TEMPLATE = "imip.html"
ATTACHMENT_NAME = "invite.ics"
_LANGUAGE = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


class Renderer(Protocol):
    """Gives the words: a translator per language and the human parts from templates."""

    def translator(self, language: str) -> Translator: ...

    def render(self, template: str, language: str, context: Mapping[str, object]) -> str: ...


@dataclass(frozen=True)
class ImipMail:
    """A rendered mail and its envelope: what the sender signs and hands to SMTP.

    ``data`` is the whole message: CRLF line endings, 7-bit, lines of at most 78 characters.
    """

    mail_from: str
    rcpt_to: str
    data: bytes
    text: MailText


def render_imip(
    message: OutgoingMessage,
    *,
    recipient: str,
    previous: Calendar | None,
    reply_to: str | None,
    envelope_from: str | None,
    message_id: str,
    thread_id: str,
    language: str,
    recipient_zone: str | None,
    now: datetime,
    renderer: Renderer,
    ics: str | None = None,
    answered: Answered | None = None,
) -> ImipMail:
    """One message to one recipient, as a mail a calendar program and a person both understand.

    ``previous`` is the version this recipient was last sent (None: nothing before, so a
    REQUEST is an invitation); ``thread_id`` is the Message-ID that every mail about
    this event refers to; ``recipient_zone`` an IANA zone name, else times are shown in
    the event's own zone. ``envelope_from`` (else the sender) becomes the SMTP MAIL FROM.
    ``ics`` is the calendar as already serialized when the message was queued (the outbox
    row keeps ``serialize_calendar(message.calendar)``); it is serialized here when None.
    ``answered`` is the mail this one answers (``gateway.core.imip.answering``): the mail
    threads under it instead of under ``thread_id``.
    """
    _check_inputs(message, message_id, thread_id, now)
    language = language if _LANGUAGE.match(language) else "en"
    to = normalize_address(recipient)
    if to is None:
        raise ValueError(f"not a mail address: {recipient!r}")
    text = describe_message(
        message, recipient=to, previous=previous, language=language,
        zone=resolve_zone(recipient_zone), tr=renderer.translator(language),
    )
    context = {f.name: getattr(text, f.name) for f in fields(text)}
    plain = renderer.render(TEXT_TEMPLATE, language, context)
    html = renderer.render(HTML_TEMPLATE, language, context)
    calendar_bytes = (ics if ics is not None else serialize_calendar(message.calendar)).encode("utf-8")
    headers = _headers(message, text, to, reply_to, message_id, thread_id, answered, now)
    data = write_message(headers, _body(plain, html, calendar_bytes, text.method), seed=message_id)
    return ImipMail(_address(envelope_from or message.sender), to, data, text)


def _check_inputs(message: OutgoingMessage, message_id: str, thread_id: str, now: datetime) -> None:
    body_method = method_of(message.calendar)
    if body_method != message.method.value:
        raise ValueError(f"METHOD {body_method} in the calendar differs from {message.method.value}")
    for value in (message_id, thread_id):
        if not MESSAGE_ID.match(value):
            raise ValueError(f"not a Message-ID: {value!r}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")


def _headers(
    message: OutgoingMessage, text: MailText, to: str, reply_to: str | None, message_id: str, thread_id: str,
    answered: Answered | None, now: datetime,
) -> list[bytes]:
    """RFC 5322 headers, INTEROP rule 24: Auto-Submitted, a Message-ID, and the thread: the mail answered, or the event's."""
    components = components_of(message.calendar)
    headers = [
        address_header("From", _address(message.sender), display_name(components, message.sender)),
        address_header("To", to, display_name(components, to)),
    ]
    if reply_to:
        headers.append(address_header("Reply-To", _address(reply_to)))
    headers += [
        text_header("Subject", one_line(text.subject, 900)),
        plain_header("Date", format_datetime(now.astimezone(timezone.utc))),
        plain_header("Message-ID", message_id),
    ]
    thread = thread_fields(message_id, thread_id, answered)
    if thread is not None:
        headers += [plain_header("In-Reply-To", thread.in_reply_to), _references_header(thread.references)]
    headers += [
        plain_header("MIME-Version", "1.0"),
        plain_header("Auto-Submitted", "auto-generated"),
        plain_header("Content-Language", text.language),
    ]
    return headers


def _references_header(references: tuple[str, ...]) -> bytes:
    """References folded between Message-IDs, so that a long thread keeps its lines short (RFC 5322 §2.2.3)."""
    lines = [f"References: {references[0]}"]
    for value in references[1:]:
        if len(lines[-1]) + 1 + len(value) > 78:
            lines.append("")
        lines[-1] += f" {value}"
    return "\r\n".join(lines).encode("ascii") + b"\r\n"  # each a checked Message-ID (``answering``)


def _address(address: str) -> str:
    """A normalized address (no spaces, brackets, quotes or separators), else ValueError."""
    normalized = normalize_address(address)
    if normalized is None:
        raise ValueError(f"not a mail address: {address!r}")
    return normalized


def _body(plain: str, html: str, ics: bytes, method: str) -> Multipart:
    """The RFC 6047 §2.4 layout; the calendar inline and again as ``invite.ics`` for webmail users."""
    utf8 = (("charset", "utf-8"),)
    return Multipart("mixed", [
        Multipart("alternative", [
            Part("text/plain", utf8, _normalized(plain).encode("utf-8"), "quoted-printable"),
            Part("text/html", utf8, _normalized(html).encode("utf-8"), "quoted-printable"),
            Part("text/calendar", (("charset", "UTF-8"), ("method", method)), ics, "base64"),
        ]),
        Part("application/ics", (("name", ATTACHMENT_NAME),), ics, "base64",
             disposition=f'attachment; filename="{ATTACHMENT_NAME}"'),
    ])


def _normalized(text: str) -> str:
    """One newline convention, no trailing blanks, a final newline."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = (line if line == "-- " else line.rstrip() for line in lines)  # "-- " starts a signature
    return "\n".join(kept).strip("\n") + "\n"
