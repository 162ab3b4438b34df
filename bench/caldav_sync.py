"""Benchmark: one CalDAV workload against Reefknot, Radicale and Xandikos on loopback, p50 and p99 per operation.

Each server runs as a subprocess on a free loopback port with a scratch directory:
Reefknot (``python -m gateway.cli serve`` of the Python running this, SQLite, Alice with an
app password, Bob 1-5 as local users, no ``[outbound]`` so the outbox is kept, not sent),
Radicale (``[auth] type = none``, the calendar made by MKCALENDAR) and Xandikos
(``--defaults``), the last two from their own virtual environment, which
``bench/caldav/setup.sh`` makes at ``bench/caldav/.venv`` (run here when missing).

The calendar is seeded untimed by PUTs over several connections: ``--events`` objects
(10,000), one in ten a weekly series (RRULE, an EXDATE, some with a moved instance), the
rest single events over a year either side of today, with SUMMARY, LOCATION, DESCRIPTION,
alarms on some, in Europe/Berlin with its VTIMEZONE. Then, over one keep-alive
connection, each timed ``--runs`` times (REPORTs after one untimed run), with the bodies
DAVx5 sends:

- sync-collection with no token, getetag (``Depth: 0`` and ``sync-level 1``, RFC 6578 §3.2);
- the same from the last token after one object was edited (the edit untimed);
- calendar-query of one month with ``expand``, calendar-data (a different month each run);
- calendar-multiget of 100 random hrefs;
- PUT of a new event; PUT of a new event Alice organizes with 10 attendees (bob1-5 of
  her domain, x1-5@other.example): the same body for every server, though only
  Reefknot schedules it;
- ``--clients`` (20) connections each sending the initial sync at the same moment,
  ``--rounds`` times: p50, p99 of the 207 answers and the count of 5xx.

Prints one Markdown table (ms) with Reefknot's targets judged, then what each server
returned and anything that went wrong. A Reefknot step that fails (its CalDAV face is
young) is reported per operation; the rest still runs.

    python bench/caldav_sync.py --events 10000 --runs 30
    python bench/caldav_sync.py --servers radicale,xandikos --events 2000
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "caldav"))

import operations
import servers
import workload
from operations import Outcome, State, percentile

HERE = Path(__file__).resolve().parent
REFS_VENV = HERE / "caldav" / ".venv"
STARTERS: dict[str, Callable[[Path, Path], servers.Server]] = {
    "reefknot": lambda directory, venv: servers.start_reefknot(directory),
    "radicale": servers.start_radicale,
    "xandikos": servers.start_xandikos,
}


@dataclass(frozen=True)
class Target:
    """Reefknot's goal for one operation: p50 and/or p99 bounds in ms, and whether a 5xx fails it."""

    p50: float | None = None
    p99: float | None = None
    no_server_errors: bool = False

    def describe(self) -> str:
        parts = [f"{name} ≤ {bound:g}" for name, bound in (("p50", self.p50), ("p99", self.p99)) if bound is not None]
        return ", ".join(parts) + (", no 5xx" if self.no_server_errors else "")

    def verdict(self, outcome: Outcome | None) -> str:
        if outcome is None:
            return "—"
        if outcome.error and not outcome.timings:
            return "FAIL (error)"
        p50, p99 = percentile(outcome.timings, 0.5), percentile(outcome.timings, 0.99)
        met = ((self.p50 is None or p50 <= self.p50) and (self.p99 is None or p99 <= self.p99)
               and not (self.no_server_errors and (outcome.server_errors or outcome.failures)) and not outcome.error)
        return "pass" if met else "FAIL"


@dataclass(frozen=True)
class Operation:
    key: str
    label: str
    target: Target


def operation_table(events: int, clients: int) -> list[Operation]:
    return [
        Operation("initial", f"initial sync-collection ({events:,} members, getetag)", Target(p50=500)),
        Operation("initial-changed", "  the same, each after an edit (nothing kept)", Target(p50=500)),
        Operation("delta", "delta sync-collection (1 change)", Target(p50=30)),
        Operation("month", "calendar-query, 1 month, expand + calendar-data", Target(p50=150)),
        Operation("month-changed", "  the same, each after an edit (nothing kept)", Target(p50=150)),
        Operation("multiget", "calendar-multiget, 100 hrefs", Target(p50=50)),
        Operation("put", "PUT new event", Target(p50=30)),
        Operation("meeting", "PUT new event, organizer + 10 attendees", Target(p50=100, p99=300)),
        Operation("concurrent", f"{clients} clients, initial sync at once", Target(p99=1000, no_server_errors=True)),
    ]


class Stopped(Exception):
    """SIGTERM or SIGINT: stop the servers and print what was measured."""


def stop_on_signal(number: int, frame: object) -> None:
    raise Stopped(signal.Signals(number).name)


def measure(server: servers.Server, objects: list[workload.CalendarObject], args: argparse.Namespace,
            anchor: datetime, outcomes: dict[str, Outcome], notes: list[str]) -> None:
    """Seed, then every operation in turn, filling ``outcomes`` by key and ``notes`` as it goes."""
    notes.append(f"{server.name} ({server.version}), port {server.port}, calendar {server.calendar}")
    counted = Counter(server.problems)
    notes += [f"  setup: {problem}" + (f" (× {n})" if n > 1 else "") for problem, n in counted.items()]
    seconds, stored, error = operations.seed(server, objects, args.seed_clients)
    notes.append(f"  seeded {stored:,} of {len(objects):,} objects in {seconds:.1f} s "
                 f"({stored / seconds if seconds else 0:.0f}/s over {args.seed_clients} connections)"
                 + (f"; stopped at {error}" if error else ""))
    progress(notes[-1].strip())
    state = State(server, server.client(), objects, anchor.date(), args.budget)
    steps: list[tuple[str, Callable[[], Outcome]]] = [
        ("initial", lambda: operations.initial_sync(state, args.runs)),
        ("month", lambda: operations.month_query(state, args.runs)),
        ("multiget", lambda: operations.multiget(state, args.runs)),
        ("delta", lambda: operations.delta_sync(state, args.runs)),
        ("put", lambda: operations.put_new(state, args.runs, workload.plain_event)),
        ("meeting", lambda: operations.put_new(state, args.runs, workload.meeting_event)),
        ("initial-changed", lambda: operations.initial_sync(state, args.runs, after_a_change=True)),
        ("month-changed", lambda: operations.month_query(state, args.runs, after_a_change=True)),
        ("concurrent", lambda: operations.concurrent_syncs(server, args.clients, args.rounds)),
    ]
    try:
        for key, step in steps:
            started = time.perf_counter()
            outcome = outcomes[key] = step()
            figures = (f", p50 {figure(percentile(outcome.timings, 0.5))} ms, p99 "
                       f"{figure(percentile(outcome.timings, 0.99))} ms" if outcome.timings else "")
            progress(f"{server.name} {key}: {len(outcome.timings)} timed in {time.perf_counter() - started:.1f} s"
                     + figures + (f"; error {outcome.error}" if outcome.error else ""))
    finally:
        state.client.close()
        notes += [f"  {key}: {outcome.note}" for key, outcome in outcomes.items() if outcome.note]


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def figure(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def cells(outcome: Outcome | None, key: str, footnotes: list[str], name: str) -> list[str]:
    if outcome is None:
        return ["—", "—"]
    mark = ""
    if outcome.error:
        footnotes.append(f"{name}, {key}: {outcome.error}")
        mark = f" [{len(footnotes)}]"
    if not outcome.timings:
        return [f"error{mark}", ""]
    p50, p99 = figure(percentile(outcome.timings, 0.5)), figure(percentile(outcome.timings, 0.99))
    if key == "concurrent":
        p99 += f" ({outcome.server_errors} × 5xx" + (f", {outcome.failures} failed" if outcome.failures else "") + ")"
    elif outcome.cut_short:
        p99 += f" (n={len(outcome.timings)})"
    return [p50 + mark, p99]


def print_table(names: list[str], results: dict[str, dict[str, Outcome]], table: list[Operation]) -> list[str]:
    """The Markdown table; returns its footnotes."""
    footnotes: list[str] = []
    header = ["operation"] + [f"{n} {q}" for n in names for q in ("p50", "p99")]
    header += ["Reefknot target (ms)", "Reefknot"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (2 * len(names)) + ["---", "---"]) + "|")
    for operation in table:
        row = [operation.label]
        for name in names:
            row += cells(results.get(name, {}).get(operation.key), operation.key, footnotes, name)
        reefknot = results.get("Reefknot", {}).get(operation.key) if "Reefknot" in results else None
        row += [operation.target.describe(), operation.target.verdict(reefknot)]
        print("| " + " | ".join(row) + " |")
    return footnotes


def ensure_refs_venv(venv: Path) -> None:
    if (venv / "bin" / "radicale").exists() and (venv / "bin" / "xandikos").exists():
        return
    progress(f"installing Radicale and Xandikos into {venv}")
    subprocess.run(["sh", str(HERE / "caldav" / "setup.sh"), str(venv)], check=True)


def run_server(name: str, objects: list[workload.CalendarObject], args: argparse.Namespace, anchor: datetime,
               results: dict[str, dict[str, Outcome]], notes: list[str]) -> None:
    """Start one server, measure it into ``results`` under its name, stop it, whatever happens in between."""
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f"caldav-bench-{name}-", dir=args.keep)
    progress(f"starting {name} in {scratch}")
    server = STARTERS[name](Path(scratch), args.refs_venv)
    outcomes = results[server.name] = {}
    try:
        measure(server, objects, args, anchor, outcomes, notes)
    finally:
        server.stop()
        if server.problems and server.log_tail():
            notes += ["  log tail:"] + [f"    {line}" for line in server.log_tail().splitlines()]
        if args.keep:
            notes.append(f"  kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--servers", default="reefknot,radicale,xandikos")
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each operation")
    parser.add_argument("--clients", type=int, default=20, help="connections of the concurrent initial syncs")
    parser.add_argument("--rounds", type=int, default=3, help="times the concurrent syncs are repeated")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds an operation may take before its runs stop short")
    parser.add_argument("--seed-clients", type=int, default=8, help="connections that seed the calendar")
    parser.add_argument("--refs-venv", type=Path, default=REFS_VENV, help="virtual environment of Radicale and Xandikos")
    parser.add_argument("--keep", help="make the servers' scratch directories here and leave them")
    args = parser.parse_args()
    chosen = [n.strip().lower() for n in args.servers.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(STARTERS))
    if unknown:
        parser.error(f"unknown servers {', '.join(unknown)}; choose from {', '.join(STARTERS)}")
    if {"radicale", "xandikos"} & set(chosen):
        ensure_refs_venv(args.refs_venv)

    anchor = datetime.now(UTC)
    objects = workload.seed_objects(args.events, anchor.date())
    size = sum(len(item.text) for item in objects) / len(objects)
    table = operation_table(args.events, args.clients)
    results: dict[str, dict[str, Outcome]] = {}
    notes: list[str] = []
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    try:
        for name in chosen:
            run_server(name, objects, args, anchor, results, notes)
    except Stopped as stop:
        notes.append(f"stopped by {stop} before the end: the table has what was measured until then")

    print(f"CalDAV sync benchmark, {anchor:%Y-%m-%d}: {args.events:,} objects "
          f"({int(args.events * workload.SERIES_SHARE):,} weekly series, {size / 1024:.1f} KiB on average), "
          f"{args.runs} runs each (fewer, marked n=, where one passed {args.budget:g} s), "
          f"{args.clients} × {args.rounds} concurrent syncs; times in ms, "
          "p99 by nearest rank (the largest under 100 runs)\n")
    footnotes = print_table(list(results), results, table)
    print()
    for n, note in enumerate(footnotes, 1):
        print(f"[{n}] {note}")
    print("\n```\n" + "\n".join(notes) + "\n```")


if __name__ == "__main__":
    main()
