"""DKIM verification of incoming mail: every signature judged, pinned keys, a cached DNS, no exceptions."""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.adapters.dkim import (
    DkimResult,
    DkimSigner,
    DnsTemporaryError,
    KeyResolver,
    dns_txt_lookup,
    verify_dkim,
)
from tests.core.imip.test_render import invitation, render

NOW = 1_780_000_000.0


def _write_key(path: Path, key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> Path:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(params=["ed25519", "rsa-2048"])
def signer(request: pytest.FixtureRequest, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> DkimSigner:
    key = ed25519.Ed25519PrivateKey.generate() if request.param == "ed25519" else rsa_key
    return DkimSigner("foo.example", "reefknot", _write_key(tmp_path / "foo.key", key))


@pytest.fixture
def partner(tmp_path: Path) -> DkimSigner:
    return DkimSigner("bar.example", "cal2026", _write_key(tmp_path / "bar.key", ed25519.Ed25519PrivateKey.generate()))


def pin(*signers: DkimSigner) -> dict[str, bytes]:
    return {s.domain: s.dns_record().encode() for s in signers}


def message() -> bytes:
    return render(invitation()).data


class StubDns:
    """A TXT lookup that publishes the given records and counts its queries."""

    def __init__(self, records: dict[str, bytes], fail: bool = False) -> None:
        self.records, self.fail = records, fail
        self.queries: list[str] = []

    def __call__(self, name: str, timeout: float) -> bytes | None:
        self.queries.append(name)
        if self.fail:
            raise DnsTemporaryError(f"{name}: timed out after {timeout} s")
        return self.records.get(name)


def published(*signers: DkimSigner) -> StubDns:
    return StubDns({s.record_name: s.dns_record().encode() for s in signers})


def outcome(results: list[DkimResult]) -> list[tuple[str, str, str]]:
    return [(r.domain, r.selector, r.result) for r in results]


def test_a_signature_verifies_with_a_pinned_key(signer: DkimSigner) -> None:
    never = StubDns({})
    results = verify_dkim(signer.sign(message(), now=NOW), pinned_keys=pin(signer), dns_timeout=1,
                          resolver=KeyResolver(never))
    assert outcome(results) == [("foo.example", "reefknot", "pass")]
    assert results[0].passed and never.queries == []


def test_a_tampered_body_fails(signer: DkimSigner) -> None:
    signed = signer.sign(message(), now=NOW)
    tampered = signed.replace(b"\r\n\r\n", b"\r\n\r\nP.S. moved to 3 pm.\r\n", 1)
    (result,) = verify_dkim(tampered, pinned_keys=pin(signer), dns_timeout=1, resolver=KeyResolver(StubDns({})))
    assert (result.result, result.passed) == ("fail", False)
    assert "body hash" in result.detail


def test_a_tampered_header_fails(signer: DkimSigner) -> None:
    tampered = signer.sign(message(), now=NOW).replace(b"Subject: ", b"Subject: Re: ", 1)
    (result,) = verify_dkim(tampered, pinned_keys=pin(signer), dns_timeout=1, resolver=KeyResolver(StubDns({})))
    assert result.result == "fail"


def test_every_signature_is_reported_topmost_first(signer: DkimSigner, partner: DkimSigner, tmp_path: Path) -> None:
    twice = partner.sign(signer.sign(message(), now=NOW), now=NOW)
    impostor = DkimSigner("bar.example", "cal2026", _write_key(tmp_path / "x.key", ed25519.Ed25519PrivateKey.generate()))
    results = verify_dkim(twice, pinned_keys=pin(signer, impostor), dns_timeout=1, resolver=KeyResolver(StubDns({})))
    assert outcome(results) == [("bar.example", "cal2026", "fail"), ("foo.example", "reefknot", "pass")]


def test_an_unpinned_domain_is_looked_up_and_cached(signer: DkimSigner, partner: DkimSigner) -> None:
    dns = published(partner)
    clock = [100.0]
    keys = KeyResolver(dns, ttl=300, clock=lambda: clock[0])
    signed = partner.sign(message(), now=NOW)
    first = verify_dkim(signed, pinned_keys=pin(signer), dns_timeout=2, resolver=keys)
    second = verify_dkim(signed, pinned_keys=pin(signer), dns_timeout=2, resolver=keys)
    assert outcome(first) == outcome(second) == [("bar.example", "cal2026", "pass")]
    assert dns.queries == ["cal2026._domainkey.bar.example"]
    clock[0] += 301
    verify_dkim(signed, dns_timeout=2, resolver=keys)
    assert len(dns.queries) == 2


def test_a_missing_key_is_a_permanent_error_and_is_cached_too(partner: DkimSigner) -> None:
    dns = StubDns({})
    keys = KeyResolver(dns)
    signed = partner.sign(message(), now=NOW)
    (result,) = verify_dkim(signed, dns_timeout=1, resolver=keys)
    verify_dkim(signed, dns_timeout=1, resolver=keys)
    assert result.result == "permerror" and "no key record" in result.detail
    assert len(dns.queries) == 1


def test_a_broken_key_record_is_a_permanent_error(partner: DkimSigner) -> None:
    dns = StubDns({partner.record_name: b"v=DKIM1; k=ed25519; p=bm90IGEga2V5"})
    (result,) = verify_dkim(partner.sign(message(), now=NOW), dns_timeout=1, resolver=KeyResolver(dns))
    assert result.result == "permerror"


def test_a_pinned_domain_never_falls_back_to_dns(partner: DkimSigner) -> None:
    dns = published(partner)
    pins = {"other._domainkey.bar.example": partner.dns_record().encode()}
    (result,) = verify_dkim(partner.sign(message(), now=NOW), pinned_keys=pins, dns_timeout=1, resolver=KeyResolver(dns))
    assert result.result == "permerror" and dns.queries == []


def test_a_dns_timeout_is_a_temporary_error_and_is_not_cached(partner: DkimSigner) -> None:
    dns = StubDns({}, fail=True)
    keys = KeyResolver(dns)
    signed = partner.sign(message(), now=NOW)
    (result,) = verify_dkim(signed, dns_timeout=0.5, resolver=keys)
    assert result.result == "temperror" and "timed out after 0.5 s" in result.detail
    dns.fail = False
    dns.records = published(partner).records
    (again,) = verify_dkim(signed, dns_timeout=0.5, resolver=keys)
    assert again.result == "pass" and len(dns.queries) == 2


@pytest.fixture
def silent_nameserver() -> Iterator[dns.resolver.Resolver]:
    """A resolver whose only nameserver is a UDP socket that never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = sock.getsockname()[1]
    try:
        yield resolver
    finally:
        sock.close()


def test_a_real_dns_timeout_gives_temperror(partner: DkimSigner, silent_nameserver: dns.resolver.Resolver) -> None:
    lookup = functools.partial(dns_txt_lookup, resolver=silent_nameserver)
    (result,) = verify_dkim(partner.sign(message(), now=NOW), dns_timeout=0.3, resolver=KeyResolver(lookup))
    assert (result.domain, result.result) == ("bar.example", "temperror")
    with pytest.raises(DnsTemporaryError):
        dns_txt_lookup("x._domainkey.bar.example", 0.2, silent_nameserver)


def test_an_unsigned_or_unreadable_message_has_no_results() -> None:
    assert verify_dkim(message(), dns_timeout=1, resolver=KeyResolver(StubDns({}))) == []
    assert verify_dkim(b"\x00not a header\r\n\r\nbody", dns_timeout=1, resolver=KeyResolver(StubDns({}))) == []


def test_a_signature_missing_required_tags_is_a_permanent_error(partner: DkimSigner) -> None:
    broken = b"DKIM-Signature: v=1; a=ed25519-sha256; d=bar.example; s=cal2026; b=AAAA\r\n" + message()
    results = verify_dkim(broken, dns_timeout=1, resolver=KeyResolver(published(partner)))
    assert outcome(results) == [("bar.example", "cal2026", "permerror")]


def test_a_mangled_signature_value_fails_without_raising(signer: DkimSigner) -> None:
    signed = signer.sign(message(), now=NOW)
    mangled = re.sub(rb"^(DKIM-Signature:.*?\sb=).*?(\r\n(?![ \t]))", rb"\1AAAA\2", signed, count=1, flags=re.DOTALL)
    assert mangled.startswith(b"DKIM-Signature:") and b"b=AAAA\r\nFrom:" in mangled
    (result,) = verify_dkim(mangled, pinned_keys=pin(signer), dns_timeout=1, resolver=KeyResolver(StubDns({})))
    assert result.result == "fail"


def test_a_key_of_the_other_type_fails_without_raising(
    signer: DkimSigner, partner: DkimSigner, rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    rsa_signer = DkimSigner("x.example", "s", _write_key(tmp_path / "r", rsa_key))
    other = partner if signer.algorithm == b"rsa-sha256" else rsa_signer
    pins = {signer.domain: other.dns_record().encode()}
    signed = signer.sign(message(), now=NOW)
    (result,) = verify_dkim(signed, pinned_keys=pins, dns_timeout=1, resolver=KeyResolver(StubDns({})))
    assert result.result in ("fail", "permerror") and not result.passed
