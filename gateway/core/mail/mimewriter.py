"""Writing a 7-bit MIME message: headers through the SMTP policy, parts quoted-printable or base64.

A small writer instead of ``EmailMessage`` building and flattening, which costs several
milliseconds a mail (most of it re-parsing headers it just wrote). Headers that carry
text from outside (names, addresses, subjects) still go through
``email.policy.SMTP.header_store_parse``: a value with CR or LF is refused there, and
non-ASCII text is written as RFC 2047 encoded words, folded at 78. Every other header
value must match a strict pattern. Boundaries start with ``=_``, which neither
quoted-printable nor base64 output can contain. Knows nothing of calendars.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.policy import SMTP

_PLAIN_VALUE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")  # printable ASCII on one line
_TOKEN = re.compile(r"^[A-Za-z0-9!#$&.+^_`{}~-]+(?:/[A-Za-z0-9!#$&.+^_`{}~-]+)?$")  # RFC 2045 token or type/subtype
CRLF = b"\r\n"


@dataclass(frozen=True)
class Part:
    """One leaf: a content type with parameters, an encoding, the content, optionally a disposition."""

    content_type: str
    params: tuple[tuple[str, str], ...]
    data: bytes
    encoding: str  # "quoted-printable" or "base64"
    disposition: str = ""


@dataclass(frozen=True)
class Multipart:
    """``multipart/<subtype>`` holding parts in order."""

    subtype: str
    parts: Sequence[Part | Multipart]


@functools.lru_cache(maxsize=4096)
def text_header(name: str, value: str) -> bytes:
    """A header whose text comes from outside, written by the SMTP policy (refuses CR and LF).

    Cached: the same subject goes to every attendee of an event, and the policy's parser
    is the most expensive step of writing a mail.
    """
    stored_name, header = SMTP.header_store_parse(name, value)
    return str(SMTP.fold(stored_name, header)).encode("ascii")


@functools.lru_cache(maxsize=4096)
def address_header(name: str, address: str, display_name: str = "") -> bytes:
    """A header naming one mailbox; the display name (from outside) is written by the SMTP policy."""
    user, at, domain = address.rpartition("@")
    if not at or not user or not domain:
        raise ValueError(f"{name}: not a mail address: {address!r}")
    if not display_name:
        return plain_header(name, address)
    stored_name, header = SMTP.header_store_parse(name, Address(display_name, user, domain))
    return str(SMTP.fold(stored_name, header)).encode("ascii")


def plain_header(name: str, value: str) -> bytes:
    """A header with a fixed-format value (a date, a Message-ID, a token), checked, written as is."""
    if not _PLAIN_VALUE.match(value) or len(name) + len(value) + 2 > 998:
        raise ValueError(f"{name}: not a plain header value: {value!r}")
    return f"{name}: {value}".encode("ascii") + CRLF


def write_message(headers: Sequence[bytes], body: Multipart | Part, seed: str) -> bytes:
    """Headers (each ending in CRLF), then the body; boundaries derived from ``seed`` so output is reproducible."""
    out = bytearray(b"".join(headers))
    counter = [0]
    _write_entity(out, body, seed, counter)
    data = bytes(out)
    if not data.isascii():
        raise ValueError("a MIME message must be 7-bit")
    return data


def _write_entity(out: bytearray, entity: Multipart | Part, seed: str, counter: list[int]) -> None:
    if isinstance(entity, Part):
        out += _part_headers(entity) + CRLF + _encoded(entity)
        return
    counter[0] += 1
    boundary = "=_" + hashlib.sha256(f"{seed}/{counter[0]}".encode()).hexdigest()[:32]
    out += f'Content-Type: multipart/{_token(entity.subtype)};\r\n boundary="{boundary}"\r\n\r\n'.encode()
    for index, part in enumerate(entity.parts):
        # The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1), so each
        # part keeps its own final line break.
        out += (CRLF if index else b"") + f"--{boundary}".encode() + CRLF
        _write_entity(out, part, seed, counter)
    out += CRLF + f"--{boundary}--".encode() + CRLF


def _part_headers(part: Part) -> bytes:
    params = "".join(f"; {_token(k)}={_parameter(v)}" for k, v in part.params)
    lines = plain_header("Content-Type", _token(part.content_type) + params)
    lines += plain_header("Content-Transfer-Encoding", part.encoding)
    if part.disposition:
        lines += plain_header("Content-Disposition", part.disposition)
    return lines


def _token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"not a MIME token: {value!r}")
    return value


def _parameter(value: str) -> str:
    """A token as is (``method=REQUEST``, as Outlook writes it), anything else quoted."""
    if _TOKEN.match(value) and "/" not in value:
        return value
    if not _PLAIN_VALUE.match(value) or '"' in value or "\\" in value:
        raise ValueError(f"not a MIME parameter value: {value!r}")
    return f'"{value}"'


def _encoded(part: Part) -> bytes:
    if part.encoding == "base64":
        return base64.encodebytes(part.data).replace(b"\n", CRLF)
    if part.encoding == "quoted-printable":
        text = part.data.replace(CRLF, b"\n").replace(b"\r", b"\n").replace(b"\n", CRLF)
        encoded = binascii.b2a_qp(text, quotetabs=False, istext=True, header=False)
        return encoded if encoded.endswith(CRLF) else encoded + b"=" + CRLF  # a soft break: no newline added
    raise ValueError(f"not a 7-bit transfer encoding: {part.encoding}")
