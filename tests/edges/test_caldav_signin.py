"""Signing in to the CalDAV face: where Basic is accepted, TLS on ``[http]``, failed sign-ins limited, ``%40`` usernames."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import ssl
from pathlib import Path

import pytest

from gateway.edges.caldav import may_sign_in
from tests.peers.caldav_site import ALICE, CalDavSite
from tests.peers.caldav_site import site  # noqa: F401  (the fixture)
from tests.peers.cli import Reefknot
from tests.peers.serve import ServeProcess, write_config
from tests.peers.servers import LOOPBACK, _self_signed_cert, free_port

PROXIES = (ipaddress.ip_network("192.0.2.0/28"), ipaddress.ip_network("2001:db8::1/128"))
PEERS = {
    "loopback-v4": ("127.0.0.1", False, True),
    "loopback-other": ("127.0.0.2", False, True),
    "loopback-v6": ("::1", False, True),
    "unix-socket": ("unix", False, True),
    "remote-plain": ("198.51.100.7", False, False),
    "remote-tls": ("198.51.100.7", True, True),
    "trusted-proxy": ("192.0.2.5", False, True),
    "outside-the-proxy-network": ("192.0.2.17", False, False),
    "trusted-proxy-v6": ("2001:db8::1", False, True),
    "v4-mapped-loopback": ("::ffff:127.0.0.1", False, True),
    "garbage": ("not-an-address", False, False),
}


@pytest.mark.parametrize(("peer", "tls", "allowed"), PEERS.values(), ids=PEERS.keys())
def test_basic_is_accepted_only_over_tls_from_loopback_or_a_trusted_proxy(peer: str, tls: bool, allowed: bool) -> None:
    assert may_sign_in(peer, tls, PROXIES) is allowed



def test_failed_sign_ins_are_limited_then_refused_with_429(site: CalDavSite) -> None:
    statuses = [site.request("PROPFIND", "/dav/", password="wrong", headers={"Depth": "0"}).status for _ in range(5)]
    assert statuses == [401] * 5
    assert site.request("PROPFIND", "/dav/", headers={"Depth": "0"}).status == 429  # even the right password, for now


def test_a_username_written_with_percent_40_signs_in(site: CalDavSite) -> None:
    token = base64.b64encode(f"alice%40foo.example:{site.passwords[ALICE]}".encode()).decode()
    connection = http.client.HTTPConnection(LOOPBACK, site.http_port, timeout=30)
    connection.request("PROPFIND", "/dav/", headers={"Authorization": f"Basic {token}", "Depth": "0"})
    assert connection.getresponse().status == 207


def test_the_face_speaks_tls_when_given_a_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = _self_signed_cert(tmp_path)
    port = free_port()
    config, _, _ = write_config(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    text = config.read_text().replace("[http]\n", f'[http]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    text = text.split("[http]")[0] + "[http]" + "\n".join(
        line if not line.startswith("listen") else f'listen = "{LOOPBACK}:{port}"'
        for line in text.split("[http]")[1].split("\n"))
    config.write_text(text)
    run = Reefknot(config, capsys)
    run("users", "add", ALICE)
    password = run("users", "password", "add", ALICE).strip()
    daemon = ServeProcess(config, tmp_path / "serve.log")
    daemon.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        connection = http.client.HTTPSConnection(LOOPBACK, port, context=context, timeout=30)
        token = base64.b64encode(f"{ALICE}:{password}".encode()).decode()
        connection.request("PROPFIND", "/dav/", headers={"Authorization": f"Basic {token}", "Depth": "0"})
        answer = connection.getresponse()
        assert answer.status == 207 and "calendar-access" in answer.headers["DAV"]
        plain = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("PROPFIND", "/dav/", headers={"Authorization": f"Basic {token}", "Depth": "0"})
            plain.getresponse()
    finally:
        daemon.close()
