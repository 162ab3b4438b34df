"""systemd's notification protocol (sd_notify(3)): READY, WATCHDOG, STOPPING and STATUS datagrams.

A plain datagram to the unix socket named by ``$NOTIFY_SOCKET`` (a leading ``@``
names an abstract socket). Without that variable, or when the manager is gone, a
notification is a no-op: the daemon runs the same under systemd and without it.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)
READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"
RELOADING = "RELOADING=1"


def status(text: str) -> str:
    """A ``STATUS=`` line: what ``systemctl status`` shows the daemon doing."""
    return "STATUS=" + text.replace("\n", " ")


def notify(state: str) -> bool:
    """Send one state line to the service manager; True when it was sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as error:
        log.warning("cannot notify the service manager (%s): %s", state, error)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is set for us."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2
