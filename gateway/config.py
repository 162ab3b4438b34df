"""Reefknot's configuration: one TOML file, validated into frozen values with built-in defaults.

Lookup order: ``--config FILE``, else ``$REEFKNOT_CONFIG``, else ``./reefknot.toml`` when
present, else the defaults (an SQLite file ``reefknot.db`` in the working directory,
SMTP on 127.0.0.1:10025, LMTP on 127.0.0.1:10024, HTTP on 127.0.0.1:8025).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import tomllib
from dataclasses import dataclass, field, fields
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


IMAP_SECURITY = ("tls", "starttls", "none")
IMAP_CREDENTIALS = ("password_file", "password_command", "xoauth2_token_command")
MAX_IDLE_TIMEOUT = 600.0  # NAT gateways drop silent connections; RFC 2177 allows up to 29 min


@dataclass(frozen=True)
class ImapAccount:
    """One ``[[imap]]`` mailbox to poll; exactly one of the three credential settings is set.

    A command is a list of arguments, or a string split like a shell would (no shell
    runs); its standard output, stripped, is the password or the OAuth2 access token.
    """

    host: str
    username: str
    password_file: str = ""
    password_command: tuple[str, ...] = ()
    xoauth2_token_command: tuple[str, ...] = ()
    port: int = 993
    security: str = "tls"  # tls (implicit, port 993), starttls or none (port 143)
    ca_file: str = ""
    folder: str = "INBOX"
    processed_folder: str = "Calendar/Processed"
    idle_timeout: float = MAX_IDLE_TIMEOUT
    poll_interval: float = 60.0  # for servers without IDLE
    recipients: tuple[str, ...] = ()  # fixed envelope recipients; none: the local principals the mail names

    @classmethod
    def from_toml(cls, entry: dict[str, Any], setting: str = "[[imap]]") -> ImapAccount:
        values = dict(entry)
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"{setting}: unknown setting {', '.join(unknown)}")
        for name in ("password_command", "xoauth2_token_command"):
            if name in values:
                values[name] = _command(values[name], f"{setting} {name}")
        if "recipients" in values:
            values["recipients"] = tuple(str(a) for a in values["recipients"])
        security = str(values.get("security", "tls"))
        if security not in IMAP_SECURITY:
            raise ConfigError(f"{setting} security: {security!r} is not one of {', '.join(IMAP_SECURITY)}")
        values.setdefault("port", 993 if security == "tls" else 143)
        account = cls(**values)
        account.validate(setting)
        return account

    def validate(self, setting: str) -> None:
        if not self.host or not self.username:
            raise ConfigError(f"{setting}: host and username are required")
        given = [name for name in IMAP_CREDENTIALS if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError(f"{setting} {self.username}: set exactly one of {', '.join(IMAP_CREDENTIALS)}")
        if not 0 < self.idle_timeout <= MAX_IDLE_TIMEOUT:
            raise ConfigError(f"{setting} idle_timeout: must be more than 0 and at most {MAX_IDLE_TIMEOUT:g} s")
        if self.poll_interval <= 0:
            raise ConfigError(f"{setting} poll_interval: must be more than 0 s")
        if not self.processed_folder or self.processed_folder == self.folder:
            raise ConfigError(f"{setting} processed_folder: must be set and differ from folder")

    @property
    def name(self) -> str:
        """The mailbox as logs name it."""
        return f"imap://{self.username}@{self.host}:{self.port}/{self.folder}"


def _command(value: Any, setting: str) -> tuple[str, ...]:
    words = shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
    if not words:
        raise ConfigError(f"{setting}: empty command")
    return tuple(words)


INTAKE_MODES = ("transport", "copy")
INTAKE_SETTINGS = ("listen", "mode", "max_message_size", "tls_cert", "tls_key", "allowed_networks", "hostname")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class IntakeOptions:
    """How an SMTP or LMTP listener treats its clients (``[smtp]``/``[lmtp]`` besides ``listen``).

    ``mode``: ``transport`` (Reefknot is the MTA's transport for local principals and
    refuses unknown recipients with 550 5.1.1) or ``copy`` (the MTA sends Reefknot a copy
    of calendar mail; every recipient is accepted). ``allowed_networks``: the client
    networks that may connect; empty, anyone who reaches the port.
    """

    mode: str = "transport"
    max_message_size: int = 25 * 2**20
    tls_cert: str = ""
    tls_key: str = ""
    allowed_networks: tuple[Network, ...] = ()
    hostname: str = ""  # in the greeting; empty: this machine's host name

    @classmethod
    def from_toml(cls, section: dict[str, Any], setting: str) -> IntakeOptions:
        unknown = sorted(set(section) - set(INTAKE_SETTINGS))
        if unknown:
            raise ConfigError(f"{setting}: unknown setting {', '.join(unknown)}")
        mode = str(section.get("mode", cls.mode))
        if mode not in INTAKE_MODES:
            raise ConfigError(f"{setting} mode: {mode!r} is not one of {', '.join(INTAKE_MODES)}")
        size = section.get("max_message_size", cls.max_message_size)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ConfigError(f"{setting} max_message_size: {size!r} is not a positive number of bytes")
        cert, key = str(section.get("tls_cert", "")), str(section.get("tls_key", ""))
        if bool(cert) != bool(key):
            raise ConfigError(f"{setting}: tls_cert and tls_key go together")
        networks = _networks(section.get("allowed_networks", []), setting)
        return cls(mode, size, cert, key, networks, str(section.get("hostname", "")))


DEFAULT_MESSAGE_TIMEOUT = 30.0


def _workers(section: dict[str, Any]) -> int:
    workers = section.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 64:
        raise ConfigError(f"[processing] workers: {workers!r} is not a number from 0 to 64")
    return workers


def _message_timeout(section: dict[str, Any]) -> float:
    seconds = section.get("message_timeout", DEFAULT_MESSAGE_TIMEOUT)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
        raise ConfigError(f"[processing] message_timeout: {seconds!r} is not a number of seconds above 0, at most 3600")
    return float(seconds)


def _networks(values: Any, setting: str) -> tuple[Network, ...]:
    values = [values] if isinstance(values, str) else values
    try:
        return tuple(ipaddress.ip_network(str(v), strict=False) for v in values)
    except ValueError as error:
        raise ConfigError(f"{setting} allowed_networks: {error}") from error


OUTBOUND_SETTINGS = (
    "starttls", "ca_file", "username", "password_file", "timeout", "lifetime", "retry_min", "retry_max",
    "poll_interval",
)
DAY = 86400.0


@dataclass(frozen=True)
class OutboundOptions:
    """How the sender talks to ``[outbound] smarthost`` and how long it keeps trying (seconds).

    ``starttls``: require STARTTLS, the certificate checked against ``ca_file`` (else the
    system's CAs); without it the connection stays in clear text. ``username`` with
    ``password_file``: AUTH after STARTTLS; without STARTTLS only to a smarthost on this
    machine (``check_smarthost_auth``). A message refused with 4xx (or not handed over
    at all) is tried again after ``retry_min``, then after twice as long each time up to
    ``retry_max``, until it is ``lifetime`` old (Postfix: 5 min to ~1 h, 5 days).
    """

    starttls: bool = False
    ca_file: str = ""
    username: str = ""
    password_file: str = ""
    timeout: float = 60.0  # for each SMTP command
    lifetime: float = 5 * DAY
    retry_min: float = 300.0
    retry_max: float = 3600.0
    poll_interval: float = 5.0  # seconds between looks at the outbox for rows queued by other processes

    @classmethod
    def from_toml(cls, section: dict[str, Any], setting: str = "[outbound]") -> OutboundOptions:
        values = {name: section[name] for name in OUTBOUND_SETTINGS if name in section}
        if not isinstance(values.get("starttls", False), bool):
            raise ConfigError(f"{setting} starttls: must be true or false")
        for name in ("timeout", "lifetime", "retry_min", "retry_max", "poll_interval"):
            value = values.get(name, getattr(cls, name))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{setting} {name}: {value!r} is not a positive number of seconds")
            values[name] = float(value)
        for name in ("ca_file", "username", "password_file"):
            values[name] = str(values.get(name, ""))
        options = cls(**values)
        if options.retry_min > options.retry_max:
            raise ConfigError(f"{setting}: retry_min must not exceed retry_max")
        if bool(options.username) != bool(options.password_file):
            raise ConfigError(f"{setting}: username and password_file go together")
        if "smarthost" in section:
            check_smarthost_auth(Listener.parse(str(section["smarthost"]), f"{setting} smarthost"), options, setting)
        return options


def check_smarthost_auth(smarthost: Listener, options: OutboundOptions, setting: str = "[outbound]") -> None:
    """ConfigError when AUTH would send the password in clear text over a network.

    A unix socket and a loopback address never leave this machine; anything else may be
    read on the way, so the password goes only inside STARTTLS.
    """
    if options.username and not options.starttls and not _on_this_machine(smarthost):
        raise ConfigError(
            f"{setting} username: AUTH to smarthost {smarthost} would send the password in clear text;"
            " set starttls = true, or relay through a loopback address or a unix socket"
        )


def _on_this_machine(where: Listener) -> bool:
    if where.path or where.host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(where.host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


@dataclass(frozen=True)
class TrustOptions:
    """How senders are verified: whose Authentication-Results to believe, and DNS for DKIM keys.

    ``authserv_ids``: the authserv-ids of the operator's own MTA; an
    Authentication-Results header from anyone else is ignored. ``dns = false`` verifies
    only signatures whose keys a partner file pins.
    """

    authserv_ids: tuple[str, ...] = ()
    dns: bool = True
    dns_timeout: float = 5.0

    @classmethod
    def from_toml(cls, section: dict[str, Any]) -> TrustOptions:
        unknown = sorted(set(section) - {"authserv_ids", "dns", "dns_timeout"})
        if unknown:
            raise ConfigError(f"[trust]: unknown setting {', '.join(unknown)}")
        ids = section.get("authserv_ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise ConfigError("[trust] authserv_ids: must be a list of names")
        dns, timeout = section.get("dns", True), section.get("dns_timeout", cls.dns_timeout)
        if not isinstance(dns, bool):
            raise ConfigError("[trust] dns: must be true or false")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"[trust] dns_timeout: {timeout!r} is not a positive number of seconds")
        return cls(tuple(i.lower() for i in ids), dns, float(timeout))


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
    smtp_options: IntakeOptions = IntakeOptions()
    lmtp_options: IntakeOptions = IntakeOptions()
    processing_workers: int = 1  # [processing] workers; 0: this process only takes mail in
    message_timeout: float = DEFAULT_MESSAGE_TIMEOUT  # [processing] message_timeout: one message's budget, seconds
    imap: tuple[ImapAccount, ...] = ()
    smarthost: Listener = Listener("127.0.0.1", 25)
    reply_domain: str = ""
    outbound: OutboundOptions = OutboundOptions()
    dkim: DkimKey | None = None
    http: Listener = Listener("127.0.0.1", 8025)
    public_url: str = ""
    policy_files: tuple[str, ...] = ()  # files and directories, relative ones to the configuration's directory
    trust: TrustOptions = TrustOptions()
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
        smtp_options=IntakeOptions.from_toml(_section(data, "smtp"), "[smtp]"),
        lmtp_options=IntakeOptions.from_toml(_section(data, "lmtp"), "[lmtp]"),
        processing_workers=_workers(_section(data, "processing")),
        message_timeout=_message_timeout(_section(data, "processing")),
        imap=tuple(ImapAccount.from_toml(entry, f"[[imap]] #{n}") for n, entry in enumerate(imap, 1)),
        smarthost=Listener.parse(str(outbound.get("smarthost", defaults.smarthost)), "[outbound] smarthost"),
        reply_domain=str(outbound.get("reply_domain", "")),
        outbound=OutboundOptions.from_toml(outbound),
        dkim=DkimKey(**dkim) if dkim else None,
        http=Listener.parse(str(http.get("listen", defaults.http)), "[http] listen"),
        public_url=str(http.get("public_url", "")),
        policy_files=tuple(str(Path(source).parent / str(p)) for p in policy.get("files", [])),
        trust=TrustOptions.from_toml(_section(data, "trust")),
        source=source,
        raw=data,
    )
