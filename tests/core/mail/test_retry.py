"""What an outbound attempt means, table-driven: SMTP replies, the retry schedule, the SCHEDULE-STATUS written."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.core.calendar.ical import components_of, parse_calendar, serialize_calendar
from gateway.core.itip.schedulestatus import (
    ScheduleStatus,
    schedule_statuses,
    set_schedule_status,
    supersedes,
)
from gateway.core.mail.retry import (
    Attempt,
    AttemptResult,
    Disposition,
    RetryPolicy,
    decide_attempt,
)
from gateway.edges.smarthost import Stage, attempt_for_reply
from tests.conftest import NOW

R = AttemptResult


@pytest.mark.parametrize(
    ("stage", "code", "text", "expected"),
    [
        (Stage.DATA, 250, "2.0.0 Ok: queued as 4Xyz", R.DELIVERED),
        (Stage.RCPT, 451, "4.3.0 Try again later", R.DEFERRED),
        (Stage.DATA, 452, "4.3.1 Insufficient system storage", R.DEFERRED),
        (Stage.RCPT, 550, "5.1.1 <carol@bar.example>: User unknown", R.BAD_ADDRESS),
        (Stage.RCPT, 553, "5.1.3 Bad destination mailbox address syntax", R.BAD_ADDRESS),
        (Stage.RCPT, 550, "5.7.1 Relaying denied", R.REFUSED),
        (Stage.RCPT, 550, "Mailbox unavailable", R.REFUSED),  # no enhanced code: not known to be the address
        (Stage.MAIL, 553, "5.1.8 Sender address rejected: Domain not found", R.REFUSED),
        (Stage.DATA, 554, "5.1.1 user unknown", R.REFUSED),  # only RCPT TO speaks about the recipient
        (Stage.DATA, 552, "5.3.4 Message too big", R.REFUSED),
        (Stage.SESSION, 554, "5.7.0 No SMTP service here", R.DEFERRED),  # about the relay, not the message
        (Stage.SESSION, 535, "5.7.8 Authentication credentials invalid", R.DEFERRED),
    ],
)
def test_smtp_replies_mean(stage: Stage, code: int, text: str, expected: AttemptResult) -> None:
    attempt = attempt_for_reply(stage, code, text)
    assert attempt.result is expected
    assert attempt.detail == f"{code} {text}"


def test_a_multiline_reply_is_kept_on_one_line() -> None:
    assert attempt_for_reply(Stage.RCPT, 451, "4.7.1 Greylisted\nsee https://example.org").detail == \
        "451 4.7.1 Greylisted see https://example.org"


def test_the_backoff_doubles_from_five_minutes_to_an_hour() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [timedelta(minutes=m) for m in (5, 10, 20, 40, 60, 60, 60)]
    assert policy.delay(10_000) == timedelta(hours=1)


POLICY = RetryPolicy(lifetime=timedelta(days=5))
S = ScheduleStatus


@pytest.mark.parametrize(
    ("result", "age", "attempts", "disposition", "status", "reason", "next_in"),
    [
        (R.DELIVERED, timedelta(0), 1, Disposition.SENT, S.SENT, "250 ok", None),
        (R.DEFERRED, timedelta(0), 1, Disposition.RETRY, S.SENT, "250 ok", timedelta(minutes=5)),
        (R.DEFERRED, timedelta(days=4, hours=23), 3, Disposition.RETRY, S.SENT, "250 ok", timedelta(minutes=20)),
        (R.DEFERRED, timedelta(days=5), 120, Disposition.FAILED, S.NOT_DELIVERED,
         "lifetime-exceeded: 120 attempts, the last: 250 ok", None),
        (R.REFUSED, timedelta(0), 1, Disposition.FAILED, S.NOT_DELIVERED, "refused: 250 ok", None),
        (R.BAD_ADDRESS, timedelta(0), 1, Disposition.FAILED, S.INVALID_USER, "bad-address: 250 ok", None),
        (R.UNCOMPOSABLE, timedelta(0), 1, Disposition.FAILED, S.NOT_DELIVERED, "uncomposable: 250 ok", None),
    ],
)
def test_an_attempt_decides(
    result: AttemptResult, age: timedelta, attempts: int, disposition: Disposition, status: ScheduleStatus, reason: str,
    next_in: timedelta | None,
) -> None:
    now = NOW + age
    decision = decide_attempt(Attempt(result, "250 ok"), policy=POLICY, created_at=NOW, attempts=attempts, now=now)
    assert (decision.disposition, decision.status, decision.reason) == (disposition, status, reason)
    assert decision.next_attempt_at == (now + next_in if next_in else None)


@pytest.mark.parametrize(
    ("result", "age", "due_in", "disposition", "next_attempt_in"),
    [
        (R.DEFERRED, timedelta(minutes=1), timedelta(minutes=4), Disposition.RETRY, timedelta(minutes=4)),  # its schedule
        (R.DEFERRED, timedelta(days=5), timedelta(minutes=30), Disposition.RETRY, timedelta(minutes=30)),  # age judged when due
        (R.DEFERRED, timedelta(minutes=5), timedelta(0), Disposition.RETRY, timedelta(minutes=20)),  # due: the backoff grows
        (R.DEFERRED, timedelta(days=5), -timedelta(minutes=1), Disposition.FAILED, None),
        (R.DELIVERED, timedelta(minutes=1), timedelta(minutes=4), Disposition.SENT, None),
        (R.BAD_ADDRESS, timedelta(minutes=1), timedelta(minutes=4), Disposition.FAILED, None),  # a refusal counts any time
    ],
)
def test_an_attempt_forced_before_its_time_counts_only_when_it_ends_the_message(
    result: AttemptResult, age: timedelta, due_in: timedelta, disposition: Disposition, next_attempt_in: timedelta | None
) -> None:
    now = NOW + age
    decision = decide_attempt(Attempt(result, "451 busy"), policy=POLICY, created_at=NOW, attempts=3, now=now,
                              due_at=now + due_in)
    assert decision.disposition is disposition
    assert decision.next_attempt_at == (now + next_attempt_in if next_attempt_in is not None else None)


RECURRING = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Test//EN
BEGIN:VEVENT
UID:u1
DTSTAMP:20260601T080000Z
DTSTART:20260710T080000Z
RRULE:FREQ=WEEKLY;COUNT=4
ORGANIZER:mailto:alice@foo.example
ATTENDEE;SCHEDULE-STATUS=1.1:MAILTO:Carol@Bar.Example
ATTENDEE:mailto:dave@baz.example
END:VEVENT
BEGIN:VEVENT
UID:u1
DTSTAMP:20260601T080000Z
RECURRENCE-ID:20260717T080000Z
DTSTART:20260717T090000Z
ORGANIZER:mailto:alice@foo.example
ATTENDEE:mailto:carol@bar.example
BEGIN:VALARM
ACTION:EMAIL
TRIGGER:-PT15M
ATTENDEE:mailto:carol@bar.example
END:VALARM
END:VEVENT
END:VCALENDAR
"""


def test_the_status_is_set_on_every_component_naming_the_attendee_on_a_copy() -> None:
    calendar = parse_calendar(RECURRING)
    before = serialize_calendar(calendar)
    updated = set_schedule_status(calendar, "carol@bar.example", ScheduleStatus.INVALID_USER)
    assert serialize_calendar(calendar) == before
    assert schedule_statuses(calendar, "carol@bar.example") == {"1.1", ""}
    assert schedule_statuses(updated, "mailto:CAROL@bar.example") == {"3.7"}
    assert schedule_statuses(updated, "dave@baz.example") == {""}
    alarm = components_of(updated)[1].subcomponents[0]
    assert "SCHEDULE-STATUS" not in alarm["ATTENDEE"].params  # an alarm's recipient is not an attendee
    assert schedule_statuses(updated, "erin@baz.example") == set()


@pytest.mark.parametrize(
    ("code", "current", "replaces"),
    [
        (ScheduleStatus.SENT, {""}, True),
        (ScheduleStatus.SENT, {"1.1"}, False),  # already so
        (ScheduleStatus.SENT, set(), False),  # no longer invited
        (ScheduleStatus.SENT, {"2.0"}, False),  # the answer came first: delivered says more
        (ScheduleStatus.SENT, {"2.0", ""}, True),  # an instance not answered yet
        (ScheduleStatus.NOT_DELIVERED, {"2.0"}, True),  # a bounce after all
        (ScheduleStatus.INVALID_USER, {"1.1"}, True),
    ],
)
def test_a_delivery_result_supersedes_the_codes_it_says_more_than(
    code: ScheduleStatus, current: set[str], replaces: bool
) -> None:
    assert supersedes(code, current) is replaces
