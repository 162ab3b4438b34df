"""Opening an IMAP session for a configured account: TLS, credentials, folders. No polling here."""

from __future__ import annotations

import logging
import re
import ssl
import subprocess
from collections.abc import Iterable
from pathlib import Path

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientError

from gateway.settings.config import ImapAccount

log = logging.getLogger(__name__)
TIMEOUT = SocketTimeout(connect=30, read=120)
# Only the MTA that delivers into the mailbox writes Return-Path, first in the header, as "<address>".
RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*<([^>\n]*)>", re.IGNORECASE | re.MULTILINE)


class ImapSetupError(Exception):
    """The account's credentials could not be read (a missing file, a failing command)."""


def open_connection(account: ImapAccount) -> IMAPClient:
    """Connect (implicit TLS, STARTTLS or plain) and log in with a password or an XOAUTH2 token."""
    context = ssl.create_default_context(cafile=account.ca_file or None)
    implicit = account.security == "tls"
    client = IMAPClient(account.host, port=account.port, ssl=implicit, ssl_context=context, timeout=TIMEOUT)
    try:
        if account.security == "starttls":
            client.starttls(context)
        if account.xoauth2_token_command:
            client.oauth2_login(account.username, run_secret_command(account.xoauth2_token_command))
        else:
            client.login(account.username, read_password(account))
    except BaseException:
        shutdown(client)
        raise
    return client


def read_password(account: ImapAccount) -> str:
    if account.password_command:
        return run_secret_command(account.password_command)
    try:
        return Path(account.password_file).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ImapSetupError(f"cannot read password_file {account.password_file}: {error.strerror}") from error


def run_secret_command(command: Iterable[str]) -> str:
    """The stripped standard output of a credential command (run at every connect: tokens expire)."""
    argv = list(command)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ImapSetupError(f"credential command {argv[0]} failed: {error}") from error
    if done.returncode != 0 or not done.stdout.strip():
        raise ImapSetupError(f"credential command {argv[0]} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def ensure_folder(client: IMAPClient, name: str) -> str:
    """The folder's name with the server's hierarchy delimiter; created (and subscribed) when missing."""
    listing = client.list_folders("", "")
    delimiter = listing[0][1].decode() if listing and listing[0][1] else "/"
    folder = name.replace("/", delimiter)
    if not client.folder_exists(folder):
        try:
            client.create_folder(folder)
            client.subscribe_folder(folder)
            log.info("created folder %s", folder)
        except IMAPClientError:
            if not client.folder_exists(folder):  # not created by another client meanwhile
                raise
    return folder


def return_path_of(raw: bytes) -> str:
    """The envelope sender the delivering MTA recorded (RFC 5321 4.4), or "" (none, or the null sender)."""
    head = raw[:65536].replace(b"\r\n", b"\n")
    end = head.find(b"\n\n")
    match = RETURN_PATH.search(head, 0, end if end >= 0 else len(head))
    return match.group(1).decode("utf-8", "replace").strip() if match else ""


def uid_set(uids: Iterable[int]) -> str:
    """An IMAP sequence set of ranges: ``[1, 2, 3, 7]`` -> ``"1:3,7"``."""
    ranges: list[list[int]] = []
    for uid in sorted(set(uids)):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(f"{a}:{b}" if a != b else str(a) for a, b in ranges)


def shutdown(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:
        log.debug("closing an IMAP connection failed", exc_info=True)
