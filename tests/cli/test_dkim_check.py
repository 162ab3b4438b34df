"""``reefknot dkim check``: each configured key against what a real DNS server on loopback publishes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from tests.peers.dns_server import DnsServer, dns_server

NAME = "rk._domainkey.foo.example"


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with dns_server() as server:
        yield server


class Site:
    """A configuration with DKIM keys made by ``dkim keygen``, and the DNS server ``dkim check`` asks."""

    def __init__(self, tmp_path: Path, dns: DnsServer, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp_path, self.dns, self.capsys = tmp_path, dns, capsys
        self.config = tmp_path / "reefknot.toml"
        self.config.write_text('[trust]\ndns_timeout = 0.5\n\n[outbound]\nsmarthost = "127.0.0.1:1"\n')
        self.printed: dict[str, list[str]] = {}

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--config", str(self.config), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def keygen(self, selector: str, algorithm: str = "ed25519") -> list[str]:
        """A new key, added as one more ``[[outbound.dkim]]``; the TXT strings keygen says to publish."""
        key = self.tmp_path / f"{selector}.key"
        code, out, err = self.run("dkim", "keygen", "--domain", "foo.example", "--selector", selector,
                                  "--algorithm", algorithm, "--out", str(key))
        assert code == 0, err
        with self.config.open("a") as config:
            config.write(f'\n[[outbound.dkim]]\ndomain = "foo.example"\nselector = "{selector}"\nkey_file = "{key}"\n')
        strings = re.findall(r'"([^"]*)"', out.splitlines()[0])
        self.printed[selector] = strings
        return strings

    def check(self, expect: int) -> list[str]:
        code, out, err = self.run("dkim", "check", "--nameserver", self.dns.address)
        assert code == expect, f"dkim check -> {code}\n{out}\n{err}"
        return out.splitlines()


@pytest.fixture
def site(tmp_path: Path, dns: DnsServer, capsys: pytest.CaptureFixture[str]) -> Site:
    return Site(tmp_path, dns, capsys)


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_a_key_published_as_keygen_printed_it_is_ok(site: Site, algorithm: str) -> None:
    strings = site.keygen("rk", algorithm)
    assert len(strings) == (2 if algorithm == "rsa" else 1)  # an RSA record does not fit one 255-octet string
    site.dns.publish(NAME, *strings)
    assert site.check(expect=0) == [f"{NAME}: ok"]
    assert site.dns.questions == [NAME]


def test_a_record_split_anywhere_into_several_strings_is_read_whole(site: Site) -> None:
    (record,) = site.keygen("rk")
    cut = record.index("p=") + 5  # inside the base64: the strings are joined with nothing between them
    site.dns.publish(NAME, record[:10], record[10:cut], record[cut:])
    assert site.check(expect=0) == [f"{NAME}: ok"]


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_a_different_key_at_the_name_is_reported(site: Site, algorithm: str) -> None:
    site.keygen("rk", algorithm)
    other = site.keygen("other", algorithm)
    site.dns.publish(NAME, *other)
    site.dns.publish("other._domainkey.foo.example", *other)
    (line, ok) = site.check(expect=1)
    assert line.startswith(f"{NAME}: other-key: a different key is published (p=")
    assert ok == "other._domainkey.foo.example: ok"


def test_a_name_that_does_not_exist_is_reported_as_nxdomain(site: Site) -> None:
    site.keygen("rk")
    assert site.check(expect=1) == [f"{NAME}: no-record: the name does not exist (NXDOMAIN)"]


def test_a_name_without_a_txt_record_is_reported(site: Site) -> None:
    site.keygen("rk")
    site.dns.records[NAME] = []
    assert site.check(expect=1) == [f"{NAME}: no-record: no TXT record"]


def test_a_revoked_key_is_reported(site: Site) -> None:
    site.keygen("rk")
    site.dns.publish(NAME, "v=DKIM1; k=ed25519; p=")
    assert site.check(expect=1) == [f"{NAME}: revoked: p= is empty: the key is revoked (RFC 6376 §3.6.1)"]


def test_the_right_key_under_the_wrong_algorithm_is_reported(site: Site) -> None:
    (record,) = site.keygen("rk")
    site.dns.publish(NAME, record.replace("k=ed25519", "k=rsa"))
    assert site.check(expect=1) == [f"{NAME}: wrong-algorithm: k=rsa published, the key is ed25519"]


def test_an_rsa_key_without_k_is_rsa_by_default(site: Site) -> None:
    strings = site.keygen("rk", "rsa")
    site.dns.publish(NAME, *(s.replace("k=rsa; ", "") for s in strings))
    assert site.check(expect=0) == [f"{NAME}: ok"]


def test_a_dns_server_that_does_not_answer_is_a_dns_failure(site: Site) -> None:
    (record,) = site.keygen("rk")
    site.dns.publish(NAME, record)
    site.dns.silent.add(NAME)
    assert site.check(expect=1) == [f"{NAME}: dns-failure: DNS gave no answer: no answer within 0.5s"]


def test_with_an_ed25519_and_an_rsa_key_each_gets_its_line(site: Site) -> None:
    ed25519 = site.keygen("ed", "ed25519")
    site.keygen("rsa", "rsa")
    site.dns.publish("ed._domainkey.foo.example", *ed25519)
    assert site.check(expect=1) == [
        "ed._domainkey.foo.example: ok",
        "rsa._domainkey.foo.example: no-record: the name does not exist (NXDOMAIN)",
    ]
    site.dns.publish("rsa._domainkey.foo.example", *site.printed["rsa"])
    assert site.check(expect=0) == ["ed._domainkey.foo.example: ok", "rsa._domainkey.foo.example: ok"]


def test_the_single_table_form_is_checked_too(site: Site, tmp_path: Path) -> None:
    key = tmp_path / "rk.key"
    code, out, _ = site.run("dkim", "keygen", "--domain", "foo.example", "--selector", "rk", "--out", str(key))
    with site.config.open("a") as config:
        config.write(f'\n[outbound.dkim]\ndomain = "foo.example"\nselector = "rk"\nkey_file = "{key}"\n')
    site.dns.publish(NAME, *re.findall(r'"([^"]*)"', out.splitlines()[0]))
    assert site.check(expect=0) == [f"{NAME}: ok"]


def test_without_a_configured_key_it_is_a_configuration_error(site: Site, dns: DnsServer) -> None:
    code, _, err = site.run("dkim", "check", "--nameserver", dns.address)
    assert code == 78 and "no [outbound.dkim] key to check" in err
    assert dns.questions == []


def test_a_missing_key_file_is_a_configuration_error(site: Site, dns: DnsServer) -> None:
    site.keygen("rk")
    (site.tmp_path / "rk.key").unlink()
    code, _, err = site.run("dkim", "check", "--nameserver", dns.address)
    assert code == 78 and str(site.tmp_path / "rk.key") in err
    assert dns.questions == []


def test_a_key_file_that_holds_no_key_is_a_configuration_error(site: Site, dns: DnsServer) -> None:
    site.keygen("rk")
    (site.tmp_path / "rk.key").write_text("not a key\n")
    code, _, err = site.run("dkim", "check", "--nameserver", dns.address)
    assert code == 78 and f"{site.tmp_path / 'rk.key'}: neither PEM nor a base64 ed25519 seed" in err
    assert dns.questions == []


def test_a_nameserver_that_is_not_host_and_port_is_a_usage_error(site: Site) -> None:
    site.keygen("rk")
    code, _, err = site.run("dkim", "check", "--nameserver", "127.0.0.1:dns")
    assert code == 64 and "'127.0.0.1:dns' is not HOST" in err
