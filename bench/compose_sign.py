"""Benchmark: compose, DKIM-sign and hand iMIP mail to a local SMTP sink, beside the bare sending rate.

A sink (aiosmtpd in its own process on loopback, answering 250 to everything) stands in
for the smarthost. One client process keeps one smtplib connection open and, in turn:

1. sends pre-built, pre-signed messages (the bare rate of the connection and the sink);
2. renders (``render_imip``: text, HTML, calendar, MIME), signs with ed25519 and sends;
3. the same with an RSA-2048 key (the RSA operation done by ``cryptography``);
4. for comparison, the same with dkimpy's own pure-Python RSA signing.

Modes 2 and 3 run twice: sequentially (compose, sign, send, then the next message) and
pipelined (one thread owns the connection and sends while the main thread composes and
signs the next message, as an asynchronous sender overlaps them).

The workload is a mix of real planner output for outside recipients: invitations (a
third of them weekly series), updates with the previous version (so the text says what
changed), cancellations and replies, in English and German. Prints messages/s for each
mode (the median of interleaved rounds, so other load on the machine hits every mode
alike), the mean wall time of each stage and the client's CPU time a message; targets:
ed25519 >= 300/s, RSA-2048 >= 150/s.

    python bench/compose_sign.py --messages 3000 --rounds 5
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dkim  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402
from icalendar import Calendar, Event, vCalAddress  # noqa: E402

from gateway.core.calendar.ical import copy_calendar, new_calendar  # noqa: E402
from gateway.core.imip.render import render_imip  # noqa: E402
from gateway.core.itip.plan import plan_itip  # noqa: E402
from gateway.core.model import OutgoingMessage  # noqa: E402
from gateway.adapters.dkim import SIGNED_HEADERS, DkimSigner  # noqa: E402
from gateway.adapters.templates import TemplateRenderer  # noqa: E402

LOOPBACK = "127.0.0.1"
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
ORGANIZER = "alice@foo.example"
TARGETS = {"ed25519, pipelined": 300.0, "rsa-2048, pipelined": 150.0}
DESCRIPTION = "Agenda: review of the quarter, hiring plan, budget, open questions.\n" * 6


# -- the sink ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def run_sink(port: int, ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event) -> None:
    """An SMTP server that accepts every message and keeps none of it."""
    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    controller = Controller(Accept(), hostname=LOOPBACK, port=port, data_size_limit=0)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


# -- the workload -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    message: OutgoingMessage
    recipient: str
    previous: Calendar | None
    language: str


def event(n: int, rng: random.Random, attendees: list[str], start: datetime, location: str) -> Calendar:
    calendar = new_calendar()
    vevent = Event()
    vevent.add("UID", f"bench-{n}@foo.example")
    vevent.add("DTSTAMP", NOW)
    vevent.add("SEQUENCE", 0)
    vevent.add("DTSTART", start)
    vevent.add("DTEND", start + timedelta(minutes=rng.choice((30, 60, 90))))
    vevent.add("SUMMARY", f"Project review {n}")
    vevent.add("LOCATION", location)
    vevent.add("DESCRIPTION", DESCRIPTION)
    if n % 3 == 0:
        vevent.add("RRULE", {"FREQ": "WEEKLY", "BYDAY": start.strftime("%a")[:2].upper(), "COUNT": 10})
    organizer = vCalAddress(f"mailto:{ORGANIZER}")
    organizer.params["CN"] = "Alice Adler"
    vevent.add("ORGANIZER", organizer)
    for address in [ORGANIZER, *attendees]:
        attendee = vCalAddress(f"mailto:{address}")
        attendee.params.update({"CN": address.split("@")[0].title(), "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"})
        vevent.add("ATTENDEE", attendee)
    calendar.add_component(vevent)
    return calendar


def workload(count: int) -> list[Job]:
    """Planner output for outside recipients: invitations, updates, cancellations, replies."""
    rng = random.Random(7)
    zone = zoneinfo.ZoneInfo("Europe/Berlin")
    jobs: list[Job] = []
    n = 0
    while len(jobs) < count:
        n += 1
        attendees = [f"guest{rng.randrange(10_000)}@{d}" for d in ("bar.example", "baz.example", "qux.example")]
        start = datetime(2026, 7, 1, 9, tzinfo=zone) + timedelta(hours=rng.randrange(2000))
        old = event(n, rng, attendees, start, "Room 1")
        language = rng.choice(("en", "de"))
        invited = plan_itip(None, old, ORGANIZER, NOW).messages
        jobs += [Job(m, m.recipients[0], None, language) for m in invited]
        new = copy_calendar(old)
        moved = new.walk("VEVENT")[0]
        for name in ("DTSTART", "DTEND"):
            value = moved.pop(name).dt
            moved.add(name, value + timedelta(hours=2))
        moved.pop("LOCATION")
        moved.add("LOCATION", "Room 2")
        updates = plan_itip(old, new, ORGANIZER, NOW).messages
        jobs += [Job(m, m.recipients[0], old, language) for m in updates]
        if n % 4 == 0:
            jobs += [Job(m, m.recipients[0], None, language) for m in plan_itip(new, None, ORGANIZER, NOW).messages]
        if n % 2 == 0:
            answered = _answered(new, attendees[0])
            jobs += [Job(m, m.recipients[0], None, language)
                     for m in plan_itip(new, answered, attendees[0], NOW).messages]
    return jobs[:count]


def _answered(calendar: Calendar, attendee: str) -> Calendar:
    answered = copy_calendar(calendar)
    for prop in answered.walk("VEVENT")[0]["ATTENDEE"]:
        if str(prop).endswith(attendee):
            prop.params["PARTSTAT"] = "ACCEPTED"
    return answered


# -- the client -------------------------------------------------------------------------------


def compose(job: Job, index: int, renderer: TemplateRenderer) -> bytes:
    return render_imip(
        job.message, recipient=job.recipient, previous=job.previous, reply_to=f"reply+{index:08x}@foo.example",
        envelope_from=f"bounce+{index:08x}@foo.example", message_id=f"<bench-{index}@foo.example>",
        thread_id=f"<event-{job.message.uid}>", language=job.language, recipient_zone="Europe/Berlin", now=NOW,
        renderer=renderer,
    ).data


def dkimpy_signer(key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    """dkimpy's own signing (pure-Python RSA), with the same headers and canonicalization."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    names = [n.encode() for n in SIGNED_HEADERS]

    def sign(message: bytes) -> bytes:
        return dkim.sign(message, b"reefknot", b"foo.example", pem, canonicalize=(b"relaxed", b"relaxed"),
                         include_headers=names) + message
    return sign


def run_mode(client: smtplib.SMTP, jobs: list[Job], renderer: TemplateRenderer,
             sign: Callable[[bytes], bytes] | None, prebuilt: list[bytes] | None) -> dict[str, float]:
    """Send ``len(jobs)`` messages; returns the rate and the seconds spent in each stage."""
    spent = {"compose": 0.0, "sign": 0.0, "send": 0.0}
    started, cpu = time.perf_counter(), time.process_time()
    for index, job in enumerate(jobs):
        t0 = time.perf_counter()
        if prebuilt is not None:
            data = prebuilt[index % len(prebuilt)]
            t1 = t2 = t0
        else:
            data = compose(job, index, renderer)
            t1 = time.perf_counter()
            data = sign(data) if sign is not None else data
            t2 = time.perf_counter()
        client.sendmail(f"bounce+{index:08x}@foo.example", [job.recipient], data)
        t3 = time.perf_counter()
        spent["compose"] += t1 - t0
        spent["sign"] += t2 - t1
        spent["send"] += t3 - t2
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rate": len(jobs) / elapsed, "cpu": cpu / len(jobs) * 1000,
            **{k: v / len(jobs) * 1000 for k, v in spent.items()}}


def run_pipelined(client: smtplib.SMTP, jobs: list[Job], renderer: TemplateRenderer,
                  sign: Callable[[bytes], bytes]) -> dict[str, float]:
    """Compose and sign in this thread while a sender thread sends over the same one connection."""
    ready: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue(maxsize=32)

    def send_all() -> None:
        while (item := ready.get()) is not None:
            client.sendmail(item[0], [item[1]], item[2])

    sender = threading.Thread(target=send_all)
    # CPython hands the interpreter to a waiting thread every 5 ms by default: far too late
    # for a sender whose answer from the sink came back in a fraction of that.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    started, cpu = time.perf_counter(), time.process_time()
    sender.start()
    spent = {"compose": 0.0, "sign": 0.0}
    for index, job in enumerate(jobs):
        t0 = time.perf_counter()
        data = compose(job, index, renderer)
        t1 = time.perf_counter()
        data = sign(data)
        spent["compose"] += t1 - t0
        spent["sign"] += time.perf_counter() - t1
        ready.put((f"bounce+{index:08x}@foo.example", job.recipient, data))
    ready.put(None)
    sender.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    sys.setswitchinterval(interval)
    return {"rate": len(jobs) / elapsed, "cpu": cpu / len(jobs) * 1000, "send": float("nan"),
            **{k: v / len(jobs) * 1000 for k, v in spent.items()}}


def keys(directory: Path) -> tuple[DkimSigner, DkimSigner, rsa.RSAPrivateKey]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    for name, key in (("ed25519.pem", ed_key), ("rsa.pem", rsa_key)):
        (directory / name).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return (DkimSigner("foo.example", "reefknot", directory / "ed25519.pem"),
            DkimSigner("foo.example", "reefknot", directory / "rsa.pem"), rsa_key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per mode (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per mode (default 5)")
    args = parser.parse_args()
    port = free_port()
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    sink = multiprocessing.Process(target=run_sink, args=(port, ready, stop), daemon=True)
    sink.start()
    if not ready.wait(30):
        raise SystemExit("the sink did not start")
    try:
        return _measure(port, args.messages, args.rounds)
    finally:
        stop.set()
        sink.join(10)


def _measure(port: int, count: int, rounds: int) -> int:
    load_before = os.getloadavg()[0]
    print(f"building {count} messages of planner output ...", flush=True)
    jobs = workload(count)
    renderer = TemplateRenderer()
    share = max(count // rounds, 1)
    with tempfile.TemporaryDirectory() as directory:
        ed_signer, rsa_signer, rsa_key = keys(Path(directory))
        prebuilt = [ed_signer.sign(compose(job, i, renderer)) for i, job in enumerate(jobs[:200])]
        modes: dict[str, Callable[[smtplib.SMTP, list[Job]], dict[str, float]]] = {
            "bare send (pre-built)": lambda c, js: run_mode(c, js, renderer, None, prebuilt),
            "ed25519, sequential": lambda c, js: run_mode(c, js, renderer, ed_signer.sign, None),
            "rsa-2048, sequential": lambda c, js: run_mode(c, js, renderer, rsa_signer.sign, None),
            "ed25519, pipelined": lambda c, js: run_pipelined(c, js, renderer, ed_signer.sign),
            "rsa-2048, pipelined": lambda c, js: run_pipelined(c, js, renderer, rsa_signer.sign),
            "rsa-2048, dkimpy's RSA": lambda c, js: run_mode(c, js[: max(len(js) // 4, 1)], renderer,
                                                             dkimpy_signer(rsa_key), None),
        }
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        with smtplib.SMTP(LOOPBACK, port, timeout=60) as client:
            run_mode(client, jobs[:100], renderer, ed_signer.sign, None)  # warm-up
            for number in range(rounds):  # interleaved, so a burst of other load hits every mode alike
                part = jobs[number * share:(number + 1) * share]
                for mode, run in modes.items():
                    runs[mode].append(run(client, part))
    mean_size = sum(len(p) for p in prebuilt) / len(prebuilt)
    print(f"\n{share * rounds} messages a mode in {rounds} interleaved rounds, one process, one SMTP connection;"
          f" mean message {mean_size / 1024:.1f} KiB; median of the rounds")
    print(f"load average before and after: {load_before:.2f}, {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")
    results = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    _report(results, {mode: [r["rate"] for r in rs] for mode, rs in runs.items()})
    failed = [m for m, target in TARGETS.items() if results[m]["rate"] < target]
    print("\ntargets: " + ", ".join(f"{m} >= {t:.0f}/s" for m, t in TARGETS.items())
          + (": met" if not failed else f": MISSED for {', '.join(failed)}"))
    return 1 if failed else 0


def _report(results: dict[str, dict[str, float]], rates: dict[str, list[float]]) -> None:
    print(f"{'mode':<26}{'messages/s':>11}{'compose ms':>11}{'sign ms':>9}{'send ms':>13}{'CPU ms':>8}"
          "   rounds (messages/s)")
    for mode, figures in results.items():
        send = f"{figures['send']:>13.2f}" if figures["send"] == figures["send"] else f"{'(overlapped)':>13}"
        spread = " ".join(f"{r:.0f}" for r in rates[mode])
        print(f"{mode:<26}{figures['rate']:>11.0f}{figures['compose']:>11.2f}{figures['sign']:>9.2f}{send}"
              f"{figures['cpu']:>8.2f}   {spread}")
    print("\nCPU ms: this process's CPU time a message (all threads; the sink runs in another process).")


if __name__ == "__main__":
    sys.exit(main())
