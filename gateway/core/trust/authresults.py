"""Reading Authentication-Results header fields (RFC 8601): which checks a trusted server made, with what result.

Only a field whose authserv-id names one of our own servers says anything: anyone can
write the field into a message, and RFC 8601 §5 asks the border MTA to remove copies
that claim its own authserv-id. Because an MTA that does not may pass a forged copy
on, only the fields our MTA wrote last count (``trusted_results``). Parsing is lenient:
comments (which may hold ``;`` and ``=``), quoted values, folding, ``none``, and
Microsoft 365's field without an authserv-id (read with an empty authserv-id, which is
never trusted).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

AUTHENTICATION_RESULTS = "authentication-results"
RECEIVED = "received"
TraceField = tuple[str, str]  # (field name, raw value) of a Received or Authentication-Results field

_FOLDING = re.compile(r"\r?\n[ \t]*|\r")
_METHODSPEC = re.compile(
    r"^\s*(?P<method>[A-Za-z0-9][A-Za-z0-9_-]*)(?:\s*/\s*\d+)?\s*=\s*(?P<result>[A-Za-z0-9_-]+)"
)
_PROPERTY = re.compile(
    r"(?P<key>[A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)?)\s*=\s*"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|[^\s\"]+)"
)
_QUOTED_PAIR = re.compile(r"\\(.)")


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` of a field, with its reason and its ``ptype.property=value`` pairs.

    Method, result and property names are lower-cased; values are unquoted, case kept.
    Non-standard pairs (Microsoft's ``action=none``) are kept as properties too.
    """

    authserv_id: str
    method: str
    result: str
    reason: str = ""
    properties: tuple[tuple[str, str], ...] = ()

    def prop(self, name: str) -> str | None:
        """The value of the first property of that name (``header.d``, ``smtp.mailfrom``), or None."""
        wanted = name.lower()
        return next((value for key, value in self.properties if key == wanted), None)

    @property
    def passed(self) -> bool:
        return self.result == "pass"


@dataclass(frozen=True)
class AuthenticationResults:
    """One Authentication-Results field: who made the checks, and what they found."""

    authserv_id: str
    results: tuple[MethodResult, ...]


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """Read one field value; None when it holds neither an authserv-id nor a result."""
    pieces = _split_outside_quotes(_strip_comments(_FOLDING.sub(" ", value)), ";")
    head, rest = pieces[0].strip(), pieces[1:]
    if _METHODSPEC.match(head):  # Microsoft 365 writes no authserv-id
        authserv_id, rest = "", pieces
    else:
        words = _split_outside_quotes(head, " ")
        authserv_id = _unquote(next((w for w in words if w), "")).lower()
    results = tuple(r for r in (_method_result(authserv_id, piece) for piece in rest) if r is not None)
    if not authserv_id and not results:
        return None
    return AuthenticationResults(authserv_id, results)


def trusted_results(fields: Iterable[str | TraceField], authserv_ids: frozenset[str]) -> list[MethodResult]:
    """The results our own MTA wrote on arrival: the topmost block of trusted fields, each method once.

    ``fields`` are the message's Received and Authentication-Results fields, top first
    (a plain string is an Authentication-Results value). The rule, read from the top:

    - Received fields above the first Authentication-Results field are our own later
      hops (a Dovecot LMTP delivery, a content filter's reinjection) and are passed over.
    - The trusted block is the run of Authentication-Results fields from the first one
      on that carry one of ``authserv_ids`` (compared case-insensitively). It ends at
      the first field with any other authserv-id, or none, and at the first Received
      field below it: whatever lies further down was written before the message reached
      our MTA, whatever authserv-id it claims. When the topmost field is not ours,
      nothing is trusted.
    - Within the block a method's results come from the topmost field that reports the
      method: a ``dkim=none`` of ours is not outvoted by a ``dkim=pass`` lower down, and
      no pass is ever put together from several fields.
    """
    trusted = {i.strip().lower() for i in authserv_ids if i.strip()}
    found: list[MethodResult] = []
    reported: set[str] = set()
    for field in _trusted_block(fields, trusted):
        methods = {r.method for r in field.results}
        found.extend(r for r in field.results if r.method not in reported)
        reported |= methods
    return found


def _trusted_block(fields: Iterable[str | TraceField], trusted: set[str]) -> Iterator[AuthenticationResults]:
    started = False
    for field in fields:
        name, value = (AUTHENTICATION_RESULTS, field) if isinstance(field, str) else field
        name = name.strip().lower()
        if name == RECEIVED:
            if started:
                return
            continue
        if name != AUTHENTICATION_RESULTS:
            continue
        started = True
        parsed = parse_authentication_results(value)
        if parsed is None or not parsed.authserv_id or parsed.authserv_id not in trusted:
            return
        yield parsed


def dkim_domain(result: MethodResult) -> str | None:
    """The signing domain of a DKIM result: ``header.d``, else the domain of ``header.i``."""
    if result.method != "dkim":
        return None
    domain = result.prop("header.d") or (result.prop("header.i") or "").rpartition("@")[2]
    return domain_in(domain)


def domain_in(value: str | None) -> str | None:
    """The domain of a property value that is a domain or an address (``<a@b.example>``), lower-cased."""
    if not value:
        return None
    domain = value.strip().strip("<>").rpartition("@")[2].strip().rstrip(".").lower()
    return domain if "." in domain and domain != "none" else None


def passing(results: Iterable[MethodResult], method: str) -> list[MethodResult]:
    """The results of one method that passed."""
    return [r for r in results if r.method == method and r.passed]


def _method_result(authserv_id: str, piece: str) -> MethodResult | None:
    match = _METHODSPEC.match(piece)
    if match is None:
        return None  # "none", or something that is not a result
    reason, properties = "", []
    for prop in _PROPERTY.finditer(piece, match.end()):
        key = re.sub(r"\s+", "", prop.group("key")).lower()
        value = _unquote(prop.group("value"))
        if key == "reason" and not reason:
            reason = value
        else:
            properties.append((key, value))
    return MethodResult(
        authserv_id, match.group("method").lower(), match.group("result").lower(), reason, tuple(properties)
    )


def _strip_comments(text: str) -> str:
    """The text with every ``(comment)`` (nested, with quoted pairs) replaced by a space; quoted strings kept."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
        elif quoted:
            quoted = char != '"'
            out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(" ")
        elif depth == 0:
            quoted = char == '"'
            out.append(char)
    return "".join(out)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    quoted, escaped = False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value
