"""The database schema: principals, calendars, the intake queue, mailbox handoffs, inboxes, the ledger, the outbox, reply tokens, IMAP mailboxes, app passwords.

Tables only; queries live with the modules that own each table. Changes to this file
come with an Alembic migration in ``gateway/store/migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.sql.expression import false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone; it is stored as naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Principal(Base):
    """A local calendar user, room or resource: the explicit directory (never "anyone at our domain")."""

    __tablename__ = "principals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(20), default="individual")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    feed_token: Mapped[str] = mapped_column(String(64), default="")  # the secret in its calendar feed URL; "": none
    calendar_revision: Mapped[int] = mapped_column(BigInteger, default=0)  # random, new with every calendar change
    aliases: Mapped[list[Alias]] = relationship(back_populates="principal", cascade="all, delete-orphan")


class Alias(Base):
    """Another address that reaches the same principal."""

    __tablename__ = "aliases"
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    principal: Mapped[Principal] = relationship(back_populates="aliases")


class DirectoryRevision(Base):
    """One row: a random number, new with every change to principals or aliases (what directory caches check)."""

    __tablename__ = "directory_revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)


class CalendarCollection(Base):
    """One calendar of a principal, as CalDAV clients see it: a collection of objects with its own sync state.

    ``sync_seq`` counts the changes to its members; the change log rows carry the number
    each member last changed at. Tokens at or below ``pruned_through`` are no longer
    answerable (the deletions they would need were forgotten).
    """

    __tablename__ = "calendars"
    __table_args__ = (UniqueConstraint("principal_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))  # its path segment under the principal's home
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    color: Mapped[str] = mapped_column(String(20), default="")
    sort_order: Mapped[int] = mapped_column(Integer, default=0)  # calendar-order (Apple)
    timezone: Mapped[str] = mapped_column(Text, default="")  # a VCALENDAR with one VTIMEZONE, or ""
    transparent: Mapped[bool] = mapped_column(default=False)  # schedule-calendar-transp: counts for free/busy
    components: Mapped[str] = mapped_column(String(100), default="VEVENT,VTODO,VJOURNAL")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sync_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    pruned_through: Mapped[int] = mapped_column(BigInteger, default=0)


class CalendarChange(Base):
    """When a member of a calendar last changed (``seq``), and whether it is gone: what sync tokens are read against."""

    __tablename__ = "calendar_changes"
    __table_args__ = (UniqueConstraint("calendar_id", "href"), Index("ix_calendar_changes_calendar_id_seq", "calendar_id", "seq"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    href: Mapped[str] = mapped_column(String(500))
    seq: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(default=False)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CalendarObject(Base):
    """One UID in one principal's calendars: the master and its overrides, as iCalendar text.

    A UID is in one calendar of its principal at a time, under the resource name
    (``href``) the client chose or Reefknot gave it. ``hull_start``/``hull_end`` bound all
    its occurrences (None: unbounded), for a time-range query to skip it in SQL.
    """

    __tablename__ = "calendar_objects"
    __table_args__ = (
        UniqueConstraint("principal_id", "uid"),
        UniqueConstraint("calendar_id", "href"),
        Index("ix_calendar_objects_calendar_id_hull_end", "calendar_id", "hull_end"),
        Index("ix_calendar_objects_principal_id_organizer", "principal_id", "organizer"),  # known_organizers
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    calendar_id: Mapped[int | None] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"), nullable=True)
    href: Mapped[str] = mapped_column(String(500), default="")
    etag: Mapped[str] = mapped_column(String(64), default="")
    schedule_tag: Mapped[str] = mapped_column(String(64), default="")
    hull_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    hull_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    uid: Mapped[str] = mapped_column(String(500))
    component: Mapped[str] = mapped_column(String(20))
    organizer: Mapped[str | None] = mapped_column(String(320), nullable=True)
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    ical: Mapped[str] = mapped_column(Text)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revision: Mapped[int] = mapped_column(BigInteger, default=0)  # random, new with every version of the text


class OrderingTombstone(Base):
    """The versions applied to a UID that has no stored object (cancelled first, or removed), for a while."""

    __tablename__ = "ordering_tombstones"
    __table_args__ = (UniqueConstraint("principal_id", "uid"), Index("ix_ordering_tombstones_kept_until", "kept_until"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(500))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    kept_until: Mapped[datetime] = mapped_column(UTCDateTime())


class IntakeMessage(Base):
    """A message as it arrived, durable before it is acknowledged; its state is where it sits."""

    __tablename__ = "intake"
    __table_args__ = (
        Index("ix_intake_state_id", "state", "id"),
        Index("ix_intake_sender_domain_received_at", "sender_domain", "received_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(20))
    envelope_sender: Mapped[str] = mapped_column(String(320), default="")
    sender_domain: Mapped[str] = mapped_column(String(255), default="")  # for the per-domain rate limit
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    message_id: Mapped[str] = mapped_column(String(500), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # claimed without an outcome
    reason: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    handed_on: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # the mailbox has it


class Handoff(Base):
    """A message a listener handed on to its next hop for one recipient: a retry of it is not handed on twice."""

    __tablename__ = "handoffs"
    __table_args__ = (UniqueConstraint("digest", "recipient"), Index("ix_handoffs_delivered_at", "delivered_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the envelope sender and the message bytes
    recipient: Mapped[str] = mapped_column(String(320))  # as the MTA gave it, lower case
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InboxEntry(Base):
    """What became of one scheduling message for one principal: the principal's inbox."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_principal_id_id", "principal_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    intake_id: Mapped[int | None] = mapped_column(ForeignKey("intake.id", ondelete="SET NULL"), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    method: Mapped[str] = mapped_column(String(20), default="")
    uid: Mapped[str] = mapped_column(String(500), default="")
    sender: Mapped[str] = mapped_column(String(320), default="")
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    ical: Mapped[str] = mapped_column(Text, default="")
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # deleted by a CalDAV client


class LedgerEntry(Base):
    """A scheduling message already handled for a principal: replays change nothing."""

    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("principal_id", "fingerprint"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxMessage(Base):
    """One iTIP message for one non-local recipient, written with the change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_uid_recipient", "uid", "recipient"),  # what this recipient was sent before
        Index("ix_outbox_message_id", "message_id"),  # the delivery a bounce returns
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    method: Mapped[str] = mapped_column(String(20))
    uid: Mapped[str] = mapped_column(String(500))
    sender: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    ical: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str] = mapped_column(Text, default="")
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # a sender is at it
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # sent, failed or dropped
    reply_token: Mapped[str] = mapped_column(String(40), default="")  # "": replies go to the sender itself
    previous_ical: Mapped[str] = mapped_column(Text, default="")  # what this recipient was sent before, if anything
    in_reply_to: Mapped[str] = mapped_column(String(500), default="", server_default="")  # the mail it answers; "": none
    reference_ids: Mapped[str] = mapped_column(Text, default="", server_default="")  # that mail's References, spaced


class ReplyToken(Base):
    """An unguessable name for one (event, outside party) pair of a local principal, used in reply and bounce addresses."""

    __tablename__ = "reply_tokens"
    __table_args__ = (UniqueConstraint("principal_id", "uid", "address"),)
    token: Mapped[str] = mapped_column(String(40), primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(500))
    address: Mapped[str] = mapped_column(String(320))  # the outside party: the attendee, or the organizer
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # None: an endless series


class ImapMailbox(Base):
    """Where the IMAP poller stands in one mailbox: its UIDVALIDITY and the last UID taken (RFC 3501 2.3.1.1)."""

    __tablename__ = "imap_mailboxes"
    __table_args__ = (UniqueConstraint("host", "username", "folder"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(320))
    folder: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)  # 0: never selected
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AppPassword(Base):
    """A password a principal's calendar program signs in with: an scrypt hash, under a label to revoke it by."""

    __tablename__ = "app_passwords"
    __table_args__ = (UniqueConstraint("principal_id", "label"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    hash: Mapped[str] = mapped_column(String(300))  # scrypt$N$r$p$salt$key, base64
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
