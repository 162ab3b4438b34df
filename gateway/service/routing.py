"""Whom an incoming message is for: local principals by address or alias, and reply or bounce addresses by token."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from gateway.core.mail.replyaddress import read_token_address
from gateway.store import directory, replytokens
from gateway.store.directory import PrincipalRef
from gateway.store.replytokens import TokenRoute


@dataclass(frozen=True)
class Route:
    """One local recipient of a message; ``token`` when it came through a reply or bounce address."""

    principal: PrincipalRef
    token: TokenRoute | None = None
    outbox_id: int | None = None  # the delivery a bounce address names


def routes_for(session: Session, addresses: Iterable[str], now: datetime) -> list[Route]:
    """The local recipients among envelope addresses, each principal once (a token route wins over a plain one).

    In lock order (``in_lock_order``): every transaction that changes several calendars
    locks them in that one order, so that two of them never wait for each other.
    """
    wanted = list(addresses)
    plain = [a for a in wanted if read_token_address(a) is None]
    routes: dict[int, Route] = {}
    for principal in directory.resolve_many(session, plain).values():
        if principal is not None:
            routes.setdefault(principal.id, Route(principal))
    for address in wanted:
        route = token_route(session, address, now)
        if route is not None:
            routes[route.principal.id] = route
    return in_lock_order(routes)


def in_lock_order(routes: dict[int, Route]) -> list[Route]:
    """Routes by principal id, in the one order in which transactions lock several calendars."""
    return [routes[principal_id] for principal_id in sorted(routes)]


def token_route(session: Session, address: str, now: datetime) -> Route | None:
    """The route a reply or bounce address names, or None when it is no such address or its token is unknown."""
    named = read_token_address(address)
    if named is None:
        return None
    found = replytokens.find(session, named.token, now)
    if found is None:
        return None
    principal = directory.principal_by_id(session, found.principal_id)
    return Route(principal, found, named.outbox_id) if principal is not None else None


def is_deliverable(session: Session, address: str, now: datetime) -> bool:
    """True for a local principal's address or alias, and for a reply or bounce address with a known token."""
    if read_token_address(address) is not None:
        return token_route(session, address, now) is not None
    return directory.resolve(session, address) is not None
