"""The database: schema, connections, migrations, and one module of queries per table group.

``db`` is the handle (engine, sessions, the SQLite write discipline) and owns the
``caches`` its sessions share; ``schema`` and ``migrations`` the tables; ``intake``,
``calendars``, ``directory``, ``inbox``, ``ledger``, ``outbox``, ``replytokens`` and
``mailboxes`` the queries of each table group; ``writers`` the SQLite write gate. Knows
nothing of iCalendar semantics: it stores text and the few columns queries need, and
the queues (intake, outbox) hand out frozen records, not rows.
"""
