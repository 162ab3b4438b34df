"""Real CalDAV clients against ``reefknot serve``: vdirsyncer, khal and Evolution's data server, run as programs.

vdirsyncer syncs a large calendar both ways, khal reads the folder vdirsyncer wrote,
and evolution-data-server (where it is installed) lists, creates, changes and removes
events through its CalDAV backend. Each program runs as a subprocess with its own
configuration and home under ``tmp_path``, as a user would run it; what the server
holds afterwards is read back with raw REPORTs, so that each side is checked on its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import pytest
from icalendar import Calendar

from gateway.core.calendar.ical import parse_calendar
from gateway.core.dav.xml import parse_body
from tests.peers.caldav_site import ALICE, Answer, CalDavSite
from tests.peers.caldav_site import site  # noqa: F401  (the fixture)

BIN = Path(sys.executable).parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Evolution's GObject bindings come from the distribution, not from PyPI
COLLECTION = f"/dav/calendars/{ALICE}/default/"
NS = 'xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"'
CALDAV = "{urn:ietf:params:xml:ns:caldav}"
TIMEOUT = 120  # seconds for any one run of a client program
SERIES_EVERY = 50  # every 50th seeded event is a weekly series in Europe/Berlin
BERLIN = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
"""

needs_clients = pytest.mark.skipif(not (BIN / "vdirsyncer").exists() or not (BIN / "khal").exists(),
                                   reason="vdirsyncer and khal come with the test extra: pip install -e '.[test]'")


# -- the calendar ----------------------------------------------------------------------------------------------------

def uid_of(n: int) -> str:
    return f"event-{n:04d}"


def is_series(n: int) -> bool:
    return n % SERIES_EVERY == 0


def first_day(n: int) -> date:
    """Seeded events fill 2027 from Monday 4 January, three to a day, at 08:00, 10:00 and 12:00 UTC."""
    return date(2027, 1, 4) + timedelta(days=n // 3)


def event(uid: str, summary: str, day: date, hour: int, *, weekly: bool = False) -> str:
    """One VEVENT: a weekly series of 20 in Europe/Berlin (with its VTIMEZONE), or a single 45-minute one in UTC."""
    start = datetime(day.year, day.month, day.day, hour)
    if weekly:
        timing = (f"DTSTART;TZID=Europe/Berlin:{start:%Y%m%dT%H%M%S}\n"
                  f"DTEND;TZID=Europe/Berlin:{start + timedelta(hours=1):%Y%m%dT%H%M%S}\n"
                  "RRULE:FREQ=WEEKLY;COUNT=20\n")
    else:
        timing = f"DTSTART:{start:%Y%m%dT%H%M%S}Z\nDTEND:{start + timedelta(minutes=45):%Y%m%dT%H%M%S}Z\n"
    return ("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Reefknot tests//Real clients//EN\n"
            + (BERLIN if weekly else "")
            + f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20261101T080000Z\n{timing}SUMMARY:{summary}\n"
            "END:VEVENT\nEND:VCALENDAR\n").replace("\n", "\r\n")


def seeded(n: int, summary: str = "") -> str:
    return event(uid_of(n), summary or seeded_summary(n), first_day(n), 8 + n % 3 * 2, weekly=is_series(n))


def seeded_summary(n: int) -> str:
    return f"Seeded {n:04d}"


def retitled(text: str, summary: str) -> str:
    return re.sub(r"^SUMMARY:[^\r\n]*", f"SUMMARY:{summary}", text, count=1, flags=re.MULTILINE)


def fingerprints(texts: Iterable[str]) -> dict[str, tuple[str, str, str]]:
    """UID to (SUMMARY, DTSTART with its TZID, RRULE) of each object's master VEVENT: what both sides must agree on."""
    found: dict[str, tuple[str, str, str]] = {}
    for text in texts:
        (master,) = [c for c in parse_calendar(text).walk("VEVENT") if "RECURRENCE-ID" not in c]
        start = master["DTSTART"]
        rule = ical_text(master["RRULE"]) if "RRULE" in master else ""
        found[str(master["UID"])] = (str(master["SUMMARY"]), f"{start.params.get('TZID', '')}:{ical_text(start)}", rule)
    return found


def ical_text(value: Any) -> str:
    raw = value.to_ical()
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def summaries(texts: Iterable[str]) -> dict[str, str]:
    return {uid: summary for uid, (summary, _, _) in fingerprints(texts).items()}


# -- the server, read and written with raw requests ------------------------------------------------------------------

def seed_server(site: CalDavSite, count: int) -> None:
    def put(n: int) -> int:
        return site.request("PUT", f"{COLLECTION}{uid_of(n)}.ics", seeded(n),
                            headers={"Content-Type": "text/calendar", "If-None-Match": "*"}).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(count)))
    assert statuses == [201] * count, {s: statuses.count(s) for s in set(statuses)}


def server_objects(site: CalDavSite) -> dict[str, str]:
    """Every object in the default calendar, resource name to iCalendar text, by one calendar-query."""
    answer = site.request("REPORT", COLLECTION, headers={"Depth": "1"}, body=(
        f'<C:calendar-query {NS}><D:prop><D:getetag/><C:calendar-data/></D:prop>'
        '<C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>'))
    return {(r.findtext("{DAV:}href") or "").rsplit("/", 1)[1]: r.findtext(f".//{CALDAV}calendar-data") or ""
            for r in multistatus(answer).findall("{DAV:}response")}


def server_sync_token(site: CalDavSite) -> str:
    answer = site.request("PROPFIND", COLLECTION, headers={"Depth": "0"},
                          body=f'<D:propfind {NS}><D:prop><D:sync-token/></D:prop></D:propfind>')
    return multistatus(answer).findtext(".//{DAV:}sync-token") or ""


def multistatus(answer: Answer) -> Element:
    root = parse_body(answer.body.encode()) if answer.status == 207 else None
    assert root is not None, answer
    return root


def change_on_server(site: CalDavSite, retitle: dict[int, str], delete: Iterable[int]) -> None:
    for n, summary in retitle.items():
        assert site.request("PUT", f"{COLLECTION}{uid_of(n)}.ics", seeded(n, summary)).status == 204
    for n in delete:
        assert site.request("DELETE", f"{COLLECTION}{uid_of(n)}.ics").status == 204


# -- running the programs --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One finished run of a program; its text is what an assertion message shows."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\n-> exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_program(argv: list[str], env: dict[str, str], cwd: Path, answers: str = "") -> Run:
    """Run to completion within ``TIMEOUT``; a non-zero exit fails the test with the program's whole output.

    The program gets a process group of its own, so that what it started (D-Bus services) goes with it on a timeout.
    """
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, cwd=cwd, start_new_session=True) as process:
        try:
            out, err = process.communicate(answers, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            raise AssertionError(str(Run(tuple(argv), -9, out, err)) + f"\n(killed after {TIMEOUT} s)") from None
    result = Run(tuple(argv), process.returncode, out, err)
    assert result.code == 0, str(result)
    return result


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """A home of its own, so that no program reads or writes the real user's configuration, cache or keyring."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C.UTF-8",
            "TZ": "Europe/Berlin", "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"), **extra}


@dataclass(frozen=True)
class Clients:
    """vdirsyncer and khal with their configuration files; ``local`` is vdirsyncer's folder, one per collection."""

    home: Path
    vdirsyncer_config: Path
    khal_config: Path
    local: Path

    def vdirsyncer(self, *args: str) -> Run:
        """vdirsyncer, answering yes to its questions (``discover`` asks before it creates a collection)."""
        env = isolated_env(self.home, VDIRSYNCER_CONFIG=str(self.vdirsyncer_config))
        return run_program([str(BIN / "vdirsyncer"), *args], env, self.home, answers="y\n" * 10)

    def khal(self, *args: str) -> Run:
        return run_program([str(BIN / "khal"), "-c", str(self.khal_config), *args], isolated_env(self.home),
                           self.home)

    def collection(self) -> Path:
        return self.local / "default"

    def local_files(self) -> dict[str, Path]:
        """UID to the file that holds it."""
        return {uid: path for path in sorted(self.collection().glob("*.ics"))
                for uid in fingerprints([path.read_text()])}

    def local_objects(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(self.collection().glob("*.ics"))}

    def local_state(self) -> dict[str, tuple[int, int, str]]:
        """Each file's inode, modification time and content: a sync with nothing to do leaves all three as they are."""
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_text())
                for p in sorted(self.collection().glob("*.ics"))}


def write_clients(tmp_path: Path, site: CalDavSite) -> Clients:
    home = tmp_path / "home"
    local = home / "calendars"
    local.mkdir(parents=True)
    clients = Clients(home, home / "vdirsyncer.conf", home / "khal.conf", local)
    clients.vdirsyncer_config.write_text(vdirsyncer_config(home, site, local))
    clients.khal_config.write_text(khal_config(home, clients.collection()))
    return clients


def vdirsyncer_config(home: Path, site: CalDavSite, local: Path) -> str:
    """The server, found from the bare host, paired with a folder of .ics files; vdirsyncer's values are JSON."""
    q = json.dumps
    return (f"[general]\nstatus_path = {q(str(home / 'status'))}\n\n"
            '[pair alice]\na = "alice_remote"\nb = "alice_local"\ncollections = ["from a", "from b"]\n'
            'conflict_resolution = "a wins"\n\n'
            f'[storage alice_remote]\ntype = "caldav"\nurl = {q(site.base + "/")}\nusername = {q(ALICE)}\n'
            f"password = {q(site.passwords[ALICE])}\n\n"
            f'[storage alice_local]\ntype = "filesystem"\npath = {q(str(local))}\nfileext = ".ics"\n')


def khal_config(home: Path, collection: Path) -> str:
    return (f"[calendars]\n[[alice]]\npath = {collection}\ntype = calendar\n\n"
            "[locale]\ntimeformat = %H:%M\ndateformat = %Y-%m-%d\nlongdateformat = %Y-%m-%d\n"
            "datetimeformat = %Y-%m-%d %H:%M\nlongdatetimeformat = %Y-%m-%d %H:%M\n"
            "local_timezone = Europe/Berlin\ndefault_timezone = Europe/Berlin\n\n"
            f"[sqlite]\npath = {home / 'khal.db'}\n")


def actions_of(run: Run) -> list[str]:
    """What a vdirsyncer sync did, one line per item copied or deleted, sorted."""
    return sorted(re.findall(r"Copying \((?:uploading|updating)\) item \S+ to \S+|Deleting item \S+ from \S+",
                             run.out + run.err))


def khal_day(clients: Clients, day: str) -> list[str]:
    """The events khal lists for one day, as "start-end title" lines."""
    listed = clients.khal("list", "--day-format", "", "--format", "{start-time}-{end-time} {title}", day, day)
    return [line for line in listed.out.splitlines() if line.strip()]


# -- evolution-data-server -------------------------------------------------------------------------------------------

EDS_CLIENT = '''"""Evolution's data server as a CalDAV client on a private D-Bus session; prints what it listed."""
import json, sys, time
import gi
gi.require_version("EDataServer", "1.2"); gi.require_version("ECal", "2.0"); gi.require_version("ICalGLib", "3.0")
from gi.repository import ECal, EDataServer, GLib, ICalGLib

url, user, password, expected, create, retitle, remove = sys.argv[1:8]
registry = EDataServer.SourceRegistry.new_sync(None)
source = EDataServer.Source.new(None, None)
source.set_display_name("Reefknot")
source.set_parent("caldav-stub")
source.get_extension(EDataServer.SOURCE_EXTENSION_CALENDAR).set_backend_name("caldav")
uri = GLib.Uri.parse(url, GLib.UriFlags.NONE)
auth = source.get_extension(EDataServer.SOURCE_EXTENSION_AUTHENTICATION)
auth.set_host(uri.get_host()); auth.set_port(uri.get_port()); auth.set_user(user); auth.set_method("plain/password")
source.get_extension(EDataServer.SOURCE_EXTENSION_WEBDAV_BACKEND).set_uri(uri)
registry.commit_source_sync(source, None)
source = registry.ref_source(source.get_uid())
client = ECal.Client.connect_sync(source, ECal.ClientSourceType.EVENTS, 0xFFFFFFFF, None)  # (guint32) -1: no wait

# With no keyring entry the backend asks for credentials; they are given to it directly, never stored.
deadline = time.monotonic() + 30
while source.get_connection_status() != EDataServer.SourceConnectionStatus.AWAITING_CREDENTIALS:
    assert time.monotonic() < deadline, "never asked for credentials: " + source.get_connection_status().value_nick
    GLib.MainContext.default().iteration(False) or time.sleep(0.05)
credentials = EDataServer.NamedParameters.new()
credentials.set(EDataServer.SOURCE_CREDENTIAL_USERNAME, user)
credentials.set(EDataServer.SOURCE_CREDENTIAL_PASSWORD, password)
source.invoke_authenticate_sync(credentials, None)

def listed():
    return {c.get_uid(): c.get_summary() for c in client.get_object_list_sync("#t", None)[1]}

deadline = time.monotonic() + 30
while len(seen := listed()) < int(expected) and time.monotonic() < deadline:
    client.refresh_sync(None)
    time.sleep(0.2)
uid, summary = create.split("=", 1)
client.create_object_sync(ICalGLib.Component.new_from_string(
    f"BEGIN:VEVENT\\r\\nUID:{uid}\\r\\nDTSTAMP:20261101T080000Z\\r\\nDTSTART:20270310T120000Z\\r\\n"
    f"DTEND:20270310T130000Z\\r\\nSUMMARY:{summary}\\r\\nEND:VEVENT\\r\\n"), ECal.OperationFlags.NONE, None)
uid, summary = retitle.split("=", 1)
component = client.get_object_sync(uid, None, None)[1]
component.set_summary(summary)
client.modify_object_sync(component, ECal.ObjModType.ALL, ECal.OperationFlags.NONE, None)
client.remove_object_sync(remove, None, ECal.ObjModType.ALL, ECal.OperationFlags.NONE, None)
print(json.dumps(seen))
'''


def eds_unavailable() -> str:
    """Why evolution-data-server cannot run here, or "" when it can."""
    if not shutil.which("dbus-run-session"):
        return "dbus-run-session is not installed (Debian: dbus-daemon)"
    probe = ("import gi; gi.require_version('ECal', '2.0'); gi.require_version('EDataServer', '1.2'); "
             "from gi.repository import ECal, EDataServer")
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], check=False, capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{SYSTEM_PYTHON}: {error}"
    if done.returncode != 0:
        return ("evolution-data-server with its GObject bindings is not installed (Debian: evolution-data-server "
                f"gir1.2-ecal-2.0 gir1.2-edataserver-1.2 python3-gi): {done.stderr.strip().splitlines()[-1:]}")
    return ""


def run_eds(tmp_path: Path, site: CalDavSite, *, expected: int, create: str, retitle: str,
            remove: str) -> dict[str, str]:
    """Run the client above once: it lists ``expected`` objects, then creates, retitles and removes one each."""
    home, runtime = tmp_path / "eds-home", tmp_path / "eds-run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    script = tmp_path / "eds_client.py"
    script.write_text(EDS_CLIENT)
    argv = ["dbus-run-session", "--", SYSTEM_PYTHON, str(script), f"{site.base}{COLLECTION}", ALICE,
            site.passwords[ALICE], str(expected), create, retitle, remove]
    done = run_program(argv, isolated_env(home, XDG_RUNTIME_DIR=str(runtime)), home)
    listed: dict[str, str] = json.loads(done.out.strip().splitlines()[-1])
    return listed


# -- the tests -------------------------------------------------------------------------------------------------------


@pytest.fixture
def clients(tmp_path: Path, site: CalDavSite) -> Clients:
    return write_clients(tmp_path, site)


@needs_clients
def test_vdirsyncer_syncs_a_thousand_events_both_ways_and_a_third_sync_changes_nothing(
        site: CalDavSite, clients: Clients) -> None:
    seed_server(site, 1000)
    discovered = clients.vdirsyncer("discover")
    assert '"default"' in discovered.err, discovered
    first = clients.vdirsyncer("sync")
    expected = {uid_of(n): seeded_summary(n) for n in range(1000)}
    assert len(clients.local_objects()) == 1000, first
    assert summaries(clients.local_objects().values()) == expected

    local_retitled = {n: f"Changed here {n}" for n in range(100, 110)}  # 100 is a weekly series
    local_deleted, server_deleted = range(110, 115), range(300, 305)  # and so is 300
    server_retitled = {n: f"Changed on the server {n}" for n in range(200, 210)}  # and 200
    files = clients.local_files()
    for n, summary in local_retitled.items():
        files[uid_of(n)].write_text(retitled(files[uid_of(n)].read_text(), summary))
    for n in local_deleted:
        files[uid_of(n)].unlink()
    added = {f"added-here-{k}": f"Added here {k}" for k in range(3)}
    for k, (uid, summary) in enumerate(added.items()):
        (clients.collection() / f"{uid}.ics").write_text(
            event(uid, summary, date(2027, 2, 1 + k), 9, weekly=k == 0))
    change_on_server(site, server_retitled, server_deleted)

    second = clients.vdirsyncer("sync")
    remote, local = "alice_remote/default", "alice_local/default"
    assert actions_of(second) == sorted(
        [f"Copying (updating) item {uid_of(n)} to {remote}" for n in local_retitled]
        + [f"Deleting item {uid_of(n)} from {remote}" for n in local_deleted]
        + [f"Copying (uploading) item {uid} to {remote}" for uid in added]
        + [f"Copying (updating) item {uid_of(n)} to {local}" for n in server_retitled]
        + [f"Deleting item {uid_of(n)} from {local}" for n in server_deleted]), second
    for n in [*local_deleted, *server_deleted]:
        del expected[uid_of(n)]
    expected |= {uid_of(n): s for n, s in {**local_retitled, **server_retitled}.items()} | added
    on_server, here = server_objects(site), clients.local_objects()
    assert summaries(on_server.values()) == expected
    assert fingerprints(on_server.values()) == fingerprints(here.values())
    assert sorted(on_server) == sorted(here)  # each object has the same name on both sides

    token, state = server_sync_token(site), clients.local_state()
    third = clients.vdirsyncer("sync")
    assert actions_of(third) == [], third
    assert server_sync_token(site) == token, "the third sync changed something on the server"
    assert clients.local_state() == state, "the third sync changed the local files"


@needs_clients
def test_khal_lists_the_synced_events_and_the_weekly_series_across_the_dst_change(
        site: CalDavSite, clients: Clients) -> None:
    seed_server(site, 30)  # event-0000 is a weekly series from Monday 4 January 2027, 08:00 Berlin
    clients.vdirsyncer("discover")
    clients.vdirsyncer("sync")
    assert khal_day(clients, "2027-01-11") == [  # Berlin is UTC+1: the singles at 08, 10 and 12 UTC
        "08:00-09:00 Seeded 0000", "09:00-09:45 Seeded 0021", "11:00-11:45 Seeded 0022", "13:00-13:45 Seeded 0023"]
    assert khal_day(clients, "2027-04-05") == ["08:00-09:00 Seeded 0000"]  # summer time: still 08:00 local
    assert khal_day(clients, "2027-05-24") == []  # the 20 weeks are over


def test_evolution_data_server_lists_creates_changes_and_removes_events(site: CalDavSite, tmp_path: Path) -> None:
    if reason := eds_unavailable():
        pytest.skip(reason)
    seed_server(site, 5)
    listed = run_eds(tmp_path, site, expected=5, create="made-in-evolution=Made in Evolution",
                     retitle=f"{uid_of(0)}=Series renamed in Evolution", remove=uid_of(2))
    assert listed == {uid_of(n): seeded_summary(n) for n in range(5)}
    held = fingerprints(server_objects(site).values())
    assert {uid: summary for uid, (summary, _, _) in held.items()} == {
        uid_of(0): "Series renamed in Evolution", uid_of(1): seeded_summary(1), uid_of(3): seeded_summary(3),
        uid_of(4): seeded_summary(4), "made-in-evolution": "Made in Evolution"}
    assert held[uid_of(0)][1:] == ("Europe/Berlin:20270104T080000", "FREQ=WEEKLY;COUNT=20")


@needs_clients
def test_the_files_vdirsyncer_writes_carry_a_vtimezone_for_each_tzid(site: CalDavSite, clients: Clients) -> None:
    seed_server(site, 1)  # event-0000: a series in Europe/Berlin, PUT with its VTIMEZONE
    clients.vdirsyncer("discover")
    clients.vdirsyncer("sync")
    (text,) = clients.local_objects().values()
    zones = [str(c["TZID"]) for c in Calendar.from_ical(text).walk("VTIMEZONE")]
    assert zones == ["Europe/Berlin"], text
