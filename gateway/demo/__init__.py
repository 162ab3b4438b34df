"""``reefknot demo``: the five scenarios of the design end to end on loopback, narrated and checked.

A fresh directory gets an embedded database, an ed25519 DKIM key and a configuration;
``reefknot serve`` runs on it; an SMTP server here stands in for the other domains and
is the smarthost. Nothing leaves the machine.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from gateway.core.model import Kind
from gateway.demo.peers import OtherDomains
from gateway.demo.scenarios import ALICE, BOB, Narrator, Scenarios
from gateway.demo.site import LOOPBACK, Site, free_port


def run_demo(say: Callable[[str], None], keep: Path | None = None) -> bool:
    """Play the scenarios; True when every check passed. ``keep``: work there and leave everything behind."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return _play(keep, say)
    with tempfile.TemporaryDirectory(prefix="reefknot-demo-") as directory:
        return _play(Path(directory), say)


def _play(directory: Path, say: Callable[[str], None]) -> bool:
    narrator = Narrator(say)
    with OtherDomains(LOOPBACK, free_port()) as others:
        site = Site(directory, others.port)
        site.add_user(ALICE, "Alice")
        site.add_user(BOB, "Bob")
        site.add_user("room-4@foo.example", "Room 4", Kind.ROOM)
        say("Reefknot demo: foo.example is served by Reefknot (Alice, Bob, Room 4);")
        say("bar.example and baz.example are played by a mail server on this machine.")
        say(f"Working in {directory}; reefknot serve takes mail on {LOOPBACK}:{site.smtp_port}.")
        site.start()
        try:
            Scenarios(site, others, narrator).run()
        finally:
            status = site.stop()
        narrator.check(status == 0, "reefknot serve stopped cleanly on SIGTERM")
    say("")
    if narrator.failures:
        say(f"{len(narrator.failures)} check(s) failed; the daemon's log is {site.log_file}")
        return False
    say("All five scenarios worked.")
    return True
