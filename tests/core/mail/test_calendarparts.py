"""parse_mail over the fixture corpus in tests/data/mail, and over focused edge cases."""

from __future__ import annotations

import base64
import binascii
import re
import time
import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from gateway.core.mail.calendarparts import (
    TOO_DEEP,
    TOO_MANY_PARTS,
    CalendarPart,
    MailError,
    ParsedMail,
    parse_mail,
)
from gateway.core.mail.headers import message_id_field
from tests.peers.paths import DATA

MAIL_DIR = DATA / "mail"
MANIFEST: dict[str, dict[str, Any]] = tomllib.loads((MAIL_DIR / "manifest.toml").read_text("utf-8"))
FIXTURES = sorted(MANIFEST)
BOUNCES = [name for name in FIXTURES if MANIFEST[name]["bounce"]]

CALENDAR = (
    "BEGIN:VCALENDAR\r\n"
    "VERSION:2.0\r\n"
    "PRODID:-//Test//Test//EN\r\n"
    "METHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:dedup-1@bar.example\r\n"
    "DTSTAMP:20260401T080000Z\r\n"
    "DTSTART:20260415T130000Z\r\n"
    "SUMMARY:A summary long enough to be folded by a sender that folds at seventy-fi\r\n"
    " ve octets\r\n"
    "ORGANIZER:mailto:carol@bar.example\r\n"
    "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:alice@foo.example\r\n"
    "END:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def load(name: str) -> bytes:
    return (MAIL_DIR / name).read_bytes()


def mail(*headers: str, body: str | bytes = "") -> bytes:
    head = ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8")
    return head + (body if isinstance(body, bytes) else body.encode("utf-8"))


def part(*headers: str, body: str) -> str:
    return "\r\n".join(headers) + "\r\n\r\n" + body


def multipart(boundary: str, *parts: str, subtype: str = "mixed") -> tuple[str, str]:
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"', body


def simple_mail(*parts: str, extra: tuple[str, ...] = ()) -> bytes:
    content_type, body = multipart("b0", *parts)
    return mail(
        "From: carol@bar.example",
        "To: alice@foo.example",
        "Subject: t",
        *extra,
        "MIME-Version: 1.0",
        content_type,
        body=body,
    )


def calendar_part(content_type: str = "text/calendar; method=REQUEST", text: str = CALENDAR) -> str:
    return part(f"Content-Type: {content_type}", body=text)


def read_calendar(calendar: CalendarPart) -> Calendar:
    return Calendar.from_ical(calendar.text)


def first_component(calendar: Calendar) -> Any:
    return next(c for c in calendar.subcomponents if c.name != "VTIMEZONE")


def unfolded(calendar: CalendarPart) -> str:
    return calendar.text.replace("\r\n ", "")


def all_calendars(parsed: ParsedMail) -> tuple[CalendarPart, ...]:
    return parsed.calendar_parts + (parsed.bounce.calendar_parts if parsed.bounce else ())


# -- The corpus, table-driven ---------------------------------------------------------------


def test_every_fixture_file_has_a_manifest_entry_and_every_entry_a_file() -> None:
    files = {path.name for path in MAIL_DIR.glob("*.eml")}
    assert files == set(MANIFEST)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_is_delivered_with_crlf_line_endings(name: str) -> None:
    raw = load(name)
    assert re.search(rb"(?<!\r)\n", raw) is None
    assert re.search(rb"\r(?!\n)", raw) is None


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_structure_matches_manifest(name: str) -> None:
    expected = MANIFEST[name]
    parsed = parse_mail(load(name))
    assert len(parsed.calendar_parts) == expected["calendar_parts"]
    assert [p.location for p in parsed.calendar_parts] == expected["calendar_locations"]
    assert (parsed.bounce is not None) is expected["bounce"]
    assert parsed.tnef is expected["tnef"]
    assert parsed.is_noise is expected["noise"]
    kept = all_calendars(parsed)
    declared = kept[0].declared_method if kept else None
    assert declared == (expected["declared_method"] or None)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_calendar_reads_as_manifest_says(name: str) -> None:
    expected = MANIFEST[name]
    calendars = all_calendars(parse_mail(load(name)))
    if not expected["uid"]:
        assert calendars == ()
        return
    calendar = read_calendar(calendars[0])
    component = first_component(calendar)
    assert str(calendar.get("METHOD", "")) == expected["method"]
    assert component.name == expected["component"]
    assert str(component["UID"]) == expected["uid"]
    if "recurrence_id" in expected:
        assert component["RECURRENCE-ID"].to_ical().decode() == expected["recurrence_id"]
    else:
        assert "RECURRENCE-ID" not in component


@pytest.mark.parametrize("name", BOUNCES)
def test_bounce_fixture_reports_what_manifest_says(name: str) -> None:
    expected = MANIFEST[name]
    bounce = parse_mail(load(name)).bounce
    assert bounce is not None
    assert [list(r) for r in bounce.failed_recipients] == expected["failed_recipients"]
    assert bounce.original_message_id == (expected["original_message_id"] or None)
    assert len(bounce.calendar_parts) == expected["bounce_calendar_parts"]
    assert [p.location for p in bounce.calendar_parts] == expected["bounce_calendar_locations"]


@pytest.mark.parametrize("name", FIXTURES)
def test_calendar_text_has_only_crlf_line_endings_and_no_nul(name: str) -> None:
    for calendar in all_calendars(parse_mail(load(name))):
        assert re.search(r"(?<!\r)\n|\r(?!\n)", calendar.text) is None
        assert "\x00" not in calendar.text


def test_a_normal_invitation_parses_in_about_a_millisecond() -> None:
    raw = load("google-inline-and-attachment.eml")
    runs = []
    for _ in range(30):
        start = time.perf_counter()
        parse_mail(raw)
        runs.append(time.perf_counter() - start)
    assert sorted(runs)[len(runs) // 2] < 0.005


# -- What the corpus shows about each sender --------------------------------------------------


def test_exchange_folded_uid_is_kept_folded_in_text_and_whole_after_unfolding() -> None:
    (calendar,) = parse_mail(load("exchange-request-windows-tzid.eml")).calendar_parts
    assert "\r\n 0100000005E1F3A7C9B2D4E6F8A0B1C2D3E4F5A6B" in calendar.text
    assert calendar.content_type == "text/calendar"
    assert "TZID=W. Europe Standard Time" in calendar.text


def test_outlook_single_part_8bit_calendar_is_the_whole_message() -> None:
    parsed = parse_mail(load("outlook-request-single-part-8bit.eml"))
    (calendar,) = parsed.calendar_parts
    assert calendar.location == "1"
    assert "LOCATION:Besprechungsraum Zürich" in unfolded(calendar)
    assert parsed.subject == "Kick-off Zürich-Projekt"
    assert parsed.text_body is None


def test_encoded_word_subject_in_latin1_is_decoded() -> None:
    parsed = parse_mail(load("outlook-reply-localized-no-organizer.eml"))
    assert parsed.subject == "Akzeptiert: Projektbesprechung Q2 (Büro)"
    assert parsed.in_reply_to == "<reefknot.20260402T081500Z.3b7e51@foo.example>"
    assert parsed.references == ("<reefknot.20260402T081500Z.3b7e51@foo.example>",)


def test_inline_and_attached_copies_of_one_calendar_count_once() -> None:
    (calendar,) = parse_mail(load("google-inline-and-attachment.eml")).calendar_parts
    assert (calendar.location, calendar.declared_method, calendar.filename) == (
        "1.3",
        "REQUEST",
        None,
    )


def test_google_mail_addresses_are_normalized() -> None:
    parsed = parse_mail(load("google-inline-and-attachment.eml"))
    assert parsed.from_address == "erin@baz.example"
    assert parsed.reply_to == ("erin@baz.example",)
    assert parsed.sender_header == "calendar-notification@google.com"
    assert parsed.message_id == "<calendar-5f2a7c1e-3b9d-4e8a-a6c0-1d2e3f4a5b6c@google.com>"


def test_google_counter_keeps_declared_reply_while_body_says_counter() -> None:
    (calendar,) = parse_mail(load("google-counter-as-reply.eml")).calendar_parts
    assert calendar.declared_method == "REPLY"
    assert "\r\nMETHOD:COUNTER\r\n" in calendar.text


def test_icloud_quoted_printable_utf8_without_charset_is_decoded_as_utf8() -> None:
    (calendar,) = parse_mail(load("icloud-token-organizer.eml")).calendar_parts
    assert "LOCATION:Café Central" in unfolded(calendar)
    assert "SUMMARY:Dinner planning – Sommerfest" in unfolded(calendar)
    assert calendar.filename == "iCal-20260520-081544.ics"


def test_exchange_2003_8bit_utf8_without_charset_is_decoded_as_utf8() -> None:
    (calendar,) = parse_mail(load("utf8-without-charset.eml")).calendar_parts
    assert "SUMMARY:Réunion d’équipe – planification été" in unfolded(calendar)


def test_latin1_calendar_three_levels_deep_is_decoded_with_its_charset() -> None:
    (calendar,) = parse_mail(load("latin1-charset-calendar.eml")).calendar_parts
    assert "SUMMARY:Besprechung Bürobedarf" in unfolded(calendar)
    assert calendar.location == "1.1.3"


def test_lone_cr_line_endings_become_crlf_and_folds_survive() -> None:
    (calendar,) = parse_mail(load("lone-cr-line-endings.eml")).calendar_parts
    assert calendar.text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
    assert "in advan\r\n ce by the front desk." in calendar.text


def test_zoom_unfolded_long_lines_are_kept_whole() -> None:
    (calendar,) = parse_mail(load("zoom-request.eml")).calendar_parts
    longest = max(len(line) for line in calendar.text.split("\r\n"))
    assert longest > 500
    assert calendar.declared_method == "REQUEST"


def test_notes_quoted_printable_calendar_is_decoded() -> None:
    (calendar,) = parse_mail(load("quoted-printable-calendar.eml")).calendar_parts
    text = unfolded(calendar)
    assert (
        "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:alice@foo.example"
        in text
    )
    assert "Treffpunkt: Pförtner Werk 2" in text
    assert "=3D" not in calendar.text


def test_thunderbird_lower_case_headers_are_read() -> None:
    (calendar,) = parse_mail(load("thunderbird-no-sequence.eml")).calendar_parts
    assert calendar.content_type == "text/calendar"
    assert "SEQUENCE" not in calendar.text


def test_evolution_upper_case_method_parameter_is_read() -> None:
    (calendar,) = parse_mail(load("evolution-reply-method-upper.eml")).calendar_parts
    assert calendar.declared_method == "REPLY"


def test_octet_stream_named_invite_ics_is_a_calendar() -> None:
    (calendar,) = parse_mail(load("octet-stream-invite-ics.eml")).calendar_parts
    assert (calendar.content_type, calendar.filename) == ("application/octet-stream", "invite.ics")


def test_forwarded_message_calendar_is_found_and_text_body_is_the_forwarders() -> None:
    parsed = parse_mail(load("forward-by-non-organizer-rfc822.eml"))
    (calendar,) = parsed.calendar_parts
    assert calendar.location == "2/rfc822:3"
    assert parsed.from_address == "frank@baz.example"
    assert parsed.text_body is not None and parsed.text_body.startswith("Hi Alice,\n")


def test_tnef_only_message_is_flagged_and_has_no_calendar() -> None:
    parsed = parse_mail(load("tnef-only.eml"))
    assert parsed.tnef and parsed.calendar_parts == () and not parsed.is_noise


def test_plain_answer_exposes_its_text_and_thread() -> None:
    parsed = parse_mail(load("plain-reply-accept-by-email-only-user.eml"))
    assert parsed.text_body is not None and parsed.text_body.startswith("Accept – see you there.\n")
    assert parsed.in_reply_to == "<reefknot.20260508T090003Z.7a1f0d@foo.example>"


def test_bounce_exposes_failed_recipient_status_and_original_message_id() -> None:
    parsed = parse_mail(load("bounce-dsn-with-our-request.eml"))
    assert parsed.bounce is not None
    assert parsed.bounce.failed_recipients == (("carol@bar.example", "5.1.1"),)
    assert parsed.bounce.original_message_id == "<reefknot.20260408T084958Z.5c1d3e@foo.example>"
    assert parsed.calendar_parts == ()
    assert (
        "UID:2d8f6b1e-3c5a-4e7d-9f02-1a4b6c8d0e2f@foo.example"
        in parsed.bounce.calendar_parts[0].text
    )


# -- The method parameter -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/calendar; method=REQUEST", "REQUEST"),
        ("text/calendar; charset=utf-8; method=reply", "REPLY"),
        ('text/calendar; charset="utf-8"; METHOD=REPLY', "REPLY"),
        ('text/calendar; method="CANCEL"; charset=UTF-8', "CANCEL"),
        ("text/calendar; method=REQUEST;; charset=UTF-8", "REQUEST"),
        ("text/calendar; method=REQUEST   ", "REQUEST"),
        ("text/calendar;\r\n\tMethod = Counter ;", "COUNTER"),
        ("text/calendar; charset=utf-8", None),
        ("text/calendar; method=", None),
        ("application/ics; name=invite.ics", None),
    ],
)
def test_method_parameter_is_read_however_it_is_spelled(
    content_type: str, expected: str | None
) -> None:
    (calendar,) = parse_mail(simple_mail(calendar_part(content_type))).calendar_parts
    assert calendar.declared_method == expected


# -- Deduplication ----------------------------------------------------------------------------


def test_one_calendar_in_three_encodings_and_line_endings_counts_once() -> None:
    lf_base64 = base64.b64encode(CALENDAR.replace("\r\n", "\n").encode()).decode()
    trailing_blanks = CALENDAR.replace("\r\nEND:", " \t\r\nEND:").replace("2.0\r\n", "2.0  \r\n")
    qp_trailing = binascii.b2a_qp(trailing_blanks.encode()).decode()
    raw = simple_mail(
        calendar_part(),
        part(
            "Content-Type: application/ics; name=invite.ics",
            "Content-Transfer-Encoding: base64",
            body=lf_base64,
        ),
        part(
            "Content-Type: text/calendar",
            "Content-Transfer-Encoding: quoted-printable",
            body=qp_trailing,
        ),
    )
    (calendar,) = parse_mail(raw).calendar_parts
    assert calendar.location == "1"


def test_different_calendars_are_all_kept_in_order() -> None:
    other = CALENDAR.replace("dedup-1@", "dedup-2@")
    parts = parse_mail(simple_mail(calendar_part(), calendar_part(text=other))).calendar_parts
    assert [p.location for p in parts] == ["1", "2"]


def test_duplicate_with_a_declared_method_is_preferred_over_one_without() -> None:
    raw = simple_mail(
        calendar_part("application/ics; name=invite.ics"),
        calendar_part("text/calendar; method=REQUEST"),
    )
    (calendar,) = parse_mail(raw).calendar_parts
    assert (calendar.declared_method, calendar.location) == ("REQUEST", "2")


# -- Types, file names and decoding ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "found"),
    [
        ("text/calendar", True),
        ("application/ics", True),
        ("text/x-vcalendar", True),
        ('application/octet-stream; name="meeting.ICS"', True),
        ('application/octet-stream; name="busy.ifb"', True),
        ('application/x-unknown; name="event.ical"', True),
        ('application/octet-stream; name="notes.txt"', False),
        ("text/plain", False),
    ],
)
def test_calendar_parts_are_recognized_by_type_or_file_name(content_type: str, found: bool) -> None:
    parsed = parse_mail(
        simple_mail(part("Content-Type: text/plain", body="hi"), calendar_part(content_type))
    )
    assert len(parsed.calendar_parts) == (1 if found else 0)


def test_file_name_from_content_disposition_is_reported() -> None:
    raw = simple_mail(
        part(
            "Content-Type: application/octet-stream",
            'Content-Disposition: attachment; filename="=?utf-8?q?Termin_M=C3=A4rz.ics?="',
            body=CALENDAR,
        )
    )
    (calendar,) = parse_mail(raw).calendar_parts
    assert calendar.filename == "Termin März.ics"


def test_broken_base64_is_decoded_as_far_as_possible_and_noted() -> None:
    encoded = base64.b64encode(CALENDAR.encode()).decode()
    broken = encoded[:40] + "!!*" + encoded[40:-3]  # junk inside, last quantum cut off
    raw = simple_mail(
        part("Content-Type: text/calendar", "Content-Transfer-Encoding: base64", body=broken)
    )
    parsed = parse_mail(raw)
    (calendar,) = parsed.calendar_parts
    assert calendar.text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
    assert "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:alice@foo.example" in calendar.text
    assert any("broken base64" in defect for defect in parsed.defects)


def test_nul_bytes_are_removed_from_calendar_text() -> None:
    raw = simple_mail(calendar_part(text=CALENDAR.replace("UID:", "UID:\x00")))
    (calendar,) = parse_mail(raw).calendar_parts
    assert "UID:dedup-1@bar.example\r\n" in calendar.text


def test_invalid_utf8_without_charset_falls_back_to_cp1252() -> None:
    body = CALENDAR.replace("SUMMARY:A", "SUMMARY:\u20ac A").encode("cp1252")
    raw = mail(
        "From: carol@bar.example",
        "Content-Type: text/calendar",
        "Content-Transfer-Encoding: 8bit",
        body=body,
    )
    (calendar,) = parse_mail(raw).calendar_parts
    assert "SUMMARY:€ A summary" in calendar.text


def test_unknown_charset_is_noted_and_read_as_utf8() -> None:
    raw = simple_mail(
        calendar_part(
            "text/calendar; charset=x-no-such-charset", CALENDAR.replace("A summary", "Zürich")
        )
    )
    parsed = parse_mail(raw)
    assert "SUMMARY:Zürich" in parsed.calendar_parts[0].text
    assert any("x-no-such-charset" in defect for defect in parsed.defects)


def test_utf16_calendar_with_byte_order_mark_is_decoded() -> None:
    data = base64.b64encode(CALENDAR.encode("utf-16")).decode()
    raw = simple_mail(
        part(
            "Content-Type: application/octet-stream; name=export.ics",
            "Content-Transfer-Encoding: base64",
            body=data,
        )
    )
    (calendar,) = parse_mail(raw).calendar_parts
    assert calendar.text.startswith("BEGIN:VCALENDAR\r\n")


# -- Structure and limits --------------------------------------------------------------------


def nested_mail(depth: int) -> bytes:
    """A calendar inside ``depth`` nested multiparts (the message's own counts as the first)."""
    entity = calendar_part()
    for level in range(depth, 1, -1):
        content_type, inner = multipart(f"level{level}", entity)
        entity = content_type + "\r\n\r\n" + inner
    content_type, inner = multipart("level1", entity)
    return mail("From: carol@bar.example", "Subject: nested", content_type, body=inner)


def test_calendar_deep_in_nested_multiparts_is_found_with_its_location() -> None:
    (calendar,) = parse_mail(nested_mail(5)).calendar_parts
    assert calendar.location == "1.1.1.1.1"


def test_nesting_deeper_than_the_limit_raises_mime_too_deep() -> None:
    parse_mail(nested_mail(5), max_depth=5)
    with pytest.raises(MailError) as caught:
        parse_mail(nested_mail(6), max_depth=5)
    assert caught.value.reason == TOO_DEEP


def test_very_deep_nesting_is_refused_quickly() -> None:
    start = time.perf_counter()
    with pytest.raises(MailError) as caught:
        parse_mail(nested_mail(3000), max_parts=10_000)
    assert caught.value.reason == TOO_DEEP
    assert time.perf_counter() - start < 0.5


def test_mime_bomb_raises_too_many_parts_quickly() -> None:
    parts = "".join("--bomb\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(10_000))
    raw = mail(
        "From: x@bar.example",
        'Content-Type: multipart/mixed; boundary="bomb"',
        body=parts + "--bomb--\r\n",
    )
    start = time.perf_counter()
    with pytest.raises(MailError) as caught:
        parse_mail(raw)
    assert caught.value.reason == TOO_MANY_PARTS
    assert time.perf_counter() - start < 0.5


def test_part_limit_counts_every_entity() -> None:
    raw = simple_mail(*(part("Content-Type: text/plain", body=str(i)) for i in range(9)))
    assert parse_mail(raw, max_parts=10).text_body == "0"
    with pytest.raises(MailError, match=TOO_MANY_PARTS):
        parse_mail(raw, max_parts=9)


def test_message_without_content_type_is_plain_text() -> None:
    raw = mail("From: Bob <bob@foo.example>", "Subject: hi", body="accept\r\n")
    parsed = parse_mail(raw)
    assert (parsed.text_body, parsed.calendar_parts, parsed.defects) == ("accept\n", (), ())


@pytest.mark.parametrize(
    "raw", [b"", bytes(range(256)) * 8, b"\x00\x01\x02\r\n\r\nBEGIN:VCALENDAR\r\n"]
)
def test_garbage_is_not_a_mail_and_does_not_crash(raw: bytes) -> None:
    parsed = parse_mail(raw)
    assert parsed.calendar_parts == () and parsed.bounce is None and parsed.text_body is None
    assert parsed.defects[0].startswith("not-a-mail-message")


def test_malformed_headers_are_read_without_raising() -> None:
    raw = (
        b'From: "Unterminated <alice@foo.example\r\n'
        b"To: <<<@@@>>>, =?x-bogus?q?abc?= <bob@foo.example>\r\n"
        b"Reply-To: ,,,;;; @, carol@bar.example\r\n"
        b"Sender: =?utf-8?b?!!!?=\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9?= \xe4\xf6 =?bogus?B?YWJj?=\r\n"
        b"Message-ID: <<abc@def>\r\n"
        b"In-Reply-To: not-an-id\r\n"
        b"References: <a@b> <c@d\r\n"
        b'Content-Type: text/calendar; method=REQUEST;; charset="utf-8\r\n'
        b"Content-Disposition: attachment; filename*=utf-8''%ZZ%E4.ics\r\n"
        b"\r\n" + CALENDAR.encode()
    )
    parsed = parse_mail(raw)
    assert parsed.message_id == "<abc@def>"
    assert parsed.in_reply_to == "<not-an-id>"
    assert parsed.references == ("<a@b>",)
    assert parsed.subject == "Café äö abc"
    assert parsed.reply_to == ("carol@bar.example",)
    assert parsed.sender_header is None
    assert [p.declared_method for p in parsed.calendar_parts] == ["REQUEST"]


def test_adjacent_encoded_words_are_joined_even_across_a_split_character() -> None:
    raw = mail(
        "From: carol@bar.example",
        "Subject: =?utf-8?q?Z=C3?= =?utf-8?q?=BCrich?= =?utf-8?b?IGRhdGU=?=",
    )
    assert parse_mail(raw).subject == "Zürich date"


def test_text_body_skips_attachments() -> None:
    raw = simple_mail(
        part(
            "Content-Type: text/plain",
            "Content-Disposition: attachment; filename=notes.txt",
            body="notes",
        ),
        part(
            "Content-Type: text/plain; charset=iso-8859-1",
            "Content-Transfer-Encoding: quoted-printable",
            body="Zusage f=FCr Mittwoch",
        ),
    )
    assert parse_mail(raw).text_body == "Zusage für Mittwoch"


def test_winmail_dat_as_octet_stream_is_tnef() -> None:
    raw = simple_mail(
        part(
            "Content-Type: application/octet-stream; name=WINMAIL.DAT",
            "Content-Transfer-Encoding: base64",
            body="eJ8+IgAAAA==",
        )
    )
    assert parse_mail(raw).tnef is True


# -- Bounces ---------------------------------------------------------------------------------


def dsn_mail(*, returned: str, report_type: str = "delivery-status") -> bytes:
    status = part(
        "Content-Type: message/delivery-status",
        body="Reporting-MTA: dns; mx.bar.example\r\n\r\n"
        "Final-Recipient: rfc822; Carol@Bar.Example\r\nAction: failed\r\n"
        "Status: 5.2.2 (mailbox full)\r\n\r\n"
        "Final-Recipient: rfc822; erin@baz.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
        "Original-Recipient: rfc822; frank@baz.example\r\nAction: failed\r\n",
    )
    content_type, body = multipart(
        "r1",
        part("Content-Type: text/plain", body="Delivery failed."),
        status,
        returned,
        subtype="report",
    )
    return mail(
        "From: MAILER-DAEMON@mx.bar.example",
        "Subject: Delivery Status Notification (Failure)",
        f"{content_type}; report-type={report_type}",
        body=body,
    )


def test_dsn_lists_only_failed_recipients_with_their_status() -> None:
    headers = part(
        "Content-Type: text/rfc822-headers",
        body="From: alice@foo.example\r\nMessage-ID: <ours-1@foo.example>\r\n",
    )
    bounce = parse_mail(dsn_mail(returned=headers)).bounce
    assert bounce is not None
    assert bounce.failed_recipients == (("carol@bar.example", "5.2.2"), ("frank@baz.example", ""))
    assert bounce.original_message_id == "<ours-1@foo.example>"


def test_calendar_returned_in_a_bounce_is_never_an_applicable_part() -> None:
    returned = part(
        "Content-Type: message/rfc822",
        body=mail(
            "From: alice@foo.example",
            "Message-ID: <ours-2@foo.example>",
            "Content-Type: text/calendar; method=REQUEST",
            body=CALENDAR,
        ).decode(),
    )
    parsed = parse_mail(dsn_mail(returned=returned))
    assert parsed.calendar_parts == ()
    assert parsed.bounce is not None and parsed.bounce.original_message_id == "<ours-2@foo.example>"
    assert [p.location for p in parsed.bounce.calendar_parts] == ["3/rfc822:1"]
    assert parsed.is_noise


def test_forwarded_dsn_inside_an_attached_message_is_not_a_bounce() -> None:
    forwarded = dsn_mail(returned=part("Content-Type: text/plain", body="x")).decode()
    raw = simple_mail(
        part("Content-Type: text/plain", body="see below"),
        part("Content-Type: message/rfc822", body=forwarded),
    )
    raw = raw.replace(b"From: carol@bar.example", b"From: bob@foo.example")
    assert parse_mail(raw).bounce is None


def test_non_standard_bounce_is_recognized_by_sender_and_subject() -> None:
    raw = mail(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.bar.example>",
        "Subject: Returned mail: see transcript for details",
        body="user unknown\r\n",
    )
    parsed = parse_mail(raw)
    assert parsed.bounce is not None and parsed.bounce.failed_recipients == ()


# -- Noise ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "field", "noise"),
    [
        (("From: carol@bar.example",), None, False),
        (("From: carol@bar.example", "Auto-Submitted: no"), None, False),
        (("From: carol@bar.example", "Auto-Submitted: auto-generated"), "auto_submitted", True),
        (
            ("From: carol@bar.example", "Auto-Submitted: Auto-Replied; owner-email=x@bar.example"),
            "auto_submitted",
            True,
        ),
        (("From: carol@bar.example", "Precedence: bulk"), "bulk", True),
        (("From: carol@bar.example", "Precedence: List"), "bulk", True),
        (("From: carol@bar.example", "Precedence: first-class"), None, False),
        (("From: carol@bar.example", "List-Id: <team.bar.example>"), "bulk", True),
        (("From: Zoom <no-reply@zoom.us>",), "no_reply_sender", True),
        (("From: noreply+calendar@bar.example",), "no_reply_sender", True),
        (("From: do_not_reply@bar.example",), "no_reply_sender", True),
        (("From: calendar-noreply@bar.example",), "no_reply_sender", True),
        (("From: postmaster@bar.example",), "no_reply_sender", True),
        (("From: noreplyfan@bar.example",), None, False),
    ],
)
def test_noise_is_detected_from_headers(
    headers: tuple[str, ...], field: str | None, noise: bool
) -> None:
    parsed = parse_mail(mail(*headers, "Subject: x", body="x"))
    assert parsed.is_noise is noise
    if field is not None:
        assert getattr(parsed, field) is True


# -- Robustness -----------------------------------------------------------------------------


ROBUSTNESS_SAMPLES = [
    load(name)
    for name in (
        "bounce-dsn-with-our-request.eml",
        "forward-by-non-organizer-rfc822.eml",
        "thunderbird-no-sequence.eml",
        "latin1-charset-calendar.eml",
    )
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(ROBUSTNESS_SAMPLES),
    cut=st.integers(min_value=0, max_value=20_000),
    position=st.integers(min_value=0, max_value=20_000),
    noise=st.binary(max_size=40),
)
def test_damaged_mail_never_raises_anything_but_mail_error(
    sample: bytes, cut: int, position: int, noise: bytes
) -> None:
    damaged = sample[:position] + noise + sample[position:][: cut or None]
    try:
        parsed = parse_mail(damaged)
    except MailError:
        return
    assert isinstance(parsed, ParsedMail)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"From: a@b.example\r\nMessage-ID: <one@b.example>\r\n\r\nbody", "<one@b.example>"),
        (b"message-id:<two@b.example>\n\nbody", "<two@b.example>"),
        (b"Subject: x\r\nMessage-Id:\r\n <three@b.example>\r\nTo: c@d.example\r\n\r\n", "<three@b.example>"),
        (b"Subject: no id\r\n\r\nMessage-ID: <in-the-body@b.example>\r\n", ""),
        (b"X-Message-ID: <not-this@b.example>\r\n\r\n", ""),
        (b"Message-ID: <caf\xc3\xa9@b.example>\r\n\r\n", "<caf\u00e9@b.example>"),
        (b"Message-ID: <broken\xff@b.example>\r\n\r\n", "<broken\ufffd@b.example>"),
        (b"", ""),
    ],
)
def test_the_message_id_field_is_read_from_the_header_section_alone(raw: bytes, expected: str) -> None:
    assert message_id_field(raw) == expected
