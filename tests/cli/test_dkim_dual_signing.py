"""Dual signing: with two ``[[outbound.dkim]]`` keys every mail that reaches the relay carries two signatures that verify."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from gateway.adapters.dkim import KeyResolver, dns_txt_lookup, verify_dkim
from gateway.adapters.keyrecords import resolver_for
from gateway.cli import main
from tests.peers.cli import Reefknot, write_event
from tests.peers.dns_server import DnsServer, dns_server
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Sink, smtp_peer

CAROL = "carol@bar.example"


@pytest.fixture
def peer() -> Iterator[Sink]:
    with smtp_peer() as sink:
        yield sink


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with dns_server() as server:
        yield server


def configure(tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str]) -> Reefknot:
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/reefknot.db"\n\n'
                      f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "reply.foo.example"\n')
    return Reefknot(config, capsys)


def add_key(run: Reefknot, dns: DnsServer, selector: str, algorithm: str, header: str = "[[outbound.dkim]]") -> None:
    """A key from ``dkim keygen``, configured and published as keygen says."""
    key = run.config.parent / f"{selector}.key"
    printed = run("dkim", "keygen", "--domain", "foo.example", "--selector", selector, "--algorithm", algorithm,
                  "--out", str(key))
    dns.publish(f"{selector}._domainkey.foo.example", *re.findall(r'"([^"]*)"', printed.splitlines()[0]))
    with run.config.open("a") as config:
        config.write(f'\n{header}\ndomain = "foo.example"\nselector = "{selector}"\nkey_file = "{key}"\n')


def send_invitation(run: Reefknot, tmp_path: Path, peer: Sink) -> bytes:
    run("users", "add", "alice@foo.example")
    run("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "u1", CAROL)))
    run("outbox", "flush")
    (mail,) = peer.received
    return mail.data


def algorithms(raw: bytes) -> list[str]:
    """The ``a=`` of each DKIM-Signature, topmost first."""
    verifier = dkim.DKIM(raw)
    values = [v for n, v in verifier.headers if n.lower() == b"dkim-signature"]
    return [dkim.util.parse_tag_value(v)[b"a"].decode() for v in values]


def test_an_ed25519_and_an_rsa_key_give_two_signatures_that_both_verify_against_dns(
    tmp_path: Path, peer: Sink, dns: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, peer, capsys)
    add_key(run, dns, "ed", "ed25519")
    add_key(run, dns, "rsa", "rsa")
    raw = send_invitation(run, tmp_path, peer)

    assert algorithms(raw) == ["ed25519-sha256", "rsa-sha256"]  # in the configuration's order
    resolver = resolver_for(dns.address)
    keys = KeyResolver(lambda name, timeout: dns_txt_lookup(name, timeout, resolver))
    results = verify_dkim(raw, resolver=keys, dns_timeout=2.0)
    assert [(r.domain, r.selector, r.result) for r in results] == [
        ("foo.example", "ed", "pass"), ("foo.example", "rsa", "pass"),
    ], results
    assert sorted(dns.questions) == ["ed._domainkey.foo.example", "rsa._domainkey.foo.example"]
    assert run("dkim", "check", "--nameserver", dns.address).splitlines() == [
        "ed._domainkey.foo.example: ok", "rsa._domainkey.foo.example: ok",
    ]


def test_the_single_table_form_still_signs_once(
    tmp_path: Path, peer: Sink, dns: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, peer, capsys)
    add_key(run, dns, "rk", "rsa", header="[outbound.dkim]")
    raw = send_invitation(run, tmp_path, peer)
    assert algorithms(raw) == ["rsa-sha256"]
    resolver = resolver_for(dns.address)
    (result,) = verify_dkim(raw, resolver=KeyResolver(lambda name, timeout: dns_txt_lookup(name, timeout, resolver)))
    assert result.passed, result


def test_the_sender_refuses_to_start_when_the_second_key_cannot_be_read(
    tmp_path: Path, peer: Sink, dns: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, peer, capsys)
    add_key(run, dns, "ed", "ed25519")
    add_key(run, dns, "rsa", "rsa")
    (tmp_path / "rsa.key").unlink()
    run("users", "add", "alice@foo.example")
    run("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "u1", CAROL)))
    run("outbox", "flush", expect=78)
    assert peer.connections == 0


def check_config(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--config", str(config), "check-config"])
    return code, capsys.readouterr().err


ENTRY = '[[outbound.dkim]]\ndomain = "foo.example"\nselector = "{}"\nkey_file = "/etc/reefknot/{}.key"\n'


def test_check_config_names_the_half_filled_entry_by_its_index_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "reefknot.toml"
    config.write_text('[outbound]\nsmarthost = "127.0.0.1:25"\n\n' + ENTRY.format("ed", "ed") + "\n"
                      '[[outbound.dkim]]\ndomain = "foo.example"\nselector = "rsa"\n')
    code, err = check_config(config, capsys)
    assert code == 78
    assert f"{config}:9: [[outbound.dkim]] #2 domain, selector and key_file are all needed" in err


def test_check_config_refuses_two_keys_under_one_selector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "reefknot.toml"
    config.write_text('[outbound]\n\n' + ENTRY.format("rk", "a") + "\n" + ENTRY.format("rk", "b"))
    code, err = check_config(config, capsys)
    assert code == 78
    assert f"{config}:10: [[outbound.dkim]] #2 selector: 'rk' of foo.example is #1's already" in err


def test_check_config_names_an_unknown_key_in_an_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "reefknot.toml"
    config.write_text('[outbound]\n\n' + ENTRY.format("ed", "ed") + 'algorithm = "ed25519"\n')
    code, err = check_config(config, capsys)
    assert code == 78 and "[[outbound.dkim]] #1 unknown key 'algorithm'" in err
