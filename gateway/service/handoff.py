"""Handing accepted mail on to the mailboxes (a listener's ``next_hop``): what is already there, what was taken.

The listener asks ``already_delivered`` before it hands a message on, and gives the
intake commit a ``HandedOn`` for what the next hop accepted (``processing.take_in``
records it in the same transaction). A message is known by the SHA-256 of its envelope
sender and its bytes: an MTA retrying a message sends the same bytes again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.store import handoffs
from gateway.store.db import Database


@dataclass(frozen=True)
class HandedOn:
    """The next hop accepted the message with ``digest`` for these recipients."""

    digest: str
    recipients: tuple[str, ...]


DELIVERED_ELSEWHERE = HandedOn("", ())  # a copy: the MTA delivers the message itself


def message_digest(sender: str, raw: bytes) -> str:
    """What a retry of the same message has in common with the first try."""
    return hashlib.sha256(sender.lower().encode() + b"\0" + raw).hexdigest()


def already_delivered(db: Database, digest: str, recipients: Iterable[str]) -> set[str]:
    """The recipients (lower case) whose mailbox was handed this message before."""
    with db.reading() as session:
        return handoffs.delivered_to(session, digest, recipients)
