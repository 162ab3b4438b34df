"""The one reader of what the operator writes: TOML files, typed tables, and errors with file, line and key.

tomllib gives values but no line numbers: ``Lines`` finds the line of a table or a key.
``Table`` reads one table's values by type (text, numbers, seconds, durations such as
``4h``, rates such as ``200/1h``, enums, patterns, sub-tables) and refuses unknown keys,
so that a typo never silently widens a rule. A bad value raises ``Invalid`` naming its
key; ``located`` turns it into a ``SettingError`` naming file, line and section. Not for
what the values mean: that is the configuration's and the policy's to say.
"""

from __future__ import annotations

import difflib

import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from gateway.core.trust.patterns import Glob
from gateway.core.trust.policy import Rate

_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_HEADER = re.compile(r"\s*\[\[?\s*([\w\"' .-]+?)\s*\]\]?\s*(#.*)?")
_TOML_LINE = re.compile(r"\(at line (\d+)")

E = TypeVar("E", bound=StrEnum)


class ConfigError(Exception):
    """A configuration or a policy that cannot be used; the message says where and what is wrong."""


class Invalid(ConfigError):
    """A bad value; ``key`` says which line of the table to name when the file is known."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class SettingError(ConfigError):
    """A setting in a file that cannot be used: ``file:line: rule 'name': what is wrong``."""

    def __init__(self, file: str, line: int | None, message: str, kind: str = "", name: str = "") -> None:
        where = f"{file}:{line}" if line else file
        subject = f" {kind} '{name}':" if name else f" [{kind}]:" if kind else ""
        super().__init__(f"{where}:{subject} {message}")
        self.file, self.line, self.kind, self.name, self.message = file, line, kind, name, message


class Lines:
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


class Table:
    """Typed access to one TOML table whose keys were checked against the allowed ones."""

    def __init__(self, data: Any, allowed: Iterable[str], what: str, label: str = "") -> None:
        self.label = label  # prefixed to every error, e.g. "[smtp]"
        if not isinstance(data, dict):
            raise self.invalid(f"{what} must be a table")
        allowed = sorted(allowed)
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            close = difflib.get_close_matches(unknown[0], allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise self.invalid(f"unknown key '{unknown[0]}' ({hint}expected one of {', '.join(allowed)})", unknown[0])
        self.data: dict[str, Any] = data

    def invalid(self, message: str, key: str = "") -> Invalid:
        """The error for a bad value of ``key``, with the table's label."""
        return Invalid(f"{self.label} {message}" if self.label else message, key)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self.invalid(f"{key} must be a string", key)
        return value

    def name(self) -> str:
        name = self.text("name")
        if not name:
            raise self.invalid("no name: every rule, partner, room and relay needs one")
        if not _NAME.fullmatch(name):
            raise self.invalid(f"name {name!r} must be kebab-case (lower-case letters, digits, '-')", "name")
        return name

    def strings(self, key: str) -> tuple[str, ...]:
        """A string or a list of strings, as a tuple."""
        value = self.data.get(key, [])
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise self.invalid(f"{key} must be a string or a list of strings", key)
        return tuple(values)

    def string_list(self, key: str) -> tuple[str, ...]:
        """A list of strings, strictly: where one string would more likely be a mistake than a list of one."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.invalid(f"{key} must be a list of strings", key)
        return tuple(value)

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.invalid(f"{key} must be true or false", key)
        return value

    def choice(self, key: str, kind: type[E], allowed: Iterable[E] | None = None) -> E | None:
        if key not in self.data:
            return None
        if not isinstance(self.data[key], str):
            raise self.invalid(f"{key} must be a string", key)
        return self.choices(key, kind, allowed)[0]

    def choices(self, key: str, kind: type[E], allowed: Iterable[E] | None = None) -> tuple[E, ...]:
        options = list(kind if allowed is None else allowed)
        by_text = {o.value.lower(): o for o in options}
        unknown = [v for v in self.strings(key) if v.lower() not in by_text]
        if unknown:
            label = key.replace("_", " ")
            raise self.invalid(f"unknown {label} {unknown[0]!r} (expected {', '.join(options)})", key)
        return tuple(by_text[v.lower()] for v in self.strings(key))

    def patterns(self, key: str, parse: Callable[[str], Glob]) -> tuple[Glob, ...]:
        try:
            return tuple(parse(v) for v in self.strings(key))
        except ValueError as error:
            raise self.invalid(f"{key}: {error}", key) from error

    def duration(self, key: str) -> timedelta | None:
        try:
            return parse_duration(self.data[key], key) if key in self.data else None
        except Invalid as error:
            raise self.invalid(str(error), key) from error

    def count(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise self.invalid(f"{key} must be a positive whole number", key)
        return value

    def whole(self, key: str, default: int, low: int, high: int) -> int:
        """A whole number from ``low`` to ``high``."""
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.invalid(f"{key}: {value!r} is not a number from {low} to {high}", key)
        return value

    def seconds(self, key: str, default: float, most: float | None = None) -> float:
        """A number of seconds above 0 (and at most ``most``)."""
        value = self.data.get(key, default)
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
                or (most is not None and value > most)):
            bound = f", at most {most:g}" if most is not None else ""
            raise self.invalid(f"{key}: {value!r} is not a number of seconds above 0{bound}", key)
        return float(value)

    def table(self, key: str, allowed: Iterable[str], label: str = "") -> Table:
        """The sub-table ``key`` (empty when absent), its errors labelled ``label`` (else ``[key]``)."""
        label = label or f"[{key}]"
        return Table(self.data.get(key, {}), allowed, label, label)

    def tables(self, key: str) -> list[Any]:
        """The entries of the array of tables ``[[key]]``, each to be read as a Table by its reader."""
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.invalid(f"use [[{key}]] for each {key}", key)
        return value


def parse_duration(value: Any, key: str) -> timedelta:
    text = value.replace(" ", "") if isinstance(value, str) else ""
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text))
    if not _DURATION.fullmatch(text) or seconds <= 0:
        raise Invalid(f"{key}: bad duration {value!r} (use a number and a unit: 30m, 4h, 90d, 2w)", key)
    return timedelta(seconds=seconds)


def parse_rate(table: Table, key: str) -> Rate:
    value = table.data[key]
    count, slash, period = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not slash or not count.strip().isdigit() or int(count) <= 0:
        raise Invalid(f"bad {key} {value!r} (use COUNT/PERIOD, e.g. \"200/1h\")", key)
    return Rate(int(count), parse_duration(period.strip(), key))


@contextmanager
def located(path: Path | str, lines: Lines, table: str | None, index: int = 0, kind: str = "",
            name: str = "") -> Iterator[None]:
    """Turns an ``Invalid`` raised inside into a SettingError naming the file, the line and the section."""
    try:
        yield
    except Invalid as error:
        raise SettingError(str(path), lines.find(table, index, error.key), str(error), kind, name) from error


def read_toml_file(path: Path) -> tuple[dict[str, Any], Lines]:
    """A file's tables and the finder of its lines; SettingError when it cannot be read or is not TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingError(str(path), None, f"cannot read: {error.strerror}") from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = _TOML_LINE.search(str(error))
        raise SettingError(str(path), int(match.group(1)) if match else None, f"invalid TOML: {error}") from error
    return data, Lines(text)
