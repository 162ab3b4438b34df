"""Asking DNS what a DKIM key record's name publishes, for ``dkim check``. Not for verifying mail (``dkim``).

Unlike the verifier's lookup, which only needs "a record or none", this one keeps
NXDOMAIN, an empty answer and a failure apart, because each asks the operator for a
different fix. What the answer means is ``gateway.core.trust.keyrecord``'s to say.
"""

from __future__ import annotations

import ipaddress
import socket

import dns.exception
import dns.resolver

from gateway.core.trust.keyrecord import LookupOutcome, PublishedRecords

DNS_PORT = 53


def resolver_for(nameserver: str | None) -> dns.resolver.Resolver:
    """The system's resolver, or one that asks only ``nameserver`` (``HOST``, ``HOST:PORT``, ``[V6]:PORT``).

    Raises ValueError naming what cannot be used.
    """
    if not nameserver:
        try:
            return dns.resolver.get_default_resolver()
        except dns.resolver.NoResolverConfiguration as error:
            raise ValueError("this machine has no resolver configured (/etc/resolv.conf): name a nameserver") from error
    host, port = _host_and_port(nameserver)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [_address_of(host)]
    resolver.port = port
    return resolver


def _host_and_port(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or str(DNS_PORT)
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:  # a bare IPv6 address, or a host without a port
        host, port = text, str(DNS_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"nameserver {text!r} is not HOST, HOST:PORT or [IPV6]:PORT")
    return host, int(port)


def _address_of(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0])
    except (OSError, IndexError) as error:
        raise ValueError(f"nameserver {host!r}: cannot find its address ({error})") from error


def lookup_published(name: str, timeout: float, resolver: dns.resolver.Resolver) -> PublishedRecords:
    """The TXT records at ``name``, each one's strings joined; never raises for what DNS answers."""
    try:
        answer = resolver.resolve(name, "TXT", lifetime=timeout, search=False)
    except dns.resolver.NXDOMAIN:
        return PublishedRecords(name, LookupOutcome.NXDOMAIN)
    except dns.resolver.NoAnswer:
        return PublishedRecords(name, LookupOutcome.NO_TXT)
    except dns.exception.Timeout:
        return PublishedRecords(name, LookupOutcome.FAILED, detail=f"no answer within {timeout:g}s")
    except dns.exception.DNSException as error:
        return PublishedRecords(name, LookupOutcome.FAILED, detail=f"{type(error).__name__}: {error}")
    return PublishedRecords(name, LookupOutcome.FOUND, tuple(b"".join(rdata.strings) for rdata in answer))
