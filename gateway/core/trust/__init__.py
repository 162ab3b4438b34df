"""Who sent a message and may they do what it asks: evidence, Authentication-Results, authority, policy rules.

Facts in, a decision out; the DNS and DKIM lookups that gather facts are ``gateway.adapters.dkim``'s.
"""
