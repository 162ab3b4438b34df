"""Gettext catalogs with the standard library: find the messages, read .po files, write .mo files.

``python -m gateway.catalogs`` compiles every ``gateway/locale/*/LC_MESSAGES/reefknot.po``
into the ``.mo`` beside it (the ``.mo`` files are committed, so an install needs no
build step); ``--check`` exits 1 when a ``.mo`` is stale or a message used in the code or
the templates has no translation. The ``.mo`` layout is GNU gettext's (no hash table,
which readers do not need). Not for translating anything at run time: see ``templates``.
"""

from __future__ import annotations

import argparse
import ast
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from gateway.adapters.templates import DOMAIN, LOCALE_DIR, PACKAGE_DIR, TEMPLATES_DIR

_MO_MAGIC = 0x950412DE
_CONTEXT_SEPARATOR = "\x04"
_CALLS = {"gettext": (None, 0), "ngettext": (None, 0), "pgettext": (0, 1), "npgettext": (0, 1), "_": (None, 0)}
TRANSLATED_MODULES = ("core/imip/wording.py", "core/imip/text.py", "core/imip/changes.py", "core/imip/people.py")


@dataclass
class Entry:
    """One message of a .po file."""

    msgid: str
    context: str | None = None
    plural: str | None = None
    translations: dict[int, str] = field(default_factory=dict)
    fuzzy: bool = False

    @property
    def key(self) -> str:
        """The message's key in a .mo file: ``context\\x04msgid``, plural forms joined by NUL."""
        base = self.msgid if self.plural is None else f"{self.msgid}\0{self.plural}"
        return base if self.context is None else f"{self.context}{_CONTEXT_SEPARATOR}{base}"

    @property
    def translated(self) -> bool:
        return not self.fuzzy and bool(self.translations) and all(self.translations.values())


def read_po(text: str) -> list[Entry]:
    """The entries of a .po file (obsolete ``#~`` entries skipped)."""
    entries: list[Entry] = []
    current: Entry | None = None
    fuzzy = False
    target: tuple[str, int] = ("", 0)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#,"):
            fuzzy = "fuzzy" in line
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            if current is None:
                raise ValueError(f"line {number}: a string outside any entry")
            _append(current, target, _unquote(line, number))
        else:
            keyword, _, rest = line.partition(" ")
            if keyword == "msgctxt" or (keyword == "msgid" and target[0] != "msgctxt"):
                current = Entry(msgid="", fuzzy=fuzzy)  # a msgid right after its msgctxt continues it
                entries.append(current)
                fuzzy = False
            if current is None:
                raise ValueError(f"line {number}: {keyword} before msgid")
            target = _target(keyword, number)
            _start(current, target, _unquote(rest, number))
    return entries


def _target(keyword: str, number: int) -> tuple[str, int]:
    if keyword in ("msgctxt", "msgid", "msgid_plural", "msgstr"):
        return (keyword, 0)
    if keyword.startswith("msgstr[") and keyword.endswith("]") and keyword[7:-1].isdigit():
        return ("msgstr", int(keyword[7:-1]))
    raise ValueError(f"line {number}: unknown keyword {keyword}")


def _start(entry: Entry, target: tuple[str, int], value: str) -> None:
    kind, index = target
    if kind == "msgctxt":
        entry.context = value
    elif kind == "msgid":
        entry.msgid = value
    elif kind == "msgid_plural":
        entry.plural = value
    else:
        entry.translations[index] = value


def _append(entry: Entry, target: tuple[str, int], value: str) -> None:
    kind, index = target
    if kind == "msgctxt":
        entry.context = (entry.context or "") + value
    elif kind == "msgid":
        entry.msgid += value
    elif kind == "msgid_plural":
        entry.plural = (entry.plural or "") + value
    else:
        entry.translations[index] = entry.translations.get(index, "") + value


def _unquote(text: str, number: int) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"line {number}: expected a quoted string")
    value = ast.literal_eval(text)
    if not isinstance(value, str):
        raise ValueError(f"line {number}: expected a string")
    return value


def compile_mo(entries: list[Entry]) -> bytes:
    """A GNU .mo file of the translated entries (and the header), keys sorted as gettext expects."""
    pairs = sorted(
        (e.key.encode("utf-8"), "\0".join(e.translations[i] for i in sorted(e.translations)).encode("utf-8"))
        for e in entries
        if e.translated
    )
    count = len(pairs)
    originals_at = 7 * 4
    translations_at = originals_at + count * 8
    data_at = translations_at + count * 8
    tables: list[int] = []
    blob = b""
    for key, _ in pairs:
        tables += [len(key), data_at + len(blob)]
        blob += key + b"\0"
    for _, value in pairs:
        tables += [len(value), data_at + len(blob)]
        blob += value + b"\0"
    header = struct.pack("<7I", _MO_MAGIC, 0, count, originals_at, translations_at, 0, data_at)
    return header + struct.pack(f"<{len(tables)}I", *tables) + blob


def python_messages(source: str) -> set[tuple[str | None, str]]:
    """(context, msgid) of every translation call with literal arguments in Python source."""
    found: set[tuple[str | None, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in _CALLS:
            continue
        context_at, msgid_at = _CALLS[name]
        literals = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
        msgid = literals[msgid_at] if len(literals) > msgid_at else None
        if msgid is not None:
            found.add((literals[context_at] if context_at is not None else None, msgid))
    return found


def template_messages(source: str) -> set[tuple[str | None, str]]:
    """(None, msgid) of every ``_()`` and ``{% trans %}`` in a Jinja template."""
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    found: set[tuple[str | None, str]] = set()
    for _line, _function, message in env.extract_translations(source):  # type: ignore[attr-defined]
        for text in message if isinstance(message, tuple) else (message,):
            if text:
                found.add((None, text))
    return found


def used_messages() -> set[tuple[str | None, str]]:
    """Every message the shipped code and templates translate."""
    found: set[tuple[str | None, str]] = set()
    for module in TRANSLATED_MODULES:
        found |= python_messages((PACKAGE_DIR / module).read_text(encoding="utf-8"))
    for template in sorted(TEMPLATES_DIR.iterdir()):
        found |= template_messages(template.read_text(encoding="utf-8"))
    return found


def catalog_files() -> list[Path]:
    return sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def check(po: Path) -> list[str]:
    """Problems with one catalog: a stale .mo, a message used but missing or untranslated."""
    entries = read_po(po.read_text(encoding="utf-8"))
    problems = []
    mo = po.with_suffix(".mo")
    if not mo.exists() or mo.read_bytes() != compile_mo(entries):
        problems.append(f"{mo}: stale; run python -m gateway.catalogs")
    translated = {(e.context, e.msgid) for e in entries if e.translated}
    for context, msgid in sorted(used_messages() - translated, key=lambda m: (m[0] or "", m[1])):
        problems.append(f"{po}: no translation for {msgid!r}" + (f" (context {context})" if context else ""))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.catalogs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale or incomplete catalogs; change nothing")
    args = parser.parse_args(argv)
    problems: list[str] = []
    for po in catalog_files():
        if args.check:
            problems += check(po)
        else:
            po.with_suffix(".mo").write_bytes(compile_mo(read_po(po.read_text(encoding="utf-8"))))
            print(f"compiled {po.with_suffix('.mo')}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
