"""The iTIP engine (RFC 5546): validate, order, apply a message to a stored object, plan the messages a change needs.

Also a local principal's own edits of its calendar (``edits``), which the command and
the CalDAV face share. Knows nothing of mail: messages arrive as parsed calendars.
"""
