"""Bad input through ``reefknot ingest``: recorded with a named reason, never lost, never a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.core.mail.envelope import Envelope
from gateway.service import inbound, processing
from gateway.store.intake import IntakeState
from gateway.store.writers import WriteGate
from tests.conftest import NOW
from tests.peers.cli import Reefknot, imip_mail
from tests.peers.servers import free_port

T = TypeVar("T")

BROKEN_ICAL = "BEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:x\nDTSTART:2026\n"
JOURNAL_REQUEST = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//T//T//EN
METHOD:REQUEST
BEGIN:VJOURNAL
UID:journal-1
DTSTAMP:20260601T080000Z
DTSTART:20260601T080000Z
ORGANIZER:mailto:carol@bar.example
ATTENDEE:mailto:alice@foo.example
END:VJOURNAL
END:VCALENDAR
"""
TWO_UIDS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//T//T//EN
METHOD:REQUEST
BEGIN:VEVENT
UID:one
DTSTAMP:20260601T080000Z
DTSTART:20260601T080000Z
ORGANIZER:mailto:carol@bar.example
ATTENDEE:mailto:alice@foo.example
END:VEVENT
BEGIN:VEVENT
UID:two
DTSTAMP:20260601T080000Z
DTSTART:20260601T080000Z
ORGANIZER:mailto:carol@bar.example
ATTENDEE:mailto:alice@foo.example
END:VEVENT
END:VCALENDAR
"""


def mime_bomb(parts: int) -> bytes:
    boundary = "b"
    body = "".join(f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n{i}\r\n" for i in range(parts))
    return (
        f"From: x@bar.example\r\nTo: alice@foo.example\r\nMessage-ID: <bomb@test>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n{body}--{boundary}--\r\n'
    ).encode()


@pytest.mark.parametrize(
    ("name", "calendar", "outcome", "reason"),
    [
        ("broken-ical", BROKEN_ICAL, "unreadable", None),
        ("journal-request", JOURNAL_REQUEST, "rejected", "method-not-allowed-for-component"),
        ("two-uids", TWO_UIDS, "rejected", "uid-mismatch"),
    ],
)
def test_unusable_calendar_is_held_and_recorded_with_its_reason(
    reefknot: Reefknot, tmp_path: Path, name: str, calendar: str, outcome: str, reason: str | None
) -> None:
    mail = imip_mail(tmp_path, name, "carol@bar.example", "alice@foo.example", calendar, "REQUEST")
    assert "held" in reefknot("ingest", "--recipient", "alice@foo.example", str(mail))
    (entry,) = reefknot.json_lines("inbox", "alice@foo.example")
    assert entry["outcome"] == outcome and entry["reason"] and (reason is None or entry["reason"] == reason)
    (held,) = reefknot.json_lines("quarantine")
    assert held["reason"] == entry["reason"] and held["message_id"] == f"<{name}@test>"


def test_a_held_message_can_be_released_again_and_dropped(reefknot: Reefknot, tmp_path: Path) -> None:
    mail = imip_mail(tmp_path, "held", "carol@bar.example", "alice@foo.example", BROKEN_ICAL, "REQUEST")
    reefknot("ingest", "--recipient", "alice@foo.example", str(mail))
    (held,) = reefknot.json_lines("quarantine")
    assert "held" in reefknot("quarantine", "release", str(held["id"]))
    reefknot("quarantine", "drop", str(held["id"]))
    assert reefknot.json_lines("quarantine") == []
    reefknot("quarantine", "drop", str(held["id"]), expect=65)


def test_a_mime_bomb_is_held_not_parsed(reefknot: Reefknot, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.eml"
    bomb.write_bytes(mime_bomb(10_000))
    assert "held (mime-too-many-parts)" in reefknot("ingest", "--recipient", "alice@foo.example", str(bomb))


@pytest.mark.parametrize("raw", [b"", b"\x00\xff garbage \x00", b"Subject: no body at all"])
def test_garbage_is_taken_and_recorded_as_ignored(reefknot: Reefknot, tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "garbage.eml"
    path.write_bytes(raw)
    assert "ignored" in reefknot("ingest", "--recipient", "alice@foo.example", str(path))


def test_a_tnef_only_invitation_is_held_as_unreadable(reefknot: Reefknot, tmp_path: Path) -> None:
    raw = (
        b"From: carol@bar.example\r\nTo: alice@foo.example\r\nMessage-ID: <tnef@test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n'
        b'--x\r\nContent-Type: application/ms-tnef; name="winmail.dat"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        b"eJ8+IgEAAQaQCAAEAAAAAAABAAEAAQeQBgAIAAAA5AQAAAAAAADoAAEIgAcAGAAAAElQTS5NaWNyb3NvZnQgTWFpbC5Ob3Rl\r\n--x--\r\n"
    )
    path = tmp_path / "tnef.eml"
    path.write_bytes(raw)
    assert "held (tnef-invitation)" in reefknot("ingest", "--recipient", "alice@foo.example", str(path))
    (entry,) = reefknot.json_lines("inbox", "alice@foo.example")
    assert (entry["outcome"], entry["reason"]) == ("unreadable", "tnef-invitation")


REQUEST = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//T//T//EN
METHOD:REQUEST
BEGIN:VEVENT
UID:sized
DTSTAMP:20260601T080000Z
DTSTART:20260701T080000Z
ORGANIZER:mailto:carol@bar.example
ATTENDEE:mailto:alice@foo.example
END:VEVENT
END:VCALENDAR
"""


@pytest.mark.parametrize(
    ("limits", "size", "code"),
    [
        ("[smtp]\nmax_message_size = 4000\n", 4000, 0),
        ("[smtp]\nmax_message_size = 4000\n", 4001, 65),
        ("[lmtp]\nmax_message_size = 4000\n", 4001, 65),
        ("[smtp]\nmax_message_size = 9000\n[lmtp]\nmax_message_size = 4000\n", 4001, 65),  # the smaller one
        ("[smtp]\nmax_message_size = 9000\n[lmtp]\nmax_message_size = 9000\n", 9000, 0),
    ],
)
def test_ingest_refuses_a_message_over_the_smaller_listener_limit_and_keeps_nothing(
    reefknot: Reefknot, tmp_path: Path, limits: str, size: int, code: int
) -> None:
    with reefknot.config.open("a") as config:
        config.write(limits)
    mail = imip_mail(tmp_path, "sized", "carol@bar.example", "alice@foo.example", REQUEST, "REQUEST")
    raw = mail.read_bytes()
    mail.write_bytes(raw + b"x" * (size - len(raw)))  # an epilogue after the last boundary: the same invitation
    assert mail.stat().st_size == size
    reefknot("ingest", "--recipient", "alice@foo.example", str(mail), expect=code)
    assert len(reefknot.json_lines("inbox", "alice@foo.example")) == (1 if code == 0 else 0)


def _reefknot_process(*args: str, config: Path | None = None, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "REEFKNOT_CONFIG"}
    command = [sys.executable, "-m", "gateway.cli", *(["--config", str(config)] if config else []), *args]
    return subprocess.run(command, input=stdin, capture_output=True, env=env, timeout=60)


def test_ingest_exits_75_when_the_database_is_unavailable(tmp_path: Path) -> None:
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none?connect_timeout=2"\n')
    result = _reefknot_process("ingest", "--recipient", "alice@foo.example", "-", config=config, stdin=b"Subject: x\r\n\r\n")
    assert result.returncode == 75, result.stderr


# The child's peak resident memory is VmHWM, which starts afresh at exec; ru_maxrss would include
# the parent's size at fork, this test's 64 MiB included.
MEASURED = (
    "import re, sys\n"
    "from gateway.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "peak = re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "sys.stderr.write(f'\\nmaxrss {peak}\\n')\n"
    "sys.exit(code)\n"
)


def _measured_ingest(cwd: Path, stdin: bytes) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """``reefknot ingest -`` in a child that reports its peak memory (KiB) as its last line on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "REEFKNOT_CONFIG"}
    result = subprocess.run([sys.executable, "-c", MEASURED, "ingest", "-"], input=stdin, capture_output=True,
                            cwd=cwd, env=env, timeout=120)
    output, _, peak = result.stderr.rstrip().rpartition(b"\nmaxrss ")
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout, output), int(peak)


def test_a_message_over_25_mib_on_stdin_is_bounced_with_5_3_4_without_being_read_whole(tmp_path: Path) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc/self/status (Linux)")
    small, small_peak = _measured_ingest(tmp_path, b"Subject: hello\r\n\r\nno calendar\r\n")
    assert small.returncode == 0, small.stderr
    large, large_peak = _measured_ingest(tmp_path, b"Subject: big\r\n\r\n" + b"x" * (64 * 2**20))
    assert (large.returncode, large.stdout) == (65, b"")  # EX_DATAERR: Postfix's pipe bounces it
    assert large.stderr.startswith(b"5.3.4 message too large: over 26214400 bytes"), large.stderr  # the bounce's code
    assert large_peak < small_peak + (25 + 16) * 1024, (small_peak, large_peak)  # the limit and a little, not 64 MiB


def test_ingest_exits_64_on_bad_usage_and_78_on_a_bad_configuration(tmp_path: Path) -> None:
    assert _reefknot_process("ingest", "--no-such-option").returncode == 64
    config = tmp_path / "reefknot.toml"
    config.write_text("[smtp]\nlisten = ['nowhere']\n")
    result = _reefknot_process("ingest", "-", config=config)
    assert result.returncode == 78 and b"[smtp] listen" in result.stderr


def test_ingest_from_stdin_in_a_fresh_directory_creates_the_embedded_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REEFKNOT_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ingest", "-"], input=b"Subject: hello\r\n\r\nno calendar\r\n",
        capture_output=True, cwd=tmp_path, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert b"ignored (no-calendar-part)" in result.stdout and (tmp_path / "reefknot.db").exists()
    assert f"built-in defaults, database sqlite:///reefknot.db (in {tmp_path})".encode() in result.stderr


def test_an_unexpected_failure_keeps_the_message_queued_then_holds_it(
    db: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while applying never loses the message: it is retried a bounded number of times, then held."""
    def broken(*args: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(inbound, "_process_mail", broken)
    envelope = Envelope("carol@bar.example", ("alice@foo.example",), "ingest")
    receipt = processing.ingest_message(db, b"Subject: x\r\n\r\n", envelope, NOW)  # type: ignore[arg-type]
    assert (receipt.state, receipt.reason) == (IntakeState.QUEUED, "processing-failed")
    for attempt in range(1, processing.MAX_ATTEMPTS):
        (retried,) = processing.process_queued(db, NOW + processing.LEASE * attempt + timedelta(seconds=1))  # type: ignore[arg-type]
    assert (retried.state, retried.reason) == (IntakeState.HELD, "processing-failed")

    monkeypatch.undo()
    released = processing.release_held(db, receipt.intake_id, NOW)  # type: ignore[arg-type]
    assert (released.state, released.reason) == (IntakeState.IGNORED, "no-calendar-part")


def queue_plain_mail(db: object, count: int) -> None:
    """``count`` messages without a calendar part, each taken in by its own commit."""
    for n in range(count):
        envelope = Envelope("a@bar.example", ("b@foo.example",), "smtp")
        processing.take_in(db, [(f"Subject: {n}\r\n\r\n".encode(), envelope)], NOW)  # type: ignore[arg-type]


class RecordingGate(WriteGate):
    """The write gate, noting which function took each turn."""

    def __init__(self) -> None:
        super().__init__()
        self.turns: list[str] = []

    def run(self, function: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        self.turns.append(getattr(function, "__name__", "?"))
        return super().run(function, *args, urgent=urgent)


def test_a_waiting_listener_commits_between_two_groups_of_queued_messages_not_after_the_batch(db: object) -> None:
    """The processor takes the write gate once for the claim and once per group of messages; an urgent writer goes
    between."""
    queue_plain_mail(db, 5)
    gate = RecordingGate()
    receipts = processing.process_queued(db, NOW, 10, gate=gate, together=2)  # type: ignore[arg-type]
    assert [r.state for r in receipts] == [IntakeState.IGNORED] * 5
    turns = gate.turns
    assert len(turns) == 4 and len(set(turns[1:])) == 1 and turns[0] != turns[1]  # the claim, then 2 + 2 + 1


def test_a_group_that_has_run_its_time_takes_no_further_message(db: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow message does not keep a listener waiting for the rest of its group: past GROUP_SECONDS the group ends."""
    monkeypatch.setattr(processing, "GROUP_SECONDS", 0.0)
    queue_plain_mail(db, 3)
    gate = RecordingGate()
    receipts = processing.process_queued(db, NOW, 10, gate=gate, together=8)  # type: ignore[arg-type]
    assert [r.state for r in receipts] == [IntakeState.IGNORED] * 3
    assert len(gate.turns) == 4  # the claim, then one message a turn


def test_ingest_refuses_a_recipient_who_is_not_local_with_67_and_keeps_nothing(reefknot: Reefknot, tmp_path: Path) -> None:
    mail = imip_mail(tmp_path, "stranger", "carol@bar.example", "nobody@foo.example", REQUEST, "REQUEST")
    assert "intake" not in reefknot("ingest", "--recipient", "nobody@foo.example", str(mail), expect=67)
    assert reefknot.json_lines("quarantine") == []


def test_quarantine_show_says_what_a_held_message_asks_and_why_it_is_held(reefknot: Reefknot, tmp_path: Path) -> None:
    mail = imip_mail(tmp_path, "shown", "erin@baz.example", "alice@foo.example", JOURNAL_REQUEST, "REQUEST")
    assert "held" in reefknot("ingest", "--recipient", "alice@foo.example", "--sender", "erin@baz.example", str(mail))
    (held,) = reefknot.json_lines("quarantine")
    shown = reefknot("quarantine", "show", str(held["id"]))
    assert f"intake {held['id']}: held ({held['reason']})" in shown
    assert "envelope: from <erin@baz.example> to alice@foo.example" in shown and "subject: REQUEST shown" in shown
    assert "calendar part 1: REQUEST" in shown
    assert reefknot("quarantine", "show", str(held["id"]), "--raw").startswith(mail.read_text()[:40])
    reefknot("quarantine", "show", "999999", expect=65)
