"""Driving the ``reefknot`` command in tests: the runner, events and iMIP mail to feed it."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.core.calendar.ical import (
    components_of,
    find_attendee,
    parse_calendar,
    partstat_of,
)

EVENT = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Test//EN
BEGIN:VEVENT
UID:{uid}
DTSTAMP:20260601T080000Z
DTSTART;TZID=Europe/Berlin:20260710T100000
DTEND;TZID=Europe/Berlin:20260710T110000
SUMMARY:Quarterly planning
ORGANIZER;CN=Alice:mailto:alice@foo.example
ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@foo.example
{attendees}
END:VEVENT
END:VCALENDAR
"""


class Reefknot:
    """Runs the command in-process against one configuration file, returning exit code and output."""

    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = config
        self.capsys = capsys

    def __call__(self, *args: str, expect: int = 0) -> str:
        self.capsys.readouterr()
        code = main(["--config", str(self.config), *args])
        out, err = self.capsys.readouterr()
        assert code == expect, f"reefknot {' '.join(args)} -> {code}\n{out}\n{err}"
        return out

    def json_lines(self, *args: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self(*args, "--json").splitlines()]

    def partstat(self, owner: str, uid: str, attendee: str) -> str:
        calendar = parse_calendar(self("calendar", "export", owner, "--uid", uid))
        (component,) = components_of(calendar)
        prop = find_attendee(component, attendee)
        assert prop is not None, f"{attendee} not in {owner}'s copy"
        return partstat_of(prop)


def write_event(tmp_path: Path, uid: str, *attendees: str) -> Path:
    lines = "\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in attendees)
    path = tmp_path / f"{uid}.ics"
    path.write_text(EVENT.format(uid=uid, attendees=lines))
    return path


def imip_mail(tmp_path: Path, name: str, sender: str, to: str, calendar: str, method: str) -> Path:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, f"{method} {name}"
    message["Message-ID"] = f"<{name}@test>"
    message.set_content("See the invitation.")
    message.add_alternative(calendar.replace("\n", "\r\n").encode(), maintype="text", subtype="calendar",
                            params={"method": method, "charset": "utf-8"})
    path = tmp_path / f"{name}.eml"
    path.write_bytes(bytes(message))
    return path


def reply_from(uid: str, attendee: str, partstat: str, stamp: str = "20260602T080000Z") -> str:
    return f"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Other//Client//EN
METHOD:REPLY
BEGIN:VEVENT
UID:{uid}
DTSTAMP:{stamp}
SEQUENCE:0
SUMMARY:Accepted: Quarterly planning
ORGANIZER:mailto:alice@foo.example
ATTENDEE;PARTSTAT={partstat}:mailto:{attendee}
END:VEVENT
END:VCALENDAR
"""
