"""An answer threads under the mail it answers (In-Reply-To, References; RFC 5322 §3.6.4); anything else under its event."""

from __future__ import annotations

import email
from datetime import datetime, timezone

import pytest

from gateway.adapters.templates import TemplateRenderer
from gateway.core.calendar.ical import parse_calendar
from gateway.core.imip.answering import (
    MAX_REFERENCES,
    Answered,
    answered_from_raw,
    answered_mail,
    read_stored_references,
    stored_references,
)
from gateway.core.imip.render import render_imip
from gateway.core.itip.compose import build_reply
from gateway.core.model import PartStat
from tests.peers.paths import DATA

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
ATTENDEE = "c@bar.example"
OWN_ID, EVENT_THREAD = "<m-1@foo.example>", "<event-planning-7@foo.example>"


def render_reply(answered: Answered | None) -> email.message.Message:
    """Carol's REPLY to the Planning invitation, as mailed to the organizer."""
    stored = parse_calendar((DATA / "imip" / "planning.ics").read_text())
    reply = build_reply(stored, ATTENDEE, NOW, partstat=PartStat.ACCEPTED)
    mail = render_imip(
        reply, recipient=reply.recipients[0], previous=None, reply_to=None, envelope_from=None, message_id=OWN_ID,
        thread_id=EVENT_THREAD, language="en", recipient_zone=None, now=NOW, renderer=TemplateRenderer(),
        answered=answered,
    )
    assert all(len(line) <= 78 for line in mail.data.split(b"\r\n")), "no line longer than 78 characters"
    return email.message_from_bytes(mail.data)


def references_of(message: email.message.Message) -> list[str]:
    return str(message["References"]).split()


@pytest.mark.parametrize(
    ("answered", "in_reply_to", "references"),
    [
        (Answered("<inv@bar.example>"), "<inv@bar.example>", ["<inv@bar.example>"]),
        (Answered("<inv-2@bar.example>", ("<first@bar.example>", "<inv-1@bar.example>")), "<inv-2@bar.example>",
         ["<first@bar.example>", "<inv-1@bar.example>", "<inv-2@bar.example>"]),
        (None, EVENT_THREAD, [EVENT_THREAD]),  # not an answer: the event's own thread
    ],
    ids=["answer-to-a-first-mail", "answer-in-a-thread", "not-an-answer"],
)
def test_the_mail_threads_under_the_mail_it_answers(
    answered: Answered | None, in_reply_to: str, references: list[str]
) -> None:
    message = render_reply(answered)
    assert message["In-Reply-To"] == in_reply_to
    assert references_of(message) == references
    assert message["Message-ID"] == OWN_ID


def test_a_long_thread_keeps_its_first_mail_and_the_latest_ones_folded_in_short_lines() -> None:
    earlier = tuple(f"<mail-{n:03d}@bar.example>" for n in range(40))
    message = render_reply(Answered("<latest@bar.example>", earlier))
    kept = references_of(message)
    assert len(kept) == MAX_REFERENCES
    assert kept[0] == "<mail-000@bar.example>" and kept[-2:] == ["<mail-039@bar.example>", "<latest@bar.example>"]


def test_an_answered_that_is_not_made_of_message_ids_is_refused() -> None:
    with pytest.raises(ValueError):
        render_reply(Answered("<inv@bar.example>\r\nBcc: x@evil.example"))


@pytest.mark.parametrize(
    ("message_id", "references", "expected"),
    [
        ("<inv@bar.example>", ("<a@bar.example>",), Answered("<inv@bar.example>", ("<a@bar.example>",))),
        ("  <inv@bar.example> (comment)", (), Answered("<inv@bar.example>")),
        ("<inv@bar.example>", ("<no-at-sign>", "<inv@bar.example>", "<a@b.example>"),
         Answered("<inv@bar.example>", ("<a@b.example>",))),  # what cannot be written, and itself, left out
        ("", ("<a@bar.example>",), None),
        (None, (), None),
        ("<two words@bar.example>", (), None),
        (f"<{'x' * 490}@bar.example>", (), None),  # longer than the outbox keeps
    ],
)
def test_a_received_message_id_is_answered_only_when_it_can_be_written(
    message_id: str | None, references: tuple[str, ...], expected: Answered | None
) -> None:
    assert answered_mail(message_id, references) == expected


def test_the_references_of_a_stored_raw_message_are_read_from_its_header() -> None:
    raw = (b"From: b@bar.example\r\nMessage-ID: <inv-2@bar.example>\r\n"
           b"References: <first@bar.example>\r\n <inv-1@bar.example>\r\nSubject: x\r\n\r\nReferences: <body@x.example>\r\n")
    assert answered_from_raw("<inv-2@bar.example>", raw) == Answered(
        "<inv-2@bar.example>", ("<first@bar.example>", "<inv-1@bar.example>"))
    assert answered_from_raw("<inv-2@bar.example>", b"") == Answered("<inv-2@bar.example>")  # raw bytes forgotten


@pytest.mark.parametrize("answered", [None, Answered("<a@b.example>"), Answered("<a@b.example>", ("<0@b.example>",))])
def test_what_the_outbox_keeps_reads_back_the_same(answered: Answered | None) -> None:
    assert read_stored_references(*stored_references(answered)) == answered
