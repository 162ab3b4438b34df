"""Routing of envelope addresses (``gateway.service.routing``): local principals, reply and bounce addresses, strangers.

Each test builds the directory and the reply tokens in the real store (SQLite and
PostgreSQL) and asks ``routes_for``, ``token_route`` and ``is_deliverable`` whom an
address reaches.
"""

from __future__ import annotations

from datetime import timedelta

from gateway.core.mail.replyaddress import bounce_address, reply_address
from gateway.core.model import Kind
from gateway.service.routing import routes_for, token_route, is_deliverable
from gateway.store import directory, replytokens
from gateway.store.db import Database
from tests.conftest import NOW

ALICE, ALIAS, BOB, CAROL = "alice@foo.example", "a.smith@foo.example", "bob@foo.example", "carol@bar.example"
UID = "planning@foo.example"
REPLY_DOMAIN = "reply.foo.example"


def test_a_principal_reached_by_its_address_and_its_alias_is_routed_once(db: Database) -> None:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW, name="Alice", aliases=(ALIAS,))
        bob = directory.add_principal(session, BOB, NOW, name="Bob")
        routes = routes_for(session, [ALICE, "A.Smith@FOO.example", BOB], NOW)
        assert sorted(r.principal.id for r in routes) == sorted([alice.id, bob.id])
        assert all(r.token is None and r.outbox_id is None for r in routes)
        assert is_deliverable(session, "mailto:" + ALIAS.upper(), NOW)
        assert is_deliverable(session, BOB, NOW)


def test_an_unknown_address_reaches_no_one(db: Database) -> None:
    with db.transaction() as session:
        directory.add_principal(session, ALICE, NOW, aliases=(ALIAS,))
        assert routes_for(session, [CAROL, "nobody@foo.example"], NOW) == []
        assert not is_deliverable(session, CAROL, NOW)
        assert not is_deliverable(session, "alice@foo.example.evil", NOW)


def test_a_reply_address_routes_to_the_event_and_attendee_its_token_names(db: Database) -> None:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW)
        token = replytokens.issue(session, alice.id, UID, CAROL, NOW + timedelta(days=60), NOW)
        address = reply_address(token, REPLY_DOMAIN)
        route = token_route(session, address, NOW)
        assert route is not None and route.principal.id == alice.id
        assert route.token is not None
        assert (route.token.uid, route.token.address, route.token.expired) == (UID, CAROL, False)
        assert route.outbox_id is None
        # the token route wins over the plain route of the same principal
        (only,) = routes_for(session, [ALICE, address.upper()], NOW)
        assert only.token == route.token
        assert is_deliverable(session, address, NOW)


def test_a_bounce_address_names_its_delivery_and_an_expired_token_says_so(db: Database) -> None:
    with db.transaction() as session:
        alice = directory.add_principal(session, ALICE, NOW)
        token = replytokens.issue(session, alice.id, UID, CAROL, NOW + timedelta(days=1), NOW)
        route = token_route(session, bounce_address(token, 42, REPLY_DOMAIN), NOW)
        assert route is not None
        assert (route.principal.id, route.outbox_id) == (alice.id, 42)
        later = token_route(session, reply_address(token, REPLY_DOMAIN), NOW + timedelta(days=2))
        assert later is not None and later.token is not None and later.token.expired


def test_a_token_address_with_an_unknown_token_or_a_removed_principal_reaches_no_one(db: Database) -> None:
    with db.transaction() as session:
        room = directory.add_principal(session, "room-r@foo.example", NOW, kind=Kind.ROOM)
        token = replytokens.issue(session, room.id, UID, CAROL, None, NOW)
        unknown = reply_address(replytokens.new_token(), REPLY_DOMAIN)
        assert token_route(session, unknown, NOW) is None
        assert not is_deliverable(session, unknown, NOW)
        assert routes_for(session, [unknown, bounce_address(replytokens.new_token(), 7, REPLY_DOMAIN)], NOW) == []
        assert token_route(session, ALICE, NOW) is None  # not a token address at all
        assert is_deliverable(session, reply_address(token, REPLY_DOMAIN), NOW)
        directory.remove_principal(session, "room-r@foo.example")
        assert not is_deliverable(session, reply_address(token, REPLY_DOMAIN), NOW)
