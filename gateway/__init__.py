"""Reefknot: a calendar scheduling gateway for email (iMIP in, iTIP applied, iMIP out)."""

__version__ = "0.1.0"
