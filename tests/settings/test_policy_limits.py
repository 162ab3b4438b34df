"""The policy's limits, rate, private events and rejection notices, through ``reefknot ingest`` on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.message
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from gateway.adapters.dkim import DkimSigner
from gateway.cli import main
from gateway.store.db import Database
from gateway.store.schema import OutboxMessage
from tests.peers.cli import EVENT, Reefknot, imip_mail

ALICE, ERIN = "alice@foo.example", "erin@baz.example"


def configure(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str], policy: str) -> Reefknot:
    (tmp_path / "local.toml").write_text(policy)
    config = tmp_path / "reefknot.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n\n[policy]\nfiles = ["local.toml"]\n')
    run = Reefknot(config, capsys)
    run("users", "add", ALICE)
    return run


def erins_invitation(uid: str, *attendees: str, extra: str = "") -> str:
    text = EVENT.format(uid=uid, attendees="\n".join(f"ATTENDEE:mailto:{a}" for a in (ALICE, *attendees)))
    text = text.replace("ORGANIZER;CN=Alice:mailto:alice@foo.example", f"ORGANIZER:mailto:{ERIN}")
    text = text.replace("ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@foo.example", f"ATTENDEE:mailto:{ERIN}")
    return text.replace("VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST").replace("END:VEVENT", f"{extra}END:VEVENT")


def ingest(run: Reefknot, tmp_path: Path, uid: str, calendar: str) -> str:
    mail = imip_mail(tmp_path, uid, ERIN, ALICE, calendar, "REQUEST")
    return run("ingest", "--recipient", ALICE, "--sender", ERIN, str(mail))


def test_a_message_over_a_limit_is_held_with_the_limits_reason(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, database_url, capsys, 'default = "apply"\n[limits]\nmax_attendees = 3\n')
    assert "done" in ingest(run, tmp_path, "u-small", erins_invitation("u-small", "b@x.example"))
    assert "held (limits)" in ingest(run, tmp_path, "u-big", erins_invitation("u-big", "b@x.example", "c@x.example"))
    line = run.json_lines("inbox", ALICE)[-1]
    assert (line["uid"], line["outcome"], line["reason"]) == ("u-big", "held", "too-many-attendees")
    run("calendar", "export", ALICE, "--uid", "u-big", expect=65)


def test_a_sender_domain_over_its_rate_is_held_until_released(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, database_url, capsys, 'default = "apply"\n[limits]\ndomain_rate = "2/1h"\n')
    states = [ingest(run, tmp_path, f"u-{n}", erins_invitation(f"u-{n}")) for n in range(3)]
    assert ["done" in s for s in states] == [True, True, False] and "held (limits)" in states[2]
    assert run.json_lines("inbox", ALICE)[-1]["reason"] == "sender-domain-rate"
    (held,) = run.json_lines("quarantine")
    run("quarantine", "release", str(held["id"]))
    assert run.partstat(ALICE, "u-2", ALICE) == "NEEDS-ACTION"


@pytest.mark.parametrize(
    ("setting", "stored", "reason"),
    [("keep", "Quarterly planning", ""), ("busy-only", "Busy", ""), ("exclude", None, "private-event-excluded")],
)
def test_a_private_event_from_outside_is_stored_as_the_policy_says(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str], setting: str, stored: str | None,
    reason: str,
) -> None:
    run = configure(tmp_path, database_url, capsys, f'default = "apply"\nprivate_events = "{setting}"\n')
    secret = "CLASS:PRIVATE\nDESCRIPTION:The merger with Initech\nLOCATION:Board room\n"
    ingest(run, tmp_path, "u-private", erins_invitation("u-private", "ceo@initech.example", extra=secret))
    assert run.json_lines("inbox", ALICE)[-1]["reason"] == reason
    if stored is None:
        run("calendar", "export", ALICE, "--uid", "u-private", expect=65)
        return
    export = run("calendar", "export", ALICE, "--uid", "u-private")
    assert f"SUMMARY:{stored}" in export
    assert ("Initech" in export) is (setting == "keep")
    assert run.partstat(ALICE, "u-private", ALICE) == "NEEDS-ACTION"  # Alice can still answer
    if setting == "busy-only":
        run("event", "reply", "--as", ALICE, "u-private", "--partstat", "ACCEPTED")
        (reply,) = run.json_lines("outbox")
        with Database(database_url).transaction() as session:
            sent = session.scalars(select(OutboxMessage.ical)).one()
        assert reply["recipients"] == [ERIN] and "PARTSTAT=ACCEPTED" in sent and "Initech" not in sent


def _signed_invitation(tmp_path: Path, uid: str) -> tuple[Path, str]:
    """Erin's invitation, DKIM-signed by baz.example; and the pinned-key policy section for it."""
    key = tmp_path / "baz.key"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    signer = DkimSigner("baz.example", "cal", key)
    raw = imip_mail(tmp_path, uid, ERIN, ALICE, erins_invitation(uid), "REQUEST").read_bytes()
    path = tmp_path / f"{uid}-signed.eml"
    path.write_bytes(signer.sign(re.sub(rb"\r?\n", b"\r\n", raw)))
    partner = f'[[partner]]\nname = "baz"\ndomains = ["baz.example"]\n[partner.dkim_keys]\n' \
              f'"{signer.record_name}" = "{signer.dns_record()}"\n'
    return path, partner


@pytest.mark.parametrize("signed", [True, False])
def test_a_rejecting_rule_declines_with_a_notice_only_to_an_authenticated_organizer(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str], signed: bool
) -> None:
    mail, partner = _signed_invitation(tmp_path, "u-notice")
    rule = ('default = "apply"\n[[rule]]\nname = "no-baz-meetings"\nsender_domain = ["baz.example"]\n'
            'action = "reject"\nnotify_sender = true\n\n')
    run = configure(tmp_path, database_url, capsys, rule + partner)
    if not signed:
        mail = imip_mail(tmp_path, "u-notice", ERIN, ALICE, erins_invitation("u-notice"), "REQUEST")
    run("ingest", "--recipient", ALICE, "--sender", ERIN, str(mail))
    line = run.json_lines("inbox", ALICE)[-1]
    assert (line["outcome"], line["reason"]) == ("rejected", "no-baz-meetings" if signed else "unauthenticated")
    run("calendar", "export", ALICE, "--uid", "u-notice", expect=65)
    with Database(database_url).transaction() as session:
        notices = list(session.scalars(select(OutboxMessage)))
    if not signed:
        assert notices == []  # an unproven From may be a victim: no notice
        return
    (notice,) = notices
    assert (notice.method, notice.recipient) == ("REPLY", ERIN)
    assert "PARTSTAT=DECLINED" in notice.ical and "no-baz-meetings" in notice.ical.replace("\r\n ", "")


def test_check_config_loads_the_policy_files_and_names_a_broken_one(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, database_url, capsys, 'default = "hold"\n[[rule]]\nname = "r"\naction = "apply"\n')
    assert "policy: 1 rules, 0 partners, 0 room sections, 0 calendar relays; default hold" in run("check-config")
    (tmp_path / "local.toml").write_text('default = "hold"\n[[rule]]\nname = "r"\naction = "aply"\n')
    capsys.readouterr()
    assert main(["--config", str(tmp_path / "reefknot.toml"), "check-config"]) == 78
    assert "local.toml:4: rule 'r': unknown action 'aply'" in capsys.readouterr().err


def test_a_sender_is_known_once_the_recipients_calendar_holds_one_of_its_events(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, database_url, capsys,
                    'default = "apply"\n[[rule]]\nname = "strangers"\nsender_known = false\naction = "hold"\n')
    assert "held (strangers)" in ingest(run, tmp_path, "u-first", erins_invitation("u-first"))
    (held,) = run.json_lines("quarantine")
    run("quarantine", "release", str(held["id"]))
    assert "done" in ingest(run, tmp_path, "u-second", erins_invitation("u-second"))
    assert run.partstat(ALICE, "u-second", ALICE) == "NEEDS-ACTION"


def test_the_policys_mime_limits_hold_a_message_with_too_many_parts(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = configure(tmp_path, database_url, capsys, 'default = "apply"\n[limits]\nmax_parts = 3\n')
    assert "done" in ingest(run, tmp_path, "u-fits", erins_invitation("u-fits"))  # 3 parts: alternative, 2 leaves
    mail = imip_mail(tmp_path, "u-parts", ERIN, ALICE, erins_invitation("u-parts"), "REQUEST")
    message = email.message_from_bytes(mail.read_bytes())
    message.attach(email.message.Message())  # a fourth part
    mail.write_bytes(message.as_bytes())
    assert "held (mime-too-many-parts)" in run("ingest", "--recipient", ALICE, "--sender", ERIN, str(mail))
