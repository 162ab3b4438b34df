"""DKIM (RFC 6376) for Reefknot: signing outgoing mail, verifying every signature of incoming mail.

Signing uses ed25519 (RFC 8463) or RSA keys from files, one signature per key. dkimpy
does what must match every verifier byte for byte: parsing the message, relaxed/relaxed
canonicalization, the header hash with the signature's own ``b=`` emptied. The
private-key operation is done by the ``cryptography`` package, because dkimpy's RSA is
pure Python and costs several milliseconds a message. What ``sign`` returns is the
exact bytes to send: the DKIM-Signature header followed by the message.

``verify_dkim`` checks each DKIM-Signature and says, per signature, pass, fail,
temperror or permerror (RFC 8601's words); pinned keys replace DNS for their domains.
What a verified signature means for the iTIP role of the sender is decided by
``gateway.core.trust.authority``. Not for sending.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import dkim  # type: ignore[import-untyped]
import dns.exception
import dns.resolver
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


def sign_with_each(signers: Sequence[DkimSigner], message: bytes, *, now: float | None = None) -> bytes:
    """The message with one DKIM-Signature per signer, the first signer's topmost, all with one ``t=``.

    No signature covers another (``SIGNED_HEADERS`` has no DKIM-Signature), so each
    verifies on its own and a verifier that knows only one algorithm still finds its own.
    """
    timestamp = now if now is not None else time.time()
    for signer in reversed(signers):
        message = signer.sign(message, now=timestamp)
    return message


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


# -- Verifying ------------------------------------------------------------------------

TxtLookup = Callable[[str, float], "bytes | None"]
KEY_CACHE_TTL = 300.0  # seconds a key record (or its absence) is reused
_NO_PINS: Mapping[str, bytes] = MappingProxyType({})


class DnsTemporaryError(Exception):
    """The DNS did not answer in time, or failed: try again later (RFC 6376 §6.1.2, TEMPFAIL)."""


@dataclass(frozen=True)
class DkimResult:
    """One DKIM-Signature's outcome: ``pass``, ``fail``, ``temperror`` or ``permerror`` (RFC 8601 §2.7.1)."""

    domain: str
    selector: str
    result: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def dns_txt_lookup(name: str, timeout: float, resolver: dns.resolver.Resolver | None = None) -> bytes | None:
    """The DKIM key record at ``name`` (its strings joined); None when there is none.

    Raises DnsTemporaryError when no server answers within ``timeout`` seconds or all fail.
    """
    try:
        answer = (resolver or dns.resolver.get_default_resolver()).resolve(
            name, "TXT", lifetime=timeout, search=False
        )
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.DNSException as error:
        raise DnsTemporaryError(f"{name}: {type(error).__name__}: {error}") from error
    records = [b"".join(rdata.strings) for rdata in answer]
    return next((r for r in records if b"p=" in r), records[0] if records else None)


class KeyResolver:
    """DKIM key records from a TXT lookup, each kept ``ttl`` seconds (absent ones too; failures never).

    Shared by every verification in a process, so that a busy sender's key is fetched
    once a few minutes, not once a message.
    """

    def __init__(
        self, lookup: TxtLookup = dns_txt_lookup, *, ttl: float = KEY_CACHE_TTL, max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup, self._ttl, self._max, self._clock = lookup, ttl, max_entries, clock
        self._cache: dict[str, tuple[float, bytes | None]] = {}
        self._lock = threading.Lock()

    def txt(self, name: str, timeout: float) -> bytes | None:
        """The record at ``name``, from the cache while fresh; raises DnsTemporaryError."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = self._lookup(name, timeout)
        with self._lock:
            self._cache.pop(name, None)
            while len(self._cache) >= self._max:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = (now + self._ttl, record)
        return record


def pinned_only(name: str, timeout: float) -> bytes | None:
    """The key lookup with DNS turned off: only pinned keys verify."""
    return None


def verify_dkim(
    raw: bytes, *, resolver: KeyResolver, pinned_keys: Mapping[str, bytes] = _NO_PINS, dns_timeout: float = 5.0,
) -> list[DkimResult]:
    """Verify every DKIM-Signature of ``raw``, topmost first; never raises for a bad signature or DNS.

    ``pinned_keys`` maps a domain (or ``selector._domainkey.domain``) to its key record
    (``b"v=DKIM1; k=ed25519; p=…"``): a signature of a pinned domain is checked against
    the pinned records only, and DNS is never asked about that domain. A message dkimpy
    cannot read has no verifiable signature: the list is empty.
    """
    pins = {_record_name(k): v for k, v in pinned_keys.items()}
    try:
        verifier = dkim.DKIM(raw, timeout=dns_timeout)
    except dkim.DKIMException:
        return []
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    return [_verify_one(verifier, index, value, _KeySource(pins, resolver)) for index, value in enumerate(signatures)]


def _verify_one(verifier: dkim.DKIM, index: int, header_value: bytes, source: _KeySource) -> DkimResult:
    domain, selector, problem = _read_signature(header_value)
    if problem:
        return DkimResult(domain, selector, "permerror", problem)
    try:
        valid = verifier.verify(idx=index, dnsfunc=source)
    except dkim.ValidationError as error:  # the body hash does not match
        return DkimResult(domain, selector, "fail", str(error)[:200])
    except ValueError as error:  # PyNaCl: an ed25519 signature of the wrong length, or for another key type
        return DkimResult(domain, selector, "fail", f"{type(error).__name__}: {error}"[:200])
    except (dkim.DKIMException, TypeError, KeyError, IndexError) as error:  # a key too small, an unknown key type
        return DkimResult(domain, selector, "permerror", f"{type(error).__name__}: {error}"[:200])
    if valid:
        return DkimResult(domain, selector, "pass")
    result, detail = source.problem or ("fail", "the signature does not verify")
    return DkimResult(domain, selector, result, detail)


def _read_signature(header_value: bytes) -> tuple[str, str, str]:
    """The ``d=`` and ``s=`` of a DKIM-Signature, and why it cannot be verified at all ('' when it can).

    Read apart from dkimpy's verification so that a malformed signature (missing tags,
    expired) is a permanent error that still names its signer.
    """
    try:
        tags = dkim.util.parse_tag_value(header_value)
    except dkim.util.InvalidTagValueList as error:
        return "", "", f"unreadable tag list: {error}"[:200]
    domain = tags.get(b"d", b"").decode("ascii", "replace").strip().lower().rstrip(".")
    selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
    try:
        dkim.validate_signature_fields(tags)
    except dkim.DKIMException as error:
        return domain, selector, str(error)[:200]
    return domain, selector, ""


def _record_name(name: str | bytes) -> str:
    text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    return text.strip().lower().rstrip(".")


class _KeySource:
    """dkimpy's ``dnsfunc`` for one signature: pinned records first, else the resolver; remembers what went wrong."""

    def __init__(self, pins: Mapping[str, bytes], resolver: KeyResolver) -> None:
        self.pins, self.resolver = pins, resolver
        self.problem: tuple[str, str] | None = None

    def __call__(self, name: bytes, timeout: float = 5.0) -> bytes | None:
        record_name = _record_name(name)
        domain = record_name.partition("._domainkey.")[2]
        if record_name in self.pins or domain in self.pins:
            record: bytes | None = self.pins.get(record_name, self.pins.get(domain))
        elif any(pin.endswith(f"._domainkey.{domain}") for pin in self.pins):
            record = None  # the domain is pinned, this selector is not
        else:
            try:
                record = self.resolver.txt(record_name, timeout)
            except DnsTemporaryError as error:
                self.problem = ("temperror", str(error)[:200])
                raise dkim.DnsTimeoutError(str(error)) from error
        self._check(record_name, record)
        return record

    def _check(self, name: str, record: bytes | None) -> None:
        if record is None:
            self.problem = ("permerror", f"no key record at {name}")
            return
        try:
            dkim.evaluate_pk(name, record)
        except dkim.DKIMException as error:
            self.problem = ("permerror", f"unusable key record at {name}: {error}"[:200])
