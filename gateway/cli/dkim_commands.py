"""Commands for the keys that sign what Reefknot sends: ``dkim keygen`` makes one, ``dkim check`` asks DNS about them.

``keygen`` writes a private key and prints the TXT record to publish; ``check`` says, per
configured key, whether that record is what DNS publishes now.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.adapters.dkim import DkimKeyError, DkimSigner
from gateway.adapters.keyrecords import lookup_published, resolver_for
from gateway.cli.base import EX_CONFIG, EX_USAGE, Context, Exit, cli, pass_context
from gateway.core.trust.keyrecord import check_published_key

EX_MISMATCH = 1  # some configured key is not what DNS publishes


@cli.group()
def dkim() -> None:
    """DKIM keys for ``[outbound.dkim]``: make one, check what DNS publishes."""


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


@dkim.command("check")
@click.option("--nameserver", metavar="HOST[:PORT]", default=None,
              help="ask this DNS server (default: the system's resolver)")
@pass_context
def dkim_check(context: Context, nameserver: str | None) -> None:
    """For each configured key, one line: its record name and ``ok``, or what DNS publishes instead.

    Exit 0 when every key matches, 1 when any does not, 78 when no key is configured or a key file is unusable.
    """
    keys = context.config.dkim_keys
    if not keys:
        raise Exit(EX_CONFIG, f"{context.config.source}: no [outbound.dkim] key to check")
    try:
        signers = [DkimSigner(key.domain, key.selector, key.key_file) for key in keys]
    except DkimKeyError as error:
        raise Exit(EX_CONFIG, f"[outbound.dkim]: {error}") from error
    try:
        resolver = resolver_for(nameserver)
    except ValueError as error:
        raise Exit(EX_USAGE if nameserver else EX_CONFIG, str(error)) from error
    timeout = context.config.trust.dns_timeout
    checks = [check_published_key(lookup_published(s.record_name, timeout, resolver), s.dns_record()) for s in signers]
    for check in checks:
        click.echo(f"{check.name}: {check.verdict}" + (f": {check.detail}" if check.detail else ""))
    wrong = sum(not check.ok for check in checks)
    if wrong:
        raise Exit(EX_MISMATCH, f"{wrong} of {len(checks)} keys not published as configured")
