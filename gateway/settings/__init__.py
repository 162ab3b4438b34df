"""Everything the operator writes, read by one typed reader: the configuration file and the policy files.

``reader`` is that reader: TOML with the file and the line in every error, and typed
access to a table that refuses unknown keys. ``config`` reads ``reefknot.toml`` into a
frozen ``Config``, with ``files`` (where a named file is, and whether it can be read)
and ``database`` (a supported URL whose driver imports); ``policy`` reads the
``policies/*.toml`` files, one pass per file, into a ``Policy`` and the calendar relays
(``relays`` reads a ``[[relay]]`` table).
What the values mean when mail arrives is ``gateway.core.trust``'s to decide; nothing
here reads mail or the database.
"""
