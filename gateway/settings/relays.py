"""Reading one ``[[relay]]`` table into the trust rules' calendar Relay.

What each setting means is ``gateway.core.trust.evidence.Relay``'s to say. The files
that hold ``[[relay]]`` tables (the policy files, and the shipped relays-only
``policies/relays.toml``) are read by ``gateway.settings.policy``, one pass per file.
"""

from __future__ import annotations

import re

from gateway.core.trust.evidence import Relay
from gateway.core.trust.patterns import address_pattern
from gateway.settings.reader import Invalid, Table

RELAY_KEYS = ("name", "dkim_domains", "envelope_senders", "senders", "organizers", "attendees")
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$")


def relay_of(table: Table) -> Relay:
    """The calendar relay one ``[[relay]]`` table defines."""
    name = table.name()
    domains = frozenset(_domain(text) for text in table.string_list("dkim_domains"))
    if not domains:
        raise Invalid("dkim_domains must name at least one domain", "name")
    patterns = [table.patterns(key, address_pattern) for key in ("envelope_senders", "senders", "organizers", "attendees")]
    try:
        return Relay(name, domains, *patterns)
    except ValueError as error:
        raise Invalid(str(error), "organizers") from error


def _domain(text: str) -> str:
    domain = text.strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise Invalid(f"dkim_domains: {text!r} is not a domain", "dkim_domains")
    return domain
