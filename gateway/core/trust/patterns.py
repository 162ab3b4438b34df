"""Address, domain and name patterns for the policy and relay files: a ``Glob`` and the parsers that check one.

A pattern is written once and matched case-insensitively; the parsers refuse forms
that would match more than they seem to (``*partner.example``). Not for deciding
anything: the policy (``gateway.core.trust.policy``) and the relays (``gateway.core.trust.evidence``)
say what a match means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE)


@dataclass(frozen=True)
class Glob:
    """A case-insensitive pattern: ``*`` is any run of characters, ``?`` one character."""

    text: str

    def matches(self, value: str) -> bool:
        return _compile(self.text).fullmatch(value) is not None

    def __str__(self) -> str:
        return self.text


_DOMAIN = re.compile(r"(\*\.)?[\w-]+(\.[\w-]+)+")
_LOCAL_PART = re.compile(r"[^\s@\[\]<>(),;:\"]+")
_SLUG = re.compile(r"[a-z0-9*?-]+")


def domain_pattern(text: str) -> Glob:
    """``*``, ``partner.example`` or ``*.partner.example`` (subdomains only); else ValueError.

    A ``*`` inside a label is refused: ``*partner.example`` would match ``evilpartner.example``.
    """
    value = text.strip().lower().rstrip(".")
    if value != "*" and not _DOMAIN.fullmatch(value):
        raise ValueError(f"bad domain pattern {text!r} (use 'partner.example' or '*.partner.example')")
    return Glob(value)


def address_pattern(text: str) -> Glob:
    """``local@domain`` where the local part may hold ``*`` and ``?`` and the domain is a domain pattern."""
    local, at, domain = text.strip().lower().rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"bad address pattern {text!r} (use e.g. 'room-*@foo.example')")
    return Glob(f"{local}@{domain_pattern(domain).text}")


def slug_pattern(text: str) -> Glob:
    """A kebab-case name, ``*`` and ``?`` allowed (authority reasons)."""
    value = text.strip().lower()
    if not _SLUG.fullmatch(value):
        raise ValueError(f"bad name pattern {text!r} (use lower-case letters, digits, '-', '*')")
    return Glob(value)
