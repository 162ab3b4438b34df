"""DKIM signing of outgoing mail (RFC 6376) with ed25519 (RFC 8463) or RSA keys from files.

dkimpy does what must match every verifier byte for byte: parsing the message,
relaxed/relaxed canonicalization, the header hash with the signature's own ``b=``
emptied. The private-key operation is done by the ``cryptography`` package, because
dkimpy's RSA is pure Python and costs several milliseconds a message. What ``sign``
returns is the exact bytes to send: the DKIM-Signature header followed by the message.
Not for verifying incoming mail (that is the trust rules' job) and not for sending.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path

import dkim  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]

SIGNED_HEADERS = (
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
    "reply-to", "in-reply-to", "references", "auto-submitted",
)
MIN_RSA_BITS = 2048
_CANONICALIZATION = b"relaxed/relaxed"
_POLICY = CanonicalizationPolicy.from_c_value(_CANONICALIZATION)
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_FOLD_AT = 72


class DkimKeyError(Exception):
    """A key file that cannot be used for signing; the message names the file and why."""


class DkimSigner:
    """Signs for one domain and selector with one key, loaded once.

    The key file holds a PEM private key (PKCS#8 or traditional; ed25519 or RSA of at
    least 2048 bits), or dkimpy's ``dknewkey`` ed25519 format (the base64 32-byte seed).
    Every header in ``SIGNED_HEADERS`` is signed once more than it occurs, so none of
    them can be added on the way without breaking the signature.
    """

    def __init__(self, domain: str, selector: str, key_file: str | Path) -> None:
        if not _SELECTOR.match(selector):
            raise DkimKeyError(f"selector {selector!r} is not a DNS label")
        self.domain = domain.strip().lower().rstrip(".")
        self.selector = selector
        self._key = load_private_key(Path(key_file))
        self.algorithm = b"ed25519-sha256" if isinstance(self._key, ed25519.Ed25519PrivateKey) else b"rsa-sha256"

    def sign(self, message: bytes, *, now: float | None = None) -> bytes:
        """The message with a DKIM-Signature header in front; ``now`` (Unix time) for ``t=``."""
        headers, body = _split(message)
        body_hash = base64.b64encode(hashlib.sha256(_POLICY.canonicalize_body(body)).digest())
        present = [name.lower() for name, _ in headers]
        names = [n.encode() for n in SIGNED_HEADERS for _ in range(present.count(n.encode()) + 1)]
        unsigned = self._header_value(names, body_hash, int(now if now is not None else time.time()))
        hasher = hashlib.sha256()
        dkim.hash_headers(hasher, _POLICY, _POLICY.canonicalize_headers(headers), names,
                          (b"DKIM-Signature", unsigned), {})
        signature = base64.b64encode(self._sign_digest(hasher.digest()))
        return b"DKIM-Signature:" + unsigned + _fold_base64(signature) + b"\r\n" + message

    def _header_value(self, names: list[bytes], body_hash: bytes, timestamp: int) -> bytes:
        """The tag list with ``b=`` last and empty, folded the way it is sent (relaxed hashing needs the same)."""
        tags = [
            b"v=1", b"a=" + self.algorithm, b"c=" + _CANONICALIZATION, b"d=" + self.domain.encode("idna"),
            b"s=" + self.selector.encode("ascii"), b"t=%d" % timestamp,
        ]
        lines, line, room = [], b"", _FOLD_AT - len(b"DKIM-Signature: ")
        for tag in tags:
            if line and len(line) + len(tag) + 2 > room:
                lines.append(line)
                line, room = b"", _FOLD_AT
            line += (b" " if line else b"") + tag + b";"
        lines.append(line)
        lines += _fold_list(b"h=", names, b":")
        lines.append(b"bh=" + body_hash + b";")
        lines.append(b"b=")
        return b" " + b"\r\n\t".join(lines)

    def _sign_digest(self, digest: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(digest)  # RFC 8463 §3: ed25519 over the SHA-256 of the headers
        return self._key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

    def dns_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
        public = self._key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def _split(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """Headers and body as dkimpy reads them; only the header block goes through its parser
    when the message already has CRLF line ends throughout (all of Reefknot's do)."""
    end = message.find(b"\r\n\r\n")
    if end < 0 or message.count(b"\n") != message.count(b"\r\n") or b"\r" in message.replace(b"\r\n", b""):
        return dkim.rfc822_parse(message)  # type: ignore[no-any-return]
    headers, _ = dkim.rfc822_parse(message[: end + 4])
    return headers, message[end + 4:]


def load_private_key(path: Path) -> ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey:
    """An ed25519 or RSA private key from a PEM file or a dknewkey ed25519 seed file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DkimKeyError(f"{path}: cannot read: {error.strerror}") from error
    if b"-----BEGIN" not in data:
        return _ed25519_seed(path, data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise DkimKeyError(f"{path}: not a usable PEM private key ({error})") from error
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise DkimKeyError(f"{path}: an RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are needed")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise DkimKeyError(f"{path}: a {type(key).__name__}; DKIM signs with ed25519 or RSA")


def _ed25519_seed(path: Path, data: bytes) -> ed25519.Ed25519PrivateKey:
    try:
        seed = base64.b64decode(data.strip(), validate=True)
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError as error:
        raise DkimKeyError(f"{path}: neither PEM nor a base64 ed25519 seed") from error


def _fold_list(prefix: bytes, items: list[bytes], separator: bytes) -> list[bytes]:
    """``h=a:b:…;`` split over lines of at most ``_FOLD_AT`` octets, breaking after a separator."""
    lines, line = [], prefix
    for index, item in enumerate(items):
        piece = item + (separator if index < len(items) - 1 else b";")
        if len(line) + len(piece) > _FOLD_AT and line != prefix:
            lines.append(line)
            line = b""
        line += piece
    lines.append(line)
    return lines


def _fold_base64(value: bytes) -> bytes:
    """The signature in lines short enough for any relay; folding inside ``b=`` is allowed (RFC 6376 §3.5)."""
    width = _FOLD_AT - 2
    first, rest = value[:width - 2], value[width - 2:]
    return first + b"".join(b"\r\n\t" + rest[i:i + width] for i in range(0, len(rest), width))
