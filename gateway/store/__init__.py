"""The database: schema, connections, migrations, and one module of queries per table group.

Knows nothing of iCalendar semantics; it stores text and the few columns queries need.
"""
