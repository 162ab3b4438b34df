"""``reefknot dkim keygen``: a key that signs, and the DNS record that verifies its signatures."""

from __future__ import annotations

import re
from pathlib import Path

import dkim
import pytest

from gateway.adapters.dkim import DkimSigner
from tests.peers.cli import Reefknot


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_keygen_writes_a_private_key_and_prints_the_record_that_verifies_it(
    reefknot: Reefknot, tmp_path: Path, algorithm: str
) -> None:
    key = tmp_path / "dkim.key"
    printed = reefknot("dkim", "keygen", "--domain", "foo.example", "--selector", "rk", "--algorithm", algorithm,
                       "--out", str(key))
    assert key.stat().st_mode & 0o777 == 0o600
    name, strings = re.match(r"(\S+)\. IN TXT (.*)", printed.splitlines()[0]).groups()  # type: ignore[union-attr]
    assert name == "rk._domainkey.foo.example"
    record = "".join(re.findall(r'"([^"]*)"', strings))
    assert f"k={algorithm}" in record and f'key_file = "{key}"' in printed
    message = (b"From: alice@foo.example\r\nTo: carol@bar.example\r\nSubject: hello\r\n"
               b"Message-ID: <k1@foo.example>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\nhello\r\n")
    signed = DkimSigner("foo.example", "rk", key).sign(message)
    assert dkim.verify(signed, dnsfunc=lambda queried, timeout=5: record.encode() if queried.startswith(b"rk.") else b"")


def test_keygen_never_replaces_a_key(reefknot: Reefknot, tmp_path: Path) -> None:
    key = tmp_path / "dkim.key"
    key.write_text("the key in use")
    reefknot("dkim", "keygen", "--domain", "foo.example", "--selector", "rk", "--out", str(key), expect=64)
    assert key.read_text() == "the key in use"
