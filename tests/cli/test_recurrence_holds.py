"""Mail with a recurrence beyond Reefknot's bounds is held by ``ingest``, also to a room; ``event put`` refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.calendar.test_recurrence_bounds import HOSTILE, ROOM, event
from tests.peers.cli import Reefknot, imip_mail


@pytest.mark.parametrize("name", ["count-a-billion", "secondly-endless", "secondly-filtered", "thousands-of-rdates"])
def test_ingest_holds_an_invitation_beyond_the_caps_also_to_a_room(
    reefknot: Reefknot, tmp_path: Path, name: str
) -> None:
    line, reason, _ = HOSTILE[name]
    to = f"alice@foo.example, {ROOM}"
    mail = imip_mail(tmp_path, name, "carol@bar.example", to, event(line, uid=name), "REQUEST")
    out = reefknot("ingest", "--recipient", "alice@foo.example", "--recipient", ROOM, str(mail))
    assert f"held ({reason})" in out
    (held,) = reefknot.json_lines("quarantine")
    assert held["reason"] == reason
    assert f"UID:{name}" not in reefknot("calendar", "export", "alice@foo.example")
    assert f"UID:{name}" not in reefknot("calendar", "export", ROOM)


def test_event_put_refuses_a_recurrence_beyond_the_caps_and_a_value_it_cannot_read(
    reefknot: Reefknot, tmp_path: Path
) -> None:
    path = tmp_path / "series.ics"
    text = event("RRULE:FREQ=MINUTELY", uid="put-series").replace("METHOD:REQUEST\n", "")
    path.write_text(text.replace("mailto:carol@bar.example", "mailto:alice@foo.example"))
    reefknot("event", "put", "--as", "alice@foo.example", str(path), expect=65)
    path.write_text(text.replace("RRULE:FREQ=MINUTELY", "RRULE:FREQ=WEEKLY").replace(
        "DTEND:20260105T100000Z", "DTEND:20260105T1000000Z"))
    reefknot("event", "put", "--as", "alice@foo.example", str(path), expect=65)
    assert "UID:put-series" not in reefknot("calendar", "export", "alice@foo.example")
