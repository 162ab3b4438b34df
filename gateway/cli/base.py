"""The ``reefknot`` command's shared parts: the group, its context, exit codes, output.

Exit codes follow sysexits(3): 0 done, 64 usage, 65 bad input data (also a message over the
size limit: a permanent failure that an MTA's pipe bounces), 71 cannot listen,
75 try again later (EX_TEMPFAIL, what an MTA pipe transport retries), 78 configuration.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import OperationalError

from gateway.settings.config import Config, ConfigError, load_config
from gateway.core.itip.edits import EditError
from gateway.service.trust import Trust, load_trust
from gateway.store import directory
from gateway.store.db import Database, SchemaOutdated
from gateway.store.directory import DirectoryError, PrincipalRef
from gateway.store.intake import IntakeNotFound
from gateway.store.outbox import OutboxNotFound

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_OSERR, EX_TEMPFAIL, EX_CONFIG = 64, 65, 67, 71, 75, 78
F = TypeVar("F", bound=Callable[..., Any])


class Exit(Exception):
    """Leave the command with a sysexits code and a message on stderr.

    With an RFC 3463 ``status`` the message line starts with it (``5.3.4 message too
    large``): Postfix's pipe(8) then reports that code instead of the exit code's.
    """

    def __init__(self, code: int, message: str, *, status: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def line(self) -> str:
        return f"{self.status} {self}" if self.status else f"reefknot: {self}"


class Context:
    """What every command shares: the configuration and, on first use, the database."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None
        self._db: Database | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = self._load_config(check_files=False)
        return self._config

    def check_files(self) -> Config:
        """Read the configuration with every file it names found and readable (serve, check-config): exit 78."""
        self._config = self._load_config(check_files=True)
        return self._config

    def _load_config(self, *, check_files: bool) -> Config:
        try:
            return load_config(self.config_path, check_files=check_files)
        except ConfigError as error:
            raise Exit(EX_CONFIG, str(error)) from error

    def database(self, *, prepare: bool = True) -> Database:
        if self._db is None:
            if self.config.source == Config.source:  # no file was read: the database is wherever this runs
                click.echo(f"reefknot: no configuration file; built-in defaults, database "
                           f"{self.config.database_url} (in {Path.cwd()})", err=True)
            self._db = Database(self.config.database_url)
            if prepare:
                try:
                    self._db.ensure_schema()
                except SchemaOutdated as error:
                    raise Exit(EX_CONFIG, str(error)) from error
        return self._db

    def trust(self) -> Trust:
        """The policy and the sender checks the configuration names (a bad policy file: exit 78)."""
        try:
            return load_trust(self.config)
        except ConfigError as error:
            raise Exit(EX_CONFIG, str(error)) from error

    def principal(self, session: Any, address: str) -> PrincipalRef:
        found = directory.resolve(session, address)
        if found is None:
            raise Exit(EX_DATAERR, f"no local principal {address}")
        return found


def guarded(function: F) -> F:
    """Turn expected failures into exit codes; a database that is down is a temporary failure."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except OperationalError as error:
            raise Exit(EX_TEMPFAIL, f"database unavailable: {error.orig}") from error
        except (DirectoryError, IntakeNotFound, OutboxNotFound) as error:
            raise Exit(EX_DATAERR, str(error)) from error
        except EditError as error:
            raise Exit(EX_DATAERR, str(error)) from error

    return wrapper  # type: ignore[return-value]


def emit(rows: Iterable[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    """Print rows as JSON lines, or as an aligned table."""
    rows = list(rows)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str, ensure_ascii=False))
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for line in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())


PAGE = 1000  # rows a listing prints unless --limit says otherwise


def page_options(function: F) -> F:
    """``--limit N`` and ``--after ID`` for a listing that goes by id, oldest first."""
    function = click.option("--after", "after_id", type=click.IntRange(min=0), default=0, metavar="ID",
                            help="only rows with an id above ID (the next page)")(function)
    return click.option("--limit", type=click.IntRange(min=1), default=PAGE, metavar="N",
                        help=f"at most N rows (default {PAGE})")(function)


def emit_more(more: int, last_id: int, as_json: bool) -> None:
    """Say on stderr how many rows a page left out and how to ask for them; a listing is never cut silently."""
    if not more:
        return
    if as_json:
        click.echo(json.dumps({"more": more, "after": last_id}), err=True)
    else:
        click.echo(f"reefknot: {more} more; the next page: --after {last_id}", err=True)


@click.group()
@click.version_option(package_name="reefknot", prog_name="reefknot", message="%(prog)s %(version)s")
@click.option("--config", "config_path", metavar="FILE", help="configuration file (else $REEFKNOT_CONFIG, ./reefknot.toml)")
@click.option("-v", "--verbose", is_flag=True, help="log what happens to stderr")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Reefknot: calendar scheduling over email (iMIP, iTIP)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(config_path)


pass_context = click.make_pass_decorator(Context)
