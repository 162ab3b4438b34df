"""The pure core: iCalendar, iTIP, mail parsing and policy as data in, data out.

Nothing in this package opens a socket, a file or a database, or reads the clock:
the current time is always an argument. ``tests/test_layering.py`` and the import contracts
in ``pyproject.toml`` enforce it.

By family:

- ``mail``: mail as it arrives and leaves — the MIME tree, header fields, charsets, the
  calendar parts of a message, bounces, plain-email answers, the reply and bounce
  addresses, and the retry schedule of an outbound delivery;
- ``calendar``: iCalendar itself — reading and writing, values, instances and
  recurrence, free/busy, a room's booking decision, privacy, what may leave;
- ``itip``: the iTIP engine — validate, order, apply, plan, and a local principal's own
  edits of its calendar;
- ``imip``: rendering an iTIP message as mail people read — text, changes, wording;
- ``trust``: who sent it and may they do that — evidence, Authentication-Results,
  authority, the policy rules over those facts, and judging one message by them;
- beside them: ``model`` (the shared vocabulary), ``addresses`` (calendar user
  addresses) and ``checkpoint`` (where long work can be stopped).
"""
