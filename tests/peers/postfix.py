"""A real, throwaway Postfix instance for recipe tests: its own main.cf, master.cf, queue and log.

``postfix_instance`` writes a private configuration directory, queue directory and
data directory into a temporary directory, starts ``postfix -c DIR start`` with its
smtpd on a free loopback port, and stops the instance and removes the directory on
exit, even when the body raises. The default instance in /etc/postfix is neither read
nor started: every Postfix command here is given ``-c DIR``.

Postfix's master runs as root (and hands its daemons to the ``postfix`` user), so the
instance needs root; elsewhere, or where Postfix is not installed, ServerUnavailable
is raised, whose message a fixture can pass to ``pytest.skip``. An instance that does
not start is a RuntimeError with the tail of its log and the output of
``postfix check``.

Everything is tuned for tests: no chroot, no DNS (relay to ``[127.0.0.1]:PORT``),
retries after one second, and the log in a file (``maillog_file``) instead of syslog.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.peers.servers import (
    LOOPBACK,
    ServerUnavailable,
    _find_program,
    _is_root,
    _reachable_tempdir,
    _tail,
    free_port,
    wait_for_port,
    wait_for_port_closed,
)

__all__ = [
    "PostfixInstance",
    "QueuedMessage",
    "QueuedRecipient",
    "postfix_instance",
    "postfix_unavailable",
    "postfix_version",
]

MYHOSTNAME = "mx.reefknot-test.invalid"
# Map types that are files postmap(1) compiles; the others (pcre, regexp, texthash,
# cidr, ...) are read as text.
INDEXED_MAP_TYPES = frozenset({"hash", "btree", "lmdb", "cdb", "dbm", "sdbm"})
_PROGRAMS = ("postfix", "postconf", "postmap", "postqueue")

# Every service without chroot (column 5 = n), the public smtpd replaced by one on a
# loopback port; the rest as in Postfix's own master.cf.
_MASTER_CF_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


# -- what is queued ---------------------------------------------------------------


@dataclass(frozen=True)
class QueuedRecipient:
    """One recipient of a queued message; ``delay_reason`` is empty until a delivery attempt failed."""

    address: str
    delay_reason: str = ""


@dataclass(frozen=True)
class QueuedMessage:
    """One message in the queue, as ``postqueue -j`` shows it."""

    queue_id: str
    queue_name: str  # incoming, active, deferred, hold or maildrop
    sender: str
    recipients: tuple[QueuedRecipient, ...]
    arrival_time: int
    message_size: int

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients)


def _parse_queue(text: str) -> list[QueuedMessage]:
    messages = []
    for line in text.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        messages.append(
            QueuedMessage(
                queue_id=item["queue_id"],
                queue_name=item["queue_name"],
                sender=item.get("sender", ""),
                recipients=tuple(
                    QueuedRecipient(r["address"], r.get("delay_reason", "")) for r in item.get("recipients", [])
                ),
                arrival_time=int(item.get("arrival_time", 0)),
                message_size=int(item.get("message_size", 0)),
            )
        )
    return messages


# -- the running instance ---------------------------------------------------------


@dataclass
class PostfixInstance:
    """A running throwaway Postfix: where its smtpd listens, its directories, its queue and log."""

    host: str
    smtp_port: int
    directory: Path

    @property
    def config_dir(self) -> Path:
        return self.directory / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.directory / "spool"

    @property
    def data_dir(self) -> Path:
        return self.directory / "lib"

    @property
    def log_path(self) -> Path:
        return self.directory / "maillog"

    def log(self) -> str:
        """Everything the instance has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line of the log matches the regular expression ``pattern``; TimeoutError otherwise."""
        compiled = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = compiled.search(self.log())
            if match:
                return match
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no log line matching {pattern!r} after {timeout:g}s\n{_tail(self.log_path)}")
            time.sleep(0.05)

    def command(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Postfix command (``postqueue``, ``postsuper``, ...) on this instance with ``-c DIR``."""
        return _run_postfix_command(self.config_dir, program, *args, check=check)

    def queue(self) -> list[QueuedMessage]:
        """What is queued (incoming, active, deferred, hold), with each recipient's delay reason."""
        return _parse_queue(self.command("postqueue", "-j").stdout)

    def wait_for_queue_empty(self, timeout: float = 10.0) -> None:
        """Wait until nothing is queued, deferred mail included; TimeoutError with the queue and log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            queued = self.queue()
            if not queued:
                return
            if time.monotonic() >= deadline:
                listing = "\n".join(f"  {m.queue_id} [{m.queue_name}] {m.sender} -> {m.recipients}" for m in queued)
                raise TimeoutError(f"Postfix queue not empty after {timeout:g}s:\n{listing}\n{_tail(self.log_path)}")
            time.sleep(0.1)

    def flush(self) -> None:
        """Attempt to deliver all queued mail now (``postqueue -f``), deferred mail included."""
        self.command("postqueue", "-f")

    def postconf(self, name: str) -> str:
        """The value of main.cf parameter ``name`` as this instance sees it."""
        return self.command("postconf", "-h", name).stdout.strip()

    def map_types(self) -> set[str]:
        """The lookup table types this Postfix supports (``postconf -m``): pcre needs postfix-pcre."""
        return set(self.command("postconf", "-m").stdout.split())

    def set_map(self, name: str, text: str) -> Path:
        """Write (and for indexed types, postmap) lookup table ``name`` ("hash:transport", "pcre:rules", ...).

        Postfix daemons notice a changed indexed table and restart by themselves; a
        changed text table (pcre:, regexp:) needs ``reload``.
        """
        return _write_map(self.config_dir, name, text)

    def reload(self) -> None:
        """Make the running instance reread main.cf, master.cf and text tables (``postfix reload``)."""
        self.command("postfix", "reload")


def _run_postfix_command(
    config_dir: Path, program: str, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    path = _find_program(program)
    if path is None:
        raise ServerUnavailable(f"{program} not found; install the Debian 'postfix' package")
    env = {**os.environ, "MAIL_CONFIG": str(config_dir), "LC_ALL": "C", "TZ": "UTC"}
    result = subprocess.run(
        [path, "-c", str(config_dir), *args],
        capture_output=True, text=True, check=False, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{program} -c {config_dir} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            f"--- log (Postfix commands write their errors there, or to a terminal)\n"
            f"{_tail(config_dir.parent / 'maillog', 10)}"
        )
    return result


# -- configuration ----------------------------------------------------------------


def _default_main_cf(root: Path) -> dict[str, str]:
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "spool"),
        "data_directory": str(root / "lib"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "default_privs": "nobody",
        "myhostname": MYHOSTNAME,
        "mydomain": "reefknot-test.invalid",
        "myorigin": "$myhostname",
        "mydestination": "",
        "relay_domains": "",
        "relayhost": "",
        "mynetworks": "127.0.0.0/8",
        "inet_interfaces": LOOPBACK,
        "inet_protocols": "ipv4",
        "smtputf8_enable": "yes",
        "maillog_file": str(root / "maillog"),
        "maillog_file_prefixes": str(root),
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "biff": "no",
        "append_dot_mydomain": "no",
        # No DNS anywhere: literal addresses, /etc/hosts, no PTR lookups of clients.
        "smtp_host_lookup": "native",
        "lmtp_host_lookup": "native",
        "smtp_dns_support_level": "disabled",
        "lmtp_dns_support_level": "disabled",
        "smtpd_peername_lookup": "no",
        # Retries in seconds, not minutes.
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
        "delay_warning_time": "0h",
        "smtp_connect_timeout": "5s",
        "lmtp_connect_timeout": "5s",
        "smtpd_error_sleep_time": "0s",
        "in_flow_delay": "0s",
    }


def _main_cf_text(root: Path, main_cf: Mapping[str, str] | str) -> str:
    settings = _default_main_cf(root)
    extra = ""
    if isinstance(main_cf, str):
        extra = main_cf  # appended: in main.cf the last setting of a parameter wins
    else:
        settings.update(main_cf)
    lines = [f"{name} = {value}".rstrip() for name, value in settings.items()]
    return "\n".join(lines) + "\n" + (extra.rstrip("\n") + "\n" if extra.strip() else "")


def _write_main_cf(path: Path, text: str) -> None:
    """Write main.cf dated two seconds back.

    Every Postfix program that reads a main.cf changed within the last second sleeps
    (in steps of 300 ms) until it is older, so a fresh one would cost each start 2 s.
    """
    path.write_text(text)
    then = time.time() - 2
    os.utime(path, (then, then))


def _service_key(line: str) -> tuple[str, str] | None:
    """(service, type) of a master.cf entry line; None for comments and continuation lines."""
    if not line.strip() or line[0] in " \t#":
        return None
    fields = line.split()
    return (fields[0], fields[1]) if len(fields) > 1 else None


def _master_cf_text(smtp_port: int, smtpd_options: Mapping[str, str], extra: str) -> str:
    """master.cf: the built-in services, less any that ``extra`` defines again, then ``extra``."""
    smtpd = f"{LOOPBACK}:{smtp_port} inet n       -       n       -       -       smtpd\n"
    smtpd += "".join(f"  -o {name}={value}\n" for name, value in smtpd_options.items())
    redefined = {key for line in extra.splitlines() if (key := _service_key(line))}
    kept = [line for line in _MASTER_CF_SERVICES.splitlines() if _service_key(line) not in redefined]
    return smtpd + "\n".join(kept) + "\n" + (extra.rstrip("\n") + "\n" if extra.strip() else "")


def _split_map_name(name: str) -> tuple[str | None, str]:
    """'hash:transport' -> ('hash', 'transport'); a bare file name has no type."""
    kind, _, filename = name.rpartition(":")
    if not filename or "/" in filename or filename.startswith("."):
        raise ValueError(f"a lookup table is named [type:]filename, a file in the configuration directory: {name!r}")
    return (kind or None), filename


def _write_map(config_dir: Path, name: str, text: str) -> Path:
    kind, filename = _split_map_name(name)
    path = config_dir / filename
    path.write_text(text if text.endswith("\n") or not text else text + "\n")
    path.chmod(0o644)
    if kind in INDEXED_MAP_TYPES:
        _run_postfix_command(config_dir, "postmap", f"{kind}:{path}")
    return path


# -- starting and stopping --------------------------------------------------------


def postfix_version() -> tuple[int, ...]:
    """The installed Postfix's version, e.g. (3, 7, 11); ServerUnavailable if none."""
    program = _find_program("postconf")
    if program is None:
        raise ServerUnavailable("postconf not found; install the Debian 'postfix' package")
    # -d reads no main.cf, so the missing default configuration does not matter.
    out = subprocess.run([program, "-d", "-h", "mail_version"], capture_output=True, text=True, check=False).stdout
    match = re.match(r"\s*(\d+(?:\.\d+)*)", out)
    if not match:
        raise RuntimeError(f"cannot read the Postfix version from {out!r}")
    return tuple(int(n) for n in match.group(1).split("."))


def postfix_unavailable() -> str | None:
    """Why a private instance cannot run here (not root, Postfix missing or too old), or None."""
    missing = [name for name in _PROGRAMS if _find_program(name) is None]
    if missing:
        return f"{', '.join(missing)} not found; install the Debian 'postfix' package"
    if not _is_root():
        return "a private Postfix instance needs root (its master runs as root)"
    if postfix_version() < (3, 4):
        return "Postfix 3.4 or later is needed (maillog_file)"
    return None


def _master_pid(queue_dir: Path) -> int | None:
    try:
        return int((queue_dir / "pid" / "master.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (nobody may reap the daemonized master)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (the master's daemons share its group)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _stop(queue_dir: Path, smtp_port: int) -> None:
    """Stop the master as ``postfix stop`` does (SIGTERM, then SIGKILL to its group), without its 1 s sleeps."""
    pid = _master_pid(queue_dir)
    if pid is None or not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_until(lambda: not _alive(pid), 10):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait_until(lambda: not _alive(pid), 5)
    # The daemons exit when their master's status pipe closes; one that the master was
    # forking just then can linger for a second, and is killed.
    if not _wait_until(lambda: not _group_members(pid), 0.3):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait_until(lambda: not _group_members(pid), 5)
    wait_for_port_closed(LOOPBACK, smtp_port, timeout=5)


def _run_on_terminal(args: list[str], env: Mapping[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; (exit status, output).

    Postfix commands write their warnings and fatal errors to stderr only when it is
    a terminal; otherwise they go to the log, which is not there before the instance
    has run once.
    """
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    finally:
        os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    try:
        status = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        status = process.wait()
    return status, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def _start_failure(config_dir: Path, log_path: Path, started: subprocess.CompletedProcess[str], reason: str) -> str:
    program = _find_program("postfix")
    assert program is not None
    env = {**os.environ, "MAIL_CONFIG": str(config_dir), "LC_ALL": "C", "TZ": "UTC"}
    status, output = _run_on_terminal([program, "-c", str(config_dir), "check"], env)
    return (
        f"Postfix did not start: {reason}\n--- postfix start ({started.returncode})\n{started.stdout}{started.stderr}"
        f"--- postfix check ({status})\n{output}"
        f"--- {log_path}\n{_tail(log_path)}"
    )


@contextlib.contextmanager
def postfix_instance(
    main_cf: Mapping[str, str] | str | None = None,
    master_cf_extra: str = "",
    maps: Mapping[str, str] | None = None,
    *,
    smtpd_options: Mapping[str, str] | None = None,
    start_timeout: float = 30.0,
) -> Iterator[PostfixInstance]:
    """Run a throwaway Postfix instance; yield it once its smtpd answers on 127.0.0.1.

    ``main_cf`` overrides or adds main.cf parameters (a mapping), or is text appended
    to main.cf (where the last setting wins). Parameter values may use Postfix's own
    ``$config_directory``, ``$queue_directory``, e.g. ``transport_maps =
    hash:$config_directory/transport``. ``master_cf_extra`` is appended to master.cf;
    an entry there for a service and type already built in (``smtp unix``, ...)
    replaces it. ``maps`` are lookup tables to write into the configuration
    directory, named ``type:filename`` (``hash:transport``, ``pcre:rules``) or by a
    bare file name; indexed types (hash, lmdb, cdb, ...) are compiled with postmap.
    ``smtpd_options`` become ``-o name=value`` lines of the loopback smtpd.
    """
    reason = postfix_unavailable()
    if reason is not None:
        raise ServerUnavailable(reason)
    root = _reachable_tempdir("reefknot-postfix-")
    instance: PostfixInstance | None = None
    config_dir, queue_dir, log_path = root / "etc", root / "spool", root / "maillog"
    try:
        # postfix chdirs to the queue directory first; its subdirectories (and the
        # data directory) are created, with their owners, by ``postfix start``.
        config_dir.mkdir(mode=0o755)
        queue_dir.mkdir(mode=0o755)
        _write_main_cf(config_dir / "main.cf", _main_cf_text(root, main_cf if main_cf is not None else {}))
        for name, text in (maps or {}).items():
            _write_map(config_dir, name, text)
        for attempt in range(3):  # another process may take the port between probe and bind
            port = free_port()
            (config_dir / "master.cf").write_text(_master_cf_text(port, smtpd_options or {}, master_cf_extra))
            instance = PostfixInstance(host=LOOPBACK, smtp_port=port, directory=root)
            logged_before = len(instance.log())
            started = _run_postfix_command(config_dir, "postfix", "start", check=False, timeout=start_timeout)
            if started.returncode == 0:
                try:
                    wait_for_port(LOOPBACK, port, timeout=start_timeout)
                except TimeoutError as exc:
                    raise RuntimeError(_start_failure(config_dir, log_path, started, str(exc))) from exc
                break
            _stop(queue_dir, port)
            if attempt == 2 or "Address already in use" not in instance.log()[logged_before:]:
                raise RuntimeError(_start_failure(config_dir, log_path, started, "postfix start failed"))
        assert instance is not None
        yield instance
    finally:
        if instance is not None:
            _stop(queue_dir, instance.smtp_port)
        shutil.rmtree(root, ignore_errors=True)
