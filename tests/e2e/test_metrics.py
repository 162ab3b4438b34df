"""What operators see on the HTTP face of ``reefknot serve``: /healthz and Prometheus /metrics counting real mail."""

from __future__ import annotations

import re
import time


from tests.peers.caldav_site import ALICE, CAROL, CalDavSite
from tests.peers.caldav_site import site  # noqa: F401  (the fixture)

INVITATION = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Bar//Server//EN
METHOD:REQUEST
BEGIN:VEVENT
UID:metrics-1
DTSTAMP:20261120T080000Z
DTSTART:20270310T090000Z
DTEND:20270310T100000Z
SUMMARY:Partner visit
ORGANIZER:mailto:carol@bar.example
ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@bar.example
ATTENDEE;RSVP=TRUE:mailto:alice@foo.example
END:VEVENT
END:VCALENDAR
"""



def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from the exposition text; 0 when it is not there."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def test_metrics_count_mail_taken_in_and_processed_and_show_the_queues(site: CalDavSite) -> None:
    before = site.request("GET", "/metrics", user=None)
    assert before.status == 200 and before.headers["content-type"].startswith("text/plain")
    assert sample(before.body, "reefknot_queue_depth", queue="intake") == 0
    site.send_mail(CAROL, ALICE, INVITATION, "REQUEST")
    deadline = time.monotonic() + 10
    while True:
        after = site.request("GET", "/metrics", user=None).body
        if sample(after, "reefknot_messages_processed_total", outcome="done", reason="") >= 1 \
                or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sample(after, "reefknot_messages_taken_in_total", source="smtp") == 1
    assert sample(after, "reefknot_messages_processed_total", outcome="done", reason="") == 1
    assert sample(after, "reefknot_processing_seconds_count") == 1
    for queue in ("intake", "quarantine", "outbox"):
        assert f'reefknot_queue_depth{{queue="{queue}"}}' in after
        assert f'reefknot_queue_oldest_seconds{{queue="{queue}"}}' in after
