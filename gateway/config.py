"""Reefknot's configuration: one TOML file, validated into frozen values with built-in defaults.

Lookup order: ``--config FILE``, else ``$REEFKNOT_CONFIG``, else ``./reefknot.toml`` when
present, else the defaults (an SQLite file ``reefknot.db`` in the working directory,
SMTP on 127.0.0.1:10025, LMTP on 127.0.0.1:10024, HTTP on 127.0.0.1:8025).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "REEFKNOT_CONFIG"
LOCAL_FILE = "reefknot.toml"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and the setting."""


@dataclass(frozen=True)
class Listener:
    """Where a listener binds: a TCP host and port, or a unix socket path."""

    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str, setting: str) -> Listener:
        if text.startswith("unix:"):
            return cls(path=text[5:])
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{setting}: {text!r} is not HOST:PORT or unix:PATH")
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ImapAccount:
    host: str
    username: str
    password_file: str = ""
    port: int = 993
    security: str = "tls"  # tls, starttls or none
    folder: str = "INBOX"
    processed_folder: str = "Calendar/Processed"


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    key_file: str


@dataclass(frozen=True)
class Config:
    database_url: str = "sqlite:///reefknot.db"
    smtp: tuple[Listener, ...] = (Listener("127.0.0.1", 10025),)
    lmtp: tuple[Listener, ...] = (Listener("127.0.0.1", 10024),)
    imap: tuple[ImapAccount, ...] = ()
    smarthost: Listener = Listener("127.0.0.1", 25)
    reply_domain: str = ""
    dkim: DkimKey | None = None
    http: Listener = Listener("127.0.0.1", 8025)
    public_url: str = ""
    policy_files: tuple[str, ...] = ()
    source: str = "built-in defaults"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def find_config_file(explicit: str | None) -> Path | None:
    """The configuration file to read, by the documented lookup order."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    local = Path(LOCAL_FILE)
    return local if local.exists() else None


def load_config(explicit: str | None = None) -> Config:
    """Read and validate the configuration; raise ConfigError naming what is wrong."""
    path = find_config_file(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from error
    try:
        return _from_toml(data, str(path))
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from error


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _listeners(data: dict[str, Any], name: str, default: tuple[Listener, ...]) -> tuple[Listener, ...]:
    section = _section(data, name)
    if "listen" not in section:
        return default
    values = section["listen"]
    values = [values] if isinstance(values, str) else values
    return tuple(Listener.parse(str(v), f"[{name}] listen") for v in values)


def _from_toml(data: dict[str, Any], source: str) -> Config:
    database = _section(data, "database")
    outbound = _section(data, "outbound")
    dkim = _section(outbound, "dkim") if "dkim" in outbound else None
    http = _section(data, "http")
    policy = _section(data, "policy")
    imap = data.get("imap", [])
    if not isinstance(imap, list):
        raise ConfigError("[[imap]] must be an array of tables")
    defaults = Config()
    return Config(
        database_url=str(database.get("url", defaults.database_url)),
        smtp=_listeners(data, "smtp", defaults.smtp),
        lmtp=_listeners(data, "lmtp", defaults.lmtp),
        imap=tuple(ImapAccount(**entry) for entry in imap),
        smarthost=Listener.parse(str(outbound.get("smarthost", defaults.smarthost)), "[outbound] smarthost"),
        reply_domain=str(outbound.get("reply_domain", "")),
        dkim=DkimKey(**dkim) if dkim else None,
        http=Listener.parse(str(http.get("listen", defaults.http)), "[http] listen"),
        public_url=str(http.get("public_url", "")),
        policy_files=tuple(str(p) for p in policy.get("files", [])),
        source=source,
        raw=data,
    )
