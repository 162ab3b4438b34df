"""iCalendar (RFC 5545) and what is computed from it: values, instances, recurrence, free/busy, bookings, exports.

Knows nothing of mail or of who sent a message.
"""
