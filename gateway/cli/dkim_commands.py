"""Commands for signing what Reefknot sends: ``dkim keygen`` writes a key and prints its DNS record."""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.adapters.dkim import DkimSigner
from gateway.cli.base import EX_USAGE, Exit, cli


@cli.group()
def dkim() -> None:
    """DKIM keys for ``[outbound.dkim]``."""


@dkim.command("keygen")
@click.option("--domain", required=True, help="the signing domain (d=), the users' own")
@click.option("--selector", required=True, help="the selector (s=): the key's DNS name is SELECTOR._domainkey.DOMAIN")
@click.option("--algorithm", type=click.Choice(["ed25519", "rsa"]), default="ed25519", show_default=True)
@click.option("--out", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where to write the key (default: DOMAIN.SELECTOR.key); an existing file is never replaced")
def dkim_keygen(domain: str, selector: str, algorithm: str, path: Path | None) -> None:
    """Write a new private key (mode 0600) and print the TXT record to publish and the settings to use."""
    path = path or Path(f"{domain}.{selector}.key")
    if path.exists():
        raise Exit(EX_USAGE, f"{path} exists; give another --out or remove it first")
    key = ed25519.Ed25519PrivateKey.generate() if algorithm == "ed25519" else rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    signer = DkimSigner(domain, selector, path)
    record = signer.dns_record()
    strings = " ".join(f'"{record[i:i + 255]}"' for i in range(0, len(record), 255))  # a TXT string holds 255
    click.echo(f"{signer.record_name}. IN TXT {strings}")
    click.echo(f'# [outbound.dkim]\n# domain = "{domain}"\n# selector = "{selector}"\n# key_file = "{path.resolve()}"')
