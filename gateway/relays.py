"""Reading the calendar relays file (``policies/relays.toml``) into the trust rules' Relay values.

The file is a list of ``[[relay]]`` tables; what each setting means is
``gateway.core.evidence.Relay``'s to say. Every problem is a ConfigError naming the file
and the relay.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gateway.config import ConfigError
from gateway.core.trust.evidence import Relay
from gateway.core.trust.patterns import Glob, address_pattern

SETTINGS = ("name", "dkim_domains", "envelope_senders", "senders", "organizers", "attendees")
_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$")


def load_relays(path: str | Path) -> tuple[Relay, ...]:
    """The relays a TOML file of nothing but ``[[relay]]`` tables defines, in file order."""
    return parse_relays(_read(Path(path)), str(path))


def relays_in(files: Iterable[Path]) -> tuple[Relay, ...]:
    """The ``[[relay]]`` tables of the policy files, in order; their other sections are the policy's."""
    relays: list[Relay] = []
    for path in files:
        data = _read(path)
        if "relay" in data:
            relays.extend(parse_relays({"relay": data["relay"]}, str(path)))
    return tuple(relays)


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from error


def parse_relays(data: Mapping[str, Any], source: str) -> tuple[Relay, ...]:
    """The relays of an already parsed file; ``source`` names it in errors."""
    unknown = sorted(set(data) - {"relay"})
    if unknown:
        raise ConfigError(f"{source}: unknown section {', '.join(unknown)}")
    entries = data.get("relay", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: relay must be a list of [[relay]] tables")
    relays = tuple(_relay(entry, f"{source} [[relay]] #{n}") for n, entry in enumerate(entries, 1))
    names = [r.name for r in relays]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: relay {', '.join(duplicates)} is defined twice")
    return relays


def _relay(entry: Any, where: str) -> Relay:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: not a table")
    unknown = sorted(set(entry) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"{where}: unknown setting {', '.join(unknown)}")
    name = str(entry.get("name", ""))
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must be kebab-case (e.g. google-calendar)")
    where = f"{where} ({name})"
    domains = frozenset(_domain(d, where) for d in _strings(entry, "dkim_domains", where))
    if not domains:
        raise ConfigError(f"{where}: dkim_domains must name at least one domain")
    try:
        return Relay(
            name, domains,
            *(_patterns(entry, key, where) for key in ("envelope_senders", "senders", "organizers", "attendees")),
        )
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from error


def _strings(entry: dict[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return value


def _domain(text: str, where: str) -> str:
    domain = text.strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise ConfigError(f"{where}: dkim_domains: {text!r} is not a domain")
    return domain


def _patterns(entry: dict[str, Any], key: str, where: str) -> tuple[Glob, ...]:
    try:
        return tuple(address_pattern(p) for p in _strings(entry, key, where))
    except ValueError as error:
        raise ConfigError(f"{where}: {key}: {error}") from error
