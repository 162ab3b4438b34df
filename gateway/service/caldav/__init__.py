"""The CalDAV face's work on the store: resources found and their properties, REPORTs, writes and scheduling.

Each request is one call in one transaction, for a signed-in principal that reaches
only its own home. Writes go through the same planner as ``reefknot event put``
(``gateway.service.events``), so a client's invitation, answer or cancellation is
scheduled exactly as the command's and mail's are. Requests are read and responses
written by ``gateway.core.dav``; HTTP is ``gateway.edges.caldav``'s.
"""
