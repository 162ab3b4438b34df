"""Reading the ``policies/`` TOML files into a Policy; every error names the file, the line and the rule.

Files are read in order (a directory: its ``*.toml`` files by name, ``*.example.toml``
skipped). The rules, partners and rooms of all files form one list each, in that order;
``default``, ``private_events`` and each key of ``[limits]`` and ``[freebusy]`` may be set
again by a later file, which then wins. Unknown keys are errors: a typo must not silently
widen a rule. ``[[relay]]`` tables are left to ``gateway.relays``, so that
``relays.toml`` may sit in the same directory. Deciding is ``gateway.core.policy``.
"""

from __future__ import annotations

import base64
import binascii
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gateway.config import ConfigError
from gateway.core.model import Kind, Method
from gateway.core.policy import (
    COMPONENTS,
    DEFAULT_ACTIONS,
    ROOM_KINDS,
    Action,
    Auth,
    Conditions,
    Decision,
    FreeBusy,
    FreeBusyUrl,
    Glob,
    Limits,
    Partner,
    PinnedKey,
    Policy,
    PrivateEvents,
    Rate,
    Room,
    Rule,
    Source,
    address_pattern,
    domain_pattern,
    slug_pattern,
)

_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_HEADER = re.compile(r"\s*\[\[?\s*([\w\"' .-]+?)\s*\]\]?\s*(#.*)?")
_TOML_LINE = re.compile(r"\(at line (\d+)")
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

E = TypeVar("E", bound=StrEnum)


class PolicyError(ConfigError):
    """A policy that cannot be used: ``file:line: rule 'name': what is wrong``."""

    def __init__(self, file: str, line: int | None, message: str, kind: str = "", name: str = "") -> None:
        where = f"{file}:{line}" if line else file
        subject = f" {kind} '{name}':" if name else f" [{kind}]:" if kind else ""
        super().__init__(f"{where}:{subject} {message}")
        self.file, self.line, self.kind, self.name, self.message = file, line, kind, name, message


class _Invalid(Exception):
    """A bad value; ``key`` says which line of the table to name."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class _Lines:
    """Finds lines in a TOML text, which tomllib does not report: table headers, then keys inside them."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []
        for number, line in enumerate(self.lines, 1):
            match = _HEADER.fullmatch(line)
            if match:
                self.headers.append((number, re.sub(r"\s*\.\s*", ".", match.group(1)).replace('"', "")))

    def find(self, table: str | None, index: int = 0, key: str = "") -> int:
        """The line of ``key`` in the ``index``-th ``[table]`` (None: the top level), else of its header."""
        last = len(self.lines) + 1
        if table is None:
            start, end = 1, next((n for n, _ in self.headers), last)
        else:
            starts = [n for n, name in self.headers if name == table]
            if index >= len(starts):
                return 1
            start = starts[index]
            end = next((n for n, name in self.headers if n > start and not name.startswith(f"{table}.")), last)
        if key:
            assignment = re.compile(rf"\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
            for number in range(start, end):
                if assignment.match(self.lines[number - 1]):
                    return number
            subtable = f"{table}.{key}" if table else key
            return next((n for n, name in self.headers if name == subtable and n >= start), start)
        return start


class _Entry:
    """Typed access to one TOML table whose keys were checked against the allowed ones."""

    def __init__(self, data: Any, allowed: Iterable[str], what: str) -> None:
        if not isinstance(data, dict):
            raise _Invalid(f"{what} must be a table")
        allowed = sorted(allowed)
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise _Invalid(f"unknown key '{unknown[0]}' (expected one of {', '.join(allowed)})", unknown[0])
        self.data: dict[str, Any] = data

    def text(self, key: str) -> str:
        value = self.data.get(key, "")
        if not isinstance(value, str):
            raise _Invalid(f"{key} must be a string", key)
        return value

    def name(self) -> str:
        name = self.text("name")
        if not name:
            raise _Invalid("no name: every rule, partner and room needs one")
        if not _NAME.fullmatch(name):
            raise _Invalid(f"name {name!r} must be kebab-case (lower-case letters, digits, '-')", "name")
        return name

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _Invalid(f"{key} must be a string or a list of strings", key)
        return tuple(values)

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise _Invalid(f"{key} must be true or false", key)
        return value

    def choice(self, key: str, kind: type[E], allowed: Iterable[E] | None = None) -> E | None:
        if key not in self.data:
            return None
        if not isinstance(self.data[key], str):
            raise _Invalid(f"{key} must be a string", key)
        return self.choices(key, kind, allowed)[0]

    def choices(self, key: str, kind: type[E], allowed: Iterable[E] | None = None) -> tuple[E, ...]:
        options = list(kind if allowed is None else allowed)
        by_text = {o.value.lower(): o for o in options}
        unknown = [v for v in self.strings(key) if v.lower() not in by_text]
        if unknown:
            label = key.replace("_", " ")
            raise _Invalid(f"unknown {label} {unknown[0]!r} (expected {', '.join(options)})", key)
        return tuple(by_text[v.lower()] for v in self.strings(key))

    def patterns(self, key: str, parse: Callable[[str], Glob]) -> tuple[Glob, ...]:
        try:
            return tuple(parse(v) for v in self.strings(key))
        except ValueError as error:
            raise _Invalid(f"{key}: {error}", key) from error

    def duration(self, key: str) -> timedelta | None:
        return _duration(self.data[key], key) if key in self.data else None

    def count(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise _Invalid(f"{key} must be a positive whole number", key)
        return value


def _duration(value: Any, key: str) -> timedelta:
    text = value.replace(" ", "") if isinstance(value, str) else ""
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text))
    if not _DURATION.fullmatch(text) or seconds <= 0:
        raise _Invalid(f"bad duration {value!r} (use a number and a unit: 30m, 4h, 90d, 2w)", key)
    return timedelta(seconds=seconds)


def _rate(entry: _Entry, key: str) -> Rate:
    value = entry.data[key]
    count, slash, period = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not slash or not count.strip().isdigit() or int(count) <= 0:
        raise _Invalid(f"bad {key} {value!r} (use COUNT/PERIOD, e.g. \"200/1h\")", key)
    return Rate(int(count), _duration(period.strip(), key))


# Each key of [limits] and [freebusy]: the field it sets and how its value is read.
Getter = Callable[[_Entry, str], Any]
LIMIT_KEYS: dict[str, tuple[str, Getter]] = {
    **{key: (key, _Entry.count) for key in (
        "max_message_bytes", "max_mime_depth", "max_parts", "max_components", "max_attendees")},
    "domain_rate": ("rate", _rate),
    "action": ("action", lambda entry, key: entry.choice(key, Action, (Action.HOLD, Action.REJECT))),
}
FREEBUSY_KEYS: dict[str, tuple[str, Getter]] = {
    "local": ("local", _Entry.flag),
    "domains": ("domains", lambda entry, key: entry.patterns(key, domain_pattern)),
    "url": ("url", lambda entry, key: entry.choice(key, FreeBusyUrl)),
}


def _rule(entry: _Entry, source: Source) -> Rule:
    name = entry.name()
    action = entry.choice("action", Action)
    if action is None:
        raise _Invalid("no action", "name")
    kinds = entry.choices("recipient_kind", Kind)
    if action in (Action.AUTO_ACCEPT, Action.AUTO_DECLINE) and not (kinds and set(kinds) <= set(ROOM_KINDS)):
        raise _Invalid(f"{action} is for rooms: add recipient_kind = [\"room\"] or [\"resource\"]", "action")
    notify = bool(entry.flag("notify_sender"))
    if notify and action is not Action.REJECT:
        raise _Invalid("notify_sender goes with action = \"reject\" only", "notify_sender")
    return Rule(name, _conditions(entry, kinds), action, source, notify, entry.text("description"))


def _conditions(entry: _Entry, kinds: tuple[Kind, ...]) -> Conditions:
    components = tuple(c.upper() for c in entry.strings("component"))
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise _Invalid(f"unknown component {unknown[0]!r} (expected {', '.join(COMPONENTS)})", "component")
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


def _partner(entry: _Entry, source: Source) -> Partner:
    name = entry.name()
    domains = entry.patterns("domains", domain_pattern)
    if not domains:
        raise _Invalid("domains: name at least one domain", "name")
    freebusy = bool(entry.flag("freebusy"))
    token = _token(entry, Path(source.file).parent)
    if token and not freebusy:
        raise _Invalid("a free/busy token needs freebusy = true", "freebusy")
    keys = _pinned_keys(entry.data.get("dkim_keys", {}), domains)
    return Partner(name, domains, source, keys, freebusy, entry.patterns("book_rooms", address_pattern), token)


def _token(entry: _Entry, directory: Path) -> str:
    """The free/busy token, inline or from a file (relative to the policy file's directory)."""
    if "freebusy_token" in entry.data and "freebusy_token_file" in entry.data:
        raise _Invalid("set freebusy_token or freebusy_token_file, not both", "freebusy_token")
    key = "freebusy_token_file" if "freebusy_token_file" in entry.data else "freebusy_token"
    token = entry.text(key)
    if key == "freebusy_token_file":
        path = directory / token
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise _Invalid(f"cannot read {path}: {error.strerror}", key) from error
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise _Invalid(f"{key}: a token needs at least {MIN_TOKEN_LENGTH} characters", key)
    return token


def _pinned_keys(table: Any, domains: tuple[Glob, ...]) -> tuple[PinnedKey, ...]:
    if not isinstance(table, dict):
        raise _Invalid('dkim_keys must be a table of "selector._domainkey.domain" = "v=DKIM1; k=…; p=…"', "dkim_keys")
    keys = []
    for name, record in table.items():
        match = _DKIM_NAME.fullmatch(name.lower())
        if not match or not any(d.matches(match.group(2)) for d in domains):
            raise _Invalid(f"dkim_keys: {name!r} is not selector._domainkey.<one of the partner's domains>", name)
        problem = _record_problem(record) if isinstance(record, str) else "must be a string"
        if problem:
            raise _Invalid(f"dkim_keys: the record for {name!r}: {problem}", name)
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


def _room(entry: _Entry, source: Source) -> Room:
    name = entry.name()
    rooms = entry.patterns("rooms", address_pattern)
    if not rooms:
        raise _Invalid("rooms: name at least one room address or pattern", "name")
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


@contextmanager
def _located(path: Path, lines: _Lines, table: str | None, index: int = 0, kind: str = "",
             name: str = "") -> Iterator[None]:
    """Turns an ``_Invalid`` raised inside into a PolicyError naming the file, the line and the section."""
    try:
        yield
    except _Invalid as error:
        raise PolicyError(str(path), lines.find(table, index, error.key), str(error), kind, name) from error


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
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise PolicyError(str(path), None, f"cannot read: {error.strerror}") from error
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            match = _TOML_LINE.search(str(error))
            raise PolicyError(str(path), int(match.group(1)) if match else None, f"invalid TOML: {error}") from error
        lines = _Lines(text)
        with _located(path, lines, None):
            self._top_level(_Entry(data, TOP_KEYS + OTHER_READERS, "a policy file"), path, lines)
        for table, keys, into in (("limits", LIMIT_KEYS, self.limits), ("freebusy", FREEBUSY_KEYS, self.freebusy)):
            if table in data:
                with _located(path, lines, table, kind=table):
                    entry = _Entry(data[table], keys, f"[{table}]")
                    into.update({name: get(entry, key) for key, (name, get) in keys.items() if key in entry.data})
        if "limits" in data:
            self.limits_source = Source(str(path), lines.find("limits"))
        self._sections(data, path, lines, "rule", RULE_KEYS, _rule, self.rules)
        self._sections(data, path, lines, "partner", PARTNER_KEYS, _partner, self.partners)
        self._sections(data, path, lines, "room", ROOM_KEYS, _room, self.rooms)

    def _top_level(self, entry: _Entry, path: Path, lines: _Lines) -> None:
        default = entry.choice("default", Action, DEFAULT_ACTIONS)
        if default is not None:
            self.default = Decision(default, "default", "default", Source(str(path), lines.find(None, key="default")))
        self.private_events = entry.choice("private_events", PrivateEvents) or self.private_events
        for kind in ("rule", "partner", "room"):
            if not isinstance(entry.data.get(kind, []), list):
                raise _Invalid(f"use [[{kind}]] for each {kind}", kind)

    def _sections(self, data: dict[str, Any], path: Path, lines: _Lines, kind: str, keys: tuple[str, ...],
                  parse: Callable[[_Entry, Source], N], into: list[N]) -> None:
        for index, table in enumerate(data.get(kind, [])):
            name = table.get("name", "") if isinstance(table, dict) else ""
            with _located(path, lines, kind, index, kind, str(name) or f"#{index + 1}"):
                item = parse(_Entry(table, keys, f"each [[{kind}]]"), Source(str(path), lines.find(kind, index)))
                self._check_unique(kind, item.name)
                into.append(item)

    def _check_unique(self, kind: str, name: str) -> None:
        """Rules and rooms share one namespace (a decision names either); partners have their own."""
        named: list[_Named] = [*self.partners] if kind == "partner" else [*self.rules, *self.rooms]
        earlier = next((item for item in named if item.name == name), None)
        if earlier is not None:
            raise _Invalid(f"the name is already used at {earlier.source}", "name")
        if kind != "partner" and name in RESERVED_NAMES:
            raise _Invalid(f"the name {name!r} is reserved", "name")

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
