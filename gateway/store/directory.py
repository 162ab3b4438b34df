"""The directory of local principals: explicit users, rooms and resources with their aliases."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, selectinload

from gateway.core.addresses import normalize_address
from gateway.core.model import Kind
from gateway.store.caches import DirectoryAnswers, caches_of
from gateway.store import collections
from gateway.store.schema import Alias, DirectoryRevision, Principal

_VIEW = "reefknot.directory"  # session.info: what this transaction knows of the directory
_REVISION = DirectoryRevision.__table__
_READ_REVISION = select(_REVISION.c.revision).where(_REVISION.c.id == 1)
_NEW_REVISION = update(_REVISION).where(_REVISION.c.id == 1)
_PRINCIPALS, _ALIASES = Principal.__table__, Alias.__table__
_REACHED = select(_PRINCIPALS.c.id, _PRINCIPALS.c.address, _PRINCIPALS.c.display_name, _PRINCIPALS.c.kind).where(
    _PRINCIPALS.c.address.in_(bindparam("addresses", expanding=True))
    | _PRINCIPALS.c.id.in_(select(_ALIASES.c.principal_id).where(
        _ALIASES.c.address.in_(bindparam("addresses", expanding=True)))))
_ALIASES_OF = select(_ALIASES.c.address, _ALIASES.c.principal_id).where(
    _ALIASES.c.principal_id.in_(bindparam("ids", expanding=True)))


class DirectoryError(Exception):
    """A directory change that cannot be made (duplicate address, unknown principal, bad address)."""


@dataclass(frozen=True)
class PrincipalRef:
    """A local principal as the rest of Reefknot sees it."""

    id: int
    address: str
    display_name: str
    kind: Kind
    aliases: frozenset[str]

    @property
    def addresses(self) -> frozenset[str]:
        return self.aliases | {self.address}


def _known(session: Session) -> DirectoryAnswers[PrincipalRef]:
    """What this transaction may take as known: the handle's answers when the directory has not changed since.

    One query per transaction reads the directory's revision; any change to principals
    or aliases, by any process, renews it (``_changed``), and the answers start over.
    """
    known: DirectoryAnswers[PrincipalRef] | None = session.info.get(_VIEW)
    if known is None:
        revision = read_revision(session)
        caches = caches_of(session)
        if caches.directory.revision != revision:
            caches.directory = DirectoryAnswers(revision)
        known = session.info[_VIEW] = caches.directory
    return known


def _changed(session: Session) -> None:
    """Renew the directory's revision; this transaction stops sharing answers with the rest of the handle."""
    session.execute(_NEW_REVISION, {"revision": secrets.randbits(62)})
    session.info[_VIEW] = DirectoryAnswers(revision=None)


def _ref(principal: Principal) -> PrincipalRef:
    return PrincipalRef(
        principal.id,
        principal.address,
        principal.display_name,
        Kind(principal.kind),
        frozenset(a.address for a in principal.aliases),
    )


def _valid(address: str) -> str:
    normalized = normalize_address(address)
    if normalized is None:
        raise DirectoryError(f"not an email address: {address!r}")
    return normalized


def add_principal(
    session: Session, address: str, now: datetime, *, name: str = "", aliases: tuple[str, ...] = (), kind: Kind = Kind.INDIVIDUAL
) -> PrincipalRef:
    """Add a local principal; every address it owns must be new to the directory."""
    primary = _valid(address)
    others = sorted({_valid(a) for a in aliases} - {primary})
    for candidate in [primary, *others]:
        if resolve(session, candidate) is not None:
            raise DirectoryError(f"{candidate} already belongs to a local principal")
    _changed(session)
    principal = Principal(address=primary, display_name=name, kind=kind.value, created_at=now)
    principal.aliases = [Alias(address=a) for a in others]
    session.add(principal)
    session.flush()
    collections.default_calendar(session, principal.id, now)
    return _ref(principal)


def remove_principal(session: Session, address: str) -> PrincipalRef:
    """Remove a principal with its calendar, inbox and aliases."""
    ref = resolve(session, _valid(address))
    if ref is None:
        raise DirectoryError(f"no local principal {address}")
    _changed(session)
    session.delete(session.get_one(Principal, ref.id))
    session.flush()
    return ref


def list_principals(session: Session) -> list[PrincipalRef]:
    """Every principal, by address."""
    rows = session.scalars(select(Principal).options(selectinload(Principal.aliases)).order_by(Principal.address))
    return [_ref(p) for p in rows]


def principal_by_id(session: Session, principal_id: int) -> PrincipalRef | None:
    """A principal by its row id, or None when it is gone."""
    known = _known(session)
    if principal_id not in known.by_id:
        principal = session.get(Principal, principal_id)
        if principal is None:
            return None
        known.remember({principal.address: _ref(principal)})
    return known.by_id[principal_id]


def feed_token(session: Session, principal_id: int, *, renew: bool = False) -> str:
    """The secret of the principal's calendar feed URL, made on first use; ``renew`` replaces it."""
    principal = session.get_one(Principal, principal_id)
    if renew or not principal.feed_token:
        principal.feed_token = secrets.token_urlsafe(24)
    return principal.feed_token


def by_feed_token(session: Session, address: str, token: str) -> PrincipalRef | None:
    """The principal whose feed this is, when the token is its feed token."""
    ref = resolve(session, address)
    if ref is None or not token:
        return None
    stored = session.get_one(Principal, ref.id).feed_token
    return ref if stored and hmac.compare_digest(stored.encode(), token.encode()) else None


def resolve(session: Session, address: str) -> PrincipalRef | None:
    """The local principal an address (primary or alias, any case, with or without mailto:) reaches."""
    return resolve_many(session, [address]).get(normalize_address(address) or "")


def resolve_many(session: Session, addresses: Iterable[str]) -> dict[str, PrincipalRef | None]:
    """The local principals that addresses reach, by normalized address, in as few queries as possible.

    Answers are remembered by the process for as long as the directory does not change.
    """
    known = _known(session)
    wanted = {a for a in (normalize_address(x) for x in addresses) if a}
    answers = {a: known.by_address[a] for a in wanted if a in known.by_address}
    if len(answers) < len(wanted):
        with session.no_autoflush:
            found = _lookup(session, wanted - answers.keys())
        known.remember(found)
        answers.update(found)
    return answers


def read_revision(session: Session) -> int | None:
    """The directory's revision: it changes with every change to principals or aliases, by any process."""
    return session.scalar(_READ_REVISION)


def every_address(session: Session) -> frozenset[str]:
    """Every address that reaches a local principal: the primaries and the aliases (normalized, as stored)."""
    primaries = session.scalars(select(_PRINCIPALS.c.address))
    return frozenset(primaries).union(session.scalars(select(_ALIASES.c.address)))


def _lookup(session: Session, addresses: set[str]) -> dict[str, PrincipalRef | None]:
    """Two queries: the principals reached (by address or alias), then all their aliases."""
    rows = session.execute(_REACHED, {"addresses": sorted(addresses)}).all()
    aliases: dict[int, set[str]] = {row.id: set() for row in rows}
    owners: dict[str, int] = {}
    if aliases:
        for alias, owner in session.execute(_ALIASES_OF, {"ids": list(aliases)}):
            aliases[owner].add(alias)
            owners[alias] = owner
    refs = {row.id: PrincipalRef(row.id, row.address, row.display_name, Kind(row.kind), frozenset(aliases[row.id])) for row in rows}
    by_address = {ref.address: ref for ref in refs.values()}
    return {a: by_address.get(a) or refs.get(owners.get(a, -1)) for a in addresses}
