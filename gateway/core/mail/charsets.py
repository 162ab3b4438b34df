"""Mail bytes to text (RFC 2045 §6, INTEROP rule 5). Knows nothing of MIME structure or headers.

The transfer encoding is undone first, then a charset is applied. Decoding never fails:
what cannot be read as declared is read another way, with a note in the caller's defects.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re

NEWLINE = re.compile(r"\r\n|\r|\n")
"""Any line ending a sender may use: CRLF, LF or a lone CR."""

_CHARSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,39}")
# Codecs that decode bytes but are not mail charsets (some are slow on large input).
_NOT_CHARSETS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"})
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]")


def decode_transfer(data: bytes, encoding: str, location: str, defects: list[str]) -> bytes:
    """Undo a Content-Transfer-Encoding (given lower-cased); an unknown one is read as is."""
    if encoding == "base64":
        return decode_base64(data, location, defects)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    if encoding not in ("", "7bit", "8bit", "binary"):
        defects.append(f"{location}: unknown transfer encoding {encoding!r}, read as is")
    return data


def decode_base64(data: bytes, location: str, defects: list[str]) -> bytes:
    """Base64, tolerating whitespace, junk characters and missing or inner padding."""
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


def decode_bytes(data: bytes, charset: str, location: str, defects: list[str]) -> str:
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


def to_text(data: bytes, charset: str = "") -> str:
    """Like decode_bytes, for text whose defects are not worth a note (headers, reports)."""
    return decode_bytes(data, charset, "", [])


def _codec(charset: str) -> str | None:
    """The codec for a charset name, or None for unknown names and codecs that are no charset."""
    if not _CHARSET_NAME.fullmatch(charset):
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    return None if name in _NOT_CHARSETS else name
