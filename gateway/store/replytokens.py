"""Reply tokens in the store: issued with each outgoing message, looked up when mail comes back to one.

One token per (local principal, UID, outside party), the same for every message about
that event to that party, its lifetime extended by each new message. Knows nothing of
mail; the addresses that carry a token are ``gateway.core.mail.replyaddress``'s.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.store.schema import ReplyToken

TOKEN_BYTES = 15  # 120 bits, 24 characters of base32


@dataclass(frozen=True)
class TokenRoute:
    """Where mail to a token address belongs: a local principal's event, and the outside party it was sent to."""

    principal_id: int
    uid: str
    address: str
    expired: bool


def issue(session: Session, principal_id: int, uid: str, address: str, expires_at: datetime | None, now: datetime) -> str:
    """The token for this (principal, event, party), made on first use; its lifetime only ever grows."""
    row = session.scalars(
        select(ReplyToken).where(
            ReplyToken.principal_id == principal_id, ReplyToken.uid == uid[:500], ReplyToken.address == address
        )
    ).one_or_none()
    if row is None:
        row = ReplyToken(
            token=new_token(), principal_id=principal_id, uid=uid[:500], address=address,
            created_at=now, expires_at=expires_at,
        )
        session.add(row)
        session.flush()
    elif row.expires_at is not None and (expires_at is None or expires_at > row.expires_at):
        row.expires_at = expires_at
    return row.token


def find(session: Session, token: str, now: datetime) -> TokenRoute | None:
    """The route a token names, or None for a token never issued (or whose principal is gone)."""
    row = session.get(ReplyToken, token.lower())
    if row is None:
        return None
    expired = row.expires_at is not None and row.expires_at <= now
    return TokenRoute(row.principal_id, row.uid, row.address, expired)


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode().lower()
