"""DKIM signing: ed25519 and RSA signatures that dkimpy verifies, and that tampering breaks."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.adapters.dkim import SIGNED_HEADERS, DkimKeyError, DkimSigner
from tests.core.imip.test_render import invitation, render

NOW = 1_780_000_000.0


def _pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
         fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(params=["ed25519", "rsa-2048"])
def signer(request: pytest.FixtureRequest, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> DkimSigner:
    key_file = tmp_path / "dkim.key"
    if request.param == "ed25519":
        key_file.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    else:
        key_file.write_bytes(_pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL))
    return DkimSigner("foo.example", "reefknot", key_file)


def dns_for(signer: DkimSigner) -> Callable[..., bytes]:
    """A stub DNS lookup that publishes only the signer's key record."""
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return signer.dns_record().encode() if name == f"{signer.record_name}.".encode() else b""
    return lookup


def message() -> bytes:
    return render(invitation()).data


def verifies(signed: bytes, signer: DkimSigner) -> bool:
    return bool(dkim.verify(signed, dnsfunc=dns_for(signer)))


def test_the_signature_verifies(signer: DkimSigner) -> None:
    signed = signer.sign(message(), now=NOW)
    assert verifies(signed, signer)


def test_the_signed_bytes_are_the_message_with_one_header_in_front(signer: DkimSigner) -> None:
    original = message()
    signed = signer.sign(original, now=NOW)
    assert signed.startswith(b"DKIM-Signature:") and signed.endswith(original)
    header = signed[: len(signed) - len(original)]
    assert header.endswith(b"\r\n") and header.count(b"\r\n\t") >= 1
    assert all(len(line) <= 78 for line in signed.split(b"\r\n"))
    assert signed.isascii()


def test_the_signature_says_what_it_covers(signer: DkimSigner) -> None:
    signed = signer.sign(message(), now=NOW)
    fields = dkim.util.parse_tag_value(signed.split(b"\r\nFrom:")[0].split(b":", 1)[1])
    algorithm = b"ed25519-sha256" if signer.algorithm == b"ed25519-sha256" else b"rsa-sha256"
    assert fields[b"a"] == algorithm and fields[b"c"] == b"relaxed/relaxed"
    assert fields[b"d"] == b"foo.example" and fields[b"s"] == b"reefknot" and fields[b"t"] == b"%d" % NOW
    signed_names = {n.strip() for n in fields[b"h"].replace(b"\r\n\t", b"").split(b":")}
    assert signed_names == {n.encode() for n in SIGNED_HEADERS}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda m: m.replace(b"Planning", b"Plunning", 1), id="subject-changed"),
        pytest.param(lambda m: m.replace(b"QkVHSU46", b"QkVHSU47", 1), id="calendar-changed"),
        pytest.param(lambda m: m.replace(b"Room 1", b"Room 9", 1), id="text-changed"),
        pytest.param(lambda m: m.replace(b"\r\nFrom:", b"\r\nFrom: Mallory <m@evil.example>\r\nFrom:", 1),
                     id="second-from-added"),
        pytest.param(lambda m: m.replace(b"Reply-To: reply+t0k3n@foo.example", b"Reply-To: m@evil.example", 1),
                     id="reply-to-changed"),
        pytest.param(lambda m: m.replace(b"\r\nMessage-ID:", b"\r\nIn-Reply-To: <x@evil.example>\r\nMessage-ID:", 1),
                     id="header-added"),
        pytest.param(lambda m: m + b"appended\r\n", id="body-appended"),
    ],
)
def test_tampering_breaks_the_signature(signer: DkimSigner, tamper: Callable[[bytes], bytes]) -> None:
    signed = signer.sign(message(), now=NOW)
    changed = tamper(signed)
    assert changed != signed
    assert not verifies(changed, signer)


def test_relaxed_canonicalization_survives_refolding_and_trailing_space(signer: DkimSigner) -> None:
    """Relays may refold headers and change whitespace; relaxed/relaxed tolerates that."""
    signed = signer.sign(message(), now=NOW)
    refolded = signed.replace(b"\r\nAuto-Submitted: auto-generated", b"\r\nAuto-Submitted:\r\n\tauto-generated  ", 1)
    assert refolded != signed and verifies(refolded, signer)


def test_a_key_from_another_signer_does_not_verify(tmp_path: Path) -> None:
    (tmp_path / "a.key").write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    (tmp_path / "b.key").write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    signed = DkimSigner("foo.example", "reefknot", tmp_path / "a.key").sign(message(), now=NOW)
    assert not verifies(signed, DkimSigner("foo.example", "reefknot", tmp_path / "b.key"))


def test_a_dknewkey_ed25519_seed_file_is_accepted(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    (tmp_path / "dkim.key").write_bytes(base64.b64encode(seed) + b"\n")
    signer = DkimSigner("foo.example", "ed", tmp_path / "dkim.key")
    assert signer.algorithm == b"ed25519-sha256"
    assert verifies(signer.sign(message()), signer)


def test_the_dns_record_publishes_the_public_key(signer: DkimSigner) -> None:
    record = signer.dns_record()
    kind = "ed25519" if signer.algorithm == b"ed25519-sha256" else "rsa"
    assert record.startswith(f"v=DKIM1; k={kind}; p=")
    assert signer.record_name == "reefknot._domainkey.foo.example"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read"),
        (b"not a key", "neither PEM nor a base64 ed25519 seed"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a usable PEM private key"),
    ],
)
def test_unusable_key_files_are_refused_with_a_reason(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "dkim.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DkimKeyError, match=reason):
        DkimSigner("foo.example", "reefknot", path)


def test_short_rsa_and_other_key_types_are_refused(tmp_path: Path) -> None:
    (tmp_path / "short.key").write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    with pytest.raises(DkimKeyError, match="1024 bits"):
        DkimSigner("foo.example", "reefknot", tmp_path / "short.key")
    (tmp_path / "ec.key").write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(DkimKeyError, match="ed25519 or RSA"):
        DkimSigner("foo.example", "reefknot", tmp_path / "ec.key")


def test_a_selector_must_be_a_dns_label(tmp_path: Path) -> None:
    (tmp_path / "dkim.key").write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(DkimKeyError, match="selector"):
        DkimSigner("foo.example", "bad selector;", tmp_path / "dkim.key")
