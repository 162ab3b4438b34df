"""Protocol edges: take mail in, make it durable, hand it on; send what the outbox holds. No parsing or policy here.

``smtp`` (the SMTP and LMTP listeners, with ``groupcommit`` batching their commits),
``imap`` and ``imap_session`` (the IMAP poller), ``http`` (free/busy and calendar
feeds), ``sender`` with ``smarthost`` (the outbox to the smarthost), ``sdnotify`` and
``waiting`` (systemd and asyncio helpers). An edge reaches the store only through
``gateway.service`` and the database handle; what the mail means is never decided here.
"""
