"""The three CalDAV servers under test, each a subprocess on a free loopback port with its own scratch directory.

Reefknot runs from the Python that runs the benchmark (``python -m gateway.cli``) on a fresh
SQLite database; Radicale and Xandikos from their own virtual environment
(``bench/caldav/setup.sh``), authentication off, everything else at their defaults. Each
start returns a ``Server`` even when a setup step failed: the failure is kept in
``problems`` and the benchmark reports it per operation instead of stopping.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from davclient import DavClient, DavError
from workload import LOCAL_ATTENDEES, ORGANIZER, mkcalendar, propfind_resourcetype

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0


@dataclass
class Server:
    """A running server: where its calendar is, who the client logs in as, and what went wrong setting it up."""

    name: str
    port: int
    calendar: str
    user: str
    password: str
    log_path: Path
    version: str = ""
    process: subprocess.Popen[bytes] | None = None
    problems: list[str] = field(default_factory=list)

    def client(self) -> DavClient:
        return DavClient(LOOPBACK, self.port, self.user, self.password)

    def href(self, name: str) -> str:
        return self.calendar + name

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def wait_until_listening(server: Server, timeout: float = READY_TIMEOUT) -> bool:
    """True once the port takes connections; False (with the reason in ``problems``) if the process died or took too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            server.problems.append(f"{server.name} exited with status {server.process.returncode} before listening")
            return False
        try:
            socket.create_connection((LOOPBACK, server.port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    server.problems.append(f"{server.name} not listening on port {server.port} after {timeout:.0f} s")
    return False


def launch(server: Server, argv: list[str], cwd: Path) -> None:
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)


def program_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except OSError as error:
        return f"({error})"
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[-1] if (done.stdout or done.stderr) else ""


def check_calendar(server: Server) -> None:
    """A PROPFIND on the calendar, so that a server without it says so once, before seeding."""
    client = server.client()
    try:
        client.expect("PROPFIND", server.calendar, (207,), propfind_resourcetype(), {"Depth": "0"})
    except (DavError, OSError) as error:
        server.problems.append(f"calendar {server.calendar}: {error}")
    finally:
        client.close()


def reefknot_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def write_reefknot_config(directory: Path, http_port: int) -> Path:
    """SQLite, SMTP and LMTP on free loopback ports, the HTTP face on ``http_port``; no [outbound]: the outbox is kept."""
    path = directory / "reefknot.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{directory / "reefknot.db"}"\n\n'
        f'[smtp]\nlisten = ["{LOOPBACK}:{free_port()}"]\n\n'
        f'[lmtp]\nlisten = ["{LOOPBACK}:{free_port()}"]\n\n'
        f'[http]\nlisten = "{LOOPBACK}:{http_port}"\n'
    )
    return path


def start_reefknot(directory: Path) -> Server:
    """Alice (with an app password) and Bob 1-5 in a fresh database, then ``reefknot serve``."""
    port = free_port()
    server = Server("Reefknot", port, f"/dav/calendars/{ORGANIZER}/default/", ORGANIZER, "", directory / "serve.log",
                    version="this tree")
    config = write_reefknot_config(directory, port)
    steps = [("db", "upgrade"), ("users", "add", ORGANIZER, "--name", "Alice")]
    steps += [("users", "add", address, "--name", address.split("@")[0].capitalize()) for address in LOCAL_ATTENDEES]
    for step in steps:
        done = reefknot_cli(config, *step)
        if done.returncode != 0:
            server.problems.append(f"reefknot {' '.join(step[:2])}: exit {done.returncode}: {last_line(done.stderr)}")
    done = reefknot_cli(config, "users", "password", "add", ORGANIZER)
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode == 0 and lines:
        server.password = lines[-1]
    else:
        server.problems.append(f"reefknot users password add: exit {done.returncode}: {last_line(done.stderr)}")
    launch(server, [sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"], ROOT)
    if wait_until_listening(server):
        check_calendar(server)
    return server


def start_radicale(directory: Path, venv: Path) -> Server:
    """Radicale with ``[auth] type = none`` (the login names the user), the calendar made by MKCALENDAR."""
    port = free_port()
    server = Server("Radicale", port, f"/{ORGANIZER}/default/", ORGANIZER, "unused", directory / "radicale.log",
                    version=program_version([str(venv / "bin" / "radicale"), "--version"]))
    config = directory / "radicale.conf"
    config.write_text(
        f"[server]\nhosts = {LOOPBACK}:{port}\n\n[auth]\ntype = none\n\n"
        f"[storage]\nfilesystem_folder = {directory / 'collections'}\n\n[logging]\nlevel = warning\n"
    )
    launch(server, [str(venv / "bin" / "radicale"), "--config", str(config)], directory)
    if wait_until_listening(server):
        client = server.client()
        try:
            client.expect("MKCALENDAR", server.calendar, (201,), mkcalendar())
        except (DavError, OSError) as error:
            server.problems.append(f"MKCALENDAR {server.calendar}: {error}")
        finally:
            client.close()
    return server


def start_xandikos(directory: Path, venv: Path) -> Server:
    """Xandikos with ``--defaults``: the principal /user/ and its calendar /user/calendars/calendar/."""
    port = free_port()
    server = Server("Xandikos", port, "/user/calendars/calendar/", ORGANIZER, "unused", directory / "xandikos.log",
                    version=program_version([str(venv / "bin" / "xandikos"), "--version"]))
    launch(server, [str(venv / "bin" / "xandikos"), "serve", "--defaults", "-d", str(directory / "store"),
                    "-l", LOOPBACK, "-p", str(port), "--state-dir", str(directory / "state")], directory)
    if wait_until_listening(server):
        check_calendar(server)
    return server


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
