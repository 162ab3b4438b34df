"""The reply and bounce addresses on Reefknot's outgoing mail, reading them back, and how long a token lives.

Every outgoing message names one (event, outside party) pair of a local principal by an
unguessable token: replies go to ``reply+<token>@<reply domain>`` and bounces to
``bounce+<outbox id>.<token>@<reply domain>``, so a reply from an alias or a forwarded copy
still finds its event and attendee, and a bounce finds its delivery. A token lives until
the event's last occurrence has ended, plus a grace period; an endless series keeps it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from icalendar import Calendar, Component, vRecur

from gateway.core.calendar.ical import components_of, duration_of, start_of
from gateway.core.calendar.instances import date_values, rrules_of
from gateway.core.calendar.rrules import rule_of

TOKEN_GRACE = timedelta(days=30)  # late answers and late bounces still find their event
_TOKEN = r"[a-z2-7]{16,40}"
_REPLY = re.compile(rf"^reply\+(?P<token>{_TOKEN})@", re.IGNORECASE)
_BOUNCE = re.compile(rf"^bounce\+(?P<outbox>\d{{1,18}})\.(?P<token>{_TOKEN})@", re.IGNORECASE)


@dataclass(frozen=True)
class TokenAddress:
    """A token read from an address; ``outbox_id`` only for a bounce address."""

    token: str
    outbox_id: int | None = None


def reply_address(token: str, domain: str) -> str:
    return f"reply+{token}@{domain}"


def bounce_address(token: str, outbox_id: int, domain: str) -> str:
    return f"bounce+{outbox_id}.{token}@{domain}"


def read_token_address(address: str) -> TokenAddress | None:
    """The token in a reply or bounce address (any domain: the token alone is the secret), else None."""
    if match := _BOUNCE.match(address):
        return TokenAddress(match["token"].lower(), int(match["outbox"]))
    if match := _REPLY.match(address):
        return TokenAddress(match["token"].lower())
    return None


def token_expiry(calendar: Calendar, grace: timedelta = TOKEN_GRACE) -> datetime | None:
    """When replies about this object stop being taken: its last end plus ``grace``; None when it never ends."""
    ends = [_last_end(c) for c in components_of(calendar)]
    if not ends or any(end is None for end in ends):
        return None
    return max(e for e in ends if e is not None) + grace


def _last_end(component: Component) -> datetime | None:
    start = start_of(component)
    if start is None:
        return None
    length = duration_of(component)
    starts = [start, *date_values(component, "RDATE")]
    for rule in rrules_of(component):
        until = rule.get("UNTIL")
        if until:
            starts.append(until[0])  # the last occurrence starts at UNTIL at the latest
        elif rule.get("COUNT") and (last := _last_counted(rule, start)) is not None:
            starts.append(last)
        else:
            return None
    return max(_utc(s) for s in starts) + length


def _last_counted(rule: vRecur, start: datetime | date) -> datetime | date | None:
    """The last occurrence of a rule bounded by COUNT; None when it is too long to count (an endless series)."""
    moment = _as_datetime(start)
    zone = moment.tzinfo or timezone.utc
    counted = rule_of(rule, datetime.combine(moment.date(), moment.time()), zone)  # naive wall-clock time
    last = counted.last_start() if counted is not None else start
    if isinstance(last, datetime) and last.tzinfo is None:
        return last.replace(tzinfo=zone)
    return last


def _as_datetime(value: datetime | date) -> datetime:
    return value if isinstance(value, datetime) else datetime.combine(value, time())


def _utc(value: datetime | date) -> datetime:
    moment = _as_datetime(value)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
