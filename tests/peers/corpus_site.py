"""The local site the real-sender mail corpus is delivered to: foo.example with Alice, Bob and room R."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from gateway.core.model import Kind
from gateway.store import directory
from gateway.store.db import Database
from tests.peers.paths import DATA

MAIL = DATA / "mail"
LOCAL = ("alice@foo.example", "bob@foo.example", "room-r@foo.example")


def corpus_database(directory_path: Path, now: datetime) -> Database:
    """A fresh SQLite database in ``directory_path`` with the site's principals."""
    db = Database(f"sqlite:///{directory_path / 'reefknot.db'}")
    db.upgrade()
    with db.transaction() as session:
        for address in LOCAL:
            kind = Kind.ROOM if address.startswith("room") else Kind.INDIVIDUAL
            directory.add_principal(session, address, now, kind=kind)
    return db
