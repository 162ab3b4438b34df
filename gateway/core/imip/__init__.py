"""Rendering one iTIP message as the iMIP mail a person reads (RFC 6047): facts, changes and wording.

The templates and translations are given by the caller; nothing here reads a file.
"""
