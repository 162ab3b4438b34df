"""The shipped systemd unit: hardened (systemd-analyze security below 2.0), yet open where Reefknot needs it.

No systemd runs the unit here, so its system call filter is checked another way: ``reefknot
serve`` runs under strace while it takes mail over SMTP and LMTP and answers /metrics,
and every call it made must be one the filter lets through.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.cli import main
from tests.peers.paths import ROOT
from tests.peers.serve import ServeProcess, crlf, lmtp_deliver, wait_until_processed
from tests.peers.servers import LOOPBACK, free_port

UNIT = ROOT / "systemd" / "reefknot.service"
README = ROOT / "README.md"
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")
NEEDED_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6"}  # unix and TCP listeners, peers, sd_notify


def settings(unit: Path) -> dict[str, list[str]]:
    """Every key of the [Service] section with all its values, in order (systemd keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def install_section() -> str:
    text = README.read_text()
    start = text.index("## Install as a service")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_rates_the_unit_below_two() -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    found = EXPOSURE.search(done.stdout)
    assert found, f"no exposure level in:\n{done.stdout}\n{done.stderr}"
    assert float(found.group(1)) < 2.0, done.stdout


def test_the_service_is_ready_by_notification_and_watched() -> None:
    service = settings(UNIT)
    assert service["Type"] == ["notify"]
    assert int(service["WatchdogSec"][-1]) > 0
    assert service["NotifyAccess"] == ["main"]


def test_the_sandbox_leaves_the_network_and_sockets_reefknot_uses() -> None:
    service = settings(UNIT)
    families = set(" ".join(service["RestrictAddressFamilies"]).split())
    assert NEEDED_FAMILIES <= families
    assert service.get("PrivateNetwork", ["no"]) == ["no"]
    assert not service.get("IPAddressDeny")  # the smarthost, IMAP and PostgreSQL may be anywhere
    hidden = " ".join(service.get("InaccessiblePaths", []) + service.get("TemporaryFileSystem", []))
    assert "/run" not in hidden  # Dovecot's LMTP socket and PostgreSQL's live there


def test_the_database_directory_is_the_state_directory() -> None:
    service = settings(UNIT)
    assert service["StateDirectory"] == ["reefknot"]
    assert service["WorkingDirectory"] == ["/var/lib/reefknot"]
    assert service["ProtectSystem"] == ["strict"]  # so the state directory is all it may write, with /run/reefknot


def test_exec_start_is_where_the_readme_installs_reefknot() -> None:
    (command,) = settings(UNIT)["ExecStart"]
    program, *arguments = command.split()
    steps = install_section()
    venv = program.removesuffix("/bin/reefknot")
    assert venv != program and f"python3 -m venv {venv}" in steps
    config = arguments[arguments.index("--config") + 1]
    assert f"cat > {config} " in steps and arguments[-1] == "serve"


# SQLite hands its -wal and -shm files to the database's owner with fchown, only when it
# runs as root; the unit runs it as reefknot, and the tests run as root.
ONLY_AS_ROOT = {"fchown"}
TRACED_CALL = re.compile(r"^\d+\s+([a-z0-9_]+)\(", re.MULTILINE)
REQUEST = """BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Test//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r
UID:{uid}\r\nDTSTAMP:20260601T080000Z\r\nDTSTART:20260710T100000Z\r\nDTEND:20260710T110000Z\r
SUMMARY:Planning\r\nORGANIZER:mailto:carol@bar.example\r\nATTENDEE;RSVP=TRUE:mailto:alice@foo.example\r
END:VEVENT\r\nEND:VCALENDAR\r\n"""


def expand_syscalls(names: list[str]) -> set[str]:
    """The system calls that filter entries (@groups or plain names) stand for, as systemd-analyze lists them."""
    found: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            found.add(name)
            continue
        listing = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                                 timeout=60, check=True).stdout.splitlines()[1:]
        entries = [line.split()[0] for line in listing if line.strip() and not line.strip().startswith("#")]
        found |= expand_syscalls(entries)
    return found


def allowed_syscalls(filters: list[str]) -> set[str]:
    """What SystemCallFilter= lines allow: the first is an allow list, each ``~`` line takes calls away."""
    allowed: set[str] = set()
    for entry in filters:
        if entry.startswith("~"):
            allowed -= expand_syscalls(entry[1:].split())
        else:
            allowed |= expand_syscalls(entry.split())
    return allowed


def invitation(uid: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "carol@bar.example", "alice@foo.example", "Planning"
    message["Message-ID"] = f"<{uid}@bar.example>"
    message.set_content("An invitation.")
    message.add_alternative(REQUEST.format(uid=uid).encode(), maintype="text", subtype="calendar",
                            params={"method": "REQUEST", "charset": "utf-8"})
    return crlf(bytes(message))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or shutil.which("strace") is None,
                    reason="needs systemd-analyze and strace")
def test_serve_makes_only_system_calls_the_filter_allows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/reefknot.db"
    socket_path, smtp_port, http_port = tmp_path / "lmtp.sock", free_port(), free_port()
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "{url}"\n\n[smtp]\nlisten = ["{LOOPBACK}:{smtp_port}"]\n\n'
                      f'[lmtp]\nlisten = ["unix:{socket_path}"]\n\n[http]\nlisten = "{LOOPBACK}:{http_port}"\n')
    assert main(["--config", str(config), "users", "add", "alice@foo.example"]) == 0
    trace = tmp_path / "trace.txt"
    serve = ServeProcess(config, tmp_path / "serve.log")
    env = {key: value for key, value in os.environ.items() if key != "REEFKNOT_CONFIG"}
    env.update({"NOTIFY_SOCKET": serve.notify_address, "WATCHDOG_USEC": "2000000"})  # the watchdog pings too
    with serve.log_path.open("ab") as log:
        serve.process = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", str(trace),
             sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        serve.wait_for_notice("READY=1", timeout=60)
        with smtplib.SMTP(LOOPBACK, smtp_port) as client:
            client.sendmail("carol@bar.example", ["alice@foo.example"], invitation("by-smtp"))
        lmtp_deliver(str(socket_path), "carol@bar.example", ["alice@foo.example"], invitation("by-lmtp"))
        wait_until_processed(url, ["<by-smtp@bar.example>", "<by-lmtp@bar.example>"], timeout=60)
        with urllib.request.urlopen(f"http://{LOOPBACK}:{http_port}/metrics", timeout=30) as answer:
            assert answer.status == 200
        serve.wait_for_notice("WATCHDOG=1", timeout=10)
        (daemon,) = Path(f"/proc/{serve.process.pid}/task/{serve.process.pid}/children").read_text().split()
        os.kill(int(daemon), signal.SIGTERM)  # the daemon itself, so that its shutdown is traced too
        assert serve.process.wait(90) == 0, serve.log()
    finally:
        serve.close()
    used = set(TRACED_CALL.findall(trace.read_text()))
    assert {"accept", "accept4"} & used and {"fsync", "fdatasync"} & used  # the trace saw the work being done
    allowed = allowed_syscalls(settings(UNIT)["SystemCallFilter"])
    refused = used - allowed - ONLY_AS_ROOT
    assert not refused, f"calls the unit's filter refuses: {sorted(refused)}"
