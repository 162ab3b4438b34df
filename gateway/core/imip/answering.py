"""Threading an outgoing mail under the mail it answers: In-Reply-To and References (RFC 5322 §3.6.4).

An answer (a REPLY to an invitation that came by mail, a room's answer, a REFRESH or
free/busy answer) names the mail it answers, so that the other side's mail program shows
it under that mail. What is not an answer threads under the event's own thread id. Pure:
the Message-IDs come in as data; the store keeps them with the outbox row. Not for
rendering the rest of the mail (``gateway.core.imip.render``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from gateway.core.mail.headers import message_id_in, message_ids_in

MESSAGE_ID = re.compile(r"^<[!-;=?-~]+@[!-;=?-~]+>$")  # printable ASCII, no "<", ">" or spaces
MAX_LENGTH = 500  # what the outbox keeps of the Message-ID answered; a longer one is not answered
MAX_REFERENCES = 20  # more make a header nobody reads; the first and the latest are kept (RFC 5322 §3.6.4)
HEADER_LIMIT = 65536  # bytes of a raw message's header section read for its References


@dataclass(frozen=True)
class Answered:
    """The mail an outgoing message answers: its Message-ID, and the References it carried (oldest first)."""

    message_id: str
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class ThreadFields:
    """The values of In-Reply-To and References (Message-IDs, oldest first) for one outgoing mail."""

    in_reply_to: str
    references: tuple[str, ...]


def answered_mail(message_id: str | None, references: tuple[str, ...] = ()) -> Answered | None:
    """The mail with this Message-ID as something to answer; None when it has none that can be written."""
    normalized = message_id_in(message_id)
    if normalized is None or len(normalized) > MAX_LENGTH or not MESSAGE_ID.match(normalized):
        return None
    return Answered(normalized, tuple(r for r in references if MESSAGE_ID.match(r) and r != normalized))


def answered_from_raw(message_id: str, raw: bytes) -> Answered | None:
    """The mail as stored (its Message-ID field, its bytes, possibly forgotten already) as something to answer."""
    references: tuple[str, ...] = ()
    if raw:
        head = BytesHeaderParser(policy=compat32).parsebytes(raw[:HEADER_LIMIT])
        value = head.get("References")
        references = message_ids_in(str(value)) if value is not None else ()
    return answered_mail(message_id, references)


def thread_fields(message_id: str, thread_id: str, answered: Answered | None) -> ThreadFields | None:
    """Under the mail answered (its References, then its Message-ID), else under the event's thread; None: neither.

    The event's thread is the mail's own Message-ID for the first mail about an event.
    Raises ValueError for an ``answered`` that holds something else than Message-IDs.
    """
    if answered is not None:
        chain = (*answered.references, answered.message_id)
        if not all(MESSAGE_ID.match(value) for value in chain):
            raise ValueError(f"not Message-IDs: {chain!r}")
        return ThreadFields(answered.message_id, _trimmed(chain))
    if thread_id != message_id:
        return ThreadFields(thread_id, (thread_id,))
    return None


def _trimmed(chain: tuple[str, ...]) -> tuple[str, ...]:
    """At most MAX_REFERENCES, without repeats: the thread's first mail and the latest ones (RFC 5322 §3.6.4)."""
    unique = tuple(dict.fromkeys(chain))
    if len(unique) <= MAX_REFERENCES:
        return unique
    return (unique[0], *unique[-(MAX_REFERENCES - 1):])


def stored_references(answered: Answered | None) -> tuple[str, str]:
    """The Message-ID answered and its References as the outbox keeps them: text, "" for none."""
    if answered is None:
        return "", ""
    return answered.message_id, " ".join(answered.references)


def read_stored_references(in_reply_to: str, references: str) -> Answered | None:
    """``stored_references`` read back; a value that is not a Message-ID is left out."""
    return answered_mail(in_reply_to, tuple(references.split())) if in_reply_to else None
