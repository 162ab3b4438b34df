"""One bad message never stops the others: a processing budget, crash counting, a bounded stop, HTTP apart.

Through a real ``reefknot serve``: a message over its budget is held as
``processing-timeout`` (and not retried), while the rest is processed; SIGTERM stops
within its bound and leaves no message claimed; free/busy requests stuck on the
database do not keep an SMTP client from its 250. Through the service: a message
claimed again and again by processors that never finished it is held as
``worker-crashed``, and a processor that stops gives back what it had not begun.
"""

from __future__ import annotations

import smtplib
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gateway.cli import main
from gateway.core.mail.envelope import Envelope
from gateway.service import processing
from gateway.store import intake
from gateway.store.db import Database
from gateway.store.intake import IntakeState
from tests.peers.cli import Reefknot
from tests.peers.serve import (
    ServeProcess,
    intake_rows,
    wait_until_processed,
    write_config,
)
from tests.peers.servers import LOOPBACK
from tests.e2e.test_daemon import (  # noqa: F401
    ALICE,
    ERIN,
    add_alice,
    invitation,
    processes,
    serve,
    sqlite_url,
)

NOW = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)
PLAIN = f"From: {ERIN}\r\nTo: {ALICE}\r\nSubject: Lunch?\r\nMessage-ID: <lunch@test>\r\n\r\nAt noon?\r\n".encode()


def http_port(config: Path) -> int:
    return int(config.read_text().split('[http]\nlisten = "')[1].split(":")[1].split('"')[0])


def test_a_message_over_its_budget_is_held_as_processing_timeout_and_is_not_retried(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, smtp_port, _ = write_config(tmp_path, sqlite_url, extra="[processing]\nmessage_timeout = 0.000001\n")
    add_alice(config, capsys)
    daemon = serve(processes, config)
    with smtplib.SMTP(LOOPBACK, smtp_port, timeout=30) as client:
        client.sendmail(ERIN, [ALICE], invitation("slow"))
        client.sendmail(ERIN, [ALICE], PLAIN)
    slow, lunch = wait_until_processed(sqlite_url, ["<slow@test>", "<lunch@test>"])
    assert (slow.state, slow.reason, slow.attempts) == ("held", "processing-timeout", 0)
    assert "budget of 1e-06 s" in slow.detail
    assert (lunch.state, lunch.reason) == ("ignored", "no-calendar-part")
    time.sleep(6)  # past the processor's poll interval: a held message is not taken again
    (again,) = intake_rows(sqlite_url, "<slow@test>")
    assert (again.state, again.processed_at) == ("held", slow.processed_at)
    assert daemon.stop() == 0

    tight = Reefknot(config, capsys)
    (held,) = tight.json_lines("quarantine")
    assert held["reason"] == "processing-timeout"
    assert "held (processing-timeout)" in tight("quarantine", "release", str(held["id"]))
    roomy = tmp_path / "roomy.toml"
    roomy.write_text(config.read_text().replace("message_timeout = 0.000001", "message_timeout = 30"))
    assert "done" in Reefknot(roomy, capsys)("quarantine", "release", str(held["id"]))


def test_sigterm_stops_within_its_bound_and_leaves_nothing_claimed(
    processes: list[ServeProcess], tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = write_config(tmp_path, sqlite_url)
    add_alice(config, capsys)
    db = Database(sqlite_url)
    processing.take_in(db, [(invitation(f"queued-{n}"), Envelope(ERIN, (ALICE,), "smtp")) for n in range(200)], NOW)
    db.dispose()
    daemon = serve(processes, config)  # it begins on the queue at once
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 30 + 10 + 20  # the budget, STOP_LIMIT and the final drain at most
    rows = intake_rows(sqlite_url)
    assert {row.state for row in rows} <= {"done", "queued"}
    assert [row.id for row in rows if row.claimed_until is not None] == []
    assert all(row.claims == 0 for row in rows)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_free_busy_requests_stuck_on_the_database_do_not_keep_smtp_from_its_250(
    processes: list[ServeProcess], tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "public.toml").write_text('default = "apply"\n\n[freebusy]\nurl = "public"\n')
    config, smtp_port, _ = write_config(tmp_path, database_url, extra='[policy]\nfiles = ["public.toml"]\n')
    add_alice(config, capsys)
    serve(processes, config)
    url = f"http://{LOOPBACK}:{http_port(config)}/freebusy/{ALICE}"
    assert urllib.request.urlopen(url, timeout=30).status == 200
    answers: list[int] = []

    def ask() -> None:
        answers.append(urllib.request.urlopen(url, timeout=60).status)

    locker = create_engine(database_url)
    with locker.connect() as connection:
        connection.execute(text("LOCK TABLE principals IN ACCESS EXCLUSIVE MODE"))  # until rollback
        askers = [threading.Thread(target=ask) for _ in range(16)]
        for asker in askers:
            asker.start()
        time.sleep(1.0)
        began = time.monotonic()
        with smtplib.SMTP(LOOPBACK, smtp_port, timeout=30) as client:
            client.sendmail(ERIN, [ALICE], invitation("meanwhile"))
        waited = time.monotonic() - began
        assert answers == []  # every free/busy request was still waiting on the lock
        connection.rollback()
    locker.dispose()
    for asker in askers:
        asker.join(60)
    assert waited < 5, f"the SMTP client waited {waited:.1f} s for its 250"
    assert answers == [200] * 16
    wait_until_processed(database_url, ["<meanwhile@test>"])


# --- the service: crashes counted, claims given back -----------------------------------------


def _queued(db: Database, name: str) -> int:
    (intake_id,) = processing.take_in(db, [(invitation(name), Envelope(ERIN, (ALICE,), "smtp"))], NOW)
    return intake_id


@pytest.fixture
def alice_db(reefknot: Reefknot, database_url: str) -> Database:  # reefknot: the schema, alice and bob
    return Database(database_url)


def test_a_message_that_killed_its_processor_three_times_is_held_as_worker_crashed(
    alice_db: Database, reefknot: Reefknot
) -> None:
    intake_id = _queued(alice_db, "crasher")
    moment = NOW
    for _ in range(processing.MAX_CLAIMS):  # each processor dies before recording anything; its lease runs out
        with alice_db.transaction() as session:
            assert intake.claim_queued(session, moment, moment + processing.LEASE, 10) == [intake_id]
        moment += processing.LEASE + timedelta(seconds=1)
    (receipt,) = processing.process_queued(alice_db, moment)
    assert (receipt.intake_id, receipt.state, receipt.reason) == (intake_id, IntakeState.HELD, "worker-crashed")
    (held,) = reefknot.json_lines("quarantine")
    assert (held["id"], held["reason"]) == (intake_id, "worker-crashed")
    alice_db.dispose()


def test_a_processor_that_stops_gives_back_what_it_had_not_begun_without_counting_a_crash(
    alice_db: Database,
) -> None:
    ids = [_queued(alice_db, f"given-back-{n}") for n in range(3)]
    for _ in range(processing.MAX_CLAIMS + 2):  # stopped again and again: never taken for a crash
        in_flight: set[int] = set()
        assert processing.process_queued(alice_db, NOW, 10, stopping=lambda: True, in_flight=in_flight) == []
        assert in_flight == set()
    stop = iter([False, True, True])  # asked before each message: go on with the first, then stop
    receipts = processing.process_queued(alice_db, NOW, 10, stopping=lambda: next(stop))
    assert [r.intake_id for r in receipts] == ids[:1]  # the first begun, then it stopped
    receipts = processing.process_queued(alice_db, NOW, 10)  # the rest at once, within the first claim's lease
    assert [(r.intake_id, r.state) for r in receipts] == [(i, IntakeState.DONE) for i in ids[1:]]
    alice_db.dispose()


@pytest.mark.parametrize("value", ['"x"', "0", "-1", "true", "7200"])
def test_a_message_timeout_that_is_not_a_number_of_seconds_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "r.db"}"\n\n[processing]\nmessage_timeout = {value}\n')
    assert main(["--config", str(config), "check-config"]) == 78
    assert "[processing] message_timeout" in capsys.readouterr().err
