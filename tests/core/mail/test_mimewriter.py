"""The 7-bit MIME writer: what it writes parses back to the same content, and bad values are refused."""

from __future__ import annotations

import email
import email.policy

import pytest

from gateway.core.mail.mimewriter import (
    Multipart,
    Part,
    address_header,
    plain_header,
    text_header,
    write_message,
)


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


@pytest.mark.parametrize(
    "text",
    ["ends with a newline\n", "no final newline", "trailing spaces   \nand\ttabs\t\n", "ünïcödé – “quotes”\n",
     "=_ looks like a boundary\n--=_abc\n", "x" * 300 + "\n", ""],
)
def test_text_parts_round_trip(text: str) -> None:
    body = Multipart("mixed", [Part("text/plain", (("charset", "utf-8"),), text.encode(), "quoted-printable"),
                               Part("application/octet-stream", (), text.encode(), "base64")])
    data = write_message([plain_header("MIME-Version", "1.0")], body, seed="s")
    assert data.isascii() and all(len(line) <= 78 for line in data.split(b"\r\n"))
    plain, binary = parse(data).get_payload()
    assert plain.get_payload(decode=True).replace(b"\r\n", b"\n") == text.encode()
    assert binary.get_payload(decode=True) == text.encode()


def test_parameters_are_tokens_or_quoted() -> None:
    part = Part("text/calendar", (("method", "REQUEST"), ("name", "my invite.ics")), b"x", "base64")
    data = write_message([], part, seed="s")
    assert b"Content-Type: text/calendar; method=REQUEST; name=\"my invite.ics\"\r\n" in data


@pytest.mark.parametrize(
    "write",
    [
        lambda: plain_header("Message-ID", "<a@b>\r\nBcc: x@y"),
        lambda: plain_header("Date", ""),
        lambda: text_header("Subject", "hello\r\nBcc: x@y"),
        lambda: address_header("To", "x@y\r\nBcc: z@w"),
        lambda: address_header("To", "nobody"),
        lambda: write_message([], Part("text/plain\r\nX: y", (), b"", "base64"), seed="s"),
        lambda: write_message([], Part("text/plain", (("charset", 'a"b'),), b"", "base64"), seed="s"),
        lambda: write_message([], Part("text/plain", (), b"", "8bit"), seed="s"),
    ],
)
def test_values_that_could_inject_are_refused(write: object) -> None:
    with pytest.raises(ValueError):
        write()  # type: ignore[operator]


def test_non_ascii_names_and_subjects_are_encoded_words() -> None:
    written = address_header("From", "a@foo.example", "Jürgen Groß")
    assert written == b"From: =?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <a@foo.example>\r\n"
    subject = text_header("Subject", "Einladung: Übergabe " + "lang " * 30)
    assert subject.isascii() and all(len(line) <= 78 for line in subject.split(b"\r\n"))
    assert str(parse(subject + b"\r\n")["Subject"]).startswith("Einladung: Übergabe lang")
