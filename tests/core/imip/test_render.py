"""iMIP mail as rendered for every method: structure, 7-bit, method parameter, subjects, text, safety."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
from icalendar import Calendar, Component, vCalAddress

from gateway.adapters.templates import TemplateRenderer, shipped_languages
from gateway.core.calendar.ical import (
    components_of,
    copy_calendar,
    method_of,
    parse_calendar,
    serialize_calendar,
)
from gateway.core.calendar.instances import add_date_value
from gateway.core.imip.render import ImipMail, render_imip
from gateway.core.itip.compose import build_reply, build_request, compose_message
from gateway.core.itip.plan import plan_itip
from gateway.core.mail.plainreply import SUBJECT_MARKERS, read_plain_answer
from gateway.core.model import Method, OutgoingMessage, PartStat
from tests.peers.paths import DATA

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
ORGANIZER, FRED, CAROL = "a@foo.example", "f@baz.example", "c@bar.example"
BERLIN_WHEN = "Tue 7 Jul 2026 10:00–11:00 (CEST)"
RENDERER = TemplateRenderer()
ALLOWED_HEADERS = {
    "from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to", "references",
    "mime-version", "auto-submitted", "content-language", "content-type",
}


def planning(**changes: object) -> Calendar:
    """The organizer's stored copy of the Planning meeting, with properties replaced as given."""
    calendar = parse_calendar((DATA / "imip" / "planning.ics").read_text())
    event = calendar.walk("VEVENT")[0]
    for name, value in changes.items():
        event.pop(name.upper().replace("_", "-"), None)
        event.add(name.upper().replace("_", "-"), value)
    return calendar


def recurring() -> Calendar:
    return planning(rrule={"FREQ": "WEEKLY", "BYDAY": "TU", "COUNT": 10})


def message_for(plan_messages: tuple[OutgoingMessage, ...], recipient: str) -> OutgoingMessage:
    return next(m for m in plan_messages if recipient in m.recipients)


def render(
    message: OutgoingMessage,
    recipient: str = FRED,
    *,
    previous: Calendar | None = None,
    language: str = "en",
    zone: str | None = None,
    renderer: TemplateRenderer = RENDERER,
) -> ImipMail:
    return render_imip(
        message, recipient=recipient, previous=previous, reply_to="reply+t0k3n@foo.example",
        envelope_from="bounce+t0k3n@foo.example", message_id="<m-1@foo.example>",
        thread_id="<event-planning-7@foo.example>", language=language, recipient_zone=zone, now=NOW,
        renderer=renderer,
    )


@dataclass(frozen=True)
class Parsed:
    mail: EmailMessage
    plain: str
    html: str
    calendar_part: EmailMessage
    attachment: EmailMessage


def parse(mail: ImipMail) -> Parsed:
    """Parse the mail back and check the structure every iMIP mail has (INTEROP rules 18–20, 24)."""
    data = mail.data
    assert data.isascii(), "the whole message is 7-bit"
    assert b"\n" not in data.replace(b"\r\n", b""), "CRLF line endings only"
    assert all(len(line) <= 78 for line in data.split(b"\r\n")), "no line longer than 78 characters"
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/mixed"
    alternative, attachment = parsed.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html, calendar = alternative.get_payload()
    assert [p.get_content_type() for p in (plain, html, calendar)] == ["text/plain", "text/html", "text/calendar"]
    for part in (plain, html, calendar, attachment):
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics" and attachment.get_content_disposition() == "attachment"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert calendar.get_payload(decode=True) == attachment.get_payload(decode=True)
    assert calendar.get_param("charset") == "UTF-8"
    assert {h.lower() for h in parsed} <= ALLOWED_HEADERS
    return Parsed(parsed, _text(plain), _text(html), calendar, attachment)


def _text(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def body_calendar(parsed: Parsed) -> Calendar:
    return parse_calendar(parsed.calendar_part.get_payload(decode=True).decode("utf-8"))


# --- one message of every kind ------------------------------------------------------------


def invitation() -> OutgoingMessage:
    return build_request(planning(), FRED, NOW)


def update() -> tuple[OutgoingMessage, Calendar]:
    old = planning()
    new = planning(dtstart=datetime(2026, 7, 7, 14, 0, tzinfo=_berlin(old)),
                   dtend=datetime(2026, 7, 7, 15, 30, tzinfo=_berlin(old)), location="Room 2")
    return message_for(plan_itip(old, new, ORGANIZER, NOW).messages, FRED), build_request(old, FRED, NOW).calendar


def _berlin(calendar: Calendar) -> object:
    return calendar.walk("VEVENT")[0]["DTSTART"].dt.tzinfo


def cancel_whole() -> OutgoingMessage:
    return message_for(plan_itip(planning(), None, ORGANIZER, NOW).messages, FRED)


def cancel_instance() -> OutgoingMessage:
    old = recurring()
    new = copy_calendar(old)
    add_date_value(new.walk("VEVENT")[0], "EXDATE", datetime(2026, 7, 14, 10, 0, tzinfo=_berlin(old)))
    return message_for(plan_itip(old, new, ORGANIZER, NOW).messages, FRED)


def add_instance() -> OutgoingMessage:
    extra = recurring().walk("VEVENT")[0]
    for name in ("RRULE", "DTSTART", "DTEND"):
        extra.pop(name, None)
    start = datetime(2026, 9, 18, 10, 0, tzinfo=_berlin(recurring()))
    extra.add("DTSTART", start)
    extra.add("DTEND", start + timedelta(hours=1))
    extra.add("RDATE", start)
    return compose_message(Method.ADD, [extra], recurring(), ORGANIZER, FRED, NOW)


def reply(partstat: PartStat, comment: str | None = None) -> OutgoingMessage:
    """Fred (here a local attendee answering an outside organizer, scenario 4) answers."""
    copy = planning()
    for prop in copy.walk("VEVENT")[0]["ATTENDEE"]:
        if str(prop).endswith(FRED):
            prop.params["PARTSTAT"] = partstat.value
    return build_reply(copy, FRED, NOW, comment=comment)


def declinecounter() -> OutgoingMessage:
    return compose_message(Method.DECLINECOUNTER, components_of(planning()), planning(), ORGANIZER, CAROL, NOW)


def freebusy_reply() -> OutgoingMessage:
    calendar = Calendar()
    calendar.add("PRODID", "-//Reefknot//Calendar Gateway//EN")
    calendar.add("VERSION", "2.0")
    calendar.add("METHOD", "REPLY")
    busy = Component()
    busy.name = "VFREEBUSY"
    busy.add("UID", "fb-1@foo.example")
    busy.add("DTSTAMP", NOW)
    busy.add("DTSTART", datetime(2026, 7, 7, 6, 0, tzinfo=timezone.utc))
    busy.add("DTEND", datetime(2026, 7, 7, 18, 0, tzinfo=timezone.utc))
    busy.add("ORGANIZER", vCalAddress(f"mailto:{CAROL}"))
    room = vCalAddress("mailto:r@foo.example")
    room.params["CN"] = "Room R"
    busy.add("ATTENDEE", room)
    busy.add("FREEBUSY", [(datetime(2026, 7, 7, 8, 0, tzinfo=timezone.utc), timedelta(hours=1))])
    calendar.add_component(busy)
    return OutgoingMessage(Method.REPLY, "fb-1@foo.example", "r@foo.example", (CAROL,), calendar)


def every_kind() -> list[tuple[str, OutgoingMessage, Calendar | None, str]]:
    updated, previous = update()
    return [
        ("request-new", invitation(), None, FRED),
        ("request-update", updated, previous, FRED),
        ("refresh-answer", build_request(planning(), FRED, NOW), None, FRED),
        ("cancel-whole", cancel_whole(), None, FRED),
        ("cancel-instance", cancel_instance(), None, FRED),
        ("add", add_instance(), None, FRED),
        ("reply-accepted", reply(PartStat.ACCEPTED), None, ORGANIZER),
        ("reply-declined", reply(PartStat.DECLINED), None, ORGANIZER),
        ("reply-tentative", reply(PartStat.TENTATIVE), None, ORGANIZER),
        ("declinecounter", declinecounter(), None, CAROL),
        ("freebusy-reply", freebusy_reply(), None, CAROL),
    ]


EXPECTED_SUBJECTS = {
    "request-new": f"Invitation: Planning @ {BERLIN_WHEN}",
    "request-update": "Updated invitation: Planning @ Tue 7 Jul 2026 14:00–15:30 (CEST)",
    "refresh-answer": f"Invitation: Planning @ {BERLIN_WHEN}",
    "cancel-whole": f"Cancelled: Planning @ {BERLIN_WHEN}",
    "cancel-instance": "Cancelled: Planning @ Tue 14 Jul 2026 10:00–11:00 (CEST)",
    "add": "New occurrence: Planning @ Fri 18 Sep 2026 10:00–11:00 (CEST)",
    "reply-accepted": f"Accepted: Planning @ {BERLIN_WHEN}",
    "reply-declined": f"Declined: Planning @ {BERLIN_WHEN}",
    "reply-tentative": f"Tentative: Planning @ {BERLIN_WHEN}",
    "declinecounter": f"Counter proposal declined: Planning @ {BERLIN_WHEN}",
    "freebusy-reply": "Free/busy: Room R, Tue 7 Jul 2026 06:00–18:00 (UTC)",
}


@pytest.mark.parametrize("language", ["en", "de"])
@pytest.mark.parametrize("case", every_kind(), ids=lambda c: c[0])
def test_every_method_renders_a_well_formed_imip_mail(
    case: tuple[str, OutgoingMessage, Calendar | None, str], language: str
) -> None:
    name, message, previous, recipient = case
    mail = render(message, recipient, previous=previous, language=language)
    parsed = parse(mail)
    body = body_calendar(parsed)
    assert parsed.calendar_part.get_param("method") == method_of(body) == message.method.value
    assert parsed.calendar_part.get_payload(decode=True) == serialize_calendar(message.calendar).encode("utf-8")
    assert components_of(body)
    assert parsed.mail["Content-Language"] == language
    assert mail.rcpt_to == recipient and mail.mail_from == "bounce+t0k3n@foo.example"
    if language == "en":
        assert parsed.mail["Subject"] == EXPECTED_SUBJECTS[name]


def test_headers_name_sender_recipient_thread_and_automation() -> None:
    parsed = parse(render(invitation()))
    headers = parsed.mail
    assert headers["From"].addresses[0].display_name == "Alice Adler"
    assert headers["From"].addresses[0].addr_spec == ORGANIZER
    assert str(headers["To"]) == "Fred <f@baz.example>"
    assert str(headers["Reply-To"]) == "reply+t0k3n@foo.example"
    assert headers["Message-ID"] == "<m-1@foo.example>"
    assert headers["In-Reply-To"] == headers["References"] == "<event-planning-7@foo.example>"
    assert headers["Auto-Submitted"] == "auto-generated"
    assert headers["MIME-Version"] == "1.0"
    assert headers["Date"].datetime == NOW


def test_the_first_mail_of_a_thread_refers_to_nothing() -> None:
    mail = render_imip(
        invitation(), recipient=FRED, previous=None, reply_to=None, envelope_from=None,
        message_id="<event-planning-7@foo.example>", thread_id="<event-planning-7@foo.example>",
        language="en", recipient_zone=None, now=NOW, renderer=RENDERER,
    )
    headers = parse(mail).mail
    assert "In-Reply-To" not in headers and "References" not in headers and "Reply-To" not in headers
    assert mail.mail_from == ORGANIZER


def test_rendering_is_reproducible() -> None:
    assert render(invitation()).data == render(invitation()).data


def test_the_calendar_text_of_the_outbox_row_is_used_as_given() -> None:
    message = invitation()
    given = render_imip(
        message, recipient=FRED, previous=None, reply_to="reply+t0k3n@foo.example",
        envelope_from="bounce+t0k3n@foo.example", message_id="<m-1@foo.example>",
        thread_id="<event-planning-7@foo.example>", language="en", recipient_zone=None, now=NOW,
        renderer=RENDERER, ics=serialize_calendar(message.calendar),
    )
    assert given.data == render(message).data


def test_invitation_text_says_when_where_who_and_how_to_answer() -> None:
    parsed = parse(render(invitation()))
    for text in (parsed.plain, parsed.html):
        assert "Alice Adler invites you to “Planning”." in text
        assert "Tuesday, 7 July 2026, 10:00–11:00 (CEST)" in text
        assert "Europe/Berlin" in text
        assert "Room 1" in text
        assert "Carol" in text and "tentative" in text
        assert "Room R" in text and "room" in text
        assert "Reply to this message with the word ACCEPT, DECLINE or TENTATIVE in the subject or first line." in text
        assert "invite.ics" in text
        assert "Fred" not in text.split("Also invited")[1]  # the reader is not listed as someone else
    assert "Quarterly planning.\nBring the numbers." in parsed.plain


def test_times_are_shown_in_the_recipients_zone_with_the_zone_named() -> None:
    parsed = parse(render(invitation(), zone="America/New_York"))
    assert parsed.mail["Subject"] == "Invitation: Planning @ Tue 7 Jul 2026 04:00–05:00 (EDT)"
    assert "Tuesday, 7 July 2026, 04:00–05:00 (EDT)" in parsed.plain
    assert "America/New_York" in parsed.plain


def test_an_unknown_recipient_zone_falls_back_to_the_events_zone() -> None:
    parsed = parse(render(invitation(), zone="Mars/Olympus_Mons"))
    assert parsed.mail["Subject"] == f"Invitation: Planning @ {BERLIN_WHEN}"


def test_update_says_what_changed() -> None:
    message, previous = update()
    parsed = parse(render(message, previous=previous))
    assert "What changed:" in parsed.plain
    assert "The time changed from Tue 7 Jul 2026 10:00–11:00 (CEST) to Tue 7 Jul 2026 14:00–15:30 (CEST)." \
        in parsed.plain
    assert "The place changed from Room 1 to Room 2." in parsed.plain
    assert "Alice Adler has changed “Planning”." in parsed.plain


def test_update_in_german_says_what_changed() -> None:
    message, previous = update()
    parsed = parse(render(message, previous=previous, language="de"))
    assert parsed.mail["Subject"] == "Geänderte Einladung: Planning @ Di 7. Jul 2026 14:00–15:30 (CEST)"
    assert "Die Zeit wurde von Di 7. Jul 2026 10:00–11:00 (CEST) auf Di 7. Jul 2026 14:00–15:30 (CEST) verlegt." \
        in parsed.plain
    assert "Der Ort ist jetzt Room 2 (vorher: Room 1)." in parsed.plain


def test_recurring_invitation_says_the_rule_in_words() -> None:
    parsed = parse(render(build_request(recurring(), FRED, NOW)))
    assert "Repeats: every week on Tuesday, 10 times" in parsed.plain
    german = parse(render(build_request(recurring(), FRED, NOW), language="de"))
    assert "Wiederholung: jede Woche am Dienstag, 10-mal" in german.plain


def test_cancelled_instance_names_the_occurrence() -> None:
    parsed = parse(render(cancel_instance()))
    assert "Alice Adler has cancelled an occurrence of “Planning”." in parsed.plain
    german = parse(render(cancel_instance(), language="de")).plain
    assert "Alice Adler hat einen Termin von „Planning“ abgesagt." in german
    assert "When: Tuesday, 14 July 2026, 10:00–11:00 (CEST)" in parsed.plain
    assert "This is about one occurrence of a repeating event." in parsed.plain
    assert "occurrence of a repeating" not in parse(render(cancel_whole())).plain
    assert "ACCEPT" not in parsed.plain


def test_cancellation_of_an_instance_in_an_update_is_listed_as_a_change() -> None:
    old = recurring()
    new = copy_calendar(old)
    add_date_value(new.walk("VEVENT")[0], "EXDATE", datetime(2026, 7, 21, 10, 0, tzinfo=_berlin(old)))
    request = build_request(new, FRED, NOW)
    parsed = parse(render(request, previous=build_request(old, FRED, NOW).calendar))
    assert "Cancelled occurrences: Tue 21 Jul 2026." in parsed.plain
    assert "every week on Tuesday, 10 times, except Tue 21 Jul 2026" in parsed.plain


@pytest.mark.parametrize(
    ("partstat", "english", "german"),
    [
        (PartStat.ACCEPTED, "Fred has accepted “Planning”.", "Fred hat „Planning“ zugesagt."),
        (PartStat.DECLINED, "Fred has declined “Planning”.", "Fred hat „Planning“ abgesagt."),
        (PartStat.TENTATIVE, "Fred has tentatively accepted “Planning”.", "Fred hat „Planning“ vorläufig zugesagt."),
    ],
)
def test_reply_says_the_answer(partstat: PartStat, english: str, german: str) -> None:
    assert english in parse(render(reply(partstat, "Gladly"), ORGANIZER)).plain
    parsed = parse(render(reply(partstat, "Gladly"), ORGANIZER, language="de"))
    assert german in parsed.plain and "Kommentar: Gladly" in parsed.plain


def test_german_invitation_translates_words_days_and_months() -> None:
    parsed = parse(render(invitation(), language="de"))
    assert parsed.mail["Subject"] == "Einladung: Planning @ Di 7. Jul 2026 10:00–11:00 (CEST)"
    for text in (parsed.plain, parsed.html):
        assert "Alice Adler lädt Sie zu „Planning“ ein." in text
        assert "Dienstag, 7. Juli 2026, 10:00–11:00 (CEST)" in text
        assert "Antworten Sie auf diese Nachricht mit dem Wort ZUSAGEN, ABSAGEN oder VIELLEICHT" in text
        assert "vorläufig zugesagt" in text  # Carol's answer
        assert "Reply to this message" not in text and "Also invited" not in text


def test_freebusy_reply_lists_busy_time() -> None:
    parsed = parse(render(freebusy_reply(), CAROL, zone="Europe/Berlin"))
    assert "When Room R is busy." in parsed.plain
    assert "Tue 7 Jul 2026 10:00–11:00 (CEST)" in parsed.plain


@pytest.mark.parametrize("language", ["en", "de"])
def test_every_language_asks_for_words_the_plain_reply_reader_accepts(language: str) -> None:
    parsed = parse(render(invitation(), language=language))
    words = re.search(r"(\w+), (\w+) \w+ (\w+) (?:in|im)", parsed.plain)
    assert words is not None
    subject = "Re: " + str(parsed.mail["Subject"])
    answers = [read_plain_answer(subject, word) for word in words.groups()]
    assert answers == [PartStat.ACCEPTED, PartStat.DECLINED, PartStat.TENTATIVE]
    assert read_plain_answer(subject, "") is None  # the untouched subject is no answer
    assert any(marker in subject.lower() for marker in SUBJECT_MARKERS)


def test_every_shipped_language_renders() -> None:
    assert set(shipped_languages()) >= {"en", "de"}
    for language in shipped_languages():
        parse(render(invitation(), language=language))


def test_unknown_language_falls_back_to_english() -> None:
    parsed = parse(render(invitation(), language="xx-YY"))
    assert parsed.mail["Subject"] == f"Invitation: Planning @ {BERLIN_WHEN}"


def test_regional_language_uses_its_base_language() -> None:
    assert parse(render(invitation(), language="de-AT")).mail["Subject"].startswith("Einladung: ")


# --- injection ------------------------------------------------------------------------------

HOSTILE = "Evil\r\nBcc: victim@example.org\r\n\r\n<script>alert(1)</script>"


def hostile_invitation() -> OutgoingMessage:
    calendar = planning(summary=HOSTILE, location="<img src=x onerror=alert(1)>\r\nX-Injected: 1")
    for prop in calendar.walk("VEVENT")[0]["ATTENDEE"]:
        if str(prop).endswith(CAROL):
            prop.params["CN"] = "Carol\r\nBcc: spy@example.org <b>"
    calendar.walk("VEVENT")[0]["ORGANIZER"].params["CN"] = "Alice\r\nSubject: spoofed"
    return build_request(calendar, FRED, NOW)


@pytest.mark.parametrize("language", ["en", "de"])
def test_hostile_properties_inject_neither_headers_nor_markup(language: str) -> None:
    mail = render(hostile_invitation(), language=language)
    parsed = parse(mail)
    headers = parsed.mail
    assert "Bcc" not in headers and "X-Injected" not in headers
    assert len(headers.get_all("Subject")) == 1
    assert "Evil Bcc: victim@example.org <script>alert(1)</script>" in headers["Subject"]
    assert headers["From"].addresses[0].addr_spec == ORGANIZER
    assert headers["From"].addresses[0].display_name == "Alice Subject: spoofed"
    assert "<script>" not in parsed.html and "<img" not in parsed.html and "<b>" not in parsed.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in parsed.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in parsed.html
    assert re.search(r"^Bcc:", parsed.plain, re.MULTILINE) is None


def test_hostile_identifiers_are_refused() -> None:
    with pytest.raises(ValueError):
        render_imip(invitation(), recipient=FRED, previous=None, reply_to=None, envelope_from=None,
                    message_id="<a@b>\r\nBcc: x@y", thread_id="<t@foo.example>", language="en",
                    recipient_zone=None, now=NOW, renderer=RENDERER)
    with pytest.raises(ValueError):
        render_imip(invitation(), recipient="f@baz.example\r\nBcc: x@y", previous=None, reply_to=None,
                    envelope_from=None, message_id="<a@foo.example>", thread_id="<t@foo.example>",
                    language="en", recipient_zone=None, now=NOW, renderer=RENDERER)


def test_a_message_whose_method_differs_from_its_body_is_refused() -> None:
    message = invitation()
    wrong = OutgoingMessage(Method.CANCEL, message.uid, message.sender, message.recipients, message.calendar)
    with pytest.raises(ValueError, match="METHOD"):
        render(wrong)


# --- templates ------------------------------------------------------------------------------


def test_operator_templates_override_the_packaged_ones(tmp_path: Path) -> None:
    (tmp_path / "imip.txt").write_text("{{ headline }}\nCustom footer of {{ organizer.name }}.\n")
    parsed = parse(render(invitation(), renderer=TemplateRenderer(tmp_path)))
    assert parsed.plain == "Alice Adler invites you to “Planning”.\nCustom footer of Alice Adler.\n"
    assert "<!DOCTYPE html>" in parsed.html  # not overridden: the packaged one


def test_operator_html_templates_are_autoescaped_too(tmp_path: Path) -> None:
    (tmp_path / "imip.html").write_text("<p>{{ summary }}</p>\n")
    parsed = parse(render(hostile_invitation(), renderer=TemplateRenderer(tmp_path)))
    assert "<script>" not in parsed.html and "&lt;script&gt;" in parsed.html


def test_templates_dir_comes_from_the_outbound_section(tmp_path: Path) -> None:
    from gateway.settings.config import Config, load_config

    (tmp_path / "reefknot.toml").write_text('[outbound]\ntemplates_dir = "/etc/reefknot/templates"\n')
    assert load_config(str(tmp_path / "reefknot.toml")).outbound.templates_dir == "/etc/reefknot/templates"
    assert Config().outbound.templates_dir == ""


def test_packaged_templates_compile_in_every_language() -> None:
    assert RENDERER.check() == []


@pytest.mark.parametrize("language", ["en", "de"])
def test_the_plain_reply_reader_knows_every_subject_a_person_may_answer(language: str) -> None:
    """A reply quotes our subject; the event's title in it must never be read as the answer."""
    updated, previous = update()
    for message, before in ((invitation(), None), (updated, previous), (cancel_whole(), None), (add_instance(), None)):
        subject = str(parse(render(message, previous=before, language=language)).mail["Subject"]).lower()
        assert any(subject.startswith(marker) for marker in SUBJECT_MARKERS), subject
