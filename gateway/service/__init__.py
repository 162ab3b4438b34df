"""Orchestration: the one place where the pure core meets the store.

Mail in:
- ``processing``: the intake queue's processors — make mail durable, claim it, process
  each message within its budget, retry, hold, release;
- ``inbound``: one message through the inbound pipeline, an ordered table of named
  steps — bounce, plain answer, limits, then per recipient judge, hold, duplicate, …,
  apply, deliver;
- ``trust``: the loaded trust settings, and gathering the facts of who sent it (DKIM,
  Authentication-Results, the directory) for the pure ``gateway.core.trust.judging``;
- ``routing``: whom a message is for, by address, alias or reply token;
- ``plain_answers``: a plain-email "accept"/"decline"/"maybe" as the attendee's REPLY;
- ``bounce_reports``: a bounce of Reefknot's own mail failing its delivery.

Changes and answers:
- ``events``: a local principal's own edits (put, reply, delete; the edit itself is
  ``gateway.core.itip.edits``), for the command and the CalDAV face;
- ``rooms``: rooms and resources answering their invitations;
- ``freebusy``: busy time from the store, and the answer to a VFREEBUSY request;
- ``itip_delivery``: handing the resulting iTIP messages to local principals or to the outbox.

Calendar programs:
- ``caldav``: CalDAV requests on the store — ``tree`` (what a request names, PROPFIND),
  ``reports`` (multiget, query, sync, free/busy), ``writes`` (PUT, DELETE, MKCALENDAR,
  PROPPATCH, scheduled through ``events``), ``outbox`` (free/busy asked at once);
- ``credentials``: app passwords, and signing in with them.

Publishing and bookkeeping:
- ``publishing``: exports, calendar feeds and free/busy for the command and the HTTP face;
- ``polled_mailboxes``: where the IMAP poller is in each mailbox, and its lock.

Mail out:
- ``delivery_attempts``: claiming due outbox rows, composing each, recording every attempt
  with its SCHEDULE-STATUS.

Each change runs inside one database transaction per message.
"""
