"""RRULE arithmetic (RFC 5545 §3.3.10): a rule's wall-clock starts in a window, without walking from DTSTART.

Simple DAILY and WEEKLY rules, and HOURLY, MINUTELY and SECONDLY rules without BY parts,
are plain arithmetic; any other rule goes through dateutil, restarted at the window when
it has no COUNT. Every answer is bounded: at most ``MAX_INSTANCES`` starts per window, and
a COUNT rule is walked at most ``MAX_COUNT`` steps. A sub-daily rule with BY parts (dateutil
steps through every second of the day to filter one) is not expanded at all:
``expansion_refusal`` says why, and the message validation holds such mail.
Knows nothing of components, zones beyond UNTIL, or busy time: that is ``gateway.core.calendar.recurrence``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from itertools import accumulate, repeat
from typing import cast

from dateutil.rrule import rrule, rrulestr
from icalendar import vRecur

from gateway.core.checkpoint import checkpoint

MAX_INSTANCES = 25_000  # starts one window gives at most: 20 years of the densest series admitted
MAX_COUNT = 10_000  # a COUNT rule is walked from DTSTART; a longer one is refused, and walked no further
_WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_WEEKDAY_NAMES = tuple(_WEEKDAYS)
_SIMPLE_RULE_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST"})
_PLAIN_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST"})
_SUB_DAILY = {"HOURLY": timedelta(hours=1), "MINUTELY": timedelta(minutes=1), "SECONDLY": timedelta(seconds=1)}
_DAY_PARTS = ("BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY")  # without any, dateutil takes the day from DTSTART
_CHECK_EVERY = 512  # dateutil steps between looks at the processing deadline


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
        periods = periods[: MAX_INSTANCES // per + 1]
        opening = self.base + period * periods.start
        steps = len(periods) - 1
        columns = [  # one run per weekday, each a C-level sum: the hot loop of a calendar scan
            cast(list[datetime], list(accumulate(repeat(period, steps), initial=opening + timedelta(days=o))))
            for o in self.offsets
        ]
        found = columns[0] if per == 1 else [start for row in zip(*columns, strict=True) for start in row]
        numbered = periods.start * per - self.skip  # the COUNT index of found[0]
        ending = len(found) if self.count is None else max(0, min(len(found), self.count - numbered))
        first = max(0, -numbered, bisect_left(found, lo))
        return found[first : min(ending, bisect_right(found, hi), first + MAX_INSTANCES)]

    def last_start(self) -> datetime | None:
        if self.count is None:
            return self.until
        period, slot = divmod(self.count - 1 + self.skip, len(self.offsets))
        try:
            last = self.base + timedelta(days=period * self.step + self.offsets[slot])
        except OverflowError:  # a COUNT that outlasts the calendar is an endless series
            return self.until
        return min(last, self.until) if self.until is not None else last


@dataclass(frozen=True)
class Stepped:
    """An HOURLY, MINUTELY or SECONDLY rule without BY parts: every ``step`` from ``base``."""

    base: datetime
    step: timedelta
    count: int | None = None
    until: datetime | None = None

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        if self.until is not None:
            hi = min(hi, self.until)
        first = max(0, -((self.base - lo) // self.step))  # the first step at or after lo
        last = (hi - self.base) // self.step
        if self.count is not None:
            last = min(last, self.count - 1)
        last = min(last, first + MAX_INSTANCES - 1)
        return [self.base + self.step * n for n in range(first, last + 1)]

    def last_start(self) -> datetime | None:
        if self.count is None:
            return self.until
        try:
            last = self.base + self.step * (self.count - 1)
        except OverflowError:
            return self.until
        return min(last, self.until) if self.until is not None else last


@dataclass(frozen=True)
class GeneralRule:
    """Any other rule, expanded by dateutil in naive wall-clock time.

    ``rule`` carries every BY part explicitly, so it means the same from any DTSTART: a
    rule without COUNT is restarted at a period boundary shortly before the window
    instead of walking from ``first``. UNTIL is applied here, so that a rule with both
    COUNT and UNTIL (which dateutil refuses) keeps both.
    """

    rule: rrule = field(compare=False)
    first: datetime
    period: tuple[str, int, int] = ("DAILY", 1, 0)  # FREQ, INTERVAL, WKST: how the rule counts its periods
    count: int | None = None
    until: datetime | None = None

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        if self.until is not None:
            hi = min(hi, self.until)
        if lo > hi:
            return []
        found: list[datetime] = []
        walked = self._walk(lo)
        for n, start in enumerate(walked, 1):
            if start > hi or len(found) >= MAX_INSTANCES:
                break
            if start >= lo:
                found.append(start)
            if n % _CHECK_EVERY == 0:
                checkpoint()
        return found

    def last_start(self) -> datetime | None:
        if self.count is None or self.count > MAX_COUNT:  # endless, or too long to count: UNTIL, if any, ends it
            return self.until
        last = None
        for last in self._walk(self.first):
            pass
        return min(last, self.until) if last is not None and self.until is not None else last

    def _walk(self, lo: datetime) -> rrule:
        """The rule's starts from a DTSTART at or before ``lo``, at most ``MAX_COUNT`` of them for a COUNT rule."""
        if self.count is not None:
            return self.rule.replace(count=min(self.count, MAX_COUNT))
        return self.rule.replace(dtstart=_restart(self.period, self.first, lo))


def _restart(period: tuple[str, int, int], first: datetime, lo: datetime) -> datetime:
    """A DTSTART at the start of a period the rule counts, one period before ``lo``'s; ``first`` if that is earlier."""
    freq, step, wkst = period
    if freq == "YEARLY":
        periods = (lo.year - first.year) // step - 1
        if periods <= 0:
            return first
        return datetime(first.year + periods * step, 1, 1)
    if freq == "MONTHLY":
        periods = ((lo.year - first.year) * 12 + lo.month - first.month) // step - 1
        if periods <= 0:
            return first
        month = first.month - 1 + periods * step
        return datetime(first.year + month // 12, month % 12 + 1, 1)
    days = 7 * step if freq == "WEEKLY" else step  # WEEKLY, DAILY: whole days from the week (by WKST) or day of first
    opening = first.date() - timedelta(days=(first.weekday() - wkst) % 7 if freq == "WEEKLY" else 0)
    periods = (lo.date() - opening).days // days - 1
    return datetime.combine(opening + timedelta(days=periods * days), time()) if periods > 0 else first


def rule_of(recur: vRecur, first: datetime, tz: tzinfo) -> Periodic | Stepped | GeneralRule | None:
    """An RRULE as arithmetic where it is simple, through dateutil otherwise; None when unreadable or refused.

    ``first`` is DTSTART as naive wall-clock time in ``tz``.
    """
    until, count = _until(recur, tz), _int_part(recur, "COUNT")
    freq = str(_part(recur, "FREQ") or "").upper()
    interval = max(_int_part(recur, "INTERVAL") or 1, 1)
    wkst = _WEEKDAYS.get(str(_part(recur, "WKST") or "MO").upper(), 0)
    names = {k.upper() for k in recur}
    days = _plain_weekdays(recur)
    if names <= _SIMPLE_RULE_PARTS and days is not None and freq in ("DAILY", "WEEKLY"):
        if freq == "DAILY" and not days:
            return Periodic(first, interval, (0,), 0, count, until)
        if freq == "WEEKLY" or interval == 1:  # every day, on some weekdays, is weekly on them
            position = (first.weekday() - wkst) % 7
            offsets = tuple(sorted({(d - wkst) % 7 for d in days or [first.weekday()]}))
            skip = sum(1 for o in offsets if o < position)
            step = 7 * interval if freq == "WEEKLY" else 7
            return Periodic(first - timedelta(days=position), step, offsets, skip, count, until)
    if freq in _SUB_DAILY:
        return Stepped(first, _SUB_DAILY[freq] * interval, count, until) if names <= _PLAIN_PARTS else None
    return _general(recur, first, (freq, interval, wkst), count, until)


def expansion_refusal(recur: vRecur) -> str:
    """Why a rule is not expanded however it is stored ('' when it is): a sub-daily rule with BY parts."""
    freq = str(_part(recur, "FREQ") or "").upper()
    filters = sorted({k.upper() for k in recur} - _PLAIN_PARTS)
    return f"FREQ={freq} with {', '.join(filters)}" if freq in _SUB_DAILY and filters else ""


def _general(
    recur: vRecur, first: datetime, period: tuple[str, int, int], count: int | None, until: datetime | None
) -> GeneralRule | None:
    """A rule through dateutil, with what it would take from DTSTART written out, so it can restart anywhere."""
    parts = {k.upper(): v for k, v in recur.items() if k.upper() not in ("UNTIL", "COUNT")}
    freq = period[0]
    if not any(name in parts for name in _DAY_PARTS):
        if freq == "YEARLY":
            parts.setdefault("BYMONTH", [first.month])
        if freq in ("YEARLY", "MONTHLY"):
            parts["BYMONTHDAY"] = [first.day]
        elif freq == "WEEKLY":
            parts["BYDAY"] = [_WEEKDAY_NAMES[first.weekday()]]
    for name, value in (("BYHOUR", first.hour), ("BYMINUTE", first.minute), ("BYSECOND", first.second)):
        parts.setdefault(name, [value])
    try:
        text = vRecur(parts).to_ical().decode()  # type: ignore[no-untyped-call]  # icalendar leaves it unannotated
        expanded = rrulestr(text, dtstart=first, cache=False)
    except (ValueError, TypeError, KeyError, OverflowError):
        return None  # a rule nobody can read: DTSTART and the RDATEs stand alone
    return GeneralRule(expanded, first, period, count, until) if isinstance(expanded, rrule) else None


def count_of(recur: vRecur) -> int | None:
    """A rule's COUNT, or None when it has none (or none that reads as a number)."""
    return _int_part(recur, "COUNT")


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
