"""Real protocol peers for tests: throwaway PostgreSQL, Dovecot IMAP and smtp-sink.

Each context manager starts a private server on a free loopback port, inside its own
temporary directory, and stops it and removes the directory on exit, even when the
body raises. When the server program is not installed they raise ServerUnavailable,
whose message a fixture can pass to ``pytest.skip``. Every other problem (a server
that does not come up, a configuration it rejects) is a RuntimeError carrying the
server's own log, so that a broken peer fails a test instead of skipping it.

PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres``
system user; Dovecot and smtp-sink start as root and give their mail processes to
``nobody``. As an ordinary user everything runs as that user.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CapturedMail",
    "DovecotServer",
    "PostgresCluster",
    "ServerUnavailable",
    "SmtpSink",
    "dovecot_server",
    "dovecot_version",
    "free_port",
    "postgres_cluster",
    "postgres_cluster_control",
    "smtp_sink",
    "wait_for_port",
    "wait_for_port_closed",
]

LOOPBACK = "127.0.0.1"
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ServerUnavailable(Exception):
    """The server program is not installed here; tests that need it should skip."""


# -- ports and helpers ------------------------------------------------------------


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 10.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until something accepts TCP connections on host:port.

    Raises TimeoutError after ``timeout`` seconds, or RuntimeError at once when
    ``process`` (the server being waited for) has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        if _port_open(host, port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before listening on {host}:{port}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:g}s")
        time.sleep(0.02)


def wait_for_port_closed(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until host:port refuses TCP connections; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while _port_open(host, port):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} still accepting connections after {timeout:g}s")
        time.sleep(0.02)


def _find_program(name: str, extra_dirs: Iterable[str] = _SBIN_DIRS) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _is_root() -> bool:
    return os.geteuid() == 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _reachable_tempdir(prefix: str) -> Path:
    """A new temporary directory that other users can reach (mode 0755)."""
    base = Path(tempfile.gettempdir())
    # Dropped-privilege servers must be able to walk down to the directory.
    if _is_root() and not all(p.stat().st_mode & stat.S_IXOTH for p in (base, *base.parents)):
        base = Path("/tmp")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    path.chmod(0o755)
    return path


def _user_ids(name: str) -> tuple[int, int]:
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


# -- PostgreSQL -------------------------------------------------------------------


def _postgres_bindir() -> Path:
    candidates: list[Path] = []
    pg_config = _find_program("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))

    def version_key(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True)]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found via pg_config --bindir "
        "or /usr/lib/postgresql/*/bin; install the Debian 'postgresql' package"
    )


@contextlib.contextmanager
def postgres_cluster(database: str = "postgres") -> Iterator[str]:
    """Run a throwaway PostgreSQL cluster; yield a SQLAlchemy URL for ``database``.

    The URL is ``postgresql+psycopg://postgres@127.0.0.1:PORT/DATABASE``, with trust
    authentication. A database other than ``postgres`` is created first.
    """
    with postgres_cluster_control(database) as cluster:
        yield cluster.url


@dataclass
class PostgresCluster:
    """A running throwaway cluster: its URL, and ``stop``/``start`` on the same port with the data kept."""

    url: str
    stop: Callable[[], None]
    start: Callable[[], None]


@contextlib.contextmanager
def postgres_cluster_control(database: str = "postgres") -> Iterator[PostgresCluster]:
    """``postgres_cluster``, yielding a handle that can stop the server and start it again (an outage)."""
    bindir = _postgres_bindir()
    # As root, subprocess switches to the postgres user (with only its own group).
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None
    if _is_root():
        try:
            user, group = _user_ids("postgres")
        except KeyError:
            raise ServerUnavailable("running as root, and there is no 'postgres' system user to run PostgreSQL as")
        extra_groups = []

    root = _reachable_tempdir("reefknot-pg-")
    data, sockdir, log = root / "data", root / "sock", root / "postgres.log"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=root, env=env, capture_output=True, text=True, check=False,
            user=user, group=group, extra_groups=extra_groups,
        )

    def check(*args: str) -> None:
        result = run(*args)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{_tail(log)}"
            )

    try:
        for directory in (data, sockdir):
            directory.mkdir(mode=0o700)
        if user is not None and group is not None:
            for path in (root, data, sockdir):
                os.chown(path, user, group)
        check(
            str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )

        port = 0
        for attempt in range(3):  # another process may take the port between probe and bind
            port = free_port()
            options = (
                f"-p {port} -k {sockdir} -c listen_addresses={LOOPBACK} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                pg_ctl = str(bindir / "pg_ctl")
                check(pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start")
                break
            except RuntimeError:
                if attempt == 2 or "could not bind" not in _tail(log):
                    raise

        if database != "postgres":
            check(str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", "postgres", database)
        yield PostgresCluster(
            url=f"postgresql+psycopg://postgres@{LOOPBACK}:{port}/{database}",
            stop=lambda: check(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"),
            start=lambda: check(pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start"),
        )
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


# -- Dovecot ----------------------------------------------------------------------


def dovecot_version() -> tuple[int, ...]:
    """The installed Dovecot's version, e.g. (2, 3, 19, 1); ServerUnavailable if none."""
    program = _find_program("dovecot")
    if program is None:
        raise ServerUnavailable("dovecot not found; install the Debian 'dovecot-imapd' package")
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"\s*(\d+(?:\.\d+)*)", out)
    if not match:
        raise RuntimeError(f"cannot read the Dovecot version from {out!r}")
    return tuple(int(n) for n in match.group(1).split("."))


@dataclass
class DovecotServer:
    """A running private Dovecot; ``port`` is plain IMAP, ``tls_port`` implicit TLS."""

    host: str
    port: int
    users: dict[str, str]
    directory: Path
    config_path: Path
    log_path: Path
    tls_port: int | None = None
    cert_path: Path | None = None
    lmtp_port: int | None = None  # with lmtp=True: Dovecot's LMTP on TCP, and on ``lmtp_socket``
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.directory / "run"

    @property
    def lmtp_socket(self) -> Path:
        return self.directory / "run" / "lmtp"

    def maildir(self, user: str) -> Path:
        """Where ``user``'s Maildir lives on disk."""
        return self.directory / "home" / user / "Maildir"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        program = _find_program("dovecot")
        assert program is not None
        console = (self.directory / "console.log").open("ab")
        try:
            self._process = subprocess.Popen(
                [program, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, cwd=self.directory,
            )
        finally:
            console.close()
        try:
            for port in (self.port, self.tls_port, self.lmtp_port):
                if port:
                    wait_for_port(self.host, port, timeout=15, process=self._process)
            # Ready means greeting: imap-login greets only once auth is up. Stopping a
            # Dovecot whose first processes are still starting takes seconds longer.
            _wait_for_imap_greeting(self.host, self.port, timeout=15)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(
                f"Dovecot did not start: {exc}\n--- console\n{_tail(self.directory / 'console.log')}"
                f"\n--- log\n{_tail(self.log_path)}"
            ) from exc

    def stop(self) -> None:
        """Signal the master process (pid from base_dir) and wait until the ports close."""
        pid: int | None = None
        try:
            pid = int((self.base_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            pid = self._process.pid if self._process is not None else None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self._process is not None:
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        for port in (self.port, self.tls_port, self.lmtp_port):
            if port:
                wait_for_port_closed(self.host, port)

    def restart(self) -> None:
        """Stop and start again on the same ports; mailboxes are kept.

        Dovecot 2.3 leaves the imap processes of logged-in clients running across a
        restart (their sessions go on); ``kick`` ends them.
        """
        self.stop()
        self.start()

    def kick(self, user: str) -> None:
        """End every IMAP session of ``user`` (``doveadm kick``): the server says BYE and closes."""
        program = _find_program("doveadm")
        if program is None:
            raise ServerUnavailable("doveadm not found; install the Debian 'dovecot-core' package")
        result = subprocess.run(
            [program, "-c", str(self.config_path), "kick", user], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm kick {user} failed ({result.returncode}): {result.stdout}{result.stderr}")


def _wait_for_imap_greeting(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())) as sock:
                greeting = sock.makefile("rb").readline()
                if greeting.startswith(b"* OK"):
                    sock.sendall(b"a LOGOUT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no IMAP greeting from {host}:{port} after {timeout:g}s")
        time.sleep(0.02)


def _passwd_file_line(user: str, password: str, uid: int, gid: int, home: Path) -> str:
    for value in (user, password):
        if any(c in value for c in ":\n\r\t") or not value:
            raise ValueError(f"Dovecot test users and passwords must be non-empty, without ':' or CR/LF/TAB: {value!r}")
    if "/" in user or user.startswith("."):
        raise ValueError(f"Dovecot test user names must be usable as a directory name: {user!r}")
    return f"{user}:{{PLAIN}}{password}:{uid}:{gid}::{home}::\n"


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    openssl = _find_program("openssl")
    if openssl is None:
        raise ServerUnavailable("openssl not found; needed for a TLS test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", f"subjectAltName=IP:{LOOPBACK},DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


def _dovecot_config(
    version: tuple[int, ...],
    directory: Path,
    port: int,
    tls: tuple[int, Path, Path] | None,
    passwd_file: Path,
    internal_user: str | None,
    mechanisms: tuple[str, ...] = ("plain", "login"),
    lmtp_port: int | None = None,
) -> str:
    """A complete dovecot.conf for Dovecot 2.3, or for 2.4 with its renamed settings."""
    v24 = version >= (2, 4)
    lmtp = ""
    if lmtp_port is not None:
        lmtp = (
            "service lmtp {\n  unix_listener lmtp {\n    mode = 0666\n  }\n"
            f"  inet_listener lmtp {{\n    address = {LOOPBACK}\n    port = {lmtp_port}\n  }}\n}}\n"
        )
        if not v24:
            lmtp += "postmaster_address = postmaster@localhost\n"
    anvil = ""
    users = ""
    if internal_user is not None:  # not root: every Dovecot process runs as us
        group = grp.getgrgid(os.getegid()).gr_name
        users = (
            f"default_internal_user = {internal_user}\ndefault_login_user = {internal_user}\n"
            f"default_internal_group = {group}\n"
        )
    if v24:
        head = (
            "dovecot_config_version = 2.4.0\n"
            "dovecot_storage_version = 2.4.0\n"
            "auth_allow_cleartext = yes\n"
            "mail_driver = maildir\n"
            "mail_path = ~/Maildir\n"
            f"passdb passwd-file {{\n  passwd_file_path = {passwd_file}\n}}\n"
            f"userdb passwd-file {{\n  passwd_file_path = {passwd_file}\n}}\n"
        )
        ssl = (
            f"ssl = yes\nssl_server_cert_file = {tls[1]}\nssl_server_key_file = {tls[2]}\n" if tls else "ssl = no\n"
        )
    else:
        head = (
            "disable_plaintext_auth = no\n"
            "mail_location = maildir:~/Maildir\n"
            f"passdb {{\n  driver = passwd-file\n  args = {passwd_file}\n}}\n"
            f"userdb {{\n  driver = passwd-file\n  args = {passwd_file}\n}}\n"
        )
        ssl = f"ssl = yes\nssl_cert = <{tls[1]}\nssl_key = <{tls[2]}\n" if tls else "ssl = no\n"
        # No growing delay for an address after failed logins (tests make them on purpose).
        anvil = "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n"
    return (
        head
        + ssl
        + users
        + lmtp
        + f"""protocols = imap{" lmtp" if lmtp_port is not None else ""}
listen = {LOOPBACK}
base_dir = {directory / "run"}
state_dir = {directory / "state"}
instance_name = reefknot-test-{port}
log_path = {directory / "dovecot.log"}
info_log_path = {directory / "dovecot.log"}
auth_mechanisms = {' '.join(mechanisms)}
auth_verbose = yes
auth_failure_delay = 0
first_valid_uid = 1
shutdown_clients = yes
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls[0] if tls else 0}
  }}
}}
service anvil {{
  chroot =
{anvil}}}
"""
    )


@contextlib.contextmanager
def dovecot_server(
    users: Mapping[str, str], *, tls: bool = False, mechanisms: Iterable[str] = ("plain", "login"),
    lmtp: bool = False,
) -> Iterator[DovecotServer]:
    """Run a private Dovecot IMAP server for ``users`` (name -> password).

    Mail lives in Maildirs under the server's temporary directory, owned by
    ``nobody`` when run as root. With ``tls=True`` it also listens for IMAP over
    implicit TLS on ``tls_port`` with a fresh self-signed certificate for 127.0.0.1
    (``cert_path``, usable as a CA file). ``mechanisms`` are the SASL mechanisms offered;
    with ``xoauth2`` the token a client presents is checked like a password, so a
    user's password doubles as a fixed OAuth2 access token. With ``lmtp=True`` it also
    delivers by LMTP (Debian's 'dovecot-lmtpd'), on ``lmtp_port`` and on ``lmtp_socket``,
    to the users by their full names (name them by address, ``alice@foo.example``).
    """
    version = dovecot_version()
    if lmtp and not Path("/usr/lib/dovecot/lmtp").exists():
        raise ServerUnavailable("Dovecot's LMTP not found; install the Debian 'dovecot-lmtpd' package")
    if _is_root():
        mail_uid, mail_gid = _user_ids("nobody")
        internal_user = None
    else:
        mail_uid, mail_gid = os.geteuid(), os.getegid()
        internal_user = pwd.getpwuid(mail_uid).pw_name

    directory = _reachable_tempdir("reefknot-dovecot-")
    server: DovecotServer | None = None
    try:
        home = directory / "home"
        home.mkdir()
        passwd_file = directory / "users"
        lines = []
        for user, password in users.items():
            (home / user).mkdir()
            os.chown(home / user, mail_uid, mail_gid)
            lines.append(_passwd_file_line(user, password, mail_uid, mail_gid, home / user))
        passwd_file.write_text("".join(lines))
        passwd_file.chmod(0o600)
        if _is_root():  # the auth process reads it as default_internal_user, not root
            os.chown(passwd_file, *_user_ids("dovecot"))

        tls_settings = None
        cert_path = None
        if tls:
            cert_path, key_path = _self_signed_cert(directory)
            tls_settings = (free_port(), cert_path, key_path)
        port = free_port()
        lmtp_port = free_port() if lmtp else None
        config_path = directory / "dovecot.conf"
        config_path.write_text(_dovecot_config(
            version, directory, port, tls_settings, passwd_file, internal_user, tuple(mechanisms), lmtp_port,
        ))
        server = DovecotServer(
            host=LOOPBACK,
            port=port,
            users=dict(users),
            directory=directory,
            config_path=config_path,
            log_path=directory / "dovecot.log",
            tls_port=tls_settings[0] if tls_settings else None,
            cert_path=cert_path,
            lmtp_port=lmtp_port,
        )
        server.start()
        yield server
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# -- smtp-sink ----------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedMail:
    """One mail transaction as smtp-sink recorded it (``content`` has LF line ends)."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    content: bytes


@dataclass
class SmtpSink:
    """A running smtp-sink; each mail transaction is dumped to a file in ``dump_dir``."""

    host: str
    port: int
    dump_dir: Path

    def messages(self) -> list[CapturedMail]:
        """Every transaction written so far, oldest first.

        smtp-sink creates a transaction's file at MAIL FROM, fills it when the message
        is complete and deletes it when the client gives up; empty files are skipped.
        """
        files = sorted(
            (p for p in self.dump_dir.rglob("*") if p.is_file() and p.stat().st_size > 0),
            key=lambda p: (p.stat().st_mtime_ns, p.name),
        )
        return [_parse_dump(p.read_bytes()) for p in files]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[CapturedMail]:
        """Wait until at least ``count`` transactions are recorded; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"smtp-sink recorded {len(found)} of {count} messages after {timeout:g}s")
            time.sleep(0.02)


def _parse_dump(raw: bytes) -> CapturedMail:
    """Split smtp-sink's X-Mail-Args/X-Rcpt-Args/Received preamble from the message."""
    lines = raw.split(b"\n")
    mail_from, rcpts = "", []
    i = 0
    while i < len(lines) and not lines[i].startswith(b"Received:"):
        name, _, value = lines[i].partition(b":")
        value_text = value.strip().decode("utf-8", "replace")
        if name == b"X-Mail-Args":
            mail_from = _address_arg(value_text)
        elif name == b"X-Rcpt-Args":
            rcpts.append(_address_arg(value_text))
        i += 1
    i += 1  # the Received: line, then its continuation lines
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
    body = b"\n".join(lines[i:])
    if body.endswith(b"\n\n"):
        body = body[:-1]  # the empty line smtp-sink appends
    return CapturedMail(mail_from=mail_from, rcpt_to=tuple(rcpts), content=body)


def _address_arg(args: str) -> str:
    """'FROM:<a@b> SIZE=1' or '<a@b>' -> 'a@b'."""
    match = re.search(r"<([^>]*)>", args)
    return match.group(1) if match else args.split()[0] if args else ""


@contextlib.contextmanager
def smtp_sink(
    *,
    soft_reject: Iterable[str] = (),
    hard_reject: Iterable[str] = (),
    extra_args: Iterable[str] = (),
) -> Iterator[SmtpSink]:
    """Run Postfix's smtp-sink on a free loopback port, recording every message.

    ``soft_reject``/``hard_reject`` name SMTP commands (e.g. ``["rcpt"]``) that get
    a 4xx/5xx reply (smtp-sink's ``-r``/``-f``); ``extra_args`` go to smtp-sink as is.
    """
    program = _find_program("smtp-sink")
    if program is None:
        raise ServerUnavailable("smtp-sink not found; install the Debian 'postfix' package")
    directory = _reachable_tempdir("reefknot-sink-")
    dump_dir = directory / "mail"
    dump_dir.mkdir()
    process: subprocess.Popen[bytes] | None = None
    try:
        args = [program]
        if _is_root():
            args += ["-u", "nobody"]
            uid, gid = _user_ids("nobody")
            os.chown(dump_dir, uid, gid)
        soft, hard = ",".join(soft_reject), ",".join(hard_reject)
        if soft:
            args += ["-r", soft]
        if hard:
            args += ["-f", hard]
        args += ["-d", f"{dump_dir}/%Y%m%d%H%M%S.", *extra_args]
        log = directory / "smtp-sink.log"
        for attempt in range(3):
            port = free_port()
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [*args, f"{LOOPBACK}:{port}", "100"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=directory,
                )
            try:
                wait_for_port(LOOPBACK, port, timeout=10, process=process)
                break
            except (RuntimeError, TimeoutError) as exc:
                process.kill()
                process.wait()
                if attempt == 2:
                    raise RuntimeError(f"smtp-sink did not start: {exc}\n{_tail(log)}") from exc
        yield SmtpSink(host=LOOPBACK, port=port, dump_dir=dump_dir)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)
