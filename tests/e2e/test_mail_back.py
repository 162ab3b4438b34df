"""Mail that comes back to Reefknot's own addresses: plain answers, calendar answers from aliases, bounces.

Each test sends a real invitation from Alice through ``outbox flush`` to an SMTP peer,
reads the reply and bounce addresses from what arrived, and feeds the answer back in
with ``reefknot ingest``, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import EmailMessage, Message
from email.utils import parseaddr
from pathlib import Path

import pytest

from gateway.core.mail.replyaddress import read_token_address
from tests.peers.cli import EVENT, Reefknot, imip_mail, reply_from
from tests.peers.paths import POLICIES
from tests.peers.servers import LOOPBACK
from tests.peers.sink import Received, Sink, smtp_peer

ALICE, CAROL, DAVE = "alice@foo.example", "carol@bar.example", "dave@baz.example"
REPLY_DOMAIN = "reply.foo.example"
FUTURE = ("20270710T100000", "20270710T110000")
PAST = ("20250710T100000", "20250710T110000")


@pytest.fixture
def peer() -> Iterator[Sink]:
    with smtp_peer() as sink:
        yield sink


@pytest.fixture
def run(database_url: str, tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str]) -> Reefknot:
    config = tmp_path / "reefknot.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "{REPLY_DOMAIN}"\n'
    )
    reefknot = Reefknot(config, capsys)
    reefknot("users", "add", ALICE, "--name", "Alice")
    return reefknot


def invite(run: Reefknot, peer: Sink, tmp_path: Path, uid: str, *attendees: str, when: tuple[str, str] = FUTURE
           ) -> dict[str, Received]:
    """Alice invites the attendees; the invitations are sent; what each attendee received."""
    text = EVENT.format(uid=uid, attendees="\n".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in attendees))
    text = text.replace("20260710T100000", when[0]).replace("20260710T110000", when[1])
    path = tmp_path / f"{uid}.ics"
    path.write_text(text)
    run("event", "put", "--as", ALICE, str(path))
    run("outbox", "flush")
    return {m.rcpt_to[0]: m for m in peer.received}


def headers(mail: Received) -> Message:
    return email.message_from_bytes(mail.data)


def answer_mail(to: str, sender: str, subject: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Message-ID"] = f"<{abs(hash((to, sender, subject, body)))}@answer.test>"
    message.set_content(body)
    return bytes(message)


def ingest(run: Reefknot, tmp_path: Path, raw: bytes, recipient: str, sender: str) -> str:
    path = tmp_path / "incoming.eml"
    path.write_bytes(raw)
    return run("ingest", "--recipient", recipient, "--sender", sender, str(path))


def last_inbox_line(run: Reefknot) -> dict[str, object]:
    return run.json_lines("inbox", ALICE)[-1]


def test_invitations_ask_for_replies_at_a_token_address_and_bounces_at_one_naming_the_delivery(
    run: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    sent = invite(run, peer, tmp_path, "u-addr", CAROL, DAVE)
    carol, dave = headers(sent[CAROL]), headers(sent[DAVE])
    reply_to = {parseaddr(carol["Reply-To"])[1], parseaddr(dave["Reply-To"])[1]}
    assert all(a.endswith(f"@{REPLY_DOMAIN}") and read_token_address(a) for a in reply_to)
    assert len(reply_to) == 2  # one token per attendee
    assert parseaddr(carol["From"])[1] == ALICE  # From stays the organizer: DMARC-aligned
    bounce = read_token_address(sent[CAROL].mail_from)
    assert bounce is not None and bounce.outbox_id is not None
    assert bounce.token == read_token_address(parseaddr(carol["Reply-To"])[1]).token  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("subject", "body", "partstat"),
    [
        ("Re: Invitation: Quarterly planning", "Yes, I'll be there.\n\n> Quarterly planning", "ACCEPTED"),
        ("AW: Einladung: Quarterly planning", "Ich sage zu, bis dann!", "ACCEPTED"),
        ("Re: Invitation: Quarterly planning", "Decline - I am travelling that week.", "DECLINED"),
        ("maybe", "", "TENTATIVE"),
    ],
)
def test_a_plain_answer_to_the_reply_address_becomes_the_attendees_reply(
    run: Reefknot, peer: Sink, tmp_path: Path, subject: str, body: str, partstat: str
) -> None:
    sent = invite(run, peer, tmp_path, "u-plain", CAROL, DAVE)
    reply_to = parseaddr(headers(sent[CAROL])["Reply-To"])[1]
    assert ingest(run, tmp_path, answer_mail(reply_to, CAROL, subject, body), reply_to, CAROL).startswith("intake ")
    assert run.partstat(ALICE, "u-plain", CAROL) == partstat
    assert run.partstat(ALICE, "u-plain", DAVE) == "NEEDS-ACTION"  # only the token's attendee changes
    line = last_inbox_line(run)
    assert (line["method"], line["outcome"], line["sender"]) == ("REPLY", "applied", CAROL)
    assert f"answered {partstat} by plain email" in str(line["detail"])


def test_the_same_plain_answer_delivered_twice_is_applied_once(run: Reefknot, peer: Sink, tmp_path: Path) -> None:
    sent = invite(run, peer, tmp_path, "u-twice", CAROL)
    reply_to = parseaddr(headers(sent[CAROL])["Reply-To"])[1]
    raw = answer_mail(reply_to, CAROL, "Re: Invitation", "accept")
    ingest(run, tmp_path, raw, reply_to, CAROL)
    ingest(run, tmp_path, raw, reply_to, CAROL)
    assert [(line["outcome"], line["reason"]) for line in run.json_lines("inbox", ALICE)][-2:] == [
        ("applied", "plain-answer"), ("duplicate", "already-processed"),
    ]


def test_a_forwarded_copy_answered_from_another_address_counts_for_the_invited_attendee(
    run: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    sent = invite(run, peer, tmp_path, "u-fwd", CAROL)
    reply_to = parseaddr(headers(sent[CAROL])["Reply-To"])[1]
    ingest(run, tmp_path, answer_mail(reply_to, "carol.home@mail.example", "Re: Invitation", "Accept"), reply_to,
           "carol.home@mail.example")
    assert run.partstat(ALICE, "u-fwd", CAROL) == "ACCEPTED"
    assert "carol.home@mail.example" not in run("calendar", "export", ALICE, "--uid", "u-fwd")


@pytest.mark.parametrize("body", ["Thanks, I will check my diary.", "I cannot accept, sorry", "yes or no? maybe"])
def test_an_unclear_plain_answer_is_recorded_for_the_organizer_and_changes_nothing(
    run: Reefknot, peer: Sink, tmp_path: Path, body: str
) -> None:
    sent = invite(run, peer, tmp_path, "u-unclear", CAROL)
    reply_to = parseaddr(headers(sent[CAROL])["Reply-To"])[1]
    ingest(run, tmp_path, answer_mail(reply_to, CAROL, "Re: Invitation: Quarterly planning", body), reply_to, CAROL)
    assert run.partstat(ALICE, "u-unclear", CAROL) == "NEEDS-ACTION"
    line = last_inbox_line(run)
    assert (line["outcome"], line["reason"]) == ("recorded", "unclear-plain-answer")
    assert body in str(line["detail"])


def test_an_answer_after_the_event_and_its_grace_period_is_recorded_not_applied(
    run: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    sent = invite(run, peer, tmp_path, "u-old", CAROL, when=PAST)
    reply_to = parseaddr(headers(sent[CAROL])["Reply-To"])[1]
    ingest(run, tmp_path, answer_mail(reply_to, CAROL, "Re: Invitation", "Accept"), reply_to, CAROL)
    assert run.partstat(ALICE, "u-old", CAROL) == "NEEDS-ACTION"
    assert last_inbox_line(run)["reason"] == "reply-token-expired"


def test_a_calendar_reply_from_an_alias_counts_for_the_attendee_only_through_the_reply_address(
    run: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    sent = invite(run, peer, tmp_path, "u-alias", CAROL)
    reply_to = parseaddr(headers(sent[CAROL])["Reply-To"])[1]
    calendar = reply_from("u-alias", "carol.alias@bar.example", "ACCEPTED")
    raw = _calendar_mail("carol.alias@bar.example", ALICE, calendar)
    ingest(run, tmp_path, raw, ALICE, "carol.alias@bar.example")  # straight to Alice: not an invited address
    assert (run.partstat(ALICE, "u-alias", CAROL), last_inbox_line(run)["outcome"]) == ("NEEDS-ACTION", "uninvited")
    again = reply_from("u-alias", "carol.alias@bar.example", "ACCEPTED", stamp="20260603T080000Z")
    ingest(run, tmp_path, _calendar_mail("carol.alias@bar.example", reply_to, again), reply_to,
           "carol.alias@bar.example")
    assert run.partstat(ALICE, "u-alias", CAROL) == "ACCEPTED"


def test_a_bounce_to_the_bounce_address_fails_the_delivery_and_the_organizer_sees_5_1(
    run: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    sent = invite(run, peer, tmp_path, "u-bounce", CAROL, DAVE)
    returned = sent[DAVE]
    bounce = _dsn(returned, DAVE, "failed", "5.1.1", "550 5.1.1 <dave@baz.example>: Recipient address rejected")
    ingest(run, tmp_path, bounce, returned.mail_from, "")
    (row,) = [r for r in run.json_lines("outbox") if r["recipients"] == [DAVE]]
    assert row["state"] == "failed" and "bounced" in row["last_error"] and "5.1.1" in row["last_error"]
    export = run("calendar", "export", ALICE, "--uid", "u-bounce")
    assert "SCHEDULE-STATUS=5.1" in export.replace("\r\n ", "")
    assert run.partstat(ALICE, "u-bounce", DAVE) == "NEEDS-ACTION"  # the REQUEST inside was not applied
    line = last_inbox_line(run)
    assert (line["method"], line["outcome"], line["reason"]) == ("REQUEST", "bounced", "delivery-failed")
    assert DAVE in str(line["detail"])


def test_a_delay_warning_changes_nothing(run: Reefknot, peer: Sink, tmp_path: Path) -> None:
    sent = invite(run, peer, tmp_path, "u-delay", DAVE)
    warning = _dsn(sent[DAVE], DAVE, "delayed", "4.4.1", "connect to baz.example: Connection timed out")
    assert "(delivery-delayed)" in ingest(run, tmp_path, warning, sent[DAVE].mail_from, "")
    (row,) = run.json_lines("outbox")
    assert row["state"] == "sent"


def test_an_unauthenticated_bounce_to_the_organizers_own_address_is_recorded_and_changes_nothing(
    run: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    sent = invite(run, peer, tmp_path, "u-msgid", DAVE)
    output = ingest(run, tmp_path, _dsn(sent[DAVE], DAVE, "failed", "5.2.2", "mailbox full"), ALICE, "")
    assert "(unauthenticated-bounce)" in output
    (row,) = run.json_lines("outbox")
    assert row["state"] == "sent"
    assert "SCHEDULE-STATUS=5.1" not in run("calendar", "export", ALICE, "--uid", "u-msgid").replace("\r\n ", "")
    line = last_inbox_line(run)
    assert (line["method"], line["outcome"], line["reason"]) == ("REQUEST", "recorded", "unauthenticated-bounce")
    assert DAVE in str(line["detail"]) and "the delivery stays sent" in str(line["detail"])


OUR_MTA = "mx.foo.example"


@pytest.fixture
def trusting_run(database_url: str, tmp_path: Path, peer: Sink, capsys: pytest.CaptureFixture[str]) -> Reefknot:
    """As ``run``, under the default policy, believing the Authentication-Results of our MTA."""
    policy = POLICIES / "default.toml"
    config = tmp_path / "reefknot.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        f'[outbound]\nsmarthost = "{LOOPBACK}:{peer.port}"\nreply_domain = "{REPLY_DOMAIN}"\n\n'
        f'[policy]\nfiles = ["{policy}"]\n\n[trust]\ndns = false\nauthserv_ids = ["{OUR_MTA}"]\n'
    )
    reefknot = Reefknot(config, capsys)
    reefknot("users", "add", ALICE, "--name", "Alice")
    return reefknot


@pytest.mark.parametrize(
    ("reporter", "signer", "state", "outcome", "reason"),
    [
        pytest.param("MAILER-DAEMON@mx.baz.example", "baz.example", "failed", "bounced", "delivery-failed",
                     id="the-attendees-mail-system"),
        pytest.param("MAILER-DAEMON@mx.foo.example", "foo.example", "failed", "bounced", "delivery-failed",
                     id="our-own-mail-system"),
        pytest.param("MAILER-DAEMON@mx.evil.example", "evil.example", "sent", "recorded", "unauthenticated-bounce",
                     id="authenticated-but-for-neither"),
        pytest.param("MAILER-DAEMON@mx.baz.example", "", "sent", "recorded", "unauthenticated-bounce",
                     id="claims-the-attendees-domain-unsigned"),
    ],
)
def test_a_bounce_to_the_organizers_own_address_applies_when_its_reporter_is_authenticated_for_the_delivery(
    trusting_run: Reefknot, peer: Sink, tmp_path: Path, reporter: str, signer: str, state: str, outcome: str,
    reason: str,
) -> None:
    run = trusting_run
    sent = invite(run, peer, tmp_path, "u-msgid-auth", DAVE)
    verdict = f"dkim=pass header.d={signer} header.s=mta" if signer else "dkim=none"
    trace = f"Received: from {reporter.split('@')[1]} by {OUR_MTA}\r\nAuthentication-Results: {OUR_MTA}; {verdict}\r\n"
    bounce = _dsn(sent[DAVE], DAVE, "failed", "5.2.2", "mailbox full", reporter=reporter, trace=trace)
    assert f"({reason})" in ingest(run, tmp_path, bounce, ALICE, "")
    (row,) = run.json_lines("outbox")
    assert row["state"] == state
    line = last_inbox_line(run)
    assert (line["outcome"], line["reason"]) == (outcome, reason)
    assert ("SCHEDULE-STATUS=5.1" in run("calendar", "export", ALICE, "--uid", "u-msgid-auth").replace("\r\n ", "")
            ) is (state == "failed")


def test_a_bounce_address_names_only_its_own_principals_deliveries(run: Reefknot, peer: Sink, tmp_path: Path) -> None:
    """Carol knows Alice's bounce address; with Bob's outbox id in it, it does not fail Bob's answer to her."""
    bob = "bob@foo.example"
    run("users", "add", bob, "--name", "Bob")
    text = EVENT.format(uid="u-two", attendees=f"ATTENDEE;RSVP=TRUE:mailto:{bob}").replace(
        "ORGANIZER;CN=Alice:mailto:alice@foo.example", f"ORGANIZER:mailto:{CAROL}").replace(
        "VERSION:2.0", "VERSION:2.0\nMETHOD:REQUEST").replace("20260710", "20270710")
    path = imip_mail(tmp_path, "u-two", CAROL, ALICE, text, "REQUEST")
    run("ingest", "--recipient", ALICE, "--recipient", bob, "--sender", CAROL, str(path))
    for who in (ALICE, bob):
        run("event", "reply", "--as", who, "u-two", "--partstat", "TENTATIVE")
    run("outbox", "flush")
    sent = {parseaddr(headers(m)["From"])[1]: m for m in peer.received}
    alices, bobs = read_token_address(sent[ALICE].mail_from), read_token_address(sent[bob].mail_from)
    assert alices is not None and bobs is not None and alices.token != bobs.token
    borrowed = f"bounce+{bobs.outbox_id}.{alices.token}@{REPLY_DOMAIN}"
    bounce = _dsn(sent[bob], CAROL, "failed", "5.1.1", "550 5.1.1 User unknown")
    assert "(unmatched-delivery-report)" in ingest(run, tmp_path, bounce, borrowed, "")
    assert {r["sender"]: r["state"] for r in run.json_lines("outbox")} == {ALICE: "sent", bob: "sent"}


def test_a_bounce_naming_nothing_sent_from_here_is_ignored_with_its_reason(
    run: Reefknot, peer: Sink, tmp_path: Path
) -> None:
    sent = invite(run, peer, tmp_path, "u-stranger", DAVE)
    stranger = Received(sent[DAVE].mail_from, (DAVE,), sent[DAVE].data.replace(b"Message-ID: <", b"Message-ID: <x"))
    assert "(unmatched-delivery-report)" in ingest(run, tmp_path, _dsn(stranger, DAVE, "failed", "5.1.1", "no"),
                                                   ALICE, "")
    assert run.json_lines("outbox")[0]["state"] == "sent"


def _calendar_mail(sender: str, to: str, calendar: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, "Accepted: Quarterly planning"
    message["Message-ID"] = f"<{abs(hash((to, calendar)))}@answer.test>"
    message.set_content("Accepted.")
    message.add_alternative(calendar.replace("\n", "\r\n").encode(), maintype="text", subtype="calendar",
                            params={"method": "REPLY", "charset": "utf-8"})
    return bytes(message)


def _dsn(returned: Received, recipient: str, action: str, status: str, diagnostic: str, *,
         reporter: str = "MAILER-DAEMON@mx.foo.example", trace: str = "") -> bytes:
    """A Postfix-style delivery status notification returning the whole message; ``trace`` goes on top."""
    boundary = "dsn-boundary"
    return (
        f"{trace}From: {reporter} (Mail Delivery System)\r\n"
        f"To: {returned.mail_from}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.foo.example>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.foo.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
    ).encode() + returned.data + f"\r\n--{boundary}--\r\n".encode()
