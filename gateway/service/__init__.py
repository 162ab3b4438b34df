"""Orchestration: the one place where the pure core meets the store.

``mailflow`` applies mail from the intake queue, ``events`` serves the CLI/HTTP faces
(put, reply, delete), and ``delivery`` hands the resulting messages to local principals
or to the outbox. Each runs inside one database transaction per message.
"""
