"""The shipped systemd unit: hardened (systemd-analyze security below 2.0), yet open where Reefknot needs it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.peers.paths import ROOT

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
