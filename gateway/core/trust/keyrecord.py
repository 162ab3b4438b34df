"""Whether the DKIM key record DNS publishes (RFC 6376 §3.6.1) matches the key Reefknot signs with. Asks no DNS.

The lookup itself is ``gateway.adapters.keyrecords``'; this module reads its answer and
says, in one kebab-case word and a sentence, what an operator has to fix.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class LookupOutcome(StrEnum):
    """What DNS said when asked for the TXT records at a key record's name."""

    FOUND = "found"
    NXDOMAIN = "nxdomain"  # the name does not exist at all
    NO_TXT = "no-txt"  # the name exists, but holds no TXT record
    FAILED = "failed"  # no answer in time, or a server failure: nothing is known


@dataclass(frozen=True)
class PublishedRecords:
    """The TXT records at ``name``, each with its strings joined (RFC 6376 §3.6.2.2), or why there are none."""

    name: str
    outcome: LookupOutcome
    records: tuple[bytes, ...] = ()
    detail: str = ""  # the resolver's own words when the lookup failed


class KeyVerdict(StrEnum):
    OK = "ok"
    NO_RECORD = "no-record"
    NOT_A_KEY_RECORD = "not-a-key-record"
    SEVERAL_RECORDS = "several-records"
    UNREADABLE = "unreadable"
    REVOKED = "revoked"
    WRONG_ALGORITHM = "wrong-algorithm"
    WRONG_HASH = "wrong-hash"
    OTHER_KEY = "other-key"
    DNS_FAILURE = "dns-failure"


@dataclass(frozen=True)
class KeyCheck:
    """One configured key against what its name publishes."""

    name: str
    verdict: KeyVerdict
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is KeyVerdict.OK


def read_key_record(record: str) -> dict[str, str]:
    """A key record's tags (``v``, ``k``, ``h``, ``p``, …), values stripped; ``p`` without its inner whitespace."""
    tags = {}
    for tag in filter(None, (t.strip() for t in record.split(";"))):
        name, _, value = tag.partition("=")
        tags[name.strip()] = value.strip()
    if "p" in tags:
        tags["p"] = "".join(tags["p"].split())  # RFC 6376 §3.6.1: FWS is allowed inside the base64
    return tags


def check_published_key(published: PublishedRecords, own_record: str) -> KeyCheck:
    """Whether ``published`` carries ``own_record``'s key (the record ``DkimSigner.dns_record`` gives)."""
    name = published.name
    if published.outcome is LookupOutcome.FAILED:
        return KeyCheck(name, KeyVerdict.DNS_FAILURE, f"DNS gave no answer: {published.detail}")
    if published.outcome is not LookupOutcome.FOUND or not published.records:
        missing = "the name does not exist (NXDOMAIN)" if published.outcome is LookupOutcome.NXDOMAIN else "no TXT record"
        return KeyCheck(name, KeyVerdict.NO_RECORD, missing)
    texts = [r.decode("utf-8", "replace") for r in published.records]
    keys = [read_key_record(t) for t in texts if "p" in read_key_record(t)]
    if not keys:
        return KeyCheck(name, KeyVerdict.NOT_A_KEY_RECORD, f"TXT without p=: {_shorten(texts[0])}")
    if len(keys) > 1:  # RFC 6376 §3.6.2.2 leaves the choice to each verifier: some would fail
        return KeyCheck(name, KeyVerdict.SEVERAL_RECORDS, f"{len(keys)} key records; publish exactly one")
    return _compare(name, keys[0], read_key_record(own_record))


def _compare(name: str, theirs: Mapping[str, str], ours: Mapping[str, str]) -> KeyCheck:
    if theirs.get("v", "DKIM1") != "DKIM1":
        return KeyCheck(name, KeyVerdict.UNREADABLE, f"v={theirs['v']}, not DKIM1")
    if not theirs["p"]:
        return KeyCheck(name, KeyVerdict.REVOKED, "p= is empty: the key is revoked (RFC 6376 §3.6.1)")
    algorithm, wanted = theirs.get("k", "rsa"), ours.get("k", "rsa")  # k= defaults to rsa
    if algorithm != wanted:
        return KeyCheck(name, KeyVerdict.WRONG_ALGORITHM, f"k={algorithm} published, the key is {wanted}")
    hashes = [h.strip() for h in theirs.get("h", "sha256").split(":")]
    if "sha256" not in hashes:
        return KeyCheck(name, KeyVerdict.WRONG_HASH, f"h={theirs['h']} refuses sha256, which Reefknot signs with")
    try:
        key = base64.b64decode(theirs["p"], validate=True)
    except binascii.Error:
        return KeyCheck(name, KeyVerdict.UNREADABLE, "p= is not base64")
    if key != base64.b64decode(ours["p"]):
        return KeyCheck(name, KeyVerdict.OTHER_KEY, f"a different key is published (p={_shorten(theirs['p'])})")
    return KeyCheck(name, KeyVerdict.OK)


def _shorten(text: str, most: int = 24) -> str:
    return text if len(text) <= most else text[:most] + "…"
