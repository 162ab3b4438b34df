"""Prometheus metrics of one process (``prometheus-client``): what was taken in, what became of it, what was sent.

The counters live in this process, as Prometheus expects (each process is scraped on
its own ``/metrics``); the queue depths are read from the database at each scrape, so
they are the same whichever process answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The process's registry and the metrics the listeners, processors and sender count into."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.taken_in = Counter("reefknot_messages_taken_in", "Messages made durable, by source", ["source"],
                                registry=self.registry)
        self.processed = Counter("reefknot_messages_processed", "Messages processed, by outcome and reason",
                                 ["outcome", "reason"], registry=self.registry)
        self.processing_seconds = Histogram("reefknot_processing_seconds", "Time to process one message",
                                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                            registry=self.registry)
        self.deliveries = Counter("reefknot_deliveries", "Outbound delivery attempts, by result", ["result"],
                                  registry=self.registry)

    def exposition(self, queues: Iterable[Any] = ()) -> bytes:
        """The text ``/metrics`` answers: the counters, and the queue depths just read (``QueueDepth`` values)."""
        scrape = CollectorRegistry()
        scrape.register(_Queues(list(queues)))
        return generate_latest(self.registry) + generate_latest(scrape)


class _Queues(Collector):
    def __init__(self, queues: list[Any]) -> None:
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("reefknot_queue_depth", "Messages waiting, by queue", labels=["queue"])
        age = GaugeMetricFamily("reefknot_queue_oldest_seconds", "Age of the oldest waiting message, by queue",
                                labels=["queue"])
        for queue in self.queues:
            depth.add_metric([queue.queue], queue.count)
            age.add_metric([queue.queue], queue.oldest_seconds)
        yield depth
        yield age

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


METRICS = Metrics()  # the process's own, as a Prometheus client library keeps one
