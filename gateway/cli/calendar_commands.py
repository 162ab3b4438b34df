"""Commands for principals and their calendars: ``users``, ``calendar``, ``freebusy``, ``inbox``, ``event``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import click

from gateway.adapters.clock import utcnow
from gateway.cli.base import (
    EX_DATAERR,
    EX_USAGE,
    Context,
    Exit,
    cli,
    emit,
    emit_more,
    guarded,
    page_options,
    pass_context,
)
from gateway.core.calendar.ical import components_of, serialize_calendar
from gateway.core.model import Kind, PartStat
from gateway.service import credentials, events, freebusy, publishing
from gateway.store import directory, inbox

log = logging.getLogger(__name__)


@cli.group()
def users() -> None:
    """The directory of local principals."""


@users.command("add")
@click.argument("address")
@click.option("--name", default="", help="display name")
@click.option("--alias", "aliases", multiple=True, help="another address of the same principal (repeatable)")
@click.option("--kind", type=click.Choice([k.value for k in Kind]), default=Kind.INDIVIDUAL.value)
@pass_context
@guarded
def users_add(context: Context, address: str, name: str, aliases: tuple[str, ...], kind: str) -> None:
    """Add a local user, room or resource."""
    with context.database().transaction() as session:
        ref = directory.add_principal(session, address, utcnow(), name=name, aliases=aliases, kind=Kind(kind))
    click.echo(f"added {ref.kind.value} {ref.address}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def users_list(context: Context, as_json: bool) -> None:
    """List local principals."""
    with context.database().transaction() as session:
        rows = [
            {"address": p.address, "name": p.display_name, "kind": p.kind.value, "aliases": sorted(p.aliases)}
            for p in directory.list_principals(session)
        ]
    if not as_json:
        rows = [{**r, "aliases": ", ".join(r["aliases"])} for r in rows]
    emit(rows, as_json, ["address", "kind", "name", "aliases"])


@users.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="do not ask: remove at once (for scripts)")
@pass_context
@guarded
def users_remove(context: Context, address: str, yes: bool) -> None:
    """Remove a local principal with its calendars, inbox and app passwords; asks first unless --yes."""
    if not yes:
        if not sys.stdin.isatty():
            raise Exit(EX_USAGE, f"not removed: say --yes to remove {address} without a terminal to ask at")
        if not click.confirm(f"remove {address} with all its calendars, inbox and app passwords?", err=True):
            raise Exit(EX_USAGE, "not removed")
    with context.database().transaction() as session:
        ref = directory.remove_principal(session, address)
    click.echo(f"removed {ref.address}")


@users.command("feed")
@click.argument("address")
@click.option("--renew", is_flag=True, help="replace the secret: the old URL stops working")
@pass_context
@guarded
def users_feed(context: Context, address: str, renew: bool) -> None:
    """Print the principal's read-only calendar feed URL (webcal), with its secret token."""
    with context.database().transaction() as session:
        principal = context.principal(session, address)
        token = directory.feed_token(session, principal.id, renew=renew)
    base = context.config.public_url.rstrip("/") or f"http://{context.config.http}"
    click.echo(f"{base}/calendars/{quote(principal.address)}.ics?token={token}")


@users.group("password")
def users_password() -> None:
    """App passwords: what a principal's calendar programs sign in with."""


@contextmanager
def _credential_errors() -> Iterator[None]:
    """A bad label is a usage error; an unknown principal, a taken or a missing label, a data error."""
    try:
        yield
    except credentials.BadLabel as error:
        raise Exit(EX_USAGE, str(error)) from error
    except credentials.CredentialError as error:
        raise Exit(EX_DATAERR, str(error)) from error


@users_password.command("add")
@click.argument("address")
@click.option("--label", default=None, help="what to revoke it by (default: the first free app-N)")
@pass_context
@guarded
def users_password_add(context: Context, address: str, label: str | None) -> None:
    """Make a new app password and print it, alone on stdout: it is shown this once."""
    with _credential_errors():
        password = credentials.add_password(context.database(), address, utcnow(), label=label)
    click.echo(password)


@users_password.command("list")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def users_password_list(context: Context, address: str, as_json: bool) -> None:
    """List the principal's app passwords: label, created, last used."""
    with _credential_errors():
        entries = credentials.list_passwords(context.database(), address)
    rows = [
        {"label": e.label, "created": e.created_at.isoformat(),
         "last_used": e.last_used_at.isoformat() if e.last_used_at else None}
        for e in entries
    ]
    if not as_json:
        rows = [{**r, "last_used": r["last_used"] or "never"} for r in rows]
    emit(rows, as_json, ["label", "created", "last_used"])


@users_password.command("revoke")
@click.argument("address")
@click.argument("label")
@pass_context
@guarded
def users_password_revoke(context: Context, address: str, label: str) -> None:
    """Revoke an app password: it stops working at once."""
    with _credential_errors():
        credentials.revoke_password(context.database(), address, label)
    click.echo(f"revoked {label}")


@cli.command("freebusy")
@click.argument("addresses", nargs=-1, required=True)
@click.option("--start", required=True, help="ISO 8601 date-time (UTC unless it names a zone)")
@click.option("--end", required=True, help="ISO 8601 date-time")
@pass_context
@guarded
def freebusy_command(context: Context, addresses: tuple[str, ...], start: str, end: str) -> None:
    """Print one VFREEBUSY with the busy time of the local principals together."""
    try:
        first, last = freebusy.read_window(start, end, utcnow())
    except freebusy.WindowError as error:
        raise Exit(EX_USAGE, f"--start/--end: {error}") from error
    with context.database().transaction() as session:
        principals = [context.principal(session, a) for a in addresses]
        result = freebusy.published(session, principals, first, last, utcnow())
    click.echo(serialize_calendar(result), nl=False)


@cli.group()
def calendar() -> None:
    """Principals' calendars."""


@calendar.command("export")
@click.argument("address")
@click.option("--uid", default=None, help="only this object")
@pass_context
@guarded
def calendar_export(context: Context, address: str, uid: str | None) -> None:
    """Print the principal's stored objects as one iCalendar stream; an invalid one is left out, with an error."""
    with context.database().transaction() as session:
        export = publishing.calendar_export(session, context.principal(session, address).id, uid)
    if uid is not None and not export.left_out and not components_of(export.calendar):
        raise Exit(EX_DATAERR, f"{address} has no object {uid}")
    for left_out in export.left_out:
        log.error("calendar export of %s left out %s", address, left_out.describe())
    if uid is not None and export.left_out:
        raise Exit(EX_DATAERR, f"{address}'s object {export.left_out[0].describe()} is not valid iCalendar")
    click.echo(serialize_calendar(export.calendar), nl=False)


@cli.command("inbox")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True)
@page_options
@pass_context
@guarded
def inbox_list(context: Context, address: str, as_json: bool, limit: int, after_id: int) -> None:
    """Scheduling messages recorded for a principal, oldest first: method, UID, outcome, reason."""
    with context.database().transaction() as session:
        principal_id = context.principal(session, address).id
        entries = inbox.list_entries(session, principal_id, limit, after_id=after_id)
        last_id = entries[-1].id if entries else after_id
        more = inbox.count_entries(session, principal_id, after_id=last_id) if len(entries) == limit else 0
        rows = [
            {
                "id": e.id, "received_at": e.received_at.isoformat(), "method": e.method, "uid": e.uid,
                "sender": e.sender, "outcome": e.outcome, "reason": e.reason, "detail": e.detail,
                "intake_id": e.intake_id,
            }
            for e in entries
        ]
    emit(rows, as_json, ["id", "received_at", "method", "uid", "sender", "outcome", "reason"])
    emit_more(more, last_id, as_json)


@cli.group()
def event() -> None:
    """A local principal changes its calendar; implicit scheduling follows."""


def _report(change: events.Change) -> None:
    for message in change.messages:
        click.echo(f"{message.method.value} {change.uid} -> {', '.join(message.recipients)}")
    for applied in change.applied:
        click.echo(f"  {applied.principal.address}: {applied.result.outcome.value} {applied.result.reason}".rstrip())


@event.command("put")
@click.option("--as", "actor", required=True, metavar="ADDRESS")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@pass_context
@guarded
def event_put(context: Context, actor: str, source: Any) -> None:
    """Create or change an object from an iCalendar file (- for stdin)."""
    text = source.read()
    with context.database().transaction() as session:
        actor_ref = context.principal(session, actor)
        change = events.put_event(session, actor_ref, text, utcnow(), context.trust().room_rules)
    click.echo(f"stored {change.uid}")
    _report(change)


@event.command("delete")
@click.option("--as", "actor", required=True, metavar="ADDRESS")
@click.argument("uid")
@pass_context
@guarded
def event_delete(context: Context, actor: str, uid: str) -> None:
    """Delete an object; attendees get a CANCEL, or the organizer a decline."""
    with context.database().transaction() as session:
        change = events.delete_event(session, context.principal(session, actor), uid, utcnow())
    click.echo(f"deleted {uid}")
    _report(change)


@event.command("reply")
@click.option("--as", "actor", required=True, metavar="ADDRESS")
@click.argument("uid")
@click.option("--partstat", required=True, type=click.Choice([p.value for p in PartStat], case_sensitive=False))
@click.option("--recurrence-id", default=None, metavar="DT", help="answer for one instance only")
@click.option("--comment", default=None, metavar="TEXT")
@pass_context
@guarded
def event_reply(
    context: Context, actor: str, uid: str, partstat: str, recurrence_id: str | None, comment: str | None
) -> None:
    """Answer an invitation as a local attendee."""
    with context.database().transaction() as session:
        change = events.reply_event(
            session, context.principal(session, actor), uid, PartStat(partstat.upper()), utcnow(),
            recurrence_id=recurrence_id, comment=comment,
        )
    click.echo(f"answered {uid} {partstat.upper()}")
    _report(change)
