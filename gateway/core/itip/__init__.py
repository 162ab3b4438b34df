"""The iTIP engine (RFC 5546): validate, order, apply a message to a stored object, plan the messages a change needs."""
