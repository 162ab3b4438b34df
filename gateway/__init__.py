"""Reefknot: a calendar scheduling gateway for email (iMIP in, iTIP applied, iMIP out).

The house, from the outside in: ``cli`` (the ``reefknot`` command) and ``daemon``
(``reefknot serve``) start the ``edges`` (SMTP/LMTP, IMAP, HTTP, the sender), which hand
mail to the ``service``; the service is where the pure ``core`` meets the ``store`` (the
database) and the ``adapters`` (DKIM and DNS, templates, the clock). ``settings`` reads
what the operator writes. Each layer imports only the ones below it; the contracts in
``pyproject.toml`` say so and the tests check them.
"""

__version__ = "0.1.0"
