"""SMTP and LMTP intake (RFC 5321, RFC 2033): 250 only once the message is committed. No parsing here.

One aiosmtpd handler serves both protocols. The message bytes and the envelope become
one intake row, committed in a worker thread together with the messages that arrived
at the same moment (``groupcommit``), so that the event loop never waits for the
database; then the processors are woken. Over LMTP every
accepted recipient gets its own reply after DATA (RFC 2033 §4.2), which aiosmtpd
leaves to the handler; its own one-line answers after DATA (too big, line too long)
are repeated per recipient here. Any unexpected error, a database that is down
included, is a temporary failure (451 4.3.0), never aiosmtpd's default permanent 500.

With a ``next_hop`` the listener stands in front of the mailboxes: every message is
handed on, unchanged, before it is answered, and each recipient gets the mailbox's own
answer (a refusal stays a refusal). What the mailbox accepted is committed with the
intake row, so a retry of the same message is answered without a second delivery.
Reefknot's own reply and bounce addresses are not handed on. Over SMTP, whose single
answer after DATA cannot differ per recipient, such a listener takes one recipient a
transaction (452 for the next, RFC 5321 §4.5.3.1.10).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import socket
import ssl
import stat
import weakref
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.exc import OperationalError

from gateway.adapters.clock import utcnow
from gateway.core.mail.envelope import Envelope
from gateway.core.mail.replyaddress import read_token_address
from gateway.edges.groupcommit import GroupCommitter
from gateway.edges.nexthop import NextHopClient
from gateway.service import routing
from gateway.service.handoff import DELIVERED_ELSEWHERE, HandedOn, already_delivered, message_digest
from gateway.service.localaddresses import LocalAddresses
from gateway.settings.config import IntakeOptions, Listener, Network
from gateway.store.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

RCPT_OK = "250 2.1.5 Ok"
QUEUED = "250 2.0.0 Ok: queued as {intake_id}"
NO_SUCH_PRINCIPAL = "550 5.1.1 <{address}>: no such local principal"
TEMPFAIL = "451 4.3.0 Temporary failure, try again later"
TOO_BIG = "552 5.3.4 Message too big for system"
ACCESS_DENIED = "554 5.7.1 Access denied"
SHUTTING_DOWN = "421 4.3.2 Service shutting down"
ONE_RECIPIENT = "452 4.5.3 One recipient per message here, send the others again"
ALREADY_DELIVERED = "250 2.0.0 Ok: already delivered"
COMMIT_TRIES = 3  # a delivered message whose record fails is tried again before the MTA is asked to retry
# aiosmtpd's own replies, given their enhanced status codes (RFC 3463).
STOCK_REPLIES = {
    "552 Error: Too much mail data": TOO_BIG,
    "552 Error: message size exceeds fixed maximum message size": TOO_BIG,
}


class Mode(StrEnum):
    TRANSPORT = "transport"  # Reefknot is the transport for local principals: unknown ones are refused
    COPY = "copy"  # the MTA delivers the mail and sends Reefknot a copy: every recipient is accepted


class IntakeHandler:
    """The aiosmtpd handler: check recipients, make each message durable, answer."""

    def __init__(
        self, db: Database, committer: GroupCommitter, wake: Callable[[], None], *, source: str, mode: Mode,
        lmtp: bool, local: LocalAddresses, next_hop: NextHopClient | None = None,
    ) -> None:
        """``local``: the daemon's one view of the directory's addresses, shared by its listeners."""
        self.db = db
        self.next_hop = next_hop
        self.committer = committer
        self.wake = wake
        self.source = source
        self.mode = mode
        self.lmtp = lmtp
        self._pending: set[asyncio.Future[Any]] = set()
        self._local = local

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, address: str, options: list[str]
    ) -> str:
        if self.next_hop is not None and not self.lmtp and envelope.rcpt_tos:
            return ONE_RECIPIENT
        mailbox = self.next_hop is not None and read_token_address(address) is None  # the mailbox will say
        if self.mode is Mode.TRANSPORT and not mailbox and not await self._is_local_principal(address):
            log.info("%s from %s: refused recipient %s (no such local principal)", self.source, _peer(session), address)
            return NO_SUCH_PRINCIPAL.format(address=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return RCPT_OK

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope) -> str:
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        if self.next_hop is not None:  # once handed on, it must be recorded: neither a client going away nor a
            # shutdown may cut it short
            return await self._finished(asyncio.ensure_future(self._hand_on(self.next_hop, session, envelope, sender)))
        try:
            mail = Envelope(sender, await self._recipients(envelope), self.source)
            delivered = DELIVERED_ELSEWHERE if self.mode is Mode.COPY else None
            intake_id = await self.committer.enqueue(envelope.original_content or b"", mail, delivered)
        except Exception as error:
            _log_failure(f"{self.source} from {_peer(session)}: message not taken", error)
            return self._answer(envelope, TEMPFAIL)
        self.wake()
        return self._answer(envelope, QUEUED.format(intake_id=intake_id))

    async def _recipients(self, envelope: SmtpEnvelope) -> tuple[str, ...]:
        """The envelope's recipients; a copy sent to none of the local principals (a collecting address, as
        ``recipient_bcc_maps`` gives) is for the local principals the message names: no recipients."""
        if self.mode is Mode.COPY:
            local = [r for r in envelope.rcpt_tos if await self._is_local_principal(r)]
            return tuple(local)
        return tuple(envelope.rcpt_tos)

    async def _hand_on(self, hop: NextHopClient, session: SmtpSession, envelope: SmtpEnvelope, sender: str) -> str:
        """Hand the message to the mailboxes that do not have it yet, commit what they took, answer each recipient."""
        raw = envelope.original_content or b""
        recipients = list(envelope.rcpt_tos)
        own = [r for r in recipients if read_token_address(r) is not None]
        digest = message_digest(sender, raw)
        try:
            before = await self._look_up(already_delivered, self.db, digest, [r for r in recipients if r not in own])
        except Exception as error:
            _log_failure(f"{self.source} from {_peer(session)}: message not handed on", error)
            return self._answer(envelope, TEMPFAIL)
        due = [r for r in recipients if r not in own and r.lower() not in before]
        replies = dict(zip(due, await hop.hand_on(sender, due, raw) if due else [], strict=True))
        taken = [r for r in due if replies[r].accepted]
        answers = {r: ALREADY_DELIVERED for r in recipients if r.lower() in before}
        for recipient, reply in replies.items():
            if not reply.accepted:
                log.info("%s from %s: %s not taken by %s: %s", self.source, _peer(session), recipient, hop.hop, reply)
                answers[recipient] = str(reply)
        if taken or own:
            queued = await self._commit_handed(session, raw, Envelope(sender, (*taken, *own), self.source),
                                               HandedOn(digest, tuple(taken)))
            answers |= dict.fromkeys((*taken, *own), queued)
        replies_in_order = [answers[r] for r in recipients]
        return "\r\n".join(replies_in_order) if self.lmtp else replies_in_order[0]

    async def _commit_handed(self, session: SmtpSession, raw: bytes, mail: Envelope, handed: HandedOn) -> str:
        """Commit a message the mailboxes took; the answer for its recipients. A failure is tried again first,
        because answering 451 now makes the MTA send it again and the mailboxes get it twice."""
        for attempt in range(1, COMMIT_TRIES + 1):
            try:
                intake_id = await self.committer.enqueue(raw, mail, handed)
            except Exception as error:
                if attempt == COMMIT_TRIES:
                    _log_failure(f"{self.source} from {_peer(session)}: handed on to {', '.join(handed.recipients)}"
                                 " but not recorded (a retry by the MTA will deliver it again)", error)
                    return TEMPFAIL
                await asyncio.sleep(0.2 * attempt)
            else:
                self.wake()
                return QUEUED.format(intake_id=intake_id)
        return TEMPFAIL

    async def handle_exception(self, error: Exception) -> str:
        _log_failure(f"{self.source}: command failed", error)
        return TEMPFAIL

    async def drain(self) -> None:
        """Wait until every lookup and commit that has started has finished (answered or not)."""
        while self._pending:
            await asyncio.wait(set(self._pending))
        await self.committer.drain()

    def _answer(self, envelope: SmtpEnvelope, reply: str) -> str:
        """The reply after DATA: once over SMTP, once for each accepted recipient over LMTP (RFC 2033 §4.2)."""
        return "\r\n".join([reply] * len(envelope.rcpt_tos)) if self.lmtp else reply

    async def prepare(self) -> None:
        """Read the directory's addresses before the first RCPT needs them (best effort: a RCPT reads them too)."""
        if self.mode is Mode.TRANSPORT:
            try:
                await self._look_up(self._local.refresh)
            except Exception as error:  # the database is down: the first RCPT tries again, and answers 451 if it must
                log.warning("%s: the directory could not be read yet: %s", self.source, error)

    async def _is_local_principal(self, address: str) -> bool:
        """A local principal's address or alias (from the listener's view of the directory), or a reply or bounce
        address whose token is known (from the database)."""
        if read_token_address(address) is None:
            if self._local.known(address):
                return True
            await self._look_up(self._local.refresh)
            return self._local.known(address)
        return await self._look_up(self._is_deliverable, address)

    def _is_deliverable(self, address: str) -> bool:
        with self.db.reading() as session:
            return routing.is_deliverable(session, address, utcnow())

    async def _look_up(self, function: Callable[..., T], *args: Any) -> T:
        """Run a lookup in the worker pool; it only reads, so it waits for no writer. A client that goes away does
        not cancel it."""
        work = functools.partial(function, *args)
        return await self._finished(asyncio.get_running_loop().run_in_executor(self.committer.executor, work))

    async def _finished(self, future: asyncio.Future[T]) -> T:
        """Await work that must run to its end whoever stops waiting for it; ``drain`` waits for it too."""
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return await asyncio.shield(future)


def _log_failure(what: str, error: Exception) -> None:
    """One line for a database that is down (it says all there is to say); a traceback for anything else."""
    if isinstance(error, OperationalError):
        reason = str(error.orig or error).strip().splitlines()[0]
        log.error("%s, answered 451: database unavailable: %s", what, reason)
    else:
        log.error("%s, answered 451: %s: %s", what, type(error).__name__, error, exc_info=error)


def _peer(session: SmtpSession) -> str:
    peer = session.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix socket"


class _IntakeProtocol(SMTP):
    """aiosmtpd's SMTP with enhanced status codes, a client network check and a registry of open connections."""

    replies_per_recipient = False

    def __init__(self, handler: IntakeHandler, *, allowed: tuple[Network, ...], connections: weakref.WeakSet[Any],
                 **options: Any) -> None:
        super().__init__(handler, **options)
        self._allowed = allowed
        self._connections = connections
        self._refused = False
        self._replies_due = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # not the second call after STARTTLS
            peer = transport.get_extra_info("peername")
            if not is_allowed(peer, self._allowed):
                log.warning("refused a connection from %s: not in allowed_networks", peer[0])
                self._refused = True
                transport.write(f"{ACCESS_DENIED}\r\n".encode())  # type: ignore[attr-defined]
                transport.close()
                return
            self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        if not self._refused:
            super().connection_lost(error)

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = STOCK_REPLIES.get(status, status)
            if self.replies_per_recipient:
                status = self._per_recipient(status)
        await super().push(status)

    def _per_recipient(self, status: str) -> str:
        """After DATA, repeat a one-line reply for every accepted recipient (RFC 2033 §4.2)."""
        if self._replies_due:
            count, self._replies_due = self._replies_due, 0
            return status if "\r\n" in status else "\r\n".join([status] * count)
        if status.startswith("354") and self.envelope is not None:
            self._replies_due = len(self.envelope.rcpt_tos)
        return status

    def close_for_shutdown(self) -> None:
        if self.transport is not None:
            self.transport.write(f"{SHUTTING_DOWN}\r\n".encode())  # type: ignore[attr-defined]
            self.transport.close()


class SMTPProtocol(_IntakeProtocol):
    pass


class LMTPProtocol(_IntakeProtocol, LMTP):
    replies_per_recipient = True


def is_allowed(peer: Any, networks: tuple[Network, ...]) -> bool:
    """True when the peer may connect: no list, a unix socket, or an address in one of the networks."""
    if not networks or not isinstance(peer, tuple):
        return True
    address = ipaddress.ip_address(peer[0].split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for STARTTLS from PEM files (clients are not asked for certificates)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class IntakeListener:
    """One listening socket of one protocol, with the connections it has open."""

    def __init__(self, protocol: str, address: Listener, options: IntakeOptions, handler: IntakeHandler) -> None:
        self.protocol = protocol
        self.address = address
        self.options = options
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._connections: weakref.WeakSet[_IntakeProtocol] = weakref.WeakSet()
        self._tls = tls_context(options.tls_cert, options.tls_key) if options.tls_cert else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.handler.prepare()
        if self.address.path:
            _remove_stale_socket(self.address.path)
            self._server = await loop.create_unix_server(self._protocol, self.address.path)
            os.chmod(self.address.path, 0o666)  # who may connect is up to the directory it lives in
        else:
            host = self.address.host or None
            self._server = await loop.create_server(self._protocol, host, self.address.port, reuse_address=True)
        hop = self.handler.next_hop
        onward = f", every message handed on to {hop.hop}" if hop else ""
        log.info("%s listening on %s (%s mode%s)", self.protocol, self.address, self.handler.mode.value, onward)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            if self.address.path:
                _remove_stale_socket(self.address.path)

    async def close(self) -> None:
        """Let the commits in progress finish and answer, then close every connection (421)."""
        await self.handler.drain()
        for connection in list(self._connections):
            connection.close_for_shutdown()

    def _protocol(self) -> _IntakeProtocol:
        kind = LMTPProtocol if self.protocol == "lmtp" else SMTPProtocol
        return kind(
            self.handler,
            allowed=self.options.allowed_networks,
            connections=self._connections,
            data_size_limit=self.options.max_message_size,
            enable_SMTPUTF8=True,
            hostname=self.options.hostname or socket.gethostname(),
            ident="Reefknot",
            tls_context=self._tls,
            loop=asyncio.get_running_loop(),
        )


def _remove_stale_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
