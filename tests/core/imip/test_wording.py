"""Dates, spans and recurrence rules in words, in English and German."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, timezone

import pytest
from icalendar.prop import vRecur

from gateway.adapters.templates import TemplateRenderer
from gateway.core.imip.wording import (
    describe_dates,
    describe_rule,
    describe_span,
    zone_abbreviation,
)

RENDERER = TemplateRenderer()
EN, DE = RENDERER.translator("en"), RENDERER.translator("de")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("rule", "english", "german"),
    [
        ("FREQ=WEEKLY;BYDAY=TU;COUNT=10", "every week on Tuesday, 10 times", "jede Woche am Dienstag, 10-mal"),
        ("FREQ=DAILY", "every day", "jeden Tag"),
        ("FREQ=DAILY;COUNT=1", "every day, 1 time", "jeden Tag, 1-mal"),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;UNTIL=20260731T215959Z",
         "every 2 weeks on Monday and Wednesday, until Fri 31 Jul 2026",
         "alle 2 Wochen am Montag und Mittwoch, bis Fr 31. Jul 2026"),
        ("FREQ=WEEKLY;BYDAY=MO,WE,FR", "every week on Monday, Wednesday and Friday",
         "jede Woche am Montag, Mittwoch und Freitag"),
        ("FREQ=MONTHLY;BYDAY=2TU", "every month on the second Tuesday", "jeden Monat am zweiten Dienstag"),
        ("FREQ=MONTHLY;BYDAY=-1FR;COUNT=6", "every month on the last Friday, 6 times",
         "jeden Monat am letzten Freitag, 6-mal"),
        ("FREQ=MONTHLY;BYMONTHDAY=1,15", "every month on day 1 and 15", "jeden Monat am 1. und 15."),
        ("FREQ=YEARLY;BYMONTH=7;BYMONTHDAY=4", "every year in July on day 4", "jedes Jahr im Juli am 4."),
        ("FREQ=YEARLY;INTERVAL=3", "every 3 years", "alle 3 Jahre"),
        ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
         "repeats by the rule FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
         "wiederholt sich nach der Regel FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"),
    ],
)
def test_rules_in_words(rule: str, english: str, german: str) -> None:
    parsed = vRecur.from_ical(rule)
    assert describe_rule(EN, parsed, BERLIN) == english
    assert describe_rule(DE, parsed, BERLIN) == german


@pytest.mark.parametrize(
    ("start", "end", "english", "german"),
    [
        (datetime(2026, 7, 7, 10, 0, tzinfo=BERLIN), datetime(2026, 7, 7, 11, 0, tzinfo=BERLIN),
         "Tue 7 Jul 2026 10:00–11:00 (CEST)", "Di 7. Jul 2026 10:00–11:00 (CEST)"),
        (datetime(2026, 12, 31, 22, 0, tzinfo=BERLIN), datetime(2027, 1, 1, 1, 0, tzinfo=BERLIN),
         "Thu 31 Dec 2026 22:00 – Fri 1 Jan 2027 01:00 (CET)", "Do 31. Dez 2026 22:00 – Fr 1. Jan 2027 01:00 (CET)"),
        (date(2026, 3, 2), date(2026, 3, 3), "Mon 2 Mar 2026 (all day)", "Mo 2. Mär 2026 (ganztägig)"),
        (date(2026, 5, 4), date(2026, 5, 7), "Mon 4 May 2026 – Wed 6 May 2026 (all day)",
         "Mo 4. Mai 2026 – Mi 6. Mai 2026 (ganztägig)"),
        (datetime(2026, 7, 7, 10, 0), None, "Tue 7 Jul 2026 10:00 (local time)", "Di 7. Jul 2026 10:00 (Ortszeit)"),
    ],
)
def test_spans_in_words(start: datetime | date, end: datetime | date | None, english: str, german: str) -> None:
    assert describe_span(EN, start, end, None) == english
    assert describe_span(DE, start, end, None) == german


def test_long_dates_name_the_day_and_month_in_full() -> None:
    start = datetime(2026, 10, 25, 9, 30, tzinfo=timezone.utc)
    assert describe_span(EN, start, None, BERLIN, long=True) == "Sunday, 25 October 2026, 10:30 (CET)"
    assert describe_span(DE, start, None, BERLIN, long=True) == "Sonntag, 25. Oktober 2026, 10:30 (CET)"


def test_a_zone_without_letters_is_named_by_its_offset() -> None:
    kolkata_like = zoneinfo.ZoneInfo("Asia/Kolkata")
    assert zone_abbreviation(datetime(2026, 7, 7, 10, 0, tzinfo=kolkata_like)) == "IST"
    assert zone_abbreviation(datetime(2026, 7, 7, 10, 0, tzinfo=zoneinfo.ZoneInfo("America/Sao_Paulo"))) \
        == "UTC-03:00"


def test_long_date_lists_are_cut_short() -> None:
    days = [date(2026, 1, d) for d in range(1, 15)]
    assert describe_dates(EN, days, None).endswith("and 4 more")
    assert describe_dates(DE, days, None).endswith("und 4 weitere")
