"""RRULE arithmetic (RFC 5545 §3.3.10): a rule's wall-clock starts in a window, without walking from DTSTART.

Simple DAILY and WEEKLY rules are plain arithmetic; any other rule goes through dateutil.
Knows nothing of components, zones beyond UNTIL, or busy time: that is ``gateway.core.recurrence``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from itertools import accumulate, repeat
from typing import cast

from dateutil.rrule import rrule, rrulestr
from icalendar import vRecur

_MAX_EXPANDED_COUNT = 5000  # a COUNT series longer than this is treated as endless when finding its end
_WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_SIMPLE_RULE_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST"})


@dataclass(frozen=True)
class Periodic:
    """A DAILY or WEEKLY rule without filters, as arithmetic: every ``step`` days from ``base``,
    on the ``offsets`` days of each period; COUNT counts from the first start on or after
    DTSTART (``skip`` earlier days of the first period do not count), as dateutil does."""

    base: datetime
    step: int
    offsets: tuple[int, ...]
    skip: int = 0
    count: int | None = None
    until: datetime | None = None

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        """Wall-clock starts in [lo, hi], reached without walking from DTSTART."""
        if self.until is not None:
            hi = min(hi, self.until)
        per, period = len(self.offsets), timedelta(days=self.step)
        periods = range(max(0, (lo - self.base).days // self.step), max(0, (hi - self.base).days // self.step + 1))
        if not periods:
            return []
        opening = self.base + period * periods.start
        steps = len(periods) - 1
        columns = [  # one run per weekday, each a C-level sum: the hot loop of a calendar scan
            cast(list[datetime], list(accumulate(repeat(period, steps), initial=opening + timedelta(days=o))))
            for o in self.offsets
        ]
        found = columns[0] if per == 1 else [start for row in zip(*columns, strict=True) for start in row]
        numbered = periods.start * per - self.skip  # the COUNT index of found[0]
        ending = len(found) if self.count is None else max(0, min(len(found), self.count - numbered))
        return found[max(0, -numbered, bisect_left(found, lo)) : min(ending, bisect_right(found, hi))]

    def last_start(self) -> datetime | None:
        if self.count is None:
            return self.until
        period, slot = divmod(self.count - 1 + self.skip, len(self.offsets))
        last = self.base + timedelta(days=period * self.step + self.offsets[slot])
        return min(last, self.until) if self.until is not None else last


@dataclass(frozen=True)
class GeneralRule:
    """Any other rule, expanded by dateutil in naive wall-clock time; UNTIL is applied here,
    so that a rule with both COUNT and UNTIL (which dateutil refuses) keeps both."""

    rule: rrule = field(compare=False)
    count: int | None = None
    until: datetime | None = None

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        if self.until is not None:
            hi = min(hi, self.until)
        return list(self.rule.between(lo, hi, inc=True)) if lo <= hi else []

    def last_start(self) -> datetime | None:
        if self.until is not None:
            return self.until
        if self.count is None or self.count > _MAX_EXPANDED_COUNT:
            return None
        every = list(self.rule)
        return every[-1] if every else None


def rule_of(recur: vRecur, first: datetime, tz: tzinfo) -> Periodic | GeneralRule | None:
    """An RRULE as arithmetic where it is simple, through dateutil otherwise; None when unreadable.

    ``first`` is DTSTART as naive wall-clock time in ``tz``.
    """
    until, count = _until(recur, tz), _int_part(recur, "COUNT")
    freq = str(_part(recur, "FREQ") or "").upper()
    interval = max(_int_part(recur, "INTERVAL") or 1, 1)
    days = _plain_weekdays(recur)
    if set(recur) <= _SIMPLE_RULE_PARTS and days is not None and freq in ("DAILY", "WEEKLY"):
        if freq == "DAILY" and not days:
            return Periodic(first, interval, (0,), 0, count, until)
        if freq == "WEEKLY" or interval == 1:  # every day, on some weekdays, is weekly on them
            wkst = _WEEKDAYS.get(str(_part(recur, "WKST") or "MO").upper(), 0)
            position = (first.weekday() - wkst) % 7
            offsets = tuple(sorted({(d - wkst) % 7 for d in days or [first.weekday()]}))
            skip = sum(1 for o in offsets if o < position)
            step = 7 * interval if freq == "WEEKLY" else 7
            return Periodic(first - timedelta(days=position), step, offsets, skip, count, until)
    parts = vRecur({k: v for k, v in recur.items() if k.upper() != "UNTIL"})
    try:
        text = parts.to_ical().decode()  # type: ignore[no-untyped-call]  # icalendar leaves it unannotated
        expanded = rrulestr(text, dtstart=first)
    except (ValueError, TypeError, KeyError, OverflowError):
        return None  # a rule nobody can read: DTSTART and the RDATEs stand alone
    return GeneralRule(expanded, count, until) if isinstance(expanded, rrule) else None


def _part(rule: vRecur, name: str) -> object:
    value = rule.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _int_part(rule: vRecur, name: str) -> int | None:
    try:
        value = _part(rule, name)
        return int(str(value)) if value is not None else None
    except ValueError:
        return None


def _until(rule: vRecur, tz: tzinfo) -> datetime | None:
    """UNTIL as wall-clock time in ``tz``; a date UNTIL includes its whole day."""
    value = _part(rule, "UNTIL")
    if isinstance(value, datetime):
        return value.astimezone(tz).replace(tzinfo=None) if value.tzinfo is not None else value
    if isinstance(value, date):
        return datetime.combine(value, time.max)
    return None


def _plain_weekdays(rule: vRecur) -> list[int] | None:
    """BYDAY as weekday numbers; None when an entry has an ordinal (``-1SU``) or is unreadable."""
    value = rule.get("BYDAY") or []
    days = []
    for item in value if isinstance(value, list) else [value]:
        text = str(item).strip().upper()
        if text not in _WEEKDAYS:
            return None
        days.append(_WEEKDAYS[text])
    return days
