"""Prometheus metrics of one process (``prometheus-client``): what was taken in, what became of it, what was sent.

The counters, the histograms and the IMAP pollers' state live in this process, as
Prometheus expects: each process is scraped on its own ``/metrics``, and with several
processes on one PostgreSQL database a total is the sum over them. The queue depths are
read from the database at each scrape, so they are the same whichever process answers.

Every label takes values from a bounded set: sources, iTIP methods, outcomes, delivery
results and poller states are the enums below or fixed names in the code, reasons are
kebab-case names or the policy's rule names, mailboxes come from the configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PER_PROCESS = "this process's own; with several processes, sum over them"
GLOBAL = "read from the database at each scrape: the same for every process that shares it"
NO_METHOD = "none"  # no scheduling part was read: a delivery report, a plain answer, mail without a calendar
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)  # queued mail may wait for minutes


class ProcessedOutcome(StrEnum):
    """How one processing attempt ended, as ``reefknot_messages_processed_total`` counts it."""

    DONE = "done"
    IGNORED = "ignored"
    HELD = "held"  # in quarantine, with its reason
    FAILED = "failed"  # an attempt that failed; the message stays queued for the next one


class DeliveryResult(StrEnum):
    """What became of one outbound message, as ``reefknot_deliveries_total`` counts it."""

    SENT = "sent"
    DEFERRED = "deferred"  # 4xx or no connection: tried again later
    REFUSED = "refused"  # 5xx to the message
    BAD_ADDRESS = "bad-address"  # 5.1.x to RCPT TO
    UNCOMPOSABLE = "uncomposable"
    EXPIRED = "expired"  # still deferred when its lifetime ran out
    BOUNCED = "bounced"  # accepted, then a delivery report said it failed


class MailboxState(StrEnum):
    """What an IMAP poller is doing, as ``reefknot_imap_state`` shows it."""

    STOPPED = "stopped"
    WAITING = "waiting"  # another process holds the mailbox's lock
    CONNECTING = "connecting"
    CONNECTED = "connected"
    POLLING = "polling"
    IDLE = "idle"  # connected, waiting for new mail (IDLE or the poll interval)
    ERROR = "error"  # the last attempt failed; reconnecting after a backoff


class Metrics:
    """The process's registry and the metrics the listeners, processors, pollers and sender count into."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.taken_in = Counter("reefknot_messages_taken_in", f"Messages made durable, by source ({PER_PROCESS})",
                                ["source"], registry=self.registry)
        self.processed = Counter(
            "reefknot_messages_processed",
            f"Messages processed, by source, iTIP method, outcome and reason ({PER_PROCESS})",
            ["source", "method", "outcome", "reason"], registry=self.registry)
        self.processing_seconds = Histogram(
            "reefknot_processing_seconds", f"Time to process one message ({PER_PROCESS})",
            buckets=PROCESSING_BUCKETS, registry=self.registry)
        self.latency_seconds = Histogram(
            "reefknot_processing_latency_seconds",
            f"Time from a message's receipt to its outcome, waiting in the queue included ({PER_PROCESS})",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.deliveries = Counter("reefknot_deliveries", f"Outbound delivery results ({PER_PROCESS})", ["result"],
                                  registry=self.registry)
        self.imap_state = Gauge("reefknot_imap_state",
                                f"1 for what the poller of a mailbox is doing, 0 for the rest ({PER_PROCESS})",
                                ["mailbox", "state"], registry=self.registry)
        self.imap_last_poll = Gauge("reefknot_imap_last_poll_timestamp_seconds",
                                    f"When a mailbox was last polled without an error, Unix time ({PER_PROCESS})",
                                    ["mailbox"], registry=self.registry)
        self.imap_errors = Counter("reefknot_imap_errors", f"Poller errors, by mailbox ({PER_PROCESS})", ["mailbox"],
                                   registry=self.registry)

    def count_processed(self, source: str, method: str, outcome: ProcessedOutcome, reason: str, seconds: float,
                        latency: float) -> None:
        """One processing attempt's end: its counter, its processing time and its latency since receipt."""
        self.processed.labels(source, method or NO_METHOD, outcome.value, reason).inc()
        self.processing_seconds.observe(seconds)
        self.latency_seconds.observe(max(latency, 0.0))

    def count_delivery(self, result: DeliveryResult) -> None:
        self.deliveries.labels(result.value).inc()

    def add_mailbox(self, mailbox: str) -> None:
        """A poller for ``mailbox`` exists: its state and its error count show, at 0 errors, before it first runs."""
        self.imap_errors.labels(mailbox)
        self.show_mailbox(mailbox, MailboxState.STOPPED)

    def show_mailbox(self, mailbox: str, state: MailboxState) -> None:
        """The poller's state: 1 for ``state``, 0 for every other, so that a query never sees two at once."""
        for each in MailboxState:
            self.imap_state.labels(mailbox, each.value).set(1 if each is state else 0)

    def count_poll(self, mailbox: str, at: float) -> None:
        self.imap_last_poll.labels(mailbox).set(at)

    def count_mailbox_error(self, mailbox: str) -> None:
        self.imap_errors.labels(mailbox).inc()

    def exposition(self, queues: Iterable[Any] = ()) -> bytes:
        """The text ``/metrics`` answers: the counters, and the queue depths just read (``QueueDepth`` values)."""
        scrape = CollectorRegistry()
        scrape.register(_Queues(list(queues)))
        return generate_latest(self.registry) + generate_latest(scrape)


class _Queues(Collector):
    def __init__(self, queues: list[Any]) -> None:
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("reefknot_queue_depth", f"Messages waiting, by queue ({GLOBAL})", labels=["queue"])
        age = GaugeMetricFamily("reefknot_queue_oldest_seconds",
                                f"Age of the oldest waiting message, by queue; 0 when empty ({GLOBAL})",
                                labels=["queue"])
        for queue in self.queues:
            depth.add_metric([queue.queue], queue.count)
            age.add_metric([queue.queue], queue.oldest_seconds)
        yield depth
        yield age

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


METRICS = Metrics()  # the process's own, as a Prometheus client library keeps one
