"""Expanded ``calendar-data`` written straight from the stored text (RFC 4791 §9.6.5), for the common case.

A stored object's VEVENTs with date-time starts, their instances in a range already
found from its times (``gateway.core.calendar.recurrence``): each instance is its
component's own content lines less the recurrence rules and times, with DTSTART, DTEND
and RECURRENCE-ID written in UTC. No iCalendar object is built or serialized, which is
what makes a month's query over a large calendar fast. Anything else (dates, other
components, an override it cannot place) returns None and takes the general path in
``gateway.core.dav.calendar_data``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.core.calendar.recurrence import ObjectTimes, TimedEvent, object_spans
from gateway.core.calendar.instances import recurrence_key_of

CRLF = "\r\n"
_DROPPED = frozenset({"DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "EXRULE", "RECURRENCE-ID"})


def _name(line: str) -> str:
    return line.partition(":")[0].partition(";")[0].upper()


def _logical_lines(text: str) -> list[list[str]]:
    """Content lines, each with its folded continuation lines."""
    lines: list[list[str]] = []
    for physical in text.replace("\r\n", "\n").split("\n"):
        if physical[:1] in (" ", "\t") and lines:
            lines[-1].append(physical)
        elif physical:
            lines.append([physical])
    return lines


def _read_blocks(text: str) -> tuple[list[str], dict[str, list[str]]] | None:
    """The calendar's own lines and each VEVENT's kept lines by instance key; None when it holds anything else."""
    header: list[str] = []
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    depth, key, skipping = 0, "", False
    for logical in _logical_lines(text):
        first = logical[0]
        name = _name(first)
        if name == "BEGIN":
            kind = first[6:].strip().upper()
            depth += 1
            if depth == 2:
                if kind == "VTIMEZONE":
                    skipping = True
                    continue
                if kind != "VEVENT":
                    return None
                current, key = [], ""
                continue
        elif name == "END":
            depth -= 1
            if depth == 1:
                if not skipping:
                    assert current is not None
                    blocks[key] = current
                skipping, current = False, None
                continue
            if depth == 0:
                continue
        if skipping:
            continue
        if depth == 1:
            if name not in ("BEGIN", "END", "METHOD"):
                header.extend(logical)
        elif current is not None:
            if depth == 2 and name in ("DTSTART", "DTEND") and "VALUE=DATE" in first.upper().split(":", 1)[0] \
                    and "VALUE=DATE-TIME" not in first.upper():
                return None  # an all-day event: the general path keeps its dates
            if depth == 2 and name == "RECURRENCE-ID":
                key = _rid_key(first)
            if depth > 2 or name not in _DROPPED:
                current.extend(logical)
    return header, blocks


def _rid_key(line: str) -> str:
    """The raw value of a RECURRENCE-ID line; only a UTC one is placed here (others take the general path)."""
    value = line.split(":", 1)[1].strip() if ":" in line else ""
    return value if value.endswith("Z") and ";" not in line.split(":", 1)[0] else f"?{value}"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


Found = list[tuple[TimedEvent, TimedEvent, list[tuple[datetime, datetime, datetime | None]]]]


def instances_between(times: ObjectTimes, lo: datetime, hi: datetime) -> Found:
    """The object's events with their instances overlapping [lo, hi), as ``expand_text`` takes them."""
    return object_spans(times, lo, hi, _itself)


def expand_text(text: str, times: ObjectTimes, found: Found) -> str | None:
    """The instances ``found`` (``instances_between``) as a VCALENDAR of expanded VEVENTs, or None for the general path."""
    if text.count("BEGIN:VEVENT") != len(times.events):
        return None  # an event the times leave out (no length, no start): the general path judges it
    read = _read_blocks(text)
    if read is None:
        return None
    header, blocks = read
    out = ["BEGIN:VCALENDAR", *header]
    for event, _same, spans in found:
        lines = _lines_of(event, blocks)
        if lines is None:
            return None
        recurring = event.series is not None
        for begin, end, _local in spans:
            out += ["BEGIN:VEVENT", *lines, f"DTSTART:{_utc(begin)}", f"DTEND:{_utc(end)}"]
            rid = begin if recurring else _override_start(event)
            if rid is not None:
                out.append(f"RECURRENCE-ID:{_utc(rid)}")
            out.append("END:VEVENT")
    out.append("END:VCALENDAR")
    return CRLF.join(out) + CRLF


def _itself(event: TimedEvent) -> TimedEvent:
    return event


def _lines_of(event: TimedEvent, blocks: dict[str, list[str]]) -> list[str] | None:
    return blocks.get(recurrence_key_of(event.component))


def _override_start(event: TimedEvent) -> datetime | None:
    """An override's RECURRENCE-ID as an instant; None for a single event."""
    value = event.component.get("RECURRENCE-ID")
    moment = getattr(value, "dt", None)
    return moment if isinstance(moment, datetime) and moment.tzinfo is not None else None
