"""A DNS server on a loopback UDP port for tests, answering TXT questions from a table it is given (dnspython).

``records`` maps a name (lower case, no final dot) to its TXT records, each a list of
character-strings, so that a record split into several strings is published split.
A name that is not in the table is NXDOMAIN; a name mapped to no records exists but
holds no TXT; a name in ``silent`` gets no answer at all, so that the asker times
out. Every question is recorded in ``questions``. The table may change while the
server runs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT

from tests.peers.servers import LOOPBACK

TTL = 60


@dataclass
class DnsServer:
    host: str
    port: int
    records: dict[str, list[list[bytes]]] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    questions: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """``HOST:PORT``, as ``--nameserver`` takes it."""
        return f"{self.host}:{self.port}"

    def publish(self, name: str, *strings: str | bytes) -> None:
        """One more TXT record at ``name``, made of ``strings``."""
        record = [s.encode() if isinstance(s, str) else s for s in strings]
        self.records.setdefault(_key(name), []).append(record)

    def answer(self, query: bytes) -> bytes | None:
        """The response to one query's wire form; None for a silent name or a packet that is not a query."""
        try:
            question = dns.message.from_wire(query)
        except dns.exception.DNSException:
            return None
        if not question.question:
            return None
        asked = question.question[0]
        name = _key(asked.name.to_text())
        self.questions.append(name)
        if name in self.silent:
            return None
        response = dns.message.make_response(question)
        response.flags |= dns.flags.AA
        if name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif asked.rdtype == dns.rdatatype.TXT and self.records[name]:
            rrset = response.find_rrset(response.answer, asked.name, dns.rdataclass.IN, dns.rdatatype.TXT, create=True)
            for strings in self.records[name]:
                rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings), TTL)
        return response.to_wire()


def _key(name: str) -> str:
    return name.lower().rstrip(".")


@contextmanager
def dns_server(records: Mapping[str, Sequence[Sequence[str]]] | None = None) -> Iterator[DnsServer]:
    """Run a DnsServer on a free loopback UDP port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(0.05)
    server = DnsServer(LOOPBACK, sock.getsockname()[1])
    for name, published in (records or {}).items():
        server.records.setdefault(_key(name), [])
        for strings in published:
            server.publish(name, *strings)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                query, client = sock.recvfrom(65535)
            except TimeoutError:
                continue
            response = server.answer(query)
            if response is not None:
                sock.sendto(response, client)

    thread = threading.Thread(target=serve, name="dns-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stopping.set()
        thread.join(5)
        sock.close()
