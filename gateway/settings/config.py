"""Reefknot's configuration: one TOML file, validated into frozen values with built-in defaults.

Lookup order: ``--config FILE``, else ``$REEFKNOT_CONFIG``, else ``./reefknot.toml`` when
present, else the defaults (an SQLite file ``reefknot.db`` in the working directory,
SMTP on 127.0.0.1:10025, LMTP on 127.0.0.1:10024, HTTP on 127.0.0.1:8025).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.settings.database import read_database_url
from gateway.settings.files import FileKind, FileSettings, resolve_path
from gateway.settings.reader import ConfigError as ConfigError
from gateway.settings.reader import Invalid, Lines, Table, located, read_toml_file

ENV_VAR = "REEFKNOT_CONFIG"
LOCAL_FILE = "reefknot.toml"


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
            raise Invalid(f"{setting}: {text!r} is not HOST:PORT or unix:PATH", setting.rpartition(" ")[2])
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
        table = Table(entry, [f.name for f in fields(cls)], setting, setting)
        security = table.text("security", "tls")
        if security not in IMAP_SECURITY:
            raise table.invalid(f"security: {security!r} is not one of {', '.join(IMAP_SECURITY)}", "security")
        account = cls(
            host=table.text("host"), username=table.text("username"), password_file=table.text("password_file"),
            password_command=_command(table, "password_command"),
            xoauth2_token_command=_command(table, "xoauth2_token_command"),
            port=table.whole("port", 993 if security == "tls" else 143, 1, 65535), security=security,
            ca_file=table.text("ca_file"), folder=table.text("folder", cls.folder),
            processed_folder=table.text("processed_folder", cls.processed_folder),
            idle_timeout=table.seconds("idle_timeout", cls.idle_timeout, MAX_IDLE_TIMEOUT),
            poll_interval=table.seconds("poll_interval", cls.poll_interval),
            recipients=table.strings("recipients"),
        )
        if not account.host or not account.username:
            raise table.invalid("host and username are required", "host")
        given = [name for name in IMAP_CREDENTIALS if getattr(account, name)]
        if len(given) != 1:
            raise table.invalid(f"{account.username}: set exactly one of {', '.join(IMAP_CREDENTIALS)}")
        if not account.processed_folder or account.processed_folder == account.folder:
            raise table.invalid("processed_folder: must be set and differ from folder", "processed_folder")
        return account

    @property
    def name(self) -> str:
        """The mailbox as logs name it."""
        return f"imap://{self.username}@{self.host}:{self.port}/{self.folder}"


def _command(table: Table, key: str) -> tuple[str, ...]:
    if key not in table:
        return ()
    value = table.data[key]
    words = shlex.split(value) if isinstance(value, str) else list(table.string_list(key))
    if not words:
        raise table.invalid(f"{key}: empty command", key)
    return tuple(words)


INTAKE_MODES = ("transport", "copy")
INTAKE_SETTINGS = (
    "listen", "mode", "max_message_size", "tls_cert", "tls_key", "allowed_networks", "hostname", "next_hop",
)
NEXT_HOP_PROTOCOLS = ("lmtp", "smtp")
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
    next_hop: NextHop | None = None  # in front of the mailboxes: every accepted message is handed on there

    @classmethod
    def from_toml(cls, section: dict[str, Any], setting: str) -> IntakeOptions:
        table = Table(section, INTAKE_SETTINGS, setting, setting)
        mode = table.text("mode", cls.mode)
        if mode not in INTAKE_MODES:
            raise table.invalid(f"mode: {mode!r} is not one of {', '.join(INTAKE_MODES)}", "mode")
        size = table.count("max_message_size") or cls.max_message_size
        cert, key = table.text("tls_cert"), table.text("tls_key")
        if bool(cert) != bool(key):
            raise table.invalid("tls_cert and tls_key go together", "tls_cert")
        try:
            networks = tuple(ipaddress.ip_network(v, strict=False) for v in table.strings("allowed_networks"))
        except ValueError as error:
            raise table.invalid(f"allowed_networks: {error}", "allowed_networks") from error
        next_hop = NextHop.parse(table.text("next_hop"), f"{setting} next_hop") if "next_hop" in table else None
        if next_hop is not None and mode != "transport":
            raise table.invalid("next_hop: only in transport mode (a copy is not the message to deliver)", "next_hop")
        return cls(mode, size, cert, key, networks, table.text("hostname"), next_hop)


@dataclass(frozen=True)
class NextHop:
    """Where a listener hands every accepted message on: ``lmtp:unix:PATH``, ``lmtp:HOST:PORT`` or ``smtp:HOST:PORT``."""

    protocol: str
    address: Listener

    @classmethod
    def parse(cls, text: str, setting: str) -> NextHop:
        protocol, _, rest = text.partition(":")
        if protocol not in NEXT_HOP_PROTOCOLS or not rest:
            raise Invalid(f"{setting}: {text!r} is not lmtp:unix:PATH, lmtp:HOST:PORT or smtp:HOST:PORT", "next_hop")
        address = Listener.parse(rest, setting)
        if address.path and protocol == "smtp":
            raise Invalid(f"{setting}: {text!r}: SMTP to a unix socket is not supported; use lmtp:unix:PATH", "next_hop")
        return cls(protocol, address)

    def __str__(self) -> str:
        return f"{self.protocol}:{self.address}"


DEFAULT_MESSAGE_TIMEOUT = 30.0


OUTBOUND_SETTINGS = (
    "starttls", "ca_file", "username", "password_file", "timeout", "lifetime", "retry_min", "retry_max",
    "poll_interval", "templates_dir",
)
OUTBOUND_SECTION = ("smarthost", "reply_domain", "dkim", *OUTBOUND_SETTINGS)
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
    templates_dir: str = ""  # the operator's templates, before the packaged ones

    @classmethod
    def from_toml(cls, section: dict[str, Any], setting: str = "[outbound]") -> OutboundOptions:
        table = Table(section, OUTBOUND_SECTION, setting, setting)
        options = cls(
            starttls=bool(table.flag("starttls")),
            **{name: table.text(name) for name in ("ca_file", "username", "password_file", "templates_dir")},
            **{name: table.seconds(name, getattr(cls, name))
               for name in ("timeout", "lifetime", "retry_min", "retry_max", "poll_interval")},
        )
        if options.retry_min > options.retry_max:
            raise table.invalid("retry_min must not exceed retry_max", "retry_min")
        if bool(options.username) != bool(options.password_file):
            raise table.invalid("username and password_file go together", "username")
        if "smarthost" in table:
            check_smarthost_auth(Listener.parse(table.text("smarthost"), f"{setting} smarthost"), options, setting)
        return options


def check_smarthost_auth(smarthost: Listener, options: OutboundOptions, setting: str = "[outbound]") -> None:
    """ConfigError when AUTH would send the password in clear text over a network.

    A unix socket and a loopback address never leave this machine; anything else may be
    read on the way, so the password goes only inside STARTTLS.
    """
    if options.username and not options.starttls and not _on_this_machine(smarthost):
        raise Invalid(
            f"{setting} username: AUTH to smarthost {smarthost} would send the password in clear text;"
            " set starttls = true, or relay through a loopback address or a unix socket", "username",
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
        table = Table(section, ("authserv_ids", "dns", "dns_timeout"), "[trust]", "[trust]")
        ids = table.string_list("authserv_ids")
        if not all(ids):
            raise table.invalid("authserv_ids: must be a list of names", "authserv_ids")
        dns = table.flag("dns")
        return cls(tuple(i.lower() for i in ids), dns is not False, table.seconds("dns_timeout", cls.dns_timeout))


@dataclass(frozen=True)
class DkimKey:
    """One ``[outbound.dkim]`` key: the signing domain, the selector and the private key file."""

    domain: str
    selector: str
    key_file: str

    @classmethod
    def from_toml(cls, entry: Any, setting: str) -> DkimKey:
        table = Table(entry, DKIM_SETTINGS, setting, setting)
        key = cls(*(table.text(name) for name in DKIM_SETTINGS))
        if not all((key.domain, key.selector, key.key_file)):
            raise table.invalid("domain, selector and key_file are all needed")
        return key


DKIM_SETTINGS = ("domain", "selector", "key_file")


def _dkim_keys(outbound: Table, path: Path, lines: Lines, files: FileSettings) -> tuple[DkimKey, ...]:
    """``[outbound.dkim]`` (one key) or ``[[outbound.dkim]]`` (several); every mail carries one signature per key.

    Several keys are for an ed25519 and an RSA signature side by side (RFC 8463 §4:
    verifiers that know no ed25519 still find the RSA one), or for an old and a new key
    while a rotation's DNS change spreads. Each needs its own record name. Every entry is
    read before any key file is looked at (``files``), so a half-filled entry is named first.
    """
    value = outbound.data.get("dkim")
    if value is None:
        return ()
    several = isinstance(value, list)
    read: list[tuple[DkimKey, Table, int]] = []
    for index, entry in enumerate(value if several else [value]):
        label = f"[[outbound.dkim]] #{index + 1}" if several else "[outbound.dkim]"
        with located(path, lines, "outbound.dkim", index):
            key = DkimKey.from_toml(entry, label)
            twin = next((n for n, (k, _, _) in enumerate(read, 1) if _record_name(k) == _record_name(key)), 0)
            if twin:
                raise Invalid(f"{label} selector: {key.selector!r} of {key.domain} is #{twin}'s"
                              " already; DNS holds one key per selector", "selector")
            read.append((key, Table(entry, DKIM_SETTINGS, label, label), index))
    keys = []
    for key, table, index in read:
        with located(path, lines, "outbound.dkim", index):
            keys.append(replace(key, key_file=files.read(table, "key_file")))
    return tuple(keys)


def _record_name(key: DkimKey) -> str:
    return f"{key.selector}._domainkey.{key.domain}".lower().rstrip(".")


@dataclass(frozen=True)
class HttpOptions:
    """``[http]`` beyond where it listens: TLS, the reverse proxies whose requests count as secure, the CalDAV inbox."""

    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    inbox_days: int = 30  # how long an applied message stays in a principal's CalDAV scheduling inbox


@dataclass(frozen=True)
class RetentionOptions:
    """``[retention]``: how long history is kept — raw bytes of handled messages, inbox lines, finished outbox rows."""

    raw_messages: timedelta = timedelta(days=7)
    inbox: timedelta = timedelta(days=400)
    outbox: timedelta = timedelta(days=90)


@dataclass(frozen=True)
class LogOptions:
    """``[log]``: the lowest level written, and ``text`` or ``json`` lines."""

    level: str = "info"
    format: str = "text"


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
    sends_mail: bool = False  # an [outbound] section is present: without one the outbox is kept, not sent
    smarthost: Listener = Listener("127.0.0.1", 25)
    reply_domain: str = ""
    outbound: OutboundOptions = OutboundOptions()
    dkim_keys: tuple[DkimKey, ...] = ()  # [outbound.dkim] or [[outbound.dkim]]: one signature each
    http: Listener = Listener("127.0.0.1", 8025)
    http_configured: bool = True  # the built-in defaults, or a file with [http]: serve listens on ``http``
    public_url: str = ""
    http_options: HttpOptions = HttpOptions()
    policy_files: tuple[str, ...] = ()  # files and directories, relative ones to the configuration's directory
    trust: TrustOptions = TrustOptions()
    retention: RetentionOptions = RetentionOptions()
    log: LogOptions = LogOptions()
    source: str = "built-in defaults"


SECTIONS = ("database", "smtp", "lmtp", "processing", "imap", "outbound", "http", "policy", "trust", "retention", "log")


def find_config_file(explicit: str | None) -> Path | None:
    """The configuration file to read, by the documented lookup order."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    local = Path(LOCAL_FILE)
    return local if local.exists() else None


def load_config(explicit: str | None = None, *, check_files: bool = False) -> Config:
    """Read and validate the configuration; raise ConfigError naming the file, the line and the setting.

    Relative paths are made absolute under the file's directory. ``check_files``: also
    refuse a key, certificate, password or CA file that cannot be read, and a templates
    directory that is not one — for the commands that will read them (``serve``,
    ``check-config``), not for one run by an operator who may not read the daemon's key.
    """
    path = find_config_file(explicit)
    if path is None:
        return Config()
    data, lines = read_toml_file(path)
    with located(path, lines, None):
        top = Table(data, SECTIONS, "a configuration file")
    return _Reading(top, lines, path, check_files).config()


class _Reading:
    """One configuration file, read section by section into Config's fields; an error names its line."""

    def __init__(self, top: Table, lines: Lines, path: Path, check_files: bool = False) -> None:
        self.top, self.lines, self.path = top, lines, path
        self.directory = path.absolute().parent  # what a relative path in the file is relative to
        self.files = FileSettings(self.directory, check_files)
        self.defaults = Config()

    def file_setting(self, table: Table, key: str, kind: FileKind = FileKind.FILE) -> str:
        """``key``'s path under the configuration's directory (checked for serve and check-config); '' when not set."""
        return self.files.read(table, key, kind)

    def config(self) -> Config:
        return Config(
            **self.database(), **self.intake("smtp"), **self.intake("lmtp"), **self.processing(), **self.imap(),
            **self.outbound(), **self.http(), **self.policy(), **self.trust(), **self.retention(),
            **self.log(), source=str(self.path),
        )

    def section(self, name: str, allowed: tuple[str, ...]) -> Table:
        return self.top.table(name, allowed)

    def database(self) -> dict[str, Any]:
        """``[database] url``: a written relative SQLite file is under the configuration's directory, as every path is.

        Only the built-in default, used when ``url`` is not written, stays in the working directory.
        """
        with located(self.path, self.lines, "database"):
            table = self.section("database", ("url",))
            if "url" not in table:
                return {"database_url": read_database_url(self.defaults.database_url, None)}
            url = table.text("url")
            try:
                return {"database_url": read_database_url(url, self.directory)}
            except Invalid as error:
                raise table.invalid(str(error), "url") from error

    def intake(self, name: str) -> dict[str, Any]:
        """``[smtp]`` or ``[lmtp]``: where it listens and how it treats its clients."""
        with located(self.path, self.lines, name):
            table = self.section(name, INTAKE_SETTINGS)
            listeners = _listeners(table, getattr(self.defaults, name), f"[{name}] listen")
            options = IntakeOptions.from_toml(table.data, f"[{name}]")
            options = replace(options, tls_cert=self.file_setting(table, "tls_cert"),
                              tls_key=self.file_setting(table, "tls_key"))
            return {name: listeners, f"{name}_options": options}

    def processing(self) -> dict[str, Any]:
        with located(self.path, self.lines, "processing"):
            table = self.section("processing", ("workers", "message_timeout"))
            return {"processing_workers": table.whole("workers", 1, 0, 64),
                    "message_timeout": table.seconds("message_timeout", DEFAULT_MESSAGE_TIMEOUT, 3600)}

    def imap(self) -> dict[str, Any]:
        with located(self.path, self.lines, None):
            entries = self.top.tables("imap")
        accounts = []
        for index, entry in enumerate(entries):
            with located(self.path, self.lines, "imap", index):
                setting = f"[[imap]] #{index + 1}"
                account = ImapAccount.from_toml(entry, setting)
                table = Table(entry, entry, setting, setting)  # its keys were checked by from_toml
                accounts.append(replace(account, password_file=self.file_setting(table, "password_file"),
                                        ca_file=self.file_setting(table, "ca_file")))
        return {"imap": tuple(accounts)}

    def outbound(self) -> dict[str, Any]:
        with located(self.path, self.lines, "outbound"):
            table = self.section("outbound", OUTBOUND_SECTION)
            fields = {
                "sends_mail": "outbound" in self.top,
                "outbound": self.outbound_files(table, OutboundOptions.from_toml(table.data)),
                "smarthost": Listener.parse(table.text("smarthost", str(self.defaults.smarthost)),
                                            "[outbound] smarthost"),
                "reply_domain": table.text("reply_domain"),
            }
        return {**fields, "dkim_keys": _dkim_keys(table, self.path, self.lines, self.files)}

    def outbound_files(self, table: Table, options: OutboundOptions) -> OutboundOptions:
        """``options`` with ``[outbound] ca_file``, ``password_file`` and ``templates_dir`` resolved (and checked)."""
        return replace(options, ca_file=self.file_setting(table, "ca_file"),
                       password_file=self.file_setting(table, "password_file"),
                       templates_dir=self.file_setting(table, "templates_dir", FileKind.DIRECTORY))

    def http(self) -> dict[str, Any]:
        with located(self.path, self.lines, "http"):
            table = self.section("http", ("listen", "public_url", "tls_cert", "tls_key", "trusted_proxies",
                                          "inbox_days"))
            cert, key = table.text("tls_cert"), table.text("tls_key")
            if bool(cert) != bool(key):
                raise table.invalid("tls_cert and tls_key go together", "tls_cert" if not cert else "tls_key")
            options = HttpOptions(self.file_setting(table, "tls_cert"), self.file_setting(table, "tls_key"),
                                  tuple(_network(table, n) for n in table.strings("trusted_proxies")),
                                  table.whole("inbox_days", 30, 1, 3650))
            return {"http": Listener.parse(table.text("listen", str(self.defaults.http)), "[http] listen"),
                    "http_configured": "http" in self.top, "public_url": table.text("public_url"),
                    "http_options": options}

    def policy(self) -> dict[str, Any]:
        """``[policy] files``, relative ones to the configuration's directory."""
        with located(self.path, self.lines, "policy"):
            files = self.section("policy", ("files",)).strings("files")
        return {"policy_files": tuple(str(resolve_path(self.directory, p)) for p in files)}

    def log(self) -> dict[str, Any]:
        with located(self.path, self.lines, "log"):
            table = self.section("log", ("level", "format"))
            level, form = table.text("level", "info").lower(), table.text("format", "text").lower()
            if level not in ("debug", "info", "warning", "error"):
                raise table.invalid(f"level: {level!r} is not one of debug, info, warning, error", "level")
            if form not in ("text", "json"):
                raise table.invalid(f"format: {form!r} is not one of text, json", "format")
            return {"log": LogOptions(level, form)}

    def retention(self) -> dict[str, Any]:
        with located(self.path, self.lines, "retention"):
            table = self.section("retention", ("raw_messages", "inbox", "outbox"))
            defaults = RetentionOptions()
            return {"retention": RetentionOptions(*(table.duration(name) or getattr(defaults, name)
                                                    for name in ("raw_messages", "inbox", "outbox")))}

    def trust(self) -> dict[str, Any]:
        with located(self.path, self.lines, "trust"):
            return {"trust": TrustOptions.from_toml(self.section("trust", ("authserv_ids", "dns", "dns_timeout")).data)}


def _listeners(table: Table, default: tuple[Listener, ...], setting: str) -> tuple[Listener, ...]:
    if "listen" not in table:
        return default
    return tuple(Listener.parse(text, setting) for text in table.strings("listen"))


def _network(table: Table, text: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as error:
        raise table.invalid(f"trusted_proxies: {text!r} is not an address or network", "trusted_proxies") from error
