"""The five DESIGN.md scenarios through the ``reefknot`` command, on SQLite and PostgreSQL.

Scenarios as far as they need no network: mail arrives through ``ingest``, outgoing
iMIP lands in the outbox, and the calendars are read back with ``calendar export``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.calendar.ical import components_of, parse_calendar
from tests.peers.cli import EVENT, Reefknot, imip_mail, reply_from, write_event


def test_scenario_1_local_invitation_is_delivered_and_answered_in_the_store(reefknot: Reefknot, tmp_path: Path) -> None:
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "s1", "bob@foo.example")))
    assert reefknot.partstat("bob@foo.example", "s1", "bob@foo.example") == "NEEDS-ACTION"
    assert [(e["method"], e["outcome"]) for e in reefknot.json_lines("inbox", "bob@foo.example")] == [("REQUEST", "applied")]

    reefknot("event", "reply", "--as", "bob@foo.example", "s1", "--partstat", "accepted")

    assert reefknot.partstat("alice@foo.example", "s1", "bob@foo.example") == "ACCEPTED"
    assert [(e["method"], e["outcome"]) for e in reefknot.json_lines("inbox", "alice@foo.example")] == [("REPLY", "applied")]
    assert reefknot.json_lines("outbox") == []


@pytest.mark.parametrize("outsider", ["carol@bar.example", "erin@baz.example"])
def test_scenarios_2_and_3_outside_attendee_gets_imip_and_its_reply_is_applied(
    reefknot: Reefknot, tmp_path: Path, outsider: str
) -> None:
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "s2", outsider)))
    (queued,) = reefknot.json_lines("outbox")
    assert (queued["method"], queued["recipients"], queued["state"]) == ("REQUEST", [outsider], "queued")

    mail = imip_mail(tmp_path, "s2-reply", outsider, "alice@foo.example", reply_from("s2", outsider, "TENTATIVE"), "REPLY")
    assert "done" in reefknot("ingest", "--recipient", "alice@foo.example", str(mail))
    assert reefknot.partstat("alice@foo.example", "s2", outsider) == "TENTATIVE"


def test_scenario_4_outside_invitation_lands_and_the_answer_goes_back_as_imip(reefknot: Reefknot, tmp_path: Path) -> None:
    request = EVENT.format(uid="s4", attendees="ATTENDEE;RSVP=TRUE:mailto:a.smith@foo.example").replace(
        "mailto:alice@foo.example", "mailto:erin@baz.example").replace("METHOD", "")
    request = request.replace("VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST")
    mail = imip_mail(tmp_path, "s4", "erin@baz.example", "a.smith@foo.example", request, "REQUEST")
    reefknot("ingest", "--recipient", "a.smith@foo.example", str(mail))
    assert reefknot.partstat("alice@foo.example", "s4", "a.smith@foo.example") == "NEEDS-ACTION"

    reefknot("event", "reply", "--as", "alice@foo.example", "s4", "--partstat", "DECLINED", "--comment", "Travelling")

    (queued,) = reefknot.json_lines("outbox")
    assert (queued["method"], queued["recipients"], queued["sender"]) == ("REPLY", ["erin@baz.example"], "a.smith@foo.example")


def test_scenario_5_email_only_attendee_gets_an_invitation_in_the_outbox(reefknot: Reefknot, tmp_path: Path) -> None:
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "s5", "frank@baz.example", "bob@foo.example")))
    assert [(m["method"], m["recipients"]) for m in reefknot.json_lines("outbox")] == [("REQUEST", ["frank@baz.example"])]
    assert reefknot.partstat("bob@foo.example", "s5", "frank@baz.example") == "NEEDS-ACTION"


def test_the_same_mail_twice_changes_nothing_the_second_time(reefknot: Reefknot, tmp_path: Path) -> None:
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "dup", "carol@bar.example")))
    mail = imip_mail(tmp_path, "dup-reply", "carol@bar.example", "alice@foo.example",
                     reply_from("dup", "carol@bar.example", "ACCEPTED"), "REPLY")
    reefknot("ingest", "--recipient", "alice@foo.example", str(mail))
    before = reefknot("calendar", "export", "alice@foo.example")
    reefknot("ingest", "--recipient", "alice@foo.example", str(mail))
    assert reefknot("calendar", "export", "alice@foo.example") == before
    outcomes = [(e["outcome"], e["reason"]) for e in reefknot.json_lines("inbox", "alice@foo.example")]
    assert outcomes == [("applied", ""), ("duplicate", "already-processed")]


def test_an_older_reply_arriving_late_is_recorded_as_stale(reefknot: Reefknot, tmp_path: Path) -> None:
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "late", "carol@bar.example")))
    newer = reply_from("late", "carol@bar.example", "DECLINED", stamp="20260603T080000Z")
    older = reply_from("late", "carol@bar.example", "ACCEPTED", stamp="20260602T080000Z")
    for name, text in (("newer", newer), ("older", older)):
        reefknot("ingest", "--recipient", "alice@foo.example",
                 str(imip_mail(tmp_path, name, "carol@bar.example", "alice@foo.example", text, "REPLY")))
    assert reefknot.partstat("alice@foo.example", "late", "carol@bar.example") == "DECLINED"
    assert [e["outcome"] for e in reefknot.json_lines("inbox", "alice@foo.example")] == ["applied", "stale"]


def test_inbox_json_lines_carry_the_documented_fields(reefknot: Reefknot, tmp_path: Path) -> None:
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "fields", "bob@foo.example")))
    (entry,) = reefknot.json_lines("inbox", "bob@foo.example")
    assert {"uid", "method", "outcome", "reason", "received_at"} <= entry.keys()
    assert entry["uid"] == "fields"


def test_delete_by_the_organizer_cancels_local_and_outside_attendees(reefknot: Reefknot, tmp_path: Path) -> None:
    reefknot("event", "put", "--as", "alice@foo.example", str(write_event(tmp_path, "gone", "bob@foo.example", "carol@bar.example")))
    reefknot("event", "delete", "--as", "alice@foo.example", "gone")
    (component,) = components_of(parse_calendar(reefknot("calendar", "export", "bob@foo.example", "--uid", "gone")))
    assert str(component["STATUS"]) == "CANCELLED"
    assert [m["method"] for m in reefknot.json_lines("outbox")] == ["REQUEST", "CANCEL"]
    reefknot("calendar", "export", "alice@foo.example", "--uid", "gone", expect=65)


def test_users_are_explicit_and_aliases_resolve_case_insensitively(reefknot: Reefknot) -> None:
    listed = {u["address"]: u for u in reefknot.json_lines("users", "list")}
    assert listed["alice@foo.example"]["aliases"] == ["a.smith@foo.example"]
    assert listed["room-r@foo.example"]["kind"] == "room"
    reefknot("users", "add", "MAILTO:A.Smith@FOO.example", expect=65)
    reefknot("inbox", "nobody@foo.example", expect=65)
    reefknot("users", "remove", "bob@foo.example", expect=64)  # no one said yes
    assert "bob@foo.example" in {u["address"] for u in reefknot.json_lines("users", "list")}
    reefknot("users", "remove", "bob@foo.example", "--yes")
    assert "bob@foo.example" not in {u["address"] for u in reefknot.json_lines("users", "list")}


def test_the_command_says_its_version(reefknot: Reefknot) -> None:
    from importlib.metadata import version
    assert reefknot("--version").strip() == f"reefknot {version('reefknot')}"
