"""One SMTP session to the smarthost (RFC 5321): STARTTLS and AUTH when configured, one recipient a transaction.

AUTH goes only inside STARTTLS, or to a smarthost on this machine (loopback, a unix
socket): a SmarthostSession that would send the password in clear text refuses to exist.

Every ``send`` ends as a ``gateway.core.mail.retry.Attempt``: 2xx delivered; 4xx, a dropped
connection or a timeout deferred; 5xx to the transaction refused, and RCPT TO refused
with an RFC 3463 ``5.1.x`` code a bad address. When the smarthost cannot be reached or
refuses the session itself (greeting, EHLO, STARTTLS, AUTH), the rest of the session's
messages are deferred without knocking again: that is about the relay, not the mail.
The connection is opened on first use and kept for the session. Knows nothing about
the outbox or iCalendar.
"""

from __future__ import annotations

import logging
import re
import ssl
from enum import StrEnum
from types import TracebackType
from typing import Any

import aiosmtplib

from gateway.settings.config import ConfigError, Listener, OutboundOptions, check_smarthost_auth
from gateway.core.mail.retry import Attempt, AttemptResult

log = logging.getLogger(__name__)
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


class Stage(StrEnum):
    """Where in the session a reply came: only replies to the transaction can refuse a message for good."""

    SESSION = "session"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


def read_password(options: OutboundOptions) -> str | None:
    """The AUTH password from ``password_file`` (first line), or None without AUTH."""
    if not options.password_file:
        return None
    try:
        with open(options.password_file, encoding="utf-8") as file:
            return file.readline().rstrip("\r\n")
    except OSError as error:
        raise ConfigError(f"[outbound] password_file: cannot read {options.password_file}: {error.strerror}") from error


def attempt_for_reply(stage: Stage, code: int, text: str) -> Attempt:
    """The meaning of one SMTP reply to a message."""
    detail = _one_line(f"{code} {text}")
    if 200 <= code < 300:
        return Attempt(AttemptResult.DELIVERED, detail)
    if 500 <= code < 600 and stage is not Stage.SESSION:
        enhanced = _ENHANCED.match(text)
        if stage is Stage.RCPT and enhanced is not None and enhanced.group(1, 2) == ("5", "1"):
            return Attempt(AttemptResult.BAD_ADDRESS, detail)
        return Attempt(AttemptResult.REFUSED, detail)
    return Attempt(AttemptResult.DEFERRED, detail)


class SmarthostSession:
    """A session with the smarthost; ``async with`` closes it."""

    def __init__(self, smarthost: Listener, options: OutboundOptions, password: str | None) -> None:
        check_smarthost_auth(smarthost, options)  # the configuration already refused it; this guards other callers
        self.smarthost = smarthost
        self.options = options
        self.password = password
        self._smtp: aiosmtplib.SMTP | None = None
        self._down: Attempt | None = None

    async def __aenter__(self) -> SmarthostSession:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.close()

    async def send(self, mail_from: str, rcpt_to: str, data: bytes) -> Attempt:
        """Hand one message for one recipient to the smarthost."""
        smtp = await self._connected()
        if isinstance(smtp, Attempt):
            return smtp
        options = ["SMTPUTF8"] if not (mail_from + rcpt_to).isascii() else []
        try:
            _, reply = await smtp.sendmail(mail_from, [rcpt_to], data, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = error.recipients[0]
            return attempt_for_reply(Stage.RCPT, refused.code, refused.message)
        except aiosmtplib.SMTPSenderRefused as error:
            return attempt_for_reply(Stage.MAIL, error.code, error.message)
        except aiosmtplib.SMTPDataError as error:
            return attempt_for_reply(Stage.DATA, error.code, error.message)
        except aiosmtplib.SMTPNotSupported as error:
            return Attempt(AttemptResult.REFUSED, f"smarthost {self.smarthost}: {error}")
        except ValueError as error:  # an address SMTP cannot carry
            return Attempt(AttemptResult.REFUSED, _one_line(f"unusable address: {error}"))
        except Exception as error:  # a dropped connection, a timeout, a reply out of place
            await self._abandon()
            return Attempt(AttemptResult.DEFERRED, self._describe(error))
        return Attempt(AttemptResult.DELIVERED, _one_line(f"250 {reply}"))

    async def close(self) -> None:
        """QUIT, or just close a connection that is no longer fit for it."""
        smtp, self._smtp = self._smtp, None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit()
        except Exception:  # already gone: nothing more to say to it
            smtp.close()

    async def _connected(self) -> aiosmtplib.SMTP | Attempt:
        if self._down is not None:
            return self._down
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        smtp = aiosmtplib.SMTP(**self._settings())
        try:
            await smtp.connect()
        except Exception as error:  # unreachable, refused greeting/EHLO/STARTTLS/AUTH, a timeout
            smtp.close()
            self._down = Attempt(AttemptResult.DEFERRED, self._describe(error))
            log.warning("%s; this pass defers the rest", self._down.detail)
            return self._down
        self._smtp = smtp
        return smtp

    def _settings(self) -> dict[str, Any]:
        where = self.smarthost
        settings: dict[str, Any] = {"timeout": self.options.timeout, "start_tls": self.options.starttls}
        if where.path:
            settings.update(socket_path=where.path, hostname="localhost")
        else:
            settings.update(hostname=where.host, port=where.port)
        if self.options.starttls:
            settings["tls_context"] = ssl.create_default_context(cafile=self.options.ca_file or None)
        if self.options.username:
            settings.update(username=self.options.username, password=self.password or "")
        return settings

    async def _abandon(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _describe(self, error: Exception) -> str:
        if isinstance(error, aiosmtplib.SMTPResponseException):
            text = f"{error.code} {error.message}"
        else:
            text = str(error) or type(error).__name__
        return _one_line(f"smarthost {self.smarthost}: {text}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
