"""Whether ``reefknot serve`` starts its HTTP face, and why: a decision to log, not a listener.

The built-in defaults (no configuration file) listen on 127.0.0.1:8025, so that the
newcomer's one command has its CalDAV, feeds and metrics. A configuration file without
``[http]`` binds no HTTP port unless something it or the database sets up needs one:
a policy that publishes free/busy by URL, principals with CalDAV app passwords, or
calendar feed URLs already handed out. Then the face listens on the default address,
and the log says which need made it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from gateway.core.trust.policy import FreeBusyUrl
from gateway.service.trust import Trust
from gateway.settings.config import Config
from gateway.store.db import Database
from gateway.store.schema import AppPassword, Principal


@dataclass(frozen=True)
class HttpDecision:
    """Listen or not, and the reasons in words for the one log line."""

    listens: bool
    reasons: tuple[str, ...]


def decide_http(config: Config, trust: Trust, db: Database) -> HttpDecision:
    """Whether the HTTP face starts: the defaults or ``[http]`` say so, or a feature that needs it is in use."""
    if config.http_configured:
        return HttpDecision(True, ("built-in defaults" if config.source == Config().source else "[http] is configured",))
    needs = []
    if trust.policy.freebusy.url is not FreeBusyUrl.OFF:
        needs.append(f"the policy publishes free/busy by URL ([freebusy] url = {trust.policy.freebusy.url.value})")
    passwords, feeds = _http_users(db)
    if passwords:
        needs.append(f"{_principals(passwords)} CalDAV app passwords")
    if feeds:
        needs.append(f"{_principals(feeds)} calendar feed URLs")
    return HttpDecision(bool(needs), tuple(needs))


def _http_users(db: Database) -> tuple[int, int]:
    """How many principals sign in over CalDAV, and how many have a feed URL."""
    with db.reading() as session:
        passwords = session.scalar(select(func.count(func.distinct(AppPassword.principal_id)))) or 0
        feeds = session.scalar(select(func.count()).where(Principal.feed_token != "")) or 0
    return int(passwords), int(feeds)


def _principals(count: int) -> str:
    return "1 principal has" if count == 1 else f"{count} principals have"
