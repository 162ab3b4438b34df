"""Mail as it arrives and leaves (RFC 5322, 2045–2047, 3464, 6047): parsing, writing, bounces, reply addresses.

Knows nothing of iTIP: the calendar parts it finds are text for ``gateway.core.itip``.
"""
