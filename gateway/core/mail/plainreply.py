"""Reading a plain-email answer to an invitation (scenario 5): "accept", "decline", "maybe".

The words a person may answer with live here, once, for every shipped language: the
invitation's text names the first word of each list, and ``read_plain_answer`` accepts
any of them. An answer that is unclear (no word, words for two answers, or a negated
word as in "cannot accept") gives None: it is recorded for the organizer, never guessed.
Knows nothing of mail structure: the caller passes the subject and the text body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from gateway.core.model import PartStat

# The first word of each list is the one the invitation asks for (in capitals).
KEYWORDS: Mapping[PartStat, Mapping[str, tuple[str, ...]]] = {
    PartStat.ACCEPTED: {
        "en": ("accept", "accepted", "accepting", "yes", "attend", "attending", "i'll be there",
               "count me in"),
        "de": ("zusagen", "zusage", "zugesagt", "sage zu", "annehmen", "angenommen", "nehme an", "ja",
               "nehme teil", "bin dabei", "komme"),
    },
    PartStat.DECLINED: {
        "en": ("decline", "declined", "declining", "no", "reject", "regrets"),
        "de": ("absagen", "absage", "abgesagt", "sage ab", "ablehnen", "abgelehnt", "lehne ab", "nein"),
    },
    PartStat.TENTATIVE: {
        "en": ("tentative", "tentatively", "maybe", "perhaps", "possibly"),
        "de": ("vielleicht", "eventuell", "vorläufig", "unter vorbehalt", "mit vorbehalt"),
    },
}

# Words that turn an answer around ("cannot accept", "nicht zusagen"): the clause is unclear.
NEGATIONS: tuple[str, ...] = (
    "not", "cannot", "can't", "cant", "won't", "don't", "dont", "never", "unable",
    "nicht", "kein", "keine", "nie", "niemals",
)
# Everyday phrases that hold an answer word but are no answer ("No problem, see you").
NEUTRAL_PHRASES: tuple[str, ...] = ("no problem", "no worries", "no doubt")

# The beginnings of the subjects Reefknot writes; words after them in a subject are the
# event's title, not an answer ("Re: Invitation: Say yes to the budget").
SUBJECT_MARKERS: tuple[str, ...] = (
    "invitation:", "updated invitation:", "new occurrence:", "cancelled:",
    "einladung:", "geänderte einladung:", "neuer termin:", "entfällt:",
)

_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|antw|fwd?|wg|sv|vs|tr)\s*(?:\[\d+\])?\s*:\s*", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[.!?;,:()\[\]\"“”„«»/\-–—]+")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_ATTRIBUTION = re.compile(r"(wrote|schrieb|a écrit|escribió)\s*:?\s*$", re.IGNORECASE)
_QUOTE_START = re.compile(
    r"^\s*(-{2,}\s*(original message|ursprüngliche nachricht|weitergeleitete nachricht|forwarded message)"
    r"|-- ?$|_{5,}|(from|von|sent|gesendet)\s*:)",
    re.IGNORECASE,
)


def answer_word(partstat: PartStat, language: str) -> str:
    """The word the invitation asks for, in capitals (``ACCEPT``, ``ZUSAGEN``); English when unknown.

    ``de-AT`` asks in German.
    """
    words = KEYWORDS[partstat]
    base = language.lower().split("-")[0]
    return (words.get(base) or words["en"])[0].upper()


def read_plain_answer(subject: str, body: str) -> PartStat | None:
    """The answer a person wrote in the subject or the first line of the body, or None when unclear.

    Only the first line the person wrote counts: quoted text (``>``), an attribution line
    ("On … wrote:") and everything from a quoted original or a signature on is ignored.
    When subject and first line both give an answer, they must agree.
    """
    found = {a for a in (_answer_in(_own_subject(subject)), _answer_in(first_line(body))) if a is not None}
    if _UNCLEAR in found or len(found) != 1:
        return None
    answer = found.pop()
    return answer if isinstance(answer, PartStat) else None


_UNCLEAR = "unclear"


def _own_subject(subject: str) -> str:
    """The part of a subject the person wrote: reply prefixes removed, Reefknot's own subject cut off."""
    text = " ".join(subject.split())
    lowered = text.lower()
    cut = min((lowered.find(m) for m in SUBJECT_MARKERS if m in lowered), default=len(text))
    text = text[:cut]
    while True:
        stripped = _REPLY_PREFIX.sub("", text)
        if stripped == text:
            return text
        text = stripped


def first_line(body: str) -> str:
    """The first line of its own that the writer put in the body; empty when there is none."""
    for raw in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith(">") or _ATTRIBUTION.search(line):
            continue
        if _QUOTE_START.match(line):
            return ""
        return _REPLY_PREFIX.sub("", line)
    return ""


def _answer_in(text: str) -> PartStat | str | None:
    """One answer, ``_UNCLEAR``, or None when the text holds no answer word at all."""
    answers: set[PartStat] = set()
    for clause in _CLAUSE_BREAK.split(text.lower().replace("’", "'")):
        words = _without(_WORD.findall(clause), _NEUTRAL)
        hits = {partstat for partstat, phrases in _PHRASES.items() if _contains_any(words, phrases)}
        if hits and _contains_any(words, _NEGATION_PHRASES):
            return _UNCLEAR
        answers |= hits
    if not answers:
        return None
    return answers.pop() if len(answers) == 1 else _UNCLEAR


def _split(phrases: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(_WORD.findall(p.lower())) for p in phrases)


_PHRASES: dict[PartStat, tuple[tuple[str, ...], ...]] = {
    partstat: _split(p for words in by_language.values() for p in words) for partstat, by_language in KEYWORDS.items()
}
_NEGATION_PHRASES = _split(NEGATIONS)
_NEUTRAL = _split(NEUTRAL_PHRASES)


def _contains_any(words: list[str], phrases: tuple[tuple[str, ...], ...]) -> bool:
    for phrase in phrases:
        size = len(phrase)
        if any(tuple(words[i:i + size]) == phrase for i in range(len(words) - size + 1)):
            return True
    return False


def _without(words: list[str], phrases: tuple[tuple[str, ...], ...]) -> list[str]:
    kept: list[str] = []
    i = 0
    while i < len(words):
        match = next((p for p in phrases if tuple(words[i:i + len(p)]) == p), None)
        if match is None:
            kept.append(words[i])
        i += len(match) if match else 1
    return kept
