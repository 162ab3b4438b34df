"""The client that hands a message on to the mailboxes: LMTP (RFC 2033) or SMTP (RFC 5321) to a listener's ``next_hop``.

One connection per message, every recipient's own answer: over LMTP one reply after
DATA for each recipient the RCPT accepted (RFC 2033 §4.2), over SMTP the RCPT reply or,
for those accepted, the one reply after DATA. A next hop that cannot be reached, or
that stops answering, gives every recipient a temporary failure. No parsing here.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from gateway.settings.config import NextHop

UNREACHABLE = "451 4.4.1 Mailbox delivery unavailable, try again later"
_DOT_AT_LINE_START = re.compile(rb"^\.", re.MULTILINE)
_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True)
class Reply:
    """One SMTP/LMTP reply: its code and its text, several lines joined by spaces."""

    code: int
    text: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class NextHopUnavailable(Exception):
    """The next hop could not be reached or broke off; nothing was handed on."""


class NextHopClient:
    """Hands messages to one next hop, each over its own connection."""

    def __init__(self, hop: NextHop, *, hostname: str, timeout: float = 60.0) -> None:
        self.hop = hop
        self.hostname = hostname
        self.timeout = timeout

    async def hand_on(self, sender: str, recipients: list[str], raw: bytes) -> list[Reply]:
        """Each recipient's reply, in order; every one a temporary failure when the next hop is unavailable."""
        try:
            return await asyncio.wait_for(self._deliver(sender, recipients, raw), self.timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, NextHopUnavailable, ValueError) as error:
            reply = Reply(451, f"4.4.1 {self.hop}: {_describe(error)}")
            return [reply] * len(recipients)

    async def _deliver(self, sender: str, recipients: list[str], raw: bytes) -> list[Reply]:
        where = self.hop.address
        if where.path:
            reader, writer = await asyncio.open_unix_connection(where.path)
        else:
            reader, writer = await asyncio.open_connection(where.host, where.port)
        session = _Session(reader, writer)
        try:
            return await self._transaction(session, sender, recipients, raw)
        finally:
            writer.close()

    async def _transaction(self, session: _Session, sender: str, recipients: list[str], raw: bytes) -> list[Reply]:
        await session.expect(await session.read(), "greeting")
        hello = "LHLO" if self.hop.protocol == "lmtp" else "EHLO"
        extensions = await session.expect(await session.command(f"{hello} {self.hostname}"), hello)
        options = _mail_options(extensions, [sender, *recipients], raw)
        await session.expect(await session.command(f"MAIL FROM:<{sender}>{options}"), "MAIL")
        replies = [await session.command(f"RCPT TO:<{recipient}>") for recipient in recipients]
        accepted = [i for i, reply in enumerate(replies) if reply.accepted]
        if not accepted:
            await session.quit()
            return replies
        await session.expect(await session.command("DATA"), "DATA", ok=(354,))
        session.writer.write(_data(raw))
        await session.writer.drain()
        if self.hop.protocol == "lmtp":
            after = [await session.read() for _ in accepted]
        else:
            after = [await session.read()] * len(accepted)
        for index, reply in zip(accepted, after, strict=True):
            replies[index] = reply
        await session.quit()
        return replies


class _Session:
    """Commands and replies on one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last_lines: list[str] = []

    async def command(self, line: str) -> Reply:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.read()

    async def read(self) -> Reply:
        """One reply, as many lines as it has (``250-…`` continues, ``250 …`` ends)."""
        lines = []
        while True:
            line = (await self.reader.readuntil(b"\n")).decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise NextHopUnavailable(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line)
            if line[3:4] != "-":
                break
        self.last_lines = [line[4:] for line in lines]
        return Reply(int(lines[0][:3]), " ".join(text for text in self.last_lines if text))

    async def expect(self, reply: Reply, step: str, ok: tuple[int, ...] = ()) -> list[str]:
        """The reply's lines when it is the one wanted; otherwise the transaction ends here."""
        if (reply.code in ok) if ok else reply.accepted:
            return self.last_lines
        raise NextHopUnavailable(f"{step} answered {reply}")

    async def quit(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await self.writer.drain()
        except OSError:
            pass  # the transaction is over; a lost QUIT changes nothing


def _mail_options(extensions: list[str], addresses: list[str], raw: bytes) -> str:
    """BODY=8BITMIME and SMTPUTF8 when the message needs them and the next hop offers them (RFC 6152, RFC 6531)."""
    offered = {line.split()[0].upper() for line in extensions[1:] if line.strip()}
    options = ""
    if "8BITMIME" in offered and any(byte > 127 for byte in raw):
        options += " BODY=8BITMIME"
    if "SMTPUTF8" in offered and not all(address.isascii() for address in addresses):
        options += " SMTPUTF8"
    return options


def _data(raw: bytes) -> bytes:
    """The message as DATA sends it: CRLF line ends, a dot doubled at a line's start, the final dot."""
    body = _DOT_AT_LINE_START.sub(b"..", _BARE_LF.sub(b"\r\n", raw))
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _describe(error: Exception) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__
