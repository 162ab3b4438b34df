"""Recognizing delivery failure reports (RFC 3464, INTEROP rule 7). Knows nothing of calendars.

A report is a ``multipart/report`` of type delivery-status, or any message with a
``message/delivery-status`` part of its own; a non-standard bounce is one from
``mailer-daemon`` or ``postmaster`` with a subject that says so. From a report are read
the recipients it gives up on, with their status codes, the actions it reports (a
"delayed" warning is not a failure), and the Message-ID of the message it returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from gateway.core.addresses import normalize_address
from gateway.core.mail.charsets import NEWLINE, to_text
from gateway.core.mail.headers import (
    content_type_of,
    message_id_in,
    param_of,
    raw_header,
)
from gateway.core.mail.mimetree import DSN_TYPE, Node, children_of, payload_bytes

EMBEDDED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})

_STATUS_CODE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (?:status notification|failure|has failed)"
    r"|mail delivery failed|failure notice|non-?delivery|could not be delivered",
    re.IGNORECASE,
)


def looks_like_bounce(
    root: Message, nodes: Iterable[Node], sender: str | None, subject: str
) -> bool:
    """A delivery status report, or a message from a mail system that reads like one."""
    if (
        content_type_of(root) == "multipart/report"
        and param_of(root, "report-type") == "delivery-status"
    ):
        return True
    if any(node.content_type == DSN_TYPE and not node.forwarded for node in nodes):
        return True
    local = (sender or "").partition("@")[0]
    return local in ("mailer-daemon", "postmaster") and bool(_BOUNCE_SUBJECT.search(subject))


def failed_recipients(nodes: Iterable[Node]) -> tuple[tuple[str, str], ...]:
    """(address, status code) of each recipient with ``Action: failed``; status "" when none."""
    return tuple(
        recipient
        for node in nodes
        if node.content_type == DSN_TYPE and not node.forwarded
        for recipient in _failed_in(node.entity)
    )


def report_actions(nodes: Iterable[Node]) -> frozenset[str]:
    """The ``Action`` values of every recipient in the reports (failed, delayed, delivered, relayed, expanded)."""
    return frozenset(
        fields["action"].split("(")[0].strip().lower()
        for node in nodes
        if node.content_type == DSN_TYPE and not node.forwarded
        for fields in _dsn_blocks(node.entity)
        if fields.get("action")
    )


def returned_message_id(nodes: Iterable[Node]) -> str | None:
    """The Message-ID of the message the report returns, whole or as its header alone."""
    for node in nodes:
        if node.forwarded:
            continue
        if node.content_type in EMBEDDED_MESSAGE_TYPES:
            returned = children_of(node.entity)
            return message_id_in(raw_header(returned[0], "Message-ID")) if returned else None
        if node.content_type == "text/rfc822-headers":
            data = payload_bytes(node.entity, node.location, [])
            headers = HeaderParser(policy=compat32).parsestr(to_text(data))
            return message_id_in(raw_header(headers, "Message-ID"))
    return None


def _failed_in(dsn: Message) -> Iterator[tuple[str, str]]:
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
        return [_fields(block) for block in children_of(dsn)]
    text = to_text(payload_bytes(dsn, "", []))
    blocks = re.split(r"\n[ \t]*\n", NEWLINE.sub("\n", text))
    return [
        _fields(HeaderParser(policy=compat32).parsestr(block.strip() + "\n")) for block in blocks
    ]


def _fields(block: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key in block:
        fields.setdefault(key.lower(), raw_header(block, key) or "")
    return fields
