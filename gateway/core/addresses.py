"""Calendar user addresses: normalization and comparison (INTEROP rule 8).

``mailto:`` in any case is stripped and the address is lower-cased, so that
``MAILTO:Alice@Foo.Example`` and ``alice@foo.example`` are the same user.
"""

from __future__ import annotations

import re

_MAILTO = re.compile(r"^\s*mailto:", re.IGNORECASE)
_ADDR = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")


def normalize_address(value: object) -> str | None:
    """Return the comparable form of a calendar address, or None when it is not one.

    Accepts ``mailto:`` URIs in any case and bare addresses (Zoom's ``no-reply@zoom.us``);
    anything else (``invalid:nomail``, ``urn:uuid:…``) is not an email address.
    """
    if value is None:
        return None
    text = _MAILTO.sub("", str(value)).strip().strip("<>").strip()
    if not _ADDR.match(text):
        return None
    return text.lower()


def domain_of(address: str) -> str:
    """The domain part of a normalized address."""
    return address.rpartition("@")[2]


def as_uri(address: str) -> str:
    """The ``mailto:`` URI for a normalized address, as written in outgoing iCalendar."""
    return f"mailto:{address}"
