"""Relaxed alignment (RFC 7489 §3.2) by the Public Suffix List: one registration never vouches for another."""

from __future__ import annotations

import pytest

from gateway.core.trust.evidence import (
    Mechanism,
    aligned,
    authenticated_identities,
    gather_evidence,
    organizational_domain,
)


@pytest.mark.parametrize(
    ("domain", "organization"),
    [
        ("attacker.com.sa", "attacker.com.sa"),
        ("mail.bigcorp.com.sa", "bigcorp.com.sa"),
        ("calendar.alice.eu.org", "alice.eu.org"),  # the list's private section counts
        ("a.github.io", "a.github.io"),
        ("mx.bar.co.uk", "bar.co.uk"),
        ("www.city.kawasaki.jp", "city.kawasaki.jp"),  # an exception rule (!city.kawasaki.jp)
        ("x.y.bar.example", "bar.example"),  # a TLD the list does not know: one label
        ("Bar.Com.AU.", "bar.com.au"),
        ("com.sa", "com.sa"),  # a public suffix itself is its own
        ("localhost", "localhost"),
    ],
)
def test_the_organizational_domain_is_the_registration_under_its_public_suffix(
    domain: str, organization: str
) -> None:
    assert organizational_domain(domain) == organization


@pytest.mark.parametrize(
    ("domain", "other", "same"),
    [
        ("bigcorp.com.sa", "attacker.com.sa", False),
        ("bob.eu.org", "attacker.eu.org", False),
        ("a.github.io", "b.github.io", False),
        ("mail.bigcorp.com.sa", "bigcorp.com.sa", True),
        ("calendar.bob.eu.org", "bob.eu.org", True),
        ("mail.bar.example", "bar.example", True),
        ("bar.example", "notbar.example", False),
    ],
)
def test_alignment_never_crosses_a_public_suffix(domain: str, other: str, same: bool) -> None:
    assert aligned(domain, other) is same


@pytest.mark.parametrize(
    ("sender", "signer"),
    [("ceo@bigcorp.com.sa", "attacker.com.sa"), ("bob@bob.eu.org", "attacker.eu.org")],
)
def test_a_signature_of_a_sibling_registration_authenticates_no_one(sender: str, signer: str) -> None:
    borrowed = gather_evidence(from_address=sender, verified_dkim_domains=[signer])
    assert authenticated_identities(borrowed) == ()
    own = gather_evidence(from_address=sender, verified_dkim_domains=[f"mail.{sender.split('@')[1]}"])
    assert [v.mechanism for v in authenticated_identities(own)] == [Mechanism.DKIM]
