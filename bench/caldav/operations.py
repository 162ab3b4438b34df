"""The timed CalDAV operations, the same for every server, and the seeding before them.

Each operation sends what a calendar program sends (bodies from ``workload``) and returns an
``Outcome``: its timings in milliseconds, or the first error with the timings taken before
it, so that a server that cannot do one thing is still measured on the others. Each REPORT
is sent once untimed first. Knows nothing of which server it talks to.
"""

from __future__ import annotations

import math
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import unquote

import workload
from davclient import DavClient, DavError, Reply, read_multistatus
from servers import Server

ICALENDAR = {"Content-Type": "text/calendar; charset=utf-8"}
FAILURES = (DavError, OSError, ET.ParseError)


class Unexpected(Exception):
    """A 2xx answer whose content is not what the operation needs (no sync-token, say)."""


@dataclass
class Outcome:
    """One operation on one server: timings (ms), the first error if any, 5xx answers counted, and what came back."""

    timings: list[float] = field(default_factory=list)
    error: str = ""
    server_errors: int = 0
    failures: int = 0  # answers neither 2xx nor 5xx, and connections refused or reset
    cut_short: bool = False  # stopped at the time budget before all runs
    note: str = ""


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: with fewer than 100 values the p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class State:
    """What the runs carry from one operation to the next for one server."""

    server: Server
    client: DavClient
    objects: list[workload.CalendarObject]
    anchor: date
    budget: float
    etags: dict[str, str] = field(default_factory=dict)
    token: str = ""
    created: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def stamp(self) -> datetime:
        return datetime.combine(self.anchor, datetime.min.time())


def name_of(href: str) -> str:
    return unquote(href.rstrip("/").rsplit("/", 1)[-1])


def timed(runs: int, budget: float, action: Callable[[int], Reply], warm_up: bool = False) -> Outcome:
    """``action(i)`` ``runs`` times, its Reply's own time each; stops at the first failure, or once past ``budget`` seconds."""
    outcome = Outcome()
    started = time.monotonic()
    try:
        if warm_up:
            action(-1)
        for i in range(runs):
            outcome.timings.append(action(i).ms)
            if time.monotonic() - started > budget and i + 1 < runs:
                outcome.cut_short = True
                break
    except FAILURES + (Unexpected,) as error:
        outcome.error = error.short if isinstance(error, DavError) else f"{type(error).__name__}: {error}"
        outcome.server_errors += int(isinstance(error, DavError) and error.status >= 500)
    return outcome


def seed(server: Server, objects: list[workload.CalendarObject], clients: int) -> tuple[float, int, str]:
    """PUT every object over ``clients`` connections; seconds taken, objects stored, and the first error (seeding stops there)."""
    stop, lock = threading.Event(), threading.Lock()
    stored, first_error = 0, ""

    def put_share(share: list[workload.CalendarObject]) -> None:
        nonlocal stored, first_error
        client = server.client()
        try:
            for item in share:
                if stop.is_set():
                    return
                client.expect("PUT", server.href(item.name), (201, 204), item.text.encode(),
                              {**ICALENDAR, "If-None-Match": "*"})
                with lock:
                    stored += 1
        except FAILURES as error:
            with lock:
                first_error = first_error or (error.short if isinstance(error, DavError) else repr(error))
            stop.set()
        finally:
            client.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        try:
            list(pool.map(put_share, [objects[i::clients] for i in range(clients)]))
        except BaseException:
            stop.set()  # a signal in the main thread: let the workers end after their current PUT
            raise
    return time.perf_counter() - started, stored, first_error


def change_one(state: State, i: int) -> None:
    """An untimed edit of one seeded object, so that what comes next finds the calendar changed (nothing kept)."""
    item = workload.changed_object(state.objects[(i * 7919 + 13) % len(state.objects)], 100_000 + i)
    state.client.expect("PUT", state.server.href(item.name), (200, 201, 204), item.text.encode(), ICALENDAR)


def initial_sync(state: State, runs: int, *, after_a_change: bool = False) -> Outcome:
    """RFC 6578 sync-collection from no token: every member with its ETag; keeps the last token and the ETags.

    ``after_a_change``: each run follows an untimed edit, so a server cannot answer from what it kept.
    """
    def run(i: int) -> Reply:
        if after_a_change:
            change_one(state, i)
        reply = state.client.expect("REPORT", state.server.calendar, (207,), workload.sync_collection(),
                                    {"Depth": "0"})
        found = read_multistatus(reply.body)
        if not found.token:
            raise Unexpected("no sync-token in the answer")
        state.token = found.token
        state.etags = {name_of(href): etag or "" for href, etag in found.members.items()}
        return reply

    outcome = timed(runs, state.budget, run, warm_up=True)
    outcome.note = f"{len(state.etags)} members"
    return outcome


def delta_sync(state: State, runs: int) -> Outcome:
    """One object edited (untimed PUT, If-Match its ETag), then sync-collection from the last token."""
    sizes: list[int] = []

    def run(i: int) -> Reply:
        if not state.token:
            raise Unexpected("no sync-token from the initial sync")
        item = workload.changed_object(state.objects[i % len(state.objects)], i)
        etag = state.etags.get(item.name)
        state.client.expect("PUT", state.server.href(item.name), (200, 201, 204), item.text.encode(),
                            {**ICALENDAR, **({"If-Match": etag} if etag else {})})
        state.etags.pop(item.name, None)
        reply = state.client.expect("REPORT", state.server.calendar, (207,), workload.sync_collection(state.token),
                                    {"Depth": "0"})
        found = read_multistatus(reply.body)
        state.token = found.token or state.token
        sizes.append(len(found.members))
        return reply

    outcome = timed(runs, state.budget, run)
    if sizes:
        outcome.note = f"{min(sizes)}-{max(sizes)} members per answer" if min(sizes) != max(sizes) else \
            f"{sizes[0]} member per answer"
    return outcome


def month_bounds(anchor: date, offset: int) -> tuple[datetime, datetime]:
    month = anchor.year * 12 + anchor.month - 1 + offset
    start = datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)
    following = month + 1
    return start, datetime(following // 12, following % 12 + 1, 1, tzinfo=UTC)


def month_query(state: State, runs: int, *, after_a_change: bool = False) -> Outcome:
    """calendar-query of one month with expand, a different month each run (six back to five ahead).

    ``after_a_change``: each run follows an untimed edit, so a server cannot answer from what it kept.
    """
    counts: list[tuple[int, int]] = []

    def run(i: int) -> Reply:
        if after_a_change:
            change_one(state, i)
        start, end = month_bounds(state.anchor, (i % 12) - 6 if i >= 0 else 0)
        reply = state.client.expect("REPORT", state.server.calendar, (207,),
                                    workload.calendar_query_expanded(start, end), {"Depth": "1"})
        counts.append((len(read_multistatus(reply.body).members), reply.body.count(b"BEGIN:VEVENT")))
        return reply

    outcome = timed(runs, state.budget, run, warm_up=True)
    if counts:
        outcome.note = (f"{sum(c for c, _ in counts) // len(counts)} objects, "
                        f"{sum(v for _, v in counts) // len(counts)} VEVENTs a month")
    return outcome


def multiget(state: State, runs: int, size: int = 100) -> Outcome:
    """calendar-multiget of ``size`` hrefs drawn at random from the seeded objects."""
    names = [item.name for item in state.objects]
    counts: list[int] = []

    def run(_: int) -> Reply:
        hrefs = [state.server.href(name) for name in state.rng.sample(names, min(size, len(names)))]
        reply = state.client.expect("REPORT", state.server.calendar, (207,), workload.calendar_multiget(hrefs))
        counts.append(reply.body.count(b"BEGIN:VCALENDAR"))
        return reply

    outcome = timed(runs, state.budget, run, warm_up=True)
    if counts:
        outcome.note = f"{min(counts)} objects with data"
    return outcome


def put_new(state: State, runs: int, make: Callable[[random.Random, date, datetime], workload.CalendarObject]) -> Outcome:
    """PUT of a new object (If-None-Match: *), as a client creates one."""
    def run(_: int) -> Reply:
        item = make(state.rng, state.anchor, state.stamp)
        reply = state.client.expect("PUT", state.server.href(item.name), (201, 204), item.text.encode(),
                                    {**ICALENDAR, "If-None-Match": "*"})
        state.created += 1
        return reply

    return timed(runs, state.budget, run)


def one_new_client(server: Server, barrier: threading.Barrier) -> tuple[float, int, str]:
    """A client that connects once ``barrier`` lets it and sends an initial sync: (ms, status, connection error)."""
    client = server.client()
    try:
        barrier.wait()
        started = time.perf_counter()
        reply = client.request("REPORT", server.calendar, workload.sync_collection(), {"Depth": "0"})
        return (time.perf_counter() - started) * 1000, reply.status, ""
    except OSError as error:
        return 0.0, 0, repr(error)
    finally:
        client.close()


def concurrent_syncs(server: Server, clients: int, rounds: int) -> Outcome:
    """``rounds`` times, ``clients`` new clients at once, each connecting and sending an initial sync.

    Each time runs from the common start to the answer's last byte, the TCP connect included:
    a server that cannot take that many connections at once shows it here.
    """
    outcome = Outcome()
    for _ in range(rounds):
        barriers = [threading.Barrier(clients)] * clients
        with ThreadPoolExecutor(clients) as pool:
            for ms, status, error in pool.map(one_new_client, [server] * clients, barriers):
                if status == 207:
                    outcome.timings.append(ms)
                elif status >= 500:
                    outcome.server_errors += 1
                else:
                    outcome.failures += 1
                outcome.error = outcome.error or error or (f"REPORT → HTTP {status}" if status != 207 else "")
    return outcome
