"""Plain-email answers (scenario 5): the subject or first line says accept, decline or maybe — or nothing clear."""

from __future__ import annotations

import pytest

from gateway.core.mail.plainreply import (
    KEYWORDS,
    answer_word,
    first_line,
    read_plain_answer,
)
from gateway.core.model import PartStat

ACCEPTED, DECLINED, TENTATIVE = PartStat.ACCEPTED, PartStat.DECLINED, PartStat.TENTATIVE
INVITATION = "Invitation: Planning @ Tue 7 Jul 2026 10:00–11:00 (CEST)"
EINLADUNG = "Einladung: Planning @ Di 7. Jul 2026 10:00–11:00 (CEST)"
QUOTED_INVITATION = (
    "> Alice Adler invites you to “Planning”.\n"
    "> Reply to this message with the word ACCEPT, DECLINE or TENTATIVE in the subject or first line.\n"
)


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        # the first line, English
        (f"Re: {INVITATION}", "Accept", ACCEPTED),
        (f"Re: {INVITATION}", "ACCEPT\n\n" + QUOTED_INVITATION, ACCEPTED),
        (f"Re: {INVITATION}", "yes, see you there!\n", ACCEPTED),
        (f"Re: {INVITATION}", "I accept.", ACCEPTED),
        (f"Re: {INVITATION}", "Count me in", ACCEPTED),
        (f"Re: {INVITATION}", "decline", DECLINED),
        (f"Re: {INVITATION}", "No, sorry.", DECLINED),
        (f"Re: {INVITATION}", "I have to decline, sorry", DECLINED),
        (f"Re: {INVITATION}", "Maybe", TENTATIVE),
        (f"Re: {INVITATION}", "tentative - depends on my train", TENTATIVE),
        (f"Re: {INVITATION}", "\n\n   Accept   \n", ACCEPTED),
        # the first line, German
        (f"AW: {EINLADUNG}", "Zusagen", ACCEPTED),
        (f"AW: {EINLADUNG}", "Ja, gerne.", ACCEPTED),
        (f"AW: {EINLADUNG}", "Ich sage zu.", ACCEPTED),
        (f"AW: {EINLADUNG}", "Ich bin dabei", ACCEPTED),
        (f"AW: {EINLADUNG}", "ABSAGEN", DECLINED),
        (f"AW: {EINLADUNG}", "Nein, leider.", DECLINED),
        (f"AW: {EINLADUNG}", "Ich muss leider absagen.", DECLINED),
        (f"AW: {EINLADUNG}", "vielleicht", TENTATIVE),
        (f"AW: {EINLADUNG}", "Unter Vorbehalt", TENTATIVE),
        # the subject
        (f"Accept: {INVITATION}", "", ACCEPTED),
        (f"ACCEPT Re: {INVITATION}", "", ACCEPTED),
        (f"Re: decline - {INVITATION}", QUOTED_INVITATION, DECLINED),
        (f"Zusagen AW: {EINLADUNG}", "", ACCEPTED),
        ("Re: AW: Re: maybe", "", TENTATIVE),
        ("Re[2]: accept", "", ACCEPTED),
        (f"Fwd: WG: vielleicht: {EINLADUNG}", "", TENTATIVE),
        # subject and first line agree
        ("accept", "Accept", ACCEPTED),
    ],
)
def test_a_clear_answer_is_read(subject: str, body: str, expected: PartStat) -> None:
    assert read_plain_answer(subject, body) == expected


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (f"Re: {INVITATION}", ""),  # nothing written
        (f"Re: {INVITATION}", QUOTED_INVITATION),  # only the quoted invitation, which names every word
        (f"Re: {INVITATION}", "Thanks for the invite!"),
        (f"Re: {INVITATION}", "Accept or decline? I do not know yet."),  # two answers
        (f"Re: {INVITATION}", "I cannot accept."),  # negated
        (f"Re: {INVITATION}", "I can't attend"),
        (f"Re: {INVITATION}", "I won't decline"),
        (f"Re: {INVITATION}", "Don't know yet, maybe, or no"),
        (f"AW: {EINLADUNG}", "Ich kann leider nicht zusagen."),
        (f"AW: {EINLADUNG}", "Zusagen kann ich nicht"),
        (f"AW: {EINLADUNG}", "Keine Zusage"),
        ("accept", "decline"),  # subject and first line disagree
        ("Re: Invitation: Say yes to the budget", ""),  # the event's title is no answer
        ("Re: Einladung: Ja-Sager-Runde @ Mo", ""),
        ("Re: Cancelled: Planning", ""),
        ("AW: Entfällt: Planning", ""),
    ],
)
def test_an_unclear_answer_is_none(subject: str, body: str) -> None:
    assert read_plain_answer(subject, body) is None


def test_quoted_text_below_the_first_line_is_ignored() -> None:
    body = "maybe\n\nOn Tue, 7 Jul 2026, Alice wrote:\n> decline\n> accept\n"
    assert read_plain_answer(f"Re: {INVITATION}", body) == TENTATIVE


def test_only_the_first_line_counts() -> None:
    assert read_plain_answer(f"Re: {INVITATION}", "Thanks!\nAccept") is None


def test_an_answer_below_a_quote_is_found() -> None:
    """Bottom posting: attribution and quote first, the answer after them."""
    body = "On Tue, 7 Jul 2026, Alice wrote:\n> Alice invites you to Planning.\n\nAccept\n"
    assert read_plain_answer(f"Re: {INVITATION}", body) == ACCEPTED


@pytest.mark.parametrize(
    "separator",
    ["-----Original Message-----", "-------- Ursprüngliche Nachricht --------", "From: Alice <a@foo.example>",
     "Von: Alice <a@foo.example>", "-- ", "________________________________"],
)
def test_a_quoted_original_without_quote_marks_is_not_read(separator: str) -> None:
    body = f"{separator}\nReply to this message with the word ACCEPT\n"
    assert first_line(body) == ""
    assert read_plain_answer(f"Re: {INVITATION}", body) is None


def test_any_line_ending_is_read() -> None:
    assert read_plain_answer("", "\r\n\r\nDecline\r\n> accept") == DECLINED
    assert read_plain_answer("", "\rDecline\r") == DECLINED


def test_typographic_apostrophes_count_as_negations() -> None:
    assert read_plain_answer("", "I can’t accept") is None


@pytest.mark.parametrize("partstat", [ACCEPTED, DECLINED, TENTATIVE])
@pytest.mark.parametrize("language", ["en", "de"])
def test_every_asked_for_word_is_read_as_its_answer(partstat: PartStat, language: str) -> None:
    word = answer_word(partstat, language)
    assert read_plain_answer("", word) == partstat
    assert read_plain_answer(f"{word} Re: {INVITATION}", "") == partstat


@pytest.mark.parametrize("partstat", [ACCEPTED, DECLINED, TENTATIVE])
def test_every_keyword_alone_is_read_as_its_answer(partstat: PartStat) -> None:
    for words in KEYWORDS[partstat].values():
        for word in words:
            assert read_plain_answer("", word) == partstat, word
            assert read_plain_answer("", word.upper()) == partstat, word


def test_no_keyword_belongs_to_two_answers() -> None:
    seen: dict[str, PartStat] = {}
    for partstat, languages in KEYWORDS.items():
        for words in languages.values():
            for word in words:
                assert seen.setdefault(word, partstat) == partstat, word


def test_the_asked_for_word_falls_back_to_english() -> None:
    assert answer_word(ACCEPTED, "xx") == "ACCEPT"
    assert answer_word(ACCEPTED, "de") == "ZUSAGEN"
    assert answer_word(DECLINED, "de-AT") == "ABSAGEN"
