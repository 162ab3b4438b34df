"""The ``[database] url`` a configuration names: a supported scheme, an installed driver, and where an SQLite file is.

Only SQLite (the embedded default) and PostgreSQL (the shared store) are supported; a bare
``postgresql://`` means the psycopg driver that ``reefknot[postgresql]`` installs, not
SQLAlchemy's own default (psycopg2). Whether the driver imports is asked here, when the
configuration is read, so that a missing one is a configuration error with its line and
what to install rather than a traceback from the first connection. Not for connecting.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from gateway.settings.reader import Invalid

PSYCOPG = "postgresql+psycopg"
# scheme -> (the module that must import, what to install when it does not)
DRIVERS = {
    "sqlite": ("sqlite3", "a Python built with sqlite3"),
    "sqlite+pysqlite": ("sqlite3", "a Python built with sqlite3"),
    "postgresql": ("psycopg", "pip install 'reefknot[postgresql]'"),
    PSYCOPG: ("psycopg", "pip install 'reefknot[postgresql]'"),
    "postgresql+psycopg2": ("psycopg2", f"pip install psycopg2, or use {PSYCOPG}:// after pip install "
                                        "'reefknot[postgresql]'"),
}
IN_MEMORY = ("", ":memory:")


def read_database_url(url: str, base: Path | None) -> str:
    """The URL to open: its scheme checked, ``postgresql://`` made explicit, a relative SQLite file under ``base``.

    ``base`` is the configuration file's directory; None leaves a relative SQLite file in
    the working directory (the built-in default). Raises ``Invalid`` for the key ``url``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in DRIVERS:
        raise Invalid(f"url: {_shown(url)} is not a supported database (expected sqlite:///PATH or "
                      f"{PSYCOPG}://USER@HOST/DATABASE; {', '.join(DRIVERS)})", "url")
    scheme = scheme.lower()
    check_driver(scheme)
    if scheme == "postgresql":
        return f"{PSYCOPG}://{rest}"
    if scheme.startswith("sqlite"):
        return f"{scheme}://{_sqlite_location(rest, base)}"
    return f"{scheme}://{rest}"


def check_driver(scheme: str) -> None:
    """Invalid naming what to install when the scheme's driver does not import."""
    module, install = DRIVERS[scheme]
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise Invalid(f"url: {scheme}:// needs the {module} driver, which cannot be imported ({error}); "
                      f"install it: {install}", "url") from error


def _sqlite_location(rest: str, base: Path | None) -> str:
    """What follows ``sqlite://``: ``/PATH`` (three slashes: relative, four: absolute), or nothing for memory."""
    if not rest:
        return rest
    if not rest.startswith("/"):
        raise Invalid(f"url: sqlite://{rest} has a host; an SQLite URL is sqlite:///PATH", "url")
    path, query, options = rest[1:].partition("?")
    if path in IN_MEMORY or path.startswith("file:") or base is None or Path(path).is_absolute():
        return rest
    return f"/{base / path}{query}{options}"


def _shown(url: str) -> str:
    """The URL without its password, for an error line that may end up in a log."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return repr(url)
    return repr(f"{scheme}://{credentials.partition(':')[0]}:***@{host}")
