"""Assembling a Policy from the ``policies/`` TOML files; every error names the file, the line and the rule.

Files are read in order (a directory: its ``*.toml`` files by name, ``*.example.toml``
skipped). The rules, partners and rooms of all files form one list each, in that order;
``default``, ``private_events`` and each key of ``[limits]`` and ``[freebusy]`` may be set
again by a later file, which then wins. Unknown keys are errors: a typo must not silently
widen a rule. ``[[relay]]`` tables are left to ``gateway.relays``, so that
``relays.toml`` may sit in the same directory. Reading one file's values, with file and
line in errors, is ``gateway.policyfile``; deciding is ``gateway.core.trust.policy``.
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
from gateway.policyfile import (
    Entry,
    Invalid,
    Lines,
    located,
    parse_rate,
    read_policy_file,
)
from gateway.policyfile import PolicyError as PolicyError

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
TOP_KEYS = ("default", "private_events", "limits", "freebusy", "rule", "partner", "room")
OTHER_READERS = ("relay",)  # [[relay]]: calendar relays, read by gateway.relays from the same files

# Each key of [limits] and [freebusy]: the field it sets and how its value is read.
Getter = Callable[[Entry, str], Any]
LIMIT_KEYS: dict[str, tuple[str, Getter]] = {
    **{key: (key, Entry.count) for key in (
        "max_message_bytes", "max_mime_depth", "max_parts", "max_components", "max_attendees")},
    "domain_rate": ("rate", parse_rate),
    "action": ("action", lambda entry, key: entry.choice(key, Action, (Action.HOLD, Action.REJECT))),
}
FREEBUSY_KEYS: dict[str, tuple[str, Getter]] = {
    "local": ("local", Entry.flag),
    "domains": ("domains", lambda entry, key: entry.patterns(key, domain_pattern)),
    "url": ("url", lambda entry, key: entry.choice(key, FreeBusyUrl)),
}


def _rule(entry: Entry, source: Source) -> Rule:
    name = entry.name()
    action = entry.choice("action", Action)
    if action is None:
        raise Invalid("no action", "name")
    kinds = entry.choices("recipient_kind", Kind)
    if action in (Action.AUTO_ACCEPT, Action.AUTO_DECLINE) and not (kinds and set(kinds) <= set(ROOM_KINDS)):
        raise Invalid(f"{action} is for rooms: add recipient_kind = [\"room\"] or [\"resource\"]", "action")
    notify = bool(entry.flag("notify_sender"))
    if notify and action is not Action.REJECT:
        raise Invalid("notify_sender goes with action = \"reject\" only", "notify_sender")
    return Rule(name, _conditions(entry, kinds), action, source, notify, entry.text("description"))


def _conditions(entry: Entry, kinds: tuple[Kind, ...]) -> Conditions:
    components = tuple(c.upper() for c in entry.strings("component"))
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise Invalid(f"unknown component {unknown[0]!r} (expected {', '.join(COMPONENTS)})", "component")
    partner = entry.data.get("partner")
    return Conditions(
        method=tuple(str(m) for m in entry.choices("method", Method)),
        component=components,
        sender_domain=entry.patterns("sender_domain", domain_pattern),
        sender=entry.patterns("sender", address_pattern),
        recipient=entry.patterns("recipient", address_pattern),
        recipient_kind=kinds,
        auth=entry.choices("auth", Auth),
        authority=entry.patterns("authority", slug_pattern),
        partner=partner if partner is None or isinstance(partner, bool) else entry.strings("partner"),
        sender_known=entry.flag("sender_known"),
        sender_local=entry.flag("sender_local"),
        noise=entry.flag("noise"),
    )


def _partner(entry: Entry, source: Source) -> Partner:
    name = entry.name()
    domains = entry.patterns("domains", domain_pattern)
    if not domains:
        raise Invalid("domains: name at least one domain", "name")
    freebusy = bool(entry.flag("freebusy"))
    token = _token(entry, Path(source.file).parent)
    if token and not freebusy:
        raise Invalid("a free/busy token needs freebusy = true", "freebusy")
    keys = _pinned_keys(entry.data.get("dkim_keys", {}), domains)
    return Partner(name, domains, source, keys, freebusy, entry.patterns("book_rooms", address_pattern), token)


def _token(entry: Entry, directory: Path) -> str:
    """The free/busy token, inline or from a file (relative to the policy file's directory)."""
    if "freebusy_token" in entry.data and "freebusy_token_file" in entry.data:
        raise Invalid("set freebusy_token or freebusy_token_file, not both", "freebusy_token")
    key = "freebusy_token_file" if "freebusy_token_file" in entry.data else "freebusy_token"
    token = entry.text(key)
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


def _room(entry: Entry, source: Source) -> Room:
    name = entry.name()
    rooms = entry.patterns("rooms", address_pattern)
    if not rooms:
        raise Invalid("rooms: name at least one room address or pattern", "name")
    otherwise = entry.choice("otherwise", Action, (Action.AUTO_DECLINE, Action.HOLD, Action.REJECT))
    return Room(
        name, rooms, source, local=entry.flag("local") is not False, domains=entry.patterns("domains", domain_pattern),
        max_duration=entry.duration("max_duration"), booking_window=entry.duration("booking_window"),
        otherwise=otherwise or Action.AUTO_DECLINE,
    )


class _Named(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def source(self) -> Source: ...


N = TypeVar("N", bound=_Named)


@dataclass
class _Reading:
    """What the files read so far define; a setting keeps the source of the last file that set it."""

    rules: list[Rule] = field(default_factory=list)
    partners: list[Partner] = field(default_factory=list)
    rooms: list[Room] = field(default_factory=list)
    default: Decision | None = None
    private_events: PrivateEvents = PrivateEvents.BUSY_ONLY
    limits: dict[str, Any] = field(default_factory=dict)
    freebusy: dict[str, Any] = field(default_factory=dict)
    limits_source: Source | None = None

    def add_file(self, path: Path) -> None:
        data, lines = read_policy_file(path)
        with located(path, lines, None):
            self._top_level(Entry(data, TOP_KEYS + OTHER_READERS, "a policy file"), path, lines)
        for table, keys, into in (("limits", LIMIT_KEYS, self.limits), ("freebusy", FREEBUSY_KEYS, self.freebusy)):
            if table in data:
                with located(path, lines, table, kind=table):
                    entry = Entry(data[table], keys, f"[{table}]")
                    into.update({name: get(entry, key) for key, (name, get) in keys.items() if key in entry.data})
        if "limits" in data:
            self.limits_source = Source(str(path), lines.find("limits"))
        self._sections(data, path, lines, "rule", RULE_KEYS, _rule, self.rules)
        self._sections(data, path, lines, "partner", PARTNER_KEYS, _partner, self.partners)
        self._sections(data, path, lines, "room", ROOM_KEYS, _room, self.rooms)

    def _top_level(self, entry: Entry, path: Path, lines: Lines) -> None:
        default = entry.choice("default", Action, DEFAULT_ACTIONS)
        if default is not None:
            self.default = Decision(default, "default", "default", Source(str(path), lines.find(None, key="default")))
        self.private_events = entry.choice("private_events", PrivateEvents) or self.private_events
        for kind in ("rule", "partner", "room"):
            if not isinstance(entry.data.get(kind, []), list):
                raise Invalid(f"use [[{kind}]] for each {kind}", kind)

    def _sections(self, data: dict[str, Any], path: Path, lines: Lines, kind: str, keys: tuple[str, ...],
                  parse: Callable[[Entry, Source], N], into: list[N]) -> None:
        for index, table in enumerate(data.get(kind, [])):
            name = table.get("name", "") if isinstance(table, dict) else ""
            with located(path, lines, kind, index, kind, str(name) or f"#{index + 1}"):
                item = parse(Entry(table, keys, f"each [[{kind}]]"), Source(str(path), lines.find(kind, index)))
                self._check_unique(kind, item.name)
                into.append(item)

    def _check_unique(self, kind: str, name: str) -> None:
        """Rules and rooms share one namespace (a decision names either); partners have their own."""
        named: list[_Named] = [*self.partners] if kind == "partner" else [*self.rules, *self.rooms]
        earlier = next((item for item in named if item.name == name), None)
        if earlier is not None:
            raise Invalid(f"the name is already used at {earlier.source}", "name")
        if kind != "partner" and name in RESERVED_NAMES:
            raise Invalid(f"the name {name!r} is reserved", "name")

    def policy(self, files: list[Path]) -> Policy:
        if self.default is None:
            raise PolicyError(", ".join(map(str, files)), None, 'no default action: add default = "hold"')
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
                raise PolicyError(rule.source.file, rule.source.line, f"no partner named {unknown[0]!r}",
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
        raise PolicyError(", ".join(map(str, paths)) or "[policy] files", None, "no policy files")
    return files


def load_policy(sources: Iterable[str | Path]) -> Policy:
    """Read the policy files (see ``policy_files``) into one Policy; raise PolicyError on any problem."""
    files = policy_files(sources)
    reading = _Reading()
    for path in files:
        reading.add_file(path)
    return reading.policy(files)


class PolicyHolder:
    """The running policy: loaded at start (an error raises), reloaded on SIGHUP (an error keeps the old one)."""

    def __init__(self, sources: Iterable[str | Path]) -> None:
        self.sources = tuple(sources)
        self.current = load_policy(self.sources)
        self.error: PolicyError | None = None

    def reload(self, sources: Iterable[str | Path] | None = None) -> bool:
        """Read the files again (or ``sources`` instead); False, with ``error`` set, when they are invalid."""
        wanted = self.sources if sources is None else tuple(sources)
        try:
            policy = load_policy(wanted)
        except PolicyError as error:
            self.error = error
            return False
        self.current, self.sources, self.error = policy, wanted, None
        return True
