"""``reefknot outbox`` flush, retry and drop, in-process against a real SMTP peer, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.adapters.dkim import DkimSigner
from gateway.core.calendar.ical import components_of, find_attendee, parse_calendar
from gateway.service import delivery_attempts
from tests.peers.cli import Reefknot, write_event
from tests.peers.servers import LOOPBACK, ServerUnavailable, free_port, smtp_sink
from tests.peers.sink import Sink, smtp_peer
from tests.adapters.test_dkim_signing import _pem, dns_for
from tests.edges.test_sender import compose

CAROL, DAVE, ERIN = "carol@bar.example", "dave@baz.example", "erin@baz.example"


@pytest.fixture
def peer() -> Iterator[Sink]:
    with smtp_peer() as sink:
        yield sink


def configure(tmp_path: Path, database_url: str, port: int, capsys: pytest.CaptureFixture[str]) -> Reefknot:
    config = tmp_path / "reefknot.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        f'[outbound]\nsmarthost = "{LOOPBACK}:{port}"\nreply_domain = "reply.foo.example"\n'
    )
    return Reefknot(config, capsys)


@pytest.fixture
def reefknot(
    database_url: str, tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Reefknot:
    monkeypatch.setattr(delivery_attempts, "composer_for", lambda config: compose)
    run = configure(tmp_path, database_url, peer.port, capsys)
    run("users", "add", "alice@foo.example", "--name", "Alice")
    return run


def schedule_status(run: Reefknot, uid: str, attendee: str) -> str:
    (component,) = components_of(parse_calendar(run("calendar", "export", "alice@foo.example", "--uid", uid)))
    prop = find_attendee(component, attendee)
    assert prop is not None
    return str(prop.params.get("SCHEDULE-STATUS", ""))


def states(run: Reefknot) -> dict[str, tuple[int, str, int]]:
    return {r["recipients"][0]: (r["id"], r["state"], r["attempts"]) for r in run.json_lines("outbox")}


def test_flush_sends_what_is_due_and_retry_and_drop_change_the_queue(
    reefknot: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    peer.answer(DAVE, "550 5.1.1 User unknown")
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "u1", CAROL, DAVE)))
    carol, dave = states(reefknot)[CAROL][0], states(reefknot)[DAVE][0]
    lines = reefknot("outbox", "flush").splitlines()
    assert sorted(lines) == sorted([
        f"outbox {carol} {CAROL}: sent, SCHEDULE-STATUS 1.1 (250 2.0.0 Ok: queued)",
        f"outbox {dave} {DAVE}: failed, SCHEDULE-STATUS 3.7 (bad-address: 550 5.1.1 User unknown)",
    ])
    assert reefknot("outbox", "flush") == "nothing is queued\n"
    assert (schedule_status(reefknot, "u1", CAROL), schedule_status(reefknot, "u1", DAVE)) == ("1.1", "3.7")

    reefknot("outbox", "retry", str(carol), expect=65)  # sent: nothing to retry
    peer.accept(DAVE)
    assert reefknot("outbox", "retry", str(dave)) == f"outbox {dave}: queued\n"
    assert states(reefknot)[DAVE] == (dave, "queued", 0)
    assert reefknot("outbox", "flush").startswith(f"outbox {dave} {DAVE}: sent, SCHEDULE-STATUS 1.1")
    assert schedule_status(reefknot, "u1", DAVE) == "1.1"

    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "u2", ERIN)))
    erin = states(reefknot)[ERIN][0]
    assert reefknot("outbox", "drop", str(erin)) == f"outbox {erin}: dropped\n"
    assert states(reefknot)[ERIN] == (erin, "dropped", 0)
    assert schedule_status(reefknot, "u2", ERIN) == "5.1"
    assert reefknot("outbox", "flush") == "nothing is queued\n"
    reefknot("outbox", "drop", str(erin), expect=65)
    assert [m.rcpt_to for m in peer.received] == [(CAROL,), (DAVE,)]


def test_flush_tries_a_message_in_backoff_and_a_deferral_leaves_its_schedule_alone(
    reefknot: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    peer.answer(CAROL, "451 4.3.0 Try again later", at="data")
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "u1", CAROL)))
    (first,) = reefknot.json_lines("outbox", "flush")  # due: an attempt on the schedule
    assert (first["result"], first["detail"], first["schedule_status"]) == ("deferred", "451 4.3.0 Try again later", "1.1")
    (queued,) = reefknot.json_lines("outbox")
    assert (queued["state"], queued["attempts"], queued["next_attempt_at"]) == ("queued", 1, first["next_attempt_at"])

    peer.answer(CAROL, "452 4.3.1 Insufficient system storage", at="data")
    (forced,) = reefknot("outbox", "flush").splitlines()  # in backoff: tried all the same
    due = datetime.fromisoformat(queued["next_attempt_at"]).isoformat(timespec="seconds")
    assert forced == f"outbox {first['id']} {CAROL}: deferred, next attempt {due} (452 4.3.1 Insufficient system storage)"
    (after,) = reefknot.json_lines("outbox")
    assert (after["attempts"], after["next_attempt_at"]) == (1, queued["next_attempt_at"])  # the daemon's schedule
    assert after["last_error"] == "452 4.3.1 Insufficient system storage"

    peer.accept(CAROL)
    (sent,) = reefknot.json_lines("outbox", "flush")
    assert (sent["id"], sent["recipient"], sent["result"], sent["schedule_status"]) == (first["id"], CAROL, "sent", None)
    assert states(reefknot)[CAROL] == (first["id"], "sent", 1)
    assert len(peer.offered) == 3 and [m.rcpt_to for m in peer.received] == [(CAROL,)]
    assert schedule_status(reefknot, "u1", CAROL) == "1.1"


def test_flush_sends_a_signed_imip_mail_a_calendar_program_and_a_person_can_read(
    database_url: str, tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "dkim.key"
    key_file.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    run = configure(tmp_path, database_url, peer.port, capsys)
    with run.config.open("a") as config:
        config.write(f'\n[outbound.dkim]\ndomain = "foo.example"\nselector = "reefknot"\nkey_file = "{key_file}"\n')
    run("users", "add", "alice@foo.example")
    run("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "u1", CAROL)))
    run("outbox", "flush")

    (mail,) = peer.received
    signer = DkimSigner("foo.example", "reefknot", key_file)
    assert dkim.verify(mail.data, dnsfunc=dns_for(signer))
    message = email.message_from_bytes(mail.data)
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    calendar = parse_calendar(part.get_payload(decode=True).decode())
    assert part.get_param("method") == str(calendar["METHOD"]) == "REQUEST"
    assert message["Subject"].startswith("Invitation: Quarterly planning")
    assert states(run)[CAROL][1] == "sent"


def test_flush_refuses_to_start_without_a_usable_signing_key_and_leaves_the_queue_alone(
    database_url: str, tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, database_url, peer.port, capsys)
    with run.config.open("a") as config:
        config.write(f'\n[outbound.dkim]\ndomain = "foo.example"\nselector = "reefknot"\nkey_file = "{tmp_path}/none"\n')
    run("users", "add", "alice@foo.example")
    run("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "u1", CAROL)))
    run("outbox", "flush", expect=78)
    assert states(run)[CAROL][1:] == ("queued", 0)
    assert peer.connections == 0


def test_flush_is_a_temporary_failure_while_the_database_is_unavailable(
    tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_attempts, "composer_for", lambda config: compose)
    run = configure(tmp_path, f"postgresql+psycopg://postgres@{LOOPBACK}:{free_port()}/reefknot", peer.port, capsys)
    run("outbox", "flush", expect=75)


def test_flush_against_postfix_smtp_sink_shows_a_refusing_relay_as_deferred_then_delivers(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_attempts, "composer_for", lambda config: compose)
    try:
        refusing = smtp_sink(soft_reject=["rcpt"])
        sink = refusing.__enter__()
    except ServerUnavailable as error:
        pytest.skip(str(error))
    try:
        run = configure(tmp_path, database_url, sink.port, capsys)
        run("users", "add", "alice@foo.example")
        run("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "u1", CAROL)))
        for _ in range(2):  # due, then in backoff: tried both times
            (line,) = run.json_lines("outbox", "flush")
            assert (line["recipient"], line["result"]) == (CAROL, "deferred") and line["detail"].startswith("4")
        assert states(run)[CAROL][1:] == ("queued", 1)
    finally:
        refusing.__exit__(None, None, None)
    with smtp_sink() as accepting:
        configure(tmp_path, database_url, accepting.port, capsys)
        (line,) = run.json_lines("outbox", "flush")
        assert line["result"] == "sent"
        (mail,) = accepting.wait_for_messages(1)
    assert mail.rcpt_to == (CAROL,)
