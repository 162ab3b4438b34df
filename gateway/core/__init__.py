"""The pure core: iCalendar, iTIP, mail parsing and policy as data in, data out.

Nothing in this package opens a socket, a file or a database, or reads the clock:
the current time is always an argument. ``tests/test_layering.py`` enforces it.
"""
