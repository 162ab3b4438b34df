"""The ``files`` command: the policy files and the systemd unit that the package ships, listed, shown and copied out.

These are the files an installation needs outside Python (``/etc/reefknot/policies``,
``/etc/systemd/system``). They travel inside the package (``gateway/shipped``, see
``pyproject.toml``), so a wheel alone is enough to set up a host. Nothing here reads the
configuration or the database.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import click

from gateway.cli.base import EX_USAGE, Exit, cli, emit

EX_CANTCREAT = 73  # sysexits(3): an output file cannot be created (it exists, or the directory refuses it)


class Kind(StrEnum):
    POLICY = "policy"
    UNIT = "unit"


FOLDERS = {Kind.POLICY: ("policies", ".toml"), Kind.UNIT: ("systemd", ".service")}

# default.toml and strict.toml are alternatives: a policy directory holding both reads both,
# which is never what anyone meant. So strict.toml is copied only when it is named.
ONLY_WHEN_NAMED = frozenset({"strict.toml"})


@dataclass(frozen=True)
class Shipped:
    """One file the package ships: its name, what it is, and where it is inside the installed package."""

    name: str
    kind: Kind
    source: Traversable

    @property
    def by_default(self) -> bool:
        return self.name not in ONLY_WHEN_NAMED

    def row(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "install": "yes" if self.by_default else "if named",
                "path": str(self.source)}


@dataclass(frozen=True)
class Copy:
    """One file to write: the shipped file and the path it goes to."""

    file: Shipped
    target: Path

    def is_current(self) -> bool:
        return self.target.is_file() and _digest(self.target.read_bytes()) == _digest(self.file.source.read_bytes())


def list_shipped() -> list[Shipped]:
    """Every shipped file, policies first, each kind by name."""
    root = files("gateway") / "shipped"
    found = []
    for kind, (folder, suffix) in FOLDERS.items():
        entries = sorted((root / folder).iterdir(), key=lambda entry: entry.name)
        found += [Shipped(entry.name, kind, entry) for entry in entries if entry.name.endswith(suffix)]
    return found


def find_shipped(name: str) -> Shipped:
    """The shipped file called NAME (or FOLDER/NAME, as in the source tree); exit 64 when there is none."""
    for file in list_shipped():
        if name in (file.name, f"{FOLDERS[file.kind][0]}/{file.name}"):
            return file
    known = ", ".join(file.name for file in list_shipped())
    raise Exit(EX_USAGE, f"no shipped file {name!r}; there are: {known}")


def plan_copies(names: Sequence[str], folders: dict[Kind, Path]) -> list[Copy]:
    """The copies an install makes: the named files, else every file installed by default of each kind given."""
    chosen = [find_shipped(name) for name in names] or [
        file for file in list_shipped() if file.by_default and file.kind in folders
    ]
    for file in chosen:
        if file.kind not in folders:
            option = "--policies" if file.kind is Kind.POLICY else "--unit"
            raise Exit(EX_USAGE, f"{file.name} is a {file.kind} file: say where it goes with {option} DIR")
    return [Copy(file, folders[file.kind] / file.name) for file in dict.fromkeys(chosen)]


def write_copy(copy: Copy) -> None:
    """Write the file whole or not at all: a temporary file beside it, flushed, then renamed over it."""
    copy.target.parent.mkdir(parents=True, exist_ok=True)
    temporary = copy.target.with_name(f".{copy.target.name}.new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # the umask still applies, as for cp
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(copy.file.source.read_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, copy.target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(copy.target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refuse_existing(copies: Iterable[Copy]) -> None:
    """Stop before writing anything when a different file is already where a copy goes."""
    taken = [str(copy.target) for copy in copies if copy.target.exists() and not copy.is_current()]
    if taken:
        raise Exit(EX_CANTCREAT, f"not replacing {', '.join(taken)}: it exists and differs from the shipped "
                                 "file (--force replaces it; nothing was written)")


@cli.group("files", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def shipped_files(ctx: click.Context, as_json: bool) -> None:
    """List, show or install the policy files and the systemd unit the package ships."""
    if ctx.invoked_subcommand is None:
        emit((file.row() for file in list_shipped()), as_json, ["name", "kind", "install", "path"])


@shipped_files.command("show")
@click.argument("name")
def files_show(name: str) -> None:
    """Print one shipped file to stdout, unchanged: NAME as listed (reefknot.service, default.toml)."""
    data = find_shipped(name).source.read_bytes()
    sys.stdout.flush()
    sys.stdout.buffer.write(data)  # bytes, so that a redirect gets the file exactly
    sys.stdout.buffer.flush()


@shipped_files.command("install")
@click.option("--policies", "policy_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="copy the policy files here (e.g. /etc/reefknot/policies)")
@click.option("--unit", "unit_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="copy the systemd unit here (e.g. /etc/systemd/system)")
@click.option("--force", is_flag=True, help="replace files that exist and differ from the shipped ones")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def files_install(policy_dir: Path | None, unit_dir: Path | None, force: bool, names: tuple[str, ...]) -> None:
    """Copy shipped files into DIRs and say, for each, wrote, replaced or unchanged.

    Without NAMEs: every policy file but strict.toml (it replaces default.toml: name it, and
    not default.toml, to use it), and the unit. A file that exists and differs is never
    replaced without --force; then nothing is written and the exit code is 73.
    """
    folders = {kind: path for kind, path in ((Kind.POLICY, policy_dir), (Kind.UNIT, unit_dir)) if path is not None}
    if not folders:
        raise Exit(EX_USAGE, "say where the files go: --policies DIR, --unit DIR, or both")
    copies = plan_copies(names, folders)
    if not force:
        _refuse_existing(copies)
    for copy in copies:
        if copy.is_current():
            click.echo(f"unchanged {copy.target}")
            continue
        verb = "replaced" if copy.target.exists() else "wrote"
        try:
            write_copy(copy)
        except OSError as error:
            raise Exit(EX_CANTCREAT, f"cannot write {copy.target}: {error.strerror}") from error
        click.echo(f"{verb} {copy.target}")
