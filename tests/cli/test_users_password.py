"""``reefknot users password`` on SQLite and PostgreSQL: add prints a password that signs in, list, revoke."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.cli import main
from gateway.cli.base import EX_DATAERR, EX_USAGE
from gateway.service.credentials import Authenticator
from gateway.store.db import Database
from tests.conftest import NOW
from tests.peers.cli import Reefknot

PEER = "192.0.2.1"


@pytest.fixture
def auth(reefknot: Reefknot, database_url: str) -> Iterator[Authenticator]:
    """Signing in as the HTTP face will, through a database handle of its own."""
    db = Database(database_url)
    yield Authenticator(db)
    db.dispose()


def test_add_prints_only_the_password_and_it_signs_in(reefknot: Reefknot, auth: Authenticator) -> None:
    out = reefknot("users", "password", "add", "a.smith@foo.example")
    (password,) = out.splitlines()
    principal = auth.authenticate("alice@foo.example", password, PEER, NOW)
    assert principal is not None and principal.address == "alice@foo.example"
    assert auth.authenticate("bob@foo.example", password, PEER, NOW) is None


def test_list_shows_labels_with_their_times_never_the_password(reefknot: Reefknot, auth: Authenticator) -> None:
    phone = reefknot("users", "password", "add", "alice@foo.example", "--label", "phone").strip()
    reefknot("users", "password", "add", "alice@foo.example")
    assert auth.authenticate("alice@foo.example", phone, PEER, NOW) is not None

    listed = reefknot.json_lines("users", "password", "list", "alice@foo.example")
    assert [(e["label"], e["last_used"]) for e in listed] == [("phone", NOW.isoformat()), ("app-1", None)]
    assert all(e["created"] for e in listed)
    table = reefknot("users", "password", "list", "alice@foo.example")
    assert table.splitlines()[0].split() == ["LABEL", "CREATED", "LAST_USED"]
    assert "never" in table and phone not in table
    assert reefknot("users", "password", "list", "bob@foo.example").strip() == "(none)"


def test_revoke_stops_the_password_at_once(reefknot: Reefknot, auth: Authenticator) -> None:
    password = reefknot("users", "password", "add", "alice@foo.example", "--label", "phone").strip()
    assert auth.authenticate("alice@foo.example", password, PEER, NOW) is not None

    reefknot("users", "password", "revoke", "ALICE@foo.example", "phone")

    assert auth.authenticate("alice@foo.example", password, PEER, NOW) is None
    assert reefknot.json_lines("users", "password", "list", "alice@foo.example") == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("revoke", "alice@foo.example", "phone"), EX_DATAERR),
        (("add", "carol@foo.example"), EX_DATAERR),
        (("list", "carol@foo.example"), EX_DATAERR),
        (("add", "alice@foo.example", "--label", ""), EX_USAGE),
        (("revoke", "alice@foo.example"), EX_USAGE),
    ],
)
def test_what_cannot_be_done_exits_with_a_code_and_prints_nothing(
    reefknot: Reefknot, args: tuple[str, ...], code: int
) -> None:
    assert reefknot("users", "password", *args, expect=code) == ""


def test_a_taken_label_is_refused_and_says_so(reefknot: Reefknot, capsys: pytest.CaptureFixture[str]) -> None:
    reefknot("users", "password", "add", "alice@foo.example", "--label", "phone")
    capsys.readouterr()
    code = main(["--config", str(reefknot.config), "users", "password", "add", "a.smith@foo.example", "--label", "phone"])
    out, err = capsys.readouterr()
    assert (code, out) == (EX_DATAERR, "")
    assert err.strip() == "reefknot: alice@foo.example already has an app password labelled 'phone'"
    assert len(reefknot.json_lines("users", "password", "list", "alice@foo.example")) == 1
