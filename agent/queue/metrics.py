"""/metrics of the queue's processes: depth, task latency and duration, retries.

The queue's metrics join the registry of ``agent.tick.metrics`` (provider requests,
waits), so a worker's /metrics also shows what its ticks did. The depth is asked of the
broker when /metrics is read, never in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("cadence.queue")

_SECONDS = (0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class Depth(Collector):
    """``cadence_queue_depth``: messages waiting on the broker (-1: not reachable)."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self.depth = depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            value = float(self.depth())
        except Exception as exc:
            log.warning("queue depth not read: %s", type(exc).__name__)
            value = -1.0
        yield GaugeMetricFamily(
            "cadence_queue_depth", "Tasks waiting on the broker (-1: broker unreachable).", value
        )


class QueueMetrics:
    def __init__(self, registry: CollectorRegistry, depth: Callable[[], int] | None = None) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def seconds(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, ("task",), registry=registry, buckets=_SECONDS)

        self.tasks = counter(
            "cadence_queue_tasks",
            "Tasks finished, by task and outcome (ok, partial, failed, retried, skipped).",
            ("task", "outcome"),
        )
        self.latency = seconds(
            "cadence_queue_task_latency_seconds",
            "From enqueued to started: how long tasks wait for a worker.",
        )
        self.duration = seconds("cadence_queue_task_duration_seconds", "Wall time of a task.")
        self.retries = counter(
            "cadence_queue_retries",
            "Tasks put back for later (their unit's lease was taken, or they failed).",
            ("task", "reason"),
        )
        self.enqueued = counter(
            "cadence_queue_enqueued", "Tasks this process put on the queue.", ("task",)
        )
        if depth is not None:
            registry.register(Depth(depth))


def serve(registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> Any:
    """Serve /metrics on ``port`` in a thread of its own (0: not at all)."""
    if port == 0:
        return None
    server, _thread = start_http_server(port, host, registry=registry)
    log.info("metrics on http://%s:%s/metrics", host, port)
    return server
