"""The ``reefknot`` command: argument parsing and output only; the work is in ``gateway.service``.

Exit codes follow sysexits(3): 0 done, 64 usage, 65 bad input data, 71 cannot listen
(EX_OSERR), 75 try again later (EX_TEMPFAIL, what an MTA pipe transport retries),
78 configuration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from functools import wraps
from typing import Any, TypeVar

import click
from sqlalchemy.exc import OperationalError

from gateway.config import Config, ConfigError, load_config
from gateway.core.ical import merge_calendars, parse_calendar, serialize_calendar
from gateway.core.model import Kind, PartStat
from gateway.service import events, outbound, receive
from gateway.store import calendars, directory, inbox, intake, outbox
from gateway.store.db import Database, SchemaOutdated
from gateway.store.directory import DirectoryError, PrincipalRef
from gateway.store.intake import Envelope, IntakeNotFound, IntakeState
from gateway.store.outbox import OutboxNotFound, OutboxState

EX_USAGE, EX_DATAERR, EX_OSERR, EX_TEMPFAIL, EX_CONFIG = 64, 65, 71, 75, 78
F = TypeVar("F", bound=Callable[..., Any])


class Exit(Exception):
    """Leave the command with a sysexits code and a message on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Context:
    """What every command shares: the configuration and, on first use, the database."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None
        self._db: Database | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as error:
                raise Exit(EX_CONFIG, str(error)) from error
        return self._config

    def database(self, *, prepare: bool = True) -> Database:
        if self._db is None:
            self._db = Database(self.config.database_url)
            if prepare:
                try:
                    self._db.ensure_schema()
                except SchemaOutdated as error:
                    raise Exit(EX_CONFIG, str(error)) from error
        return self._db

    def principal(self, session: Any, address: str) -> PrincipalRef:
        found = directory.resolve(session, address)
        if found is None:
            raise Exit(EX_DATAERR, f"no local principal {address}")
        return found


def guarded(function: F) -> F:
    """Turn expected failures into exit codes; a database that is down is a temporary failure."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except OperationalError as error:
            raise Exit(EX_TEMPFAIL, f"database unavailable: {error.orig}") from error
        except (DirectoryError, IntakeNotFound, OutboxNotFound) as error:
            raise Exit(EX_DATAERR, str(error)) from error
        except events.EventError as error:
            raise Exit(EX_DATAERR, str(error)) from error

    return wrapper  # type: ignore[return-value]


def emit(rows: Iterable[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    """Print rows as JSON lines, or as an aligned table."""
    rows = list(rows)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str, ensure_ascii=False))
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


@click.group()
@click.option("--config", "config_path", metavar="FILE", help="configuration file (else $REEFKNOT_CONFIG, ./reefknot.toml)")
@click.option("-v", "--verbose", is_flag=True, help="log what happens to stderr")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Reefknot: calendar scheduling over email (iMIP, iTIP)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(config_path)


pass_context = click.make_pass_decorator(Context)


@cli.command()
@click.option("--recipient", "recipients", multiple=True, metavar="ADDR", help="envelope recipient (repeatable)")
@click.option("--sender", default="", metavar="ADDR", help="envelope sender")
@click.argument("source", default="-", metavar="[FILE|-]")
@pass_context
@guarded
def ingest(context: Context, recipients: tuple[str, ...], sender: str, source: str) -> None:
    """Take one RFC 5322 message (for MTA pipe transports) and apply it."""
    try:
        raw = sys.stdin.buffer.read() if source == "-" else open(source, "rb").read()
    except OSError as error:
        raise Exit(EX_USAGE, f"cannot read {source}: {error.strerror}") from error
    db = context.database()
    try:
        receipt = receive.ingest_message(db, raw, Envelope(sender, recipients, "ingest"), utcnow())
    except OperationalError:
        raise
    except Exception as error:  # the message is not durable: the MTA must try again
        logging.getLogger(__name__).exception("ingest failed")
        raise Exit(EX_TEMPFAIL, f"temporary failure: {type(error).__name__}: {error}") from error
    reason = f" ({receipt.reason})" if receipt.reason else ""
    click.echo(f"intake {receipt.intake_id}: {receipt.state.value}{reason}")


@cli.command()
@pass_context
@guarded
def serve(context: Context) -> None:
    """Run the SMTP/LMTP listeners, the IMAP pollers and the processors until SIGTERM."""
    from gateway.daemon import ServeError, run_daemon

    logging.getLogger().setLevel(logging.INFO)  # a daemon logs its state changes
    for noisy in ("mail.log", "alembic"):  # aiosmtpd logs every SMTP command, alembic its setup
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code = run_daemon(context.config, context.config_path)
    except SchemaOutdated as error:
        raise Exit(EX_CONFIG, str(error)) from error
    except ServeError as error:
        raise Exit(EX_OSERR, f"cannot serve: {error}") from error
    if code:
        raise Exit(code, "stopped with an error")


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
@pass_context
@guarded
def users_remove(context: Context, address: str) -> None:
    """Remove a local principal with its calendar and inbox."""
    with context.database().transaction() as session:
        ref = directory.remove_principal(session, address)
    click.echo(f"removed {ref.address}")


@cli.group()
def calendar() -> None:
    """Principals' calendars."""


@calendar.command("export")
@click.argument("address")
@click.option("--uid", default=None, help="only this object")
@pass_context
@guarded
def calendar_export(context: Context, address: str, uid: str | None) -> None:
    """Print the principal's stored objects as one iCalendar stream."""
    with context.database().transaction() as session:
        texts = calendars.list_objects(session, context.principal(session, address).id, uid)
    if uid is not None and not texts:
        raise Exit(EX_DATAERR, f"{address} has no object {uid}")
    click.echo(serialize_calendar(merge_calendars(parse_calendar(t) for t in texts)), nl=False)


@cli.command("inbox")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def inbox_list(context: Context, address: str, as_json: bool) -> None:
    """Scheduling messages recorded for a principal: method, UID, outcome, reason."""
    with context.database().transaction() as session:
        entries = inbox.list_entries(session, context.principal(session, address).id)
        rows = [
            {
                "id": e.id, "received_at": e.received_at.isoformat(), "method": e.method, "uid": e.uid,
                "sender": e.sender, "outcome": e.outcome, "reason": e.reason, "detail": e.detail,
                "intake_id": e.intake_id,
            }
            for e in entries
        ]
    emit(rows, as_json, ["id", "received_at", "method", "uid", "sender", "outcome", "reason"])


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
        change = events.put_event(session, context.principal(session, actor), text, utcnow())
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


@cli.group("outbox", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def outbox_group(ctx: click.Context, as_json: bool) -> None:
    """The outbound queue (list; retry, drop, flush)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(outbox_list, as_json=as_json)


@pass_context
@guarded
def outbox_list(context: Context, as_json: bool) -> None:
    with context.database().transaction() as session:
        rows: list[dict[str, Any]] = [
            {
                "id": m.id, "method": m.method, "uid": m.uid, "sender": m.sender, "recipients": [m.recipient],
                "state": m.state, "attempts": m.attempts, "created_at": m.created_at.isoformat(),
                "next_attempt_at": m.next_attempt_at.isoformat(),
                "finished_at": m.finished_at.isoformat() if m.finished_at else None,
                "last_error": m.last_error, "message_id": m.message_id,
            }
            for m in outbox.list_messages(session)
        ]
    if not as_json:
        rows = [{**r, "recipients": ", ".join(r["recipients"])} for r in rows]
    emit(rows, as_json, ["id", "method", "uid", "recipients", "state", "attempts", "last_error"])


@outbox_group.command("retry")
@click.argument("outbox_id", type=int)
@pass_context
@guarded
def outbox_retry(context: Context, outbox_id: int) -> None:
    """Make a queued, failed or dropped message due now, its backoff started afresh.

    Its lifetime still counts from when it was queued: past it, it gets one more attempt.
    """
    states = (OutboxState.QUEUED, OutboxState.FAILED, OutboxState.DROPPED)
    with context.database().transaction() as session:
        outbox.retry(outbox.get(session, outbox_id, states=states), utcnow())
    click.echo(f"outbox {outbox_id}: queued")


@outbox_group.command("drop")
@click.argument("outbox_id", type=int)
@pass_context
@guarded
def outbox_drop(context: Context, outbox_id: int) -> None:
    """Give up on a queued or failed message; the organizer's copy of a queued one says 5.1."""
    with context.database().transaction() as session:
        row = outbox.get(session, outbox_id, states=(OutboxState.QUEUED, OutboxState.FAILED))
        outbound.drop_message(session, row, utcnow())
    click.echo(f"outbox {outbox_id}: dropped")


@outbox_group.command("flush")
@pass_context
@guarded
def outbox_flush(context: Context) -> None:
    """Send every message that is due now, once each, and say what became of it."""
    from gateway.edges.sender import Sender

    config = context.config
    try:
        sender = Sender(config, context.database(), outbound.composer_for(config))
    except (ConfigError, outbound.ComposerUnavailable) as error:
        raise Exit(EX_CONFIG, str(error)) from error
    results = asyncio.run(sender.flush())
    for result in results:
        click.echo(_send_line(result))
    if not results:
        click.echo("nothing is due")


def _send_line(result: outbound.SendResult) -> str:
    line = f"outbox {result.outbox_id}: {result.state.value} {result.recipient}"
    if result.next_attempt_at is not None:
        line += f", next attempt {result.next_attempt_at.isoformat(timespec='seconds')}"
    if result.schedule_status is not None:
        line += f", SCHEDULE-STATUS {result.schedule_status.value}"
    return f"{line} ({result.detail})" if result.detail else line


@cli.group("quarantine", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_group(ctx: click.Context, as_json: bool) -> None:
    """Messages held with a reason (list; release, drop)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(quarantine_list, as_json=as_json)


@pass_context
@guarded
def quarantine_list(context: Context, as_json: bool) -> None:
    with context.database().transaction() as session:
        rows = [
            {
                "id": m.id, "received_at": m.received_at.isoformat(), "source": m.source,
                "sender": m.envelope_sender, "recipients": list(m.recipients), "message_id": m.message_id,
                "reason": m.reason, "detail": m.detail,
            }
            for m in intake.list_in_state(session, IntakeState.HELD)
        ]
    if not as_json:
        rows = [{**r, "recipients": ", ".join(r["recipients"])} for r in rows]
    emit(rows, as_json, ["id", "received_at", "sender", "recipients", "reason", "detail"])


@quarantine_group.command("release")
@click.argument("intake_id", type=int)
@pass_context
@guarded
def quarantine_release(context: Context, intake_id: int) -> None:
    """Process a held message again."""
    receipt = receive.release_held(context.database(), intake_id, utcnow())
    reason = f" ({receipt.reason})" if receipt.reason else ""
    click.echo(f"intake {intake_id}: {receipt.state.value}{reason}")


@quarantine_group.command("drop")
@click.argument("intake_id", type=int)
@pass_context
@guarded
def quarantine_drop(context: Context, intake_id: int) -> None:
    """Discard a held message."""
    receive.drop_held(context.database(), intake_id, utcnow())
    click.echo(f"intake {intake_id}: dropped")


@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_context
@guarded
def db_upgrade(context: Context) -> None:
    """Apply schema migrations."""
    context.database(prepare=False).upgrade()
    click.echo("database is up to date")


@cli.command("check-config")
@pass_context
def check_config(context: Context) -> None:
    """Validate the configuration and say where it came from."""
    config = context.config
    click.echo(f"configuration: {config.source}")
    click.echo(f"database: {config.database_url}")


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its sysexits code."""
    try:
        cli.main(args=argv, prog_name="reefknot", standalone_mode=False)
    except Exit as error:
        click.echo(f"reefknot: {error}", err=True)
        return error.code
    except click.exceptions.Abort:
        return 1
    except click.UsageError as error:
        error.show()
        return EX_USAGE
    except click.ClickException as error:
        error.show()
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
