"""WebDAV and CalDAV as pure functions: request bodies read, filters judged, responses written (RFC 4918, 4791, 6578, 6638).

Nothing here reads a socket, the store or the clock; ``gateway.service.caldav`` applies
what a request asks for and ``gateway.edges.caldav`` speaks HTTP.
"""
