"""Assembling a Policy and the calendar relays from the ``policies/`` TOML files, one pass per file.

Files are read in order (a directory: its ``*.toml`` files by name, ``*.example.toml``
skipped). The rules, partners, rooms and relays of all files form one list each, in that
order; ``default``, ``private_events`` and each key of ``[limits]`` and ``[freebusy]``
may be set again by a later file, which then wins. Unknown keys are errors: a typo must
not silently widen a rule. Every error names the file, the line and the rule. Reading
values is ``gateway.settings.reader``; a ``[[relay]]`` table is
``gateway.settings.relays``'s; deciding is ``gateway.core.trust.policy``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gateway.core.model import Kind, Method
from gateway.core.trust.evidence import Relay
from gateway.core.trust.patterns import Glob, address_pattern, domain_pattern, slug_pattern
from gateway.core.trust.policy import (
    COMPONENTS,
    DEFAULT_ACTIONS,
    ROOM_KINDS,
    Action,
    Auth,
    Conditions,
    Decision,
    FreeBusy,
    FreeBusyUrl,
    Limits,
    Partner,
    PinnedKey,
    Policy,
    PrivateEvents,
    Room,
    Rule,
    Source,
)
from gateway.settings.reader import Invalid, Lines, SettingError, Table, located, parse_rate, read_toml_file
from gateway.settings.relays import RELAY_KEYS, relay_of

_DKIM_NAME = re.compile(r"([a-z0-9](?:[a-z0-9._-]*[a-z0-9])?)\._domainkey\.([\w.-]+)")
MIN_TOKEN_LENGTH = 20
RESERVED_NAMES = ("default", "limits")
CONDITION_KEYS = (
    "method", "component", "sender_domain", "sender", "recipient", "recipient_kind", "auth", "authority",
    "partner", "sender_known", "sender_local", "noise",
)
RULE_KEYS = ("name", "description", "action", "notify_sender", *CONDITION_KEYS)
PARTNER_KEYS = ("name", "domains", "dkim_keys", "freebusy", "book_rooms", "freebusy_token", "freebusy_token_file")
ROOM_KEYS = ("name", "rooms", "local", "domains", "max_duration", "booking_window", "otherwise")
TOP_KEYS = ("default", "private_events", "limits", "freebusy", "rule", "partner", "room", "relay")

# Each key of [limits] and [freebusy]: the field it sets and how its value is read.
Getter = Callable[[Table, str], Any]
LIMIT_KEYS: dict[str, tuple[str, Getter]] = {
    **{key: (key, Table.count) for key in (
        "max_message_bytes", "max_mime_depth", "max_parts", "max_components", "max_attendees")},
    "domain_rate": ("rate", parse_rate),
    "action": ("action", lambda table, key: table.choice(key, Action, (Action.HOLD, Action.REJECT))),
}
FREEBUSY_KEYS: dict[str, tuple[str, Getter]] = {
    "local": ("local", Table.flag),
    "domains": ("domains", lambda table, key: table.patterns(key, domain_pattern)),
    "url": ("url", lambda table, key: table.choice(key, FreeBusyUrl)),
}


def _rule(table: Table, source: Source) -> Rule:
    name = table.name()
    action = table.choice("action", Action)
    if action is None:
        raise Invalid("no action", "name")
    kinds = table.choices("recipient_kind", Kind)
    if action in (Action.AUTO_ACCEPT, Action.AUTO_DECLINE) and not (kinds and set(kinds) <= set(ROOM_KINDS)):
        raise Invalid(f"{action} is for rooms: add recipient_kind = [\"room\"] or [\"resource\"]", "action")
    notify = bool(table.flag("notify_sender"))
    if notify and action is not Action.REJECT:
        raise Invalid("notify_sender goes with action = \"reject\" only", "notify_sender")
    return Rule(name, _conditions(table, kinds), action, source, notify, table.text("description"))


def _conditions(table: Table, kinds: tuple[Kind, ...]) -> Conditions:
    components = tuple(c.upper() for c in table.strings("component"))
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise Invalid(f"unknown component {unknown[0]!r} (expected {', '.join(COMPONENTS)})", "component")
    partner = table.data.get("partner")
    return Conditions(
        method=tuple(str(m) for m in table.choices("method", Method)),
        component=components,
        sender_domain=table.patterns("sender_domain", domain_pattern),
        sender=table.patterns("sender", address_pattern),
        recipient=table.patterns("recipient", address_pattern),
        recipient_kind=kinds,
        auth=table.choices("auth", Auth),
        authority=table.patterns("authority", slug_pattern),
        partner=partner if partner is None or isinstance(partner, bool) else table.strings("partner"),
        sender_known=table.flag("sender_known"),
        sender_local=table.flag("sender_local"),
        noise=table.flag("noise"),
    )


def _partner(table: Table, source: Source) -> Partner:
    name = table.name()
    domains = table.patterns("domains", domain_pattern)
    if not domains:
        raise Invalid("domains: name at least one domain", "name")
    freebusy = bool(table.flag("freebusy"))
    token = _token(table, Path(source.file).parent)
    if token and not freebusy:
        raise Invalid("a free/busy token needs freebusy = true", "freebusy")
    keys = _pinned_keys(table.data.get("dkim_keys", {}), domains)
    return Partner(name, domains, source, keys, freebusy, table.patterns("book_rooms", address_pattern), token)


def _token(table: Table, directory: Path) -> str:
    """The free/busy token, inline or from a file (relative to the policy file's directory)."""
    if "freebusy_token" in table.data and "freebusy_token_file" in table.data:
        raise Invalid("set freebusy_token or freebusy_token_file, not both", "freebusy_token")
    key = "freebusy_token_file" if "freebusy_token_file" in table.data else "freebusy_token"
    token = table.text(key)
    if key == "freebusy_token_file":
        path = directory / token
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise Invalid(f"cannot read {path}: {error.strerror}", key) from error
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise Invalid(f"{key}: a token needs at least {MIN_TOKEN_LENGTH} characters", key)
    return token


def _pinned_keys(table: Any, domains: tuple[Glob, ...]) -> tuple[PinnedKey, ...]:
    if not isinstance(table, dict):
        raise Invalid('dkim_keys must be a table of "selector._domainkey.domain" = "v=DKIM1; k=…; p=…"', "dkim_keys")
    keys = []
    for name, record in table.items():
        match = _DKIM_NAME.fullmatch(name.lower())
        if not match or not any(d.matches(match.group(2)) for d in domains):
            raise Invalid(f"dkim_keys: {name!r} is not selector._domainkey.<one of the partner's domains>", name)
        problem = _record_problem(record) if isinstance(record, str) else "must be a string"
        if problem:
            raise Invalid(f"dkim_keys: the record for {name!r}: {problem}", name)
        keys.append(PinnedKey(name.lower(), record))
    return tuple(keys)


def _record_problem(record: str) -> str:
    """What is wrong with a DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4), or ''."""
    tags = {}
    for tag in filter(None, (t.strip() for t in record.split(";"))):
        name, _, value = tag.partition("=")
        tags[name.strip()] = value.strip()
    if tags.get("v", "DKIM1") != "DKIM1":
        return "v= must be DKIM1"
    algorithm = tags.get("k", "rsa")
    if algorithm not in ("rsa", "ed25519"):
        return f"k={algorithm} is not rsa or ed25519"
    try:
        key = base64.b64decode("".join(tags.get("p", "").split()), validate=True)
    except binascii.Error:
        return "p= is not base64"
    if algorithm == "ed25519" and len(key) != 32:
        return "p= must be a 32-byte ed25519 public key"
    if algorithm == "rsa" and len(key) < 128:
        return "p= is empty or too short for an RSA key"
    return ""


def _room(table: Table, source: Source) -> Room:
    name = table.name()
    rooms = table.patterns("rooms", address_pattern)
    if not rooms:
        raise Invalid("rooms: name at least one room address or pattern", "name")
    otherwise = table.choice("otherwise", Action, (Action.AUTO_DECLINE, Action.HOLD, Action.REJECT))
    return Room(
        name, rooms, source, local=table.flag("local") is not False, domains=table.patterns("domains", domain_pattern),
        max_duration=table.duration("max_duration"), booking_window=table.duration("booking_window"),
        otherwise=otherwise or Action.AUTO_DECLINE,
    )


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


@dataclass
class _Reading:
    """What the files read so far define; a setting keeps the source of the last file that set it."""

    rules: list[Rule] = field(default_factory=list)
    partners: list[Partner] = field(default_factory=list)
    rooms: list[Room] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)
    default: Decision | None = None
    private_events: PrivateEvents = PrivateEvents.BUSY_ONLY
    limits: dict[str, Any] = field(default_factory=dict)
    freebusy: dict[str, Any] = field(default_factory=dict)
    limits_source: Source | None = None

    def add_file(self, path: Path, allowed: tuple[str, ...] = TOP_KEYS) -> None:
        data, lines = read_toml_file(path)
        with located(path, lines, None):
            self._top_level(Table(data, allowed, "a policy file"), path, lines)
        for table, keys, into in (("limits", LIMIT_KEYS, self.limits), ("freebusy", FREEBUSY_KEYS, self.freebusy)):
            if table in data:
                with located(path, lines, table, kind=table):
                    table = Table(data[table], keys, f"[{table}]")
                    into.update({name: get(table, key) for key, (name, get) in keys.items() if key in table.data})
        if "limits" in data:
            self.limits_source = Source(str(path), lines.find("limits"))
        self._sections(data, path, lines, "rule", RULE_KEYS, _rule, self.rules)
        self._sections(data, path, lines, "partner", PARTNER_KEYS, _partner, self.partners)
        self._sections(data, path, lines, "room", ROOM_KEYS, _room, self.rooms)
        self._sections(data, path, lines, "relay", RELAY_KEYS, lambda table, _: relay_of(table), self.relays)

    def _top_level(self, table: Table, path: Path, lines: Lines) -> None:
        default = table.choice("default", Action, DEFAULT_ACTIONS)
        if default is not None:
            self.default = Decision(default, "default", "default", Source(str(path), lines.find(None, key="default")))
        self.private_events = table.choice("private_events", PrivateEvents) or self.private_events
        for kind in ("rule", "partner", "room", "relay"):
            table.tables(kind)

    def _sections(self, data: dict[str, Any], path: Path, lines: Lines, kind: str, keys: tuple[str, ...],
                  parse: Callable[[Table, Source], N], into: list[N]) -> None:
        for index, table in enumerate(data.get(kind, [])):
            name = table.get("name", "") if isinstance(table, dict) else ""
            with located(path, lines, kind, index, kind, str(name) or f"#{index + 1}"):
                item = parse(Table(table, keys, f"each [[{kind}]]"), Source(str(path), lines.find(kind, index)))
                self._check_unique(kind, item.name)
                into.append(item)

    def _check_unique(self, kind: str, name: str) -> None:
        """Rules and rooms share one namespace (a decision names either); partners and relays have their own."""
        if kind == "relay":
            if any(relay.name == name for relay in self.relays):
                raise Invalid(f"relay {name} is defined twice", "name")
            return
        named: list[Partner | Rule | Room] = [*self.partners] if kind == "partner" else [*self.rules, *self.rooms]
        earlier = next((item for item in named if item.name == name), None)
        if earlier is not None:
            raise Invalid(f"the name is already used at {earlier.source}", "name")
        if kind != "partner" and name in RESERVED_NAMES:
            raise Invalid(f"the name {name!r} is reserved", "name")

    def policy(self, files: list[Path]) -> Policy:
        if self.default is None:
            raise SettingError(", ".join(map(str, files)), None, 'no default action: add default = "hold"')
        self._check_partner_names()
        return Policy(
            rules=tuple(self.rules),
            default=self.default,
            partners=tuple(self.partners),
            limits=Limits(self.limits_source or Source(str(files[-1]), 1), **self.limits),
            private_events=self.private_events,
            freebusy=FreeBusy(**self.freebusy),
            rooms=tuple(self.rooms),
        )

    def _check_partner_names(self) -> None:
        names = {p.name for p in self.partners}
        for rule in self.rules:
            wanted = rule.conditions.partner
            unknown = [n for n in wanted if n not in names] if isinstance(wanted, tuple) else []
            if unknown:
                raise SettingError(rule.source.file, rule.source.line, f"no partner named {unknown[0]!r}",
                                  "rule", rule.name)


def policy_files(sources: Iterable[str | Path]) -> list[Path]:
    """The files to read: each source as given, a directory as its ``*.toml`` by name without ``*.example.toml``."""
    paths = [Path(s) for s in sources]
    files: list[Path] = []
    for source in paths:
        if source.is_dir():
            files += sorted(p for p in source.glob("*.toml") if not p.name.endswith(".example.toml"))
        else:
            files.append(source)
    if not files:
        raise SettingError(", ".join(map(str, paths)) or "[policy] files", None, "no policy files")
    return files


@dataclass(frozen=True)
class PolicyFiles:
    """What the policy files define: the policy and the calendar relays."""

    policy: Policy
    relays: tuple[Relay, ...]


def read_policy_files(sources: Iterable[str | Path]) -> PolicyFiles:
    """Read the policy files (see ``policy_files``), each once; raise SettingError on any problem."""
    files = policy_files(sources)
    reading = _Reading()
    for path in files:
        reading.add_file(path)
    return PolicyFiles(reading.policy(files), tuple(reading.relays))


def load_relays(path: str | Path) -> tuple[Relay, ...]:
    """The relays of a file of nothing but ``[[relay]]`` tables, in file order."""
    reading = _Reading()
    reading.add_file(Path(path), allowed=("relay",))
    return tuple(reading.relays)
