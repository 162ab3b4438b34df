"""Commands for mail flow: ``ingest``, ``serve``, and the queues (``outbox``, ``quarantine``)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from gateway.adapters import logformat
from gateway.cli.base import (
    EX_CONFIG,
    EX_DATAERR,
    EX_NOUSER,
    EX_OSERR,
    EX_TEMPFAIL,
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
from gateway.adapters.clock import utcnow
from gateway.settings.config import Config, ConfigError
from gateway.core.mail.envelope import Envelope
from gateway.service import delivery_attempts, processing, quarantine, routing
from gateway.store import intake, outbox
from gateway.store.db import SchemaOutdated
from gateway.store.intake import IntakeState
from gateway.store.outbox import OutboxState


@cli.command()
@click.option("--recipient", "recipients", multiple=True, metavar="ADDR", help="envelope recipient (repeatable)")
@click.option("--sender", default="", metavar="ADDR", help="envelope sender")
@click.argument("source", default="-", metavar="[FILE|-]")
@pass_context
@guarded
def ingest(context: Context, recipients: tuple[str, ...], sender: str, source: str) -> None:
    """Take one RFC 5322 message (for MTA pipe transports) and apply it.

    A message over the listeners' size limit is refused for good (exit 65, output
    starting ``5.3.4``), as the listeners refuse it with 552 5.3.4; a recipient who is
    not a local principal (nor a reply or bounce address) is refused for good (exit 67,
    ``5.1.1``), as the transport listeners refuse it with 550 5.1.1.
    """
    limit = ingest_limit(context.config)
    raw = _read_message(source, limit)
    if len(raw) > limit:  # no log line: an MTA's pipe reads the first line of the output for its bounce
        raise Exit(EX_DATAERR, f"message too large: over {limit} bytes ([smtp]/[lmtp] max_message_size)",
                   status="5.3.4")
    db = context.database()
    with db.transaction() as session:
        unknown = [r for r in recipients if not routing.is_deliverable(session, r, utcnow())]
    if unknown:
        raise Exit(EX_NOUSER, f"<{unknown[0]}>: no such local principal", status="5.1.1")
    try:
        receipt = processing.ingest_message(db, raw, Envelope(sender, recipients, "ingest"), utcnow(), context.trust(),
                                         context.config.message_timeout)
    except OperationalError:
        raise
    except Exception as error:  # the message is not durable: the MTA must try again
        logging.getLogger(__name__).exception("ingest failed")
        raise Exit(EX_TEMPFAIL, f"temporary failure: {type(error).__name__}: {error}") from error
    reason = f" ({receipt.reason})" if receipt.reason else ""
    click.echo(f"intake {receipt.intake_id}: {receipt.state.value}{reason}")


def ingest_limit(config: Config) -> int:
    """The largest message ``ingest`` takes: the smaller of ``[smtp]`` and ``[lmtp]`` max_message_size.

    So a message that either listener would refuse is refused on the pipe too.
    """
    return min(config.smtp_options.max_message_size, config.lmtp_options.max_message_size)


def _read_message(source: str, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes: enough to know a message is too large without holding all of it."""
    try:
        if source == "-":
            return sys.stdin.buffer.read(limit + 1)
        with open(source, "rb") as stream:
            return stream.read(limit + 1)
    except OSError as error:
        raise Exit(EX_USAGE, f"cannot read {source}: {error.strerror}") from error


@cli.command()
@pass_context
@guarded
def serve(context: Context) -> None:
    """Run the SMTP/LMTP listeners, the IMAP pollers and the processors until SIGTERM."""
    from gateway.daemon import ServeError, run_daemon

    context.check_files()  # before anything listens: a missing key file is exit 78, not a half-started daemon
    logformat.configure(context.config.log.level, context.config.log.format)  # a daemon logs its state changes
    for noisy in ("mail.log", "alembic"):  # aiosmtpd logs every SMTP command, alembic its setup
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code = run_daemon(context.config, context.config_path)
    except (SchemaOutdated, ConfigError) as error:  # a policy file that does not load included
        raise Exit(EX_CONFIG, str(error)) from error
    except ServeError as error:
        raise Exit(EX_OSERR, f"cannot serve: {error}") from error
    if code:
        raise Exit(code, "stopped with an error")


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
                "state": m.state.value, "attempts": m.attempts, "created_at": m.created_at.isoformat(),
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
        outbox.retry(session, outbox_id, utcnow(), states)
    click.echo(f"outbox {outbox_id}: queued")


@outbox_group.command("drop")
@click.argument("outbox_id", type=int)
@pass_context
@guarded
def outbox_drop(context: Context, outbox_id: int) -> None:
    """Give up on a queued or failed message; the organizer's copy of a queued one says 5.1."""
    with context.database().transaction() as session:
        delivery_attempts.drop_message(session, outbox_id, utcnow())
    click.echo(f"outbox {outbox_id}: dropped")


@outbox_group.command("flush")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def outbox_flush(context: Context, as_json: bool) -> None:
    """Try every queued message now, backoff or not (like ``postqueue -f``), and say what became of each.

    A message not yet due that is deferred again keeps its schedule and its attempt count:
    an attempt the operator forces does not make the daemon wait longer, nor fail the
    message for its age. Delivered is sent, refused for good is failed, as at any attempt.
    """
    from gateway.edges.sender import Sender

    config = context.config
    try:
        sender = Sender(config, context.database(), delivery_attempts.composer_for(config))
    except (ConfigError, delivery_attempts.ComposerUnavailable) as error:
        raise Exit(EX_CONFIG, str(error)) from error
    results = asyncio.run(sender.flush())
    if as_json:
        emit([_send_record(r) for r in results], True, [])
    elif results:
        for result in results:
            click.echo(_send_line(result))
    else:
        click.echo("nothing is queued")


# What a flush says became of a message; a row that stays queued was deferred.
FLUSH_RESULTS = {OutboxState.SENT: "sent", OutboxState.QUEUED: "deferred", OutboxState.FAILED: "failed",
                 OutboxState.DROPPED: "dropped"}


def _send_record(result: delivery_attempts.SendResult) -> dict[str, Any]:
    return {
        "id": result.outbox_id, "recipient": result.recipient, "result": FLUSH_RESULTS[result.state],
        "detail": result.detail, "message_id": result.message_id,
        "next_attempt_at": result.next_attempt_at.isoformat() if result.next_attempt_at else None,
        "schedule_status": result.schedule_status.value if result.schedule_status else None,
    }


def _send_line(result: delivery_attempts.SendResult) -> str:
    line = f"outbox {result.outbox_id} {result.recipient}: {FLUSH_RESULTS[result.state]}"
    if result.next_attempt_at is not None:
        line += f", next attempt {result.next_attempt_at.isoformat(timespec='seconds')}"
    if result.schedule_status is not None:
        line += f", SCHEDULE-STATUS {result.schedule_status.value}"
    return f"{line} ({result.detail})" if result.detail else line


@cli.group("quarantine", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@page_options
@click.pass_context
def quarantine_group(ctx: click.Context, as_json: bool, limit: int, after_id: int) -> None:
    """Messages held with a reason, oldest first (list; release, drop)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(quarantine_list, as_json=as_json, limit=limit, after_id=after_id)


@pass_context
@guarded
def quarantine_list(context: Context, as_json: bool, limit: int, after_id: int) -> None:
    with context.database().transaction() as session:
        held = intake.list_in_state(session, IntakeState.HELD, limit, after_id=after_id)
        last_id = held[-1].id if held else after_id
        more = intake.count_in_state(session, IntakeState.HELD, after_id=last_id) if len(held) == limit else 0
        rows = [
            {
                "id": m.id, "received_at": m.received_at.isoformat(), "source": m.source,
                "sender": m.envelope_sender, "recipients": list(m.recipients), "message_id": m.message_id,
                "reason": m.reason, "detail": m.detail,
            }
            for m in held
        ]
    if not as_json:
        rows = [{**r, "recipients": ", ".join(m.recipients)} for r, m in zip(rows, held)]
    emit(rows, as_json, ["id", "received_at", "sender", "recipients", "reason", "detail"])
    emit_more(more, last_id, as_json)


@quarantine_group.command("show")
@click.argument("intake_id", type=int)
@click.option("--raw", is_flag=True, help="print the message itself, as it arrived")
@pass_context
@guarded
def quarantine_show(context: Context, intake_id: int, raw: bool) -> None:
    """What a held message is and why it is held: sender, subject, method, UID, summary, organizer, attendees."""
    with context.database().transaction() as session:
        try:
            held = quarantine.describe_held(session, intake_id)
        except intake.IntakeNotFound as error:
            raise Exit(EX_DATAERR, str(error)) from error
    if raw:
        click.echo(held.raw.decode("utf-8", "replace"), nl=False)
        return
    lines = [f"intake {held.id}: held ({held.reason}){': ' + held.detail if held.detail else ''}",
             f"envelope: from <{held.sender}> to {', '.join(held.recipients)}",
             f"from: {held.from_address}", f"subject: {held.subject}", f"message-id: {held.message_id}"]
    for number, part in enumerate(held.parts, 1):
        if part.problem:
            lines.append(f"calendar part {number}: unreadable: {part.problem}")
            continue
        lines += [f"calendar part {number}: {part.method} {part.uid}", f"  summary: {part.summary}",
                  f"  organizer: {part.organizer}", f"  attendees: {', '.join(part.attendees)}"]
    click.echo("\n".join(lines))


@quarantine_group.command("release")
@click.argument("intake_id", type=int)
@pass_context
@guarded
def quarantine_release(context: Context, intake_id: int) -> None:
    """Apply a held message as if the policy had accepted it."""
    receipt = processing.release_held(context.database(), intake_id, utcnow(), context.trust(),
                                   context.config.message_timeout)
    reason = f" ({receipt.reason})" if receipt.reason else ""
    click.echo(f"intake {intake_id}: {receipt.state.value}{reason}")


@quarantine_group.command("drop")
@click.argument("intake_id", type=int)
@pass_context
@guarded
def quarantine_drop(context: Context, intake_id: int) -> None:
    """Discard a held message."""
    processing.drop_held(context.database(), intake_id, utcnow())
    click.echo(f"intake {intake_id}: dropped")
