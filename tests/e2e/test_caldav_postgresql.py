"""Two ``reefknot serve`` processes on one PostgreSQL database, written to and synced at once over CalDAV.

Twenty PUTs into one calendar are split across both processes while sync-collection
requests run against both; afterwards each process lists the same twenty objects with
the same ETags, nothing answered 5xx, and every token handed out during the writes
leads an incremental sync to exactly what that token's sync had not yet listed.
"""

from __future__ import annotations

import base64
import http.client
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.core.dav.xml import parse_body
from tests.peers.cli import Reefknot
from tests.peers.serve import ServeProcess, write_config
from tests.peers.servers import LOOPBACK

ALICE = "alice@foo.example"
CALENDAR = f"/dav/calendars/{ALICE}/default/"
COUNT = 20
NS = 'xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"'
SYNC = (f"<D:sync-collection {NS}><D:sync-token>{{token}}</D:sync-token><D:sync-level>1</D:sync-level>"
        "<D:prop><D:getetag/></D:prop></D:sync-collection>")
EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
         "DTSTAMP:20261101T080000Z\r\nDTSTART:20270310T{hour:02d}0000Z\r\nDTEND:20270310T{hour:02d}3000Z\r\n"
         "SUMMARY:Slot {hour}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    etag: str = ""


@dataclass(frozen=True)
class Sync:
    """One sync-collection's answer: each member's ETag (empty for a deleted one) and the new token."""

    members: dict[str, str]
    token: str


@dataclass
class Site:
    ports: tuple[int, int]
    password: str

    def request(self, port: int, method: str, path: str, body: str = "",
                headers: dict[str, str] | None = None) -> Answer:
        secret = base64.b64encode(f"{ALICE}:{self.password}".encode()).decode()
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=120)
        try:
            connection.request(method, path, body.encode(), {"Authorization": f"Basic {secret}", **(headers or {})})
            answer = connection.getresponse()
            return Answer(answer.status, answer.read().decode(), answer.getheader("ETag") or "")
        finally:
            connection.close()

    def sync(self, port: int, token: str = "") -> tuple[int, Sync]:
        answer = self.request(port, "REPORT", CALENDAR, SYNC.format(token=token),
                              {"Content-Type": "application/xml", "Depth": "1"})
        if answer.status != 207:
            return answer.status, Sync({}, "")
        root = parse_body(answer.body.encode())
        assert root is not None
        members = {r.findtext("{DAV:}href") or "": r.findtext(".//{DAV:}getetag") or ""
                   for r in root.findall("{DAV:}response")}
        return answer.status, Sync(members, root.findtext("{DAV:}sync-token") or "")


def http_port(config: Path) -> int:
    return int(config.read_text().split('[http]\nlisten = "')[1].split(":")[1].split('"')[0])


@pytest.fixture
def site(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Site]:
    configs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        configs.append(write_config(tmp_path / name, database_url)[0])
    run = Reefknot(configs[0], capsys)
    run("users", "add", ALICE, "--name", "Alice")
    password = run("users", "password", "add", ALICE, "--label", "phone").strip()
    daemons = [ServeProcess(config, config.parent / "serve.log") for config in configs]
    try:
        for daemon in daemons:
            daemon.start()
        yield Site((http_port(configs[0]), http_port(configs[1])), password)
    finally:
        for daemon in daemons:
            daemon.close()


def href_of(n: int) -> str:
    return f"{CALENDAR}slot-{n}.ics"


@pytest.mark.postgresql
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_processes_writing_one_calendar_at_once_give_every_client_the_same_complete_sync(site: Site) -> None:
    writing = threading.Event()
    syncs: list[tuple[int, Sync]] = []

    def put(n: int) -> int:
        return site.request(site.ports[n % 2], "PUT", href_of(n), EVENT.format(uid=f"slot-{n}", hour=n),
                            {"Content-Type": "text/calendar", "If-None-Match": "*"}).status

    def keep_syncing(port: int) -> None:
        while writing.is_set():
            syncs.append(site.sync(port))

    writing.set()
    with ThreadPoolExecutor(COUNT // 2 + 4) as pool:
        syncers = [pool.submit(keep_syncing, port) for port in (*site.ports, *site.ports)]
        written = list(pool.map(put, range(COUNT)))
        writing.clear()
        for syncer in syncers:
            syncer.result()

    assert written == [201] * COUNT
    assert [status for status, _ in syncs if status != 207] == []
    everything = {href_of(n) for n in range(COUNT)}
    finals = [site.sync(port) for port in site.ports]
    assert [status for status, _ in finals] == [207, 207]
    (_, first), (_, second) = finals
    assert set(first.members) == everything and first.members == second.members
    assert all(first.members.values())
    gets = {href: site.request(site.ports[n % 2], "GET", href) for n, href in enumerate(sorted(everything))}
    assert {href: answer.etag for href, answer in gets.items()} == first.members
    assert any(0 < len(s.members) < COUNT for _, s in syncs), "no sync ran while the writes did"
    for n, (_, midway) in enumerate(syncs):  # every token, from either process, asked of the other one too
        status, delta = site.sync(site.ports[n % 2], midway.token)
        assert status == 207
        assert set(midway.members) | set(delta.members) == everything, midway.token
        assert all(delta.members.values())  # nothing was deleted
