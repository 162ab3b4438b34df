"""Authentication-Results (RFC 8601) as real servers write them, and which fields are trusted."""

from __future__ import annotations

import pytest

from gateway.core.trust.authresults import (
    MethodResult,
    dkim_domain,
    domain_in,
    parse_authentication_results,
    passing,
    trusted_results,
)

GMAIL = (
    "mx.google.com;\r\n"
    "       dkim=pass header.i=@bar.example header.s=20230601 header.b=AbCdEf12;\r\n"
    "       arc=pass (i=1 spf=pass spfdomain=bar.example dkim=pass dkdomain=bar.example dmarc=pass fromdomain=bar.example);\r\n"
    "       spf=pass (google.com: domain of carol@bar.example designates 209.85.220.41 as permitted sender)"
    " smtp.mailfrom=carol@bar.example;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=bar.example"
)
MICROSOFT_365 = (
    "spf=pass (sender IP is 209.85.128.52)\r\n smtp.mailfrom=bar.example; dkim=pass (signature was verified)\r\n"
    " header.d=bar.example;dmarc=pass action=none header.from=bar.example;compauth=pass\r\n reason=100"
)
OPENDKIM = (
    "mail.foo.example; dkim=pass (2048-bit key; unprotected) header.d=bar.example header.i=@bar.example"
    ' header.a=rsa-sha256 header.s=sel header.b="AbC+12/3"'
)
OPENDMARC = "mail.foo.example; dmarc=fail (p=reject dis=none) header.from=baz.example"
POLICYD_SPF = "mail.foo.example; spf=pass (sender SPF authorized) smtp.mailfrom=carol@bar.example"
RSPAMD = (
    "mx.foo.example;\r\n\tdkim=pass header.d=bar.example header.s=dkim header.b=bZBTHK+o;\r\n"
    "\tdmarc=pass (policy=reject) header.from=bar.example;\r\n"
    '\tspf=pass (mx.foo.example: domain of "carol@bar.example" designates 192.0.2.7 as permitted sender)'
    " smtp.mailfrom=carol@bar.example"
)
RSPAMD_NOTHING = (
    "mx.foo.example; dkim=none; dmarc=none;\r\n\tspf=none (mx.foo.example: domain of carol@bar.example"
    " has no SPF policy when checking 192.0.2.7) smtp.mailfrom=carol@bar.example"
)


def triples(value: str) -> list[tuple[str, str, str | None]]:
    """(method, result, the property that names the domain) for each result of a field."""
    parsed = parse_authentication_results(value)
    assert parsed is not None
    keys = {"dkim": "header.d", "spf": "smtp.mailfrom", "dmarc": "header.from"}
    return [(r.method, r.result, r.prop(keys.get(r.method, "-"))) for r in parsed.results]


@pytest.mark.parametrize(
    ("value", "authserv_id", "expected"),
    [
        pytest.param(GMAIL, "mx.google.com", [
            ("dkim", "pass", None), ("arc", "pass", None),
            ("spf", "pass", "carol@bar.example"), ("dmarc", "pass", "bar.example"),
        ], id="gmail"),
        pytest.param(MICROSOFT_365, "", [
            ("spf", "pass", "bar.example"), ("dkim", "pass", "bar.example"),
            ("dmarc", "pass", "bar.example"), ("compauth", "pass", None),
        ], id="microsoft-365-without-authserv-id"),
        pytest.param(OPENDKIM, "mail.foo.example", [("dkim", "pass", "bar.example")], id="opendkim"),
        pytest.param(OPENDMARC, "mail.foo.example", [("dmarc", "fail", "baz.example")], id="opendmarc"),
        pytest.param(POLICYD_SPF, "mail.foo.example", [("spf", "pass", "carol@bar.example")], id="policyd-spf"),
        pytest.param(RSPAMD, "mx.foo.example", [
            ("dkim", "pass", "bar.example"), ("dmarc", "pass", "bar.example"), ("spf", "pass", "carol@bar.example"),
        ], id="rspamd"),
        pytest.param(RSPAMD_NOTHING, "mx.foo.example", [
            ("dkim", "none", None), ("dmarc", "none", None), ("spf", "none", "carol@bar.example"),
        ], id="rspamd-nothing-signed"),
        pytest.param("mx.foo.example; none", "mx.foo.example", [], id="none"),
        pytest.param("MX.Foo.Example 1; none", "mx.foo.example", [], id="version-and-case"),
        pytest.param('"mx.foo.example"; spf=pass smtp.mailfrom=bar.example', "mx.foo.example",
                     [("spf", "pass", "bar.example")], id="quoted-authserv-id"),
        pytest.param("mx.foo.example; dkim = pass header.d = bar.example", "mx.foo.example",
                     [("dkim", "pass", "bar.example")], id="spaces-around-equals"),
        pytest.param("mx.foo.example; dkim/1=pass (good (nested; really)) header.d=bar.example", "mx.foo.example",
                     [("dkim", "pass", "bar.example")], id="method-version-and-nested-comment"),
        pytest.param("mx.foo.example (our; border) ; dkim=fail header.d=bar.example", "mx.foo.example",
                     [("dkim", "fail", "bar.example")], id="comment-after-authserv-id"),
    ],
)
def test_fields_of_real_servers_are_read(value: str, authserv_id: str, expected: list[tuple[str, str, str | None]]) -> None:
    parsed = parse_authentication_results(value)
    assert parsed is not None and parsed.authserv_id == authserv_id
    assert triples(value) == expected


def test_reasons_quoted_values_and_nonstandard_pairs_are_kept() -> None:
    parsed = parse_authentication_results(
        'mx.foo.example; dkim=fail reason="signature \\"b\\" did not verify" header.d=bar.example header.b="x=;y"'
    )
    assert parsed is not None
    (result,) = parsed.results
    assert result.reason == 'signature "b" did not verify'
    assert result.prop("header.b") == "x=;y" and result.prop("HEADER.D") == "bar.example"
    microsoft = parse_authentication_results(MICROSOFT_365)
    assert microsoft is not None
    dmarc, compauth = microsoft.results[2], microsoft.results[3]
    assert dmarc.prop("action") == "none" and compauth.reason == "100"


@pytest.mark.parametrize("value", ["", "   ", ";", "(only a comment)"])
def test_a_field_with_nothing_in_it_is_none(value: str) -> None:
    assert parse_authentication_results(value) is None


def test_only_fields_of_our_own_servers_are_trusted() -> None:
    values = [OPENDKIM, OPENDMARC, POLICYD_SPF, GMAIL, MICROSOFT_365]
    found = trusted_results(values, frozenset({"Mail.Foo.Example"}))
    assert [(r.authserv_id, r.method) for r in found] == [
        ("mail.foo.example", "dkim"), ("mail.foo.example", "dmarc"), ("mail.foo.example", "spf"),
    ]
    assert trusted_results(values, frozenset()) == []
    forged_on_top = ["mx.foo.example.evil.example; dkim=pass header.d=victim.example", *values]
    assert trusted_results(forged_on_top, frozenset({"mail.foo.example"})) == []


OURS = "mx.foo.example"
OUR_NONE = "mx.foo.example; dkim=none; spf=pass smtp.mailfrom=eve@evil.example"
FORGED = "mx.foo.example; dkim=pass header.d=bar.example; dmarc=pass header.from=bar.example"
OUR_RECEIVED = "from mail.evil.example (mail.evil.example [192.0.2.66]) by mx.foo.example (Postfix)"
OUTSIDE_RECEIVED = "from laptop (unknown [198.51.100.7]) by mail.evil.example (Postfix)"
DOVECOT_RECEIVED = "from mx.foo.example by imap.foo.example with LMTP"


def ar(value: str) -> tuple[str, str]:
    return ("Authentication-Results", value)


def rcvd(value: str) -> tuple[str, str]:
    return ("Received", value)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param([rcvd(OUR_RECEIVED), ar(OUR_NONE), ar(FORGED)], [("dkim", "none"), ("spf", "pass"),
                     ("dmarc", "pass")], id="forged-dkim-pass-below-our-dkim-none-is-not-counted"),
        pytest.param([rcvd(OUR_RECEIVED), ar(OUR_NONE), rcvd(OUTSIDE_RECEIVED), ar(FORGED)],
                     [("dkim", "none"), ("spf", "pass")], id="a-received-ends-the-block"),
        pytest.param([ar(OUR_NONE), rcvd(OUR_RECEIVED), ar(FORGED)], [("dkim", "none"), ("spf", "pass")],
                     id="our-field-above-our-received"),
        pytest.param([rcvd(OUR_RECEIVED), ar("mx.foo.example; spf=pass smtp.mailfrom=carol@bar.example"),
                      ar("mx.foo.example; dkim=pass header.d=bar.example")],
                     [("spf", "pass"), ("dkim", "pass")], id="one-field-per-milter-is-one-block"),
        pytest.param([rcvd(DOVECOT_RECEIVED), rcvd(OUR_RECEIVED), ar(OUR_NONE)], [("dkim", "none"), ("spf", "pass")],
                     id="our-own-later-hops-above-are-passed-over"),
        pytest.param([rcvd(OUR_RECEIVED), ar("mx.other.example; dkim=pass header.d=bar.example"), ar(FORGED)], [],
                     id="topmost-field-not-ours-trusts-nothing"),
        pytest.param([rcvd(OUR_RECEIVED), ar(OUR_NONE), ar("mx.other.example; spf=pass"), ar(FORGED)],
                     [("dkim", "none"), ("spf", "pass")], id="another-authserv-id-ends-the-block"),
        pytest.param([rcvd(OUR_RECEIVED), ar(MICROSOFT_365), ar(FORGED)], [], id="a-field-without-id-ends-the-block"),
        pytest.param([rcvd(OUR_RECEIVED), rcvd(OUTSIDE_RECEIVED), ar(FORGED)],
                     [("dkim", "pass"), ("dmarc", "pass")], id="no-field-of-ours-cannot-be-told-apart"),
        pytest.param([ar("mx.foo.example; dkim=pass header.d=bar.example; dkim=fail header.d=baz.example"),
                      ar("mx.foo.example; dkim=pass header.d=evil.example")],
                     [("dkim", "pass"), ("dkim", "fail")], id="every-signature-of-the-topmost-dkim-field"),
    ],
)
def test_only_the_topmost_block_of_our_fields_counts_each_method_once(
    fields: list[tuple[str, str]], expected: list[tuple[str, str]]
) -> None:
    assert [(r.method, r.result) for r in trusted_results(fields, frozenset({OURS}))] == expected


def test_a_field_without_authserv_id_is_never_trusted() -> None:
    assert trusted_results([MICROSOFT_365], frozenset({"", " "})) == []


def test_signing_domain_comes_from_header_d_else_header_i() -> None:
    gmail = parse_authentication_results(GMAIL)
    opendkim = parse_authentication_results(OPENDKIM)
    assert gmail is not None and opendkim is not None
    assert [dkim_domain(r) for r in passing(gmail.results, "dkim")] == ["bar.example"]
    assert dkim_domain(opendkim.results[0]) == "bar.example"
    assert dkim_domain(MethodResult("x", "spf", "pass", properties=(("header.d", "bar.example"),))) is None
    assert dkim_domain(MethodResult("x", "dkim", "none", properties=(("header.d", "none"),))) is None


@pytest.mark.parametrize(
    ("value", "domain"),
    [("<Carol@Bar.Example>", "bar.example"), ("bar.example.", "bar.example"), ("none", None), ("", None), (None, None)],
)
def test_domains_are_read_from_addresses_and_domains(value: str | None, domain: str | None) -> None:
    assert domain_in(value) == domain


def test_passing_keeps_only_passes_of_one_method() -> None:
    parsed = parse_authentication_results(RSPAMD_NOTHING + "; dkim=pass header.d=bar.example")
    assert parsed is not None
    assert [dkim_domain(r) for r in passing(parsed.results, "dkim")] == ["bar.example"]
    assert passing(parsed.results, "spf") == []
