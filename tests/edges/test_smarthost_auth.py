"""The smarthost password never crosses a network in clear text: AUTH needs STARTTLS off this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.edges.smarthost import SmarthostSession
from gateway.settings.config import ConfigError, Listener, OutboundOptions, load_config
from tests.peers.cli import EVENT, Reefknot
from tests.peers.paths import ROOT
from tests.peers.servers import LOOPBACK
from tests.peers.sink import smtp_peer

ALICE, CAROL = "alice@foo.example", "carol@bar.example"
AUTH = 'username = "reefknot"\npassword_file = "/etc/reefknot/smarthost.secret"\n'


def outbound(tmp_path: Path, settings: str) -> Path:
    path = tmp_path / "reefknot.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "r.db"}"\n\n[outbound]\n{settings}')
    return path


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        pytest.param(f'smarthost = "relay.example:587"\n{AUTH}', True, id="host-name-in-clear"),
        pytest.param(f'smarthost = "192.0.2.10:25"\n{AUTH}', True, id="network-address-in-clear"),
        pytest.param(f'smarthost = "[2001:db8::1]:25"\n{AUTH}', True, id="ipv6-network-address-in-clear"),
        pytest.param(f'smarthost = "relay.example:587"\nstarttls = true\n{AUTH}', False, id="host-name-with-starttls"),
        pytest.param(f'smarthost = "127.0.0.1:25"\n{AUTH}', False, id="loopback"),
        pytest.param(f'smarthost = "127.0.0.2:25"\n{AUTH}', False, id="loopback-network"),
        pytest.param(f'smarthost = "[::1]:25"\n{AUTH}', False, id="ipv6-loopback"),
        pytest.param(f'smarthost = "localhost:25"\n{AUTH}', False, id="localhost"),
        pytest.param(f'smarthost = "unix:/var/spool/postfix/public/submission"\n{AUTH}', False, id="unix-socket"),
        pytest.param('smarthost = "relay.example:25"\n', False, id="no-auth-in-clear"),
        pytest.param(AUTH, False, id="default-smarthost-is-loopback"),
    ],
)
def test_auth_in_clear_text_is_refused_unless_the_smarthost_is_on_this_machine(
    tmp_path: Path, settings: str, refused: bool
) -> None:
    path = outbound(tmp_path, settings)
    if refused:
        with pytest.raises(ConfigError, match=r"\[outbound\] username: AUTH to smarthost .* clear text; set starttls"):
            load_config(str(path))
    else:
        assert load_config(str(path)).outbound.username == ("reefknot" if "username" in settings else "")


def test_a_relay_refuses_to_send_a_password_in_clear_text_whatever_built_it() -> None:
    options = OutboundOptions(username="reefknot", password_file="/etc/reefknot/smarthost.secret")
    with pytest.raises(ConfigError, match="clear text"):
        SmarthostSession(Listener("192.0.2.10", 25), options, "s3cret")
    SmarthostSession(Listener("192.0.2.10", 25), OutboundOptions(starttls=True, username="reefknot",
                                                      password_file="/etc/reefknot/smarthost.secret"), "s3cret")


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_serve_and_check_config_exit_78_naming_the_setting(tmp_path: Path, command: str) -> None:
    path = outbound(tmp_path, f'smarthost = "relay.example:587"\n{AUTH}')
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(path), command],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 78, done.stdout + done.stderr
    expected = "[outbound] username: AUTH to smarthost relay.example:587 would send the password in clear text"
    assert expected in done.stderr


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the peer's point, on loopback
def test_auth_without_starttls_to_a_loopback_smarthost_delivers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "smarthost.secret"
    secret.write_text("s3cret\n")
    with smtp_peer(auth=("reefknot", "s3cret")) as peer:
        path = outbound(tmp_path, f'smarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "foo.example"\n'
                                  f'username = "reefknot"\npassword_file = "{secret}"\n')
        run = Reefknot(path, capsys)
        run("users", "add", ALICE, "--name", "Alice")
        event = tmp_path / "u-auth.ics"
        text = EVENT.format(uid="u-auth", attendees=f"ATTENDEE;RSVP=TRUE:mailto:{CAROL}")
        event.write_text(text.replace("2026", "2027"))
        run("event", "put", "--as", ALICE, str(event))
        run("outbox", "flush")
        assert [m.rcpt_to for m in peer.received] == [(CAROL,)]
