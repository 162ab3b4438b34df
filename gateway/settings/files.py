"""The files a configuration names: where a relative one is, and whether it can be used. Not what is in them.

A relative path means relative to the configuration file's directory, never to where a
command happens to run, so that ``reefknot serve`` under systemd and ``reefknot
check-config`` from a shell find the same files. Whether a file is there and readable is
asked only by the commands that will read it (``serve``, ``check-config``): a command
that only edits the directory need not be able to read the daemon's private key.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from gateway.settings.reader import Table


class FileKind(StrEnum):
    """What a setting must name; the value is what an error says was expected."""

    FILE = "a readable file"
    DIRECTORY = "a readable directory"


class FileSettings:
    """The file settings of one configuration file: resolved under its directory, and checked when asked."""

    def __init__(self, directory: Path, check: bool) -> None:
        self.directory, self.check = directory, check

    def read(self, table: Table, key: str, kind: FileKind = FileKind.FILE) -> str:
        """``key``'s path, made absolute under the directory; empty when not set.

        With ``check`` it must be ``kind`` and readable, else an error on ``key``'s line.
        """
        given = table.text(key)
        if not given:
            return ""
        path = resolve_path(self.directory, given)
        problem = find_problem(path, kind) if self.check else ""
        if problem:
            raise table.invalid(f"{key}: {path}: {problem} (expected {kind})", key)
        return str(path)


def resolve_path(base: Path, given: str) -> Path:
    """``given`` as written when absolute, else under ``base`` (the configuration's directory)."""
    path = Path(given)
    return path if path.is_absolute() else base / path


def find_problem(path: Path, kind: FileKind) -> str:
    """Why ``path`` cannot be used as ``kind``, in a few words; empty when it can."""
    if kind is FileKind.DIRECTORY:
        return _directory_problem(path)
    try:
        # Opening is the only honest test: access() says yes to root and no to nothing else it knows.
        with path.open("rb"):
            return ""
    except IsADirectoryError:
        return "is a directory"
    except OSError as error:
        return (error.strerror or str(error)).lower()


def _directory_problem(path: Path) -> str:
    if not path.exists():
        return "no such directory"
    if not path.is_dir():
        return "not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return "permission denied"
    return ""
