"""Reading mail header fields (RFC 5322, RFC 2047, INTEROP rule 17). Knows nothing of bodies.

Fields are read from ``compat32`` messages, which keep them as received: unfolding and
the decoding of 8-bit bytes and encoded words happen here, and never raise. Addresses
are normalized; Message-IDs keep their angle brackets.
"""

from __future__ import annotations

import binascii
import re
from email.message import Message
from email.utils import collapse_rfc2231_value, getaddresses

from gateway.core.addresses import normalize_address
from gateway.core.mail.charsets import decode_base64, to_text

_HEADER_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_HEADER_SECTION_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID_FIELD = re.compile(rb"^message-id[ \t]*:[ \t]*((?:[^\r\n]|\r?\n(?=[ \t]))*)", re.IGNORECASE | re.MULTILINE)
_NO_REPLY = re.compile(
    r"(?:^|[-+._])(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon|postmaster)(?:[-+._]|$)",
    re.IGNORECASE,
)


# -- Fields and their text ----------------------------------------------------------


def raw_header(entity: Message, name: str) -> str | None:
    """The first ``name`` field, unfolded, 8-bit bytes decoded; encoded words left alone."""
    wanted = name.lower()
    for key, value in entity.raw_items():
        if key.lower() == wanted:
            text = str(value)
            if not text.isascii():
                text = to_text(text.encode("utf-8", "surrogateescape"))
            return _HEADER_FOLD.sub("", text).strip()
    return None


def header_text(entity: Message, name: str) -> str:
    """A header's human text with RFC 2047 encoded words decoded."""
    return decode_words(raw_header(entity, name) or "")


def decode_words(text: str) -> str:
    """Decode RFC 2047 words; adjacent words of one charset are joined before decoding."""
    pieces: list[str] = []
    pending, pending_charset, position = b"", "", 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[position : match.start()]
        if position and gap.isspace():
            gap = ""  # whitespace between two encoded words is not text
        charset = match.group(1).split("*")[0].lower()
        if gap or charset != pending_charset:
            pieces += [to_text(pending, pending_charset), gap]
            pending = b""
        pending += _decode_word(match.group(2).upper(), match.group(3))
        pending_charset, position = charset, match.end()
    pieces += [to_text(pending, pending_charset), text[position:]]
    return "".join(pieces)


def _decode_word(encoding: str, data: str) -> bytes:
    raw = data.encode("ascii", "replace")
    if encoding == "Q":
        return binascii.a2b_qp(raw, header=True)
    return decode_base64(raw, "", [])


# -- MIME fields --------------------------------------------------------------------


def content_type_of(entity: Message) -> str:
    """The lower-cased media type; ``text/plain`` when it is malformed (RFC 2045 §5.2)."""
    value = raw_header(entity, "Content-Type")
    if value is None:
        return entity.get_default_type()
    ctype = value.split(";")[0].strip(" \t\"'").lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


def param_of(entity: Message, name: str) -> str:
    """A Content-Type parameter, lower-cased, quotes and RFC 2231 encoding removed."""
    value = entity.get_param(name, "")
    text = collapse_rfc2231_value(value) if isinstance(value, tuple) else str(value)
    return text.strip(" \t\"'").lower()


def filename_of(entity: Message) -> str | None:
    """The part's file name, encoded words decoded; None when it has none."""
    name = decode_words(entity.get_filename() or "").strip()
    return name or None


# -- Addresses and Message-IDs ------------------------------------------------------


def addresses_of(entity: Message, name: str) -> tuple[str, ...]:
    """The normalized addresses of an address field; what is no address is left out."""
    found = (
        normalize_address(address) for _, address in getaddresses([raw_header(entity, name) or ""])
    )
    return tuple(address for address in found if address)


def first_address_of(entity: Message, name: str) -> str | None:
    return next(iter(addresses_of(entity, name)), None)


def message_id_field(raw: bytes, limit: int = 65536) -> str:
    """The Message-ID field of a raw message as written (unfolded), read from the header section alone.

    The listeners call this for every message before it is stored: a scan of the header
    bytes, not a parse of the message.
    """
    head = raw[:limit]
    end = _HEADER_SECTION_END.search(head)
    found = _MESSAGE_ID_FIELD.search(head, 0, end.start() if end else len(head))
    if found is None:
        return ""
    return _HEADER_FOLD.sub("", found.group(1).decode("utf-8", "replace")).strip()


def message_ids_in(value: str | None) -> tuple[str, ...]:
    """The Message-IDs of a field value, each in angle brackets; bare words when none has them."""
    if not value:
        return ()
    found = _MSG_ID.findall(value) or value.split()
    return tuple(f"<{item.strip('<>')}>" for item in found if item.strip("<>"))


def message_id_in(value: str | None) -> str | None:
    return next(iter(message_ids_in(value)), None)


# -- Noise (INTEROP rule 17) --------------------------------------------------------


def is_auto_submitted(root: Message) -> bool:
    """Any ``Auto-Submitted`` value but ``no`` (RFC 3834 §5)."""
    value = raw_header(root, "Auto-Submitted")
    return value is not None and value.split(";")[0].strip().lower() != "no"


def is_bulk(root: Message) -> bool:
    """Mailing-list or bulk mail: ``Precedence`` bulk, list or junk, or any ``List-Id``."""
    precedence = (raw_header(root, "Precedence") or "").strip().lower()
    return precedence in ("bulk", "list", "junk") or bool(raw_header(root, "List-Id"))


def is_no_reply(address: str | None) -> bool:
    """A sender whose local part says that nobody reads replies."""
    return address is not None and bool(_NO_REPLY.search(address.partition("@")[0]))
