"""Dates, times, zones and recurrence rules in words, in the reader's language; text on one line.

Pure: the words come from a ``Translator`` (any ``gettext`` translations object) and the
word order of each language lives in its catalog (``"{weekday} {day} {month} {year}"``).
Knows nothing of iTIP or mail. Times use the 24-hour clock in every language.
"""

from __future__ import annotations

import unicodedata
import zoneinfo
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Protocol

from icalendar.prop import vRecur

_FREQUENCIES = ("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_DAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_KNOWN_RULE_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "WKST"})
MAX_LISTED_DATES = 10
MAX_TEXT = 500  # a title, place or name is shown up to this length


class Translator(Protocol):
    """What the core needs of a translations object; ``gettext.NullTranslations`` is one."""

    def gettext(self, message: str) -> str: ...

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str: ...

    def pgettext(self, context: str, message: str) -> str: ...


def one_line(value: object, limit: int = MAX_TEXT) -> str:
    """A property value as one line of plain text: no line breaks, no control or bidi characters."""
    text = " ".join(str(value if value is not None else "").split())[: limit * 2]
    if not text.isprintable():  # rare: only then look at each character
        text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    return text[:limit]


def weekday_names(tr: Translator) -> tuple[str, ...]:
    """Monday first, as ``date.weekday()`` counts."""
    return (
        tr.pgettext("weekday", "Monday"), tr.pgettext("weekday", "Tuesday"),
        tr.pgettext("weekday", "Wednesday"), tr.pgettext("weekday", "Thursday"),
        tr.pgettext("weekday", "Friday"), tr.pgettext("weekday", "Saturday"),
        tr.pgettext("weekday", "Sunday"),
    )


def weekday_abbreviations(tr: Translator) -> tuple[str, ...]:
    return (
        tr.pgettext("weekday-abbr", "Mon"), tr.pgettext("weekday-abbr", "Tue"),
        tr.pgettext("weekday-abbr", "Wed"), tr.pgettext("weekday-abbr", "Thu"),
        tr.pgettext("weekday-abbr", "Fri"), tr.pgettext("weekday-abbr", "Sat"),
        tr.pgettext("weekday-abbr", "Sun"),
    )


def month_names(tr: Translator) -> tuple[str, ...]:
    """January first."""
    return (
        tr.pgettext("month", "January"), tr.pgettext("month", "February"), tr.pgettext("month", "March"),
        tr.pgettext("month", "April"), tr.pgettext("month", "May"), tr.pgettext("month", "June"),
        tr.pgettext("month", "July"), tr.pgettext("month", "August"), tr.pgettext("month", "September"),
        tr.pgettext("month", "October"), tr.pgettext("month", "November"), tr.pgettext("month", "December"),
    )


def month_abbreviations(tr: Translator) -> tuple[str, ...]:
    return (
        tr.pgettext("month-abbr", "Jan"), tr.pgettext("month-abbr", "Feb"), tr.pgettext("month-abbr", "Mar"),
        tr.pgettext("month-abbr", "Apr"), tr.pgettext("month-abbr", "May"), tr.pgettext("month-abbr", "Jun"),
        tr.pgettext("month-abbr", "Jul"), tr.pgettext("month-abbr", "Aug"), tr.pgettext("month-abbr", "Sep"),
        tr.pgettext("month-abbr", "Oct"), tr.pgettext("month-abbr", "Nov"), tr.pgettext("month-abbr", "Dec"),
    )


def format_date(tr: Translator, day: date, *, long: bool = False) -> str:
    """``Tue 7 Jul 2026``, or with ``long`` ``Tuesday, 7 July 2026``."""
    if long:
        pattern = tr.pgettext("date-long", "{weekday}, {day} {month} {year}")
        weekday, month = weekday_names(tr)[day.weekday()], month_names(tr)[day.month - 1]
    else:
        pattern = tr.pgettext("date-short", "{weekday} {day} {month} {year}")
        weekday, month = weekday_abbreviations(tr)[day.weekday()], month_abbreviations(tr)[day.month - 1]
    return pattern.format(weekday=weekday, day=day.day, month=month, year=day.year)


def format_time(moment: datetime) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"


def join_words(tr: Translator, items: Sequence[str]) -> str:
    """``A``, ``A and B``, ``A, B and C`` in the reader's language."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return tr.gettext("{items} and {last}").format(items=", ".join(items[:-1]), last=items[-1])


def resolve_zone(name: str | None) -> tzinfo | None:
    """The IANA zone of that name, or None when there is no name or no such zone."""
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def zone_name(zone: tzinfo | None, sample: datetime | None = None) -> str:
    """The name a reader recognizes: the IANA key (``Europe/Berlin``), ``UTC``, or the zone's own name."""
    key = getattr(zone, "key", None)
    if isinstance(key, str) and key:
        return key
    if zone is None:
        return ""
    if zone is timezone.utc:
        return "UTC"
    return zone_abbreviation(sample.replace(tzinfo=zone)) if sample is not None else str(zone)


def zone_abbreviation(moment: datetime) -> str:
    """``CEST``; an offset (``UTC+05:30``) where the zone has no letters for it."""
    name = moment.tzname() or ""
    if name and (name[0].isalpha() and name.isascii()):
        return name
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def in_zone(moment: datetime, zone: tzinfo | None) -> datetime:
    """An aware moment shown in ``zone`` (when given); floating times stay as written."""
    if zone is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(zone)


def describe_span(
    tr: Translator, start: datetime | date, end: datetime | date | None, zone: tzinfo | None, *, long: bool = False
) -> str:
    """When something happens, its zone named: ``Tue 7 Jul 2026 10:00–11:00 (CEST)``.

    ``zone`` is where the reader is (None: the event's own zone). All-day values are
    dates; an all-day ``end`` is exclusive (RFC 5545 §3.6.1).
    """
    if not isinstance(start, datetime):
        return _describe_days(tr, start, end if isinstance(end, date) and not isinstance(end, datetime) else None, long)
    first = in_zone(start, zone)
    last = in_zone(end, zone) if isinstance(end, datetime) else None
    label = zone_abbreviation(first) if first.tzinfo is not None else tr.gettext("local time")
    text = f"{format_date(tr, first.date(), long=long)}{', ' if long else ' '}{format_time(first)}"
    if last is not None and last > first:
        if last.date() == first.date():
            text += f"–{format_time(last)}"
        else:
            text += f" – {format_date(tr, last.date(), long=long)}{', ' if long else ' '}{format_time(last)}"
    return f"{text} ({label})"


def _describe_days(tr: Translator, start: date, end: date | None, long: bool) -> str:
    last = end - timedelta(days=1) if end is not None and end > start else start
    if last == start:
        return tr.gettext("{date} (all day)").format(date=format_date(tr, start, long=long))
    return tr.gettext("{first} – {last} (all day)").format(
        first=format_date(tr, start, long=long), last=format_date(tr, last, long=long)
    )


def describe_rule(tr: Translator, rule: vRecur, zone: tzinfo | None) -> str:
    """A recurrence rule in words: ``every week on Tuesday, 10 times``.

    Rules with parts beyond the common ones are shown as written rather than guessed at.
    """
    parts = {str(name).upper(): list(values) if isinstance(values, list) else [values] for name, values in rule.items()}
    freq = str(parts.get("FREQ", [""])[0]).upper()
    if freq not in _FREQUENCIES or set(parts) - _KNOWN_RULE_PARTS:
        written = rule.to_ical()  # type: ignore[no-untyped-call]  # icalendar leaves it unannotated
        return tr.gettext("repeats by the rule {rule}").format(rule=bytes(written).decode("ascii", "replace"))
    interval = int(str(parts.get("INTERVAL", [1])[0]))
    words = [_every(tr, freq, interval)]
    words += _by_parts(tr, parts)
    text = " ".join(w for w in words if w)
    if "COUNT" in parts:
        count = int(str(parts["COUNT"][0]))
        text += ", " + tr.ngettext("{n} time", "{n} times", count).format(n=count)
    elif "UNTIL" in parts:
        until = parts["UNTIL"][0]
        day = in_zone(until, zone).date() if isinstance(until, datetime) else until
        if isinstance(day, date):
            text += ", " + tr.gettext("until {date}").format(date=format_date(tr, day))
    return text


def _every(tr: Translator, freq: str, n: int) -> str:
    if freq == "YEARLY":
        return tr.ngettext("every year", "every {n} years", n).format(n=n)
    if freq == "MONTHLY":
        return tr.ngettext("every month", "every {n} months", n).format(n=n)
    if freq == "WEEKLY":
        return tr.ngettext("every week", "every {n} weeks", n).format(n=n)
    if freq == "DAILY":
        return tr.ngettext("every day", "every {n} days", n).format(n=n)
    if freq == "HOURLY":
        return tr.ngettext("every hour", "every {n} hours", n).format(n=n)
    if freq == "MINUTELY":
        return tr.ngettext("every minute", "every {n} minutes", n).format(n=n)
    return tr.ngettext("every second", "every {n} seconds", n).format(n=n)


def _by_parts(tr: Translator, parts: dict[str, list[object]]) -> list[str]:
    words = []
    if "BYMONTH" in parts:
        months = [month_names(tr)[int(str(m)) - 1] for m in parts["BYMONTH"] if 1 <= int(str(m)) <= 12]
        words.append(tr.gettext("in {months}").format(months=join_words(tr, months)))
    if "BYMONTHDAY" in parts:
        days = [tr.pgettext("month-day", "{n}").format(n=int(str(d))) for d in parts["BYMONTHDAY"]]
        words.append(tr.gettext("on day {days}").format(days=join_words(tr, days)))
    if "BYDAY" in parts:
        words.append(tr.gettext("on {days}").format(days=join_words(tr, [_by_day(tr, str(d)) for d in parts["BYDAY"]])))
    return words


def _by_day(tr: Translator, value: str) -> str:
    """``TU`` → Tuesday; ``2TU`` → the second Tuesday; ``-1FR`` → the last Friday."""
    code, number = value[-2:].upper(), value[:-2]
    name = weekday_names(tr)[_DAY_CODES.index(code)] if code in _DAY_CODES else code
    if not number or number in ("+", "-"):
        return name
    ordinal = _ordinal(tr, int(number))
    return tr.gettext("the {ordinal} {weekday}").format(ordinal=ordinal, weekday=name)


def _ordinal(tr: Translator, n: int) -> str:
    named = {
        1: tr.pgettext("ordinal", "first"), 2: tr.pgettext("ordinal", "second"),
        3: tr.pgettext("ordinal", "third"), 4: tr.pgettext("ordinal", "fourth"),
        5: tr.pgettext("ordinal", "fifth"), -1: tr.pgettext("ordinal", "last"),
        -2: tr.pgettext("ordinal", "second to last"),
    }
    return named.get(n, tr.pgettext("ordinal", "number {n}").format(n=n))


def describe_dates(tr: Translator, values: Sequence[datetime | date], zone: tzinfo | None) -> str:
    """A short list of dates (the first ``MAX_LISTED_DATES``), as for excluded occurrences."""
    days = sorted({in_zone(v, zone).date() if isinstance(v, datetime) else v for v in values})
    shown = [format_date(tr, d) for d in days[:MAX_LISTED_DATES]]
    if len(days) > MAX_LISTED_DATES:
        more = len(days) - MAX_LISTED_DATES
        shown.append(tr.ngettext("{n} more", "{n} more", more).format(n=more))
    return join_words(tr, shown)
