"""The real peers the tests talk to, and the harness around them.

``servers``: throwaway PostgreSQL, Dovecot IMAP and smtp-sink processes; ``sink``: an
aiosmtpd sink in this process; ``serve``: ``reefknot serve`` as a real process;
``cli``: the ``reefknot`` command and the mail and events to feed it; ``corpus_site``
and ``itip_scenarios``: the sites and the scenario runner the data-driven tests use;
``paths``: where the project and ``tests/data`` are.
"""
