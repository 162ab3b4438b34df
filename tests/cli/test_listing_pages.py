"""``reefknot inbox`` and ``reefknot quarantine`` page through more than 1,000 rows and say how many they left out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gateway.cli import main
from gateway.core.mail.envelope import Envelope
from gateway.core.model import Outcome
from gateway.store import directory, inbox, intake
from gateway.store.db import Database
from gateway.store.intake import IntakeState
from tests.conftest import NOW
from tests.peers.cli import Reefknot

ROWS = 1234


def fill_inbox(db: Database) -> list[str]:
    with db.transaction() as session:
        alice = directory.resolve(session, "alice@foo.example")
        assert alice is not None
        for n in range(ROWS):
            inbox.record(session, inbox.InboxRecord(alice.id, "REQUEST", f"u{n}", "carol@bar.example", Outcome.APPLIED), NOW)
    return ["inbox", "alice@foo.example"]


def fill_quarantine(db: Database) -> list[str]:
    envelope = Envelope("carol@bar.example", ("alice@foo.example",), "smtp")
    with db.transaction() as session:
        messages = [(b"Subject: x\r\n\r\n", envelope, f"<{n}@test>") for n in range(ROWS + 1)]
        queued = intake.enqueue_many(session, messages, NOW)
        ids = [message.id for message in queued]
        for intake_id in ids[1:]:  # the first stays queued: not held, not listed
            intake.finish(session, intake_id, IntakeState.HELD, NOW, "unauthenticated")
    return ["quarantine"]


def listing(run: Reefknot, *args: str) -> tuple[list[str], str]:
    """The listing's lines on stdout and what it said on stderr."""
    run.capsys.readouterr()
    code = main(["--config", str(run.config), *args])
    out, err = run.capsys.readouterr()
    assert code == 0, err
    return out.splitlines(), err


@pytest.mark.parametrize("fill", [fill_inbox, fill_quarantine], ids=["inbox", "quarantine"])
def test_a_listing_longer_than_a_page_says_how_many_more_and_the_next_page_lists_them(
    reefknot: Reefknot, database_url: str, fill: Callable[[Database], list[str]]
) -> None:
    db = Database(database_url)
    try:
        command = fill(db)
    finally:
        db.dispose()

    lines, said = listing(reefknot, *command, "--json")
    first = [json.loads(line) for line in lines]
    assert len(first) == 1000
    last = first[-1]["id"]
    assert json.loads(said) == {"more": ROWS - 1000, "after": last}

    lines, said = listing(reefknot, *command, "--json", "--after", str(last))
    rest: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert (len(rest), said) == (ROWS - 1000, "")  # the last page: nothing left out
    ids = [r["id"] for r in first + rest]
    assert ids == sorted(set(ids)) and len(ids) == ROWS  # oldest first, every row once

    lines, said = listing(reefknot, *command, "--limit", "10", "--after", str(ids[99]))
    assert len(lines) == 1 + 10 and lines[1].split()[0] == str(ids[100])  # a header and ten rows
    assert said == f"reefknot: {ROWS - 110} more; the next page: --after {ids[109]}\n"

    lines, said = listing(reefknot, *command, "--limit", str(ROWS))
    assert (len(lines), said) == (1 + ROWS, "")  # exactly a page: nothing more to say


def test_page_options_are_checked(reefknot: Reefknot) -> None:
    reefknot("inbox", "alice@foo.example", "--limit", "0", expect=64)
    reefknot("quarantine", "--after", "-1", expect=64)
    assert reefknot("quarantine", "--after", "5") == "(none)\n"
