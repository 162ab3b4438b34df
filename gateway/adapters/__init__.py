"""The adapters the service uses for what lies outside Python: DKIM and DNS, the clock, templates and catalogs, the budget timer.

``dkim`` signs outgoing mail and verifies incoming signatures (dkimpy, ``cryptography``,
dnspython); ``templates`` loads the Jinja templates and gettext catalogs that
``gateway.core.imip.render`` fills; ``clock`` is the one place that reads the time of
day; ``deadline`` is the processing budget the core's checkpoints enforce. Nothing
here decides anything about a message, and nothing here touches the database.
"""
