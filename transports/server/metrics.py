"""The core's metrics in the Prometheus text format (the ``metrics_path`` setting).

The core counts (:mod:`transports.core.metrics`); this module only reads them, when Prometheus
scrapes, through :meth:`Metrics.snapshot` and the delivery histogram, and names them as
docs/operations.md lists. It needs ``prometheus-client`` (``pip install 'transports[metrics]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core.metrics import Metrics
from ..protocol.errors import MissingDependency

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
except ImportError:  # pragma: no cover - exercised by tests/test_metrics.py in a subprocess
    raise MissingDependency(
        "metrics_path (Prometheus metrics)", "metrics", "prometheus-client"
    ) from None

__all__ = ["CONTENT_TYPE", "PrometheusExporter"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition's media type (the Prometheus text format 0.0.4)."""

_SIMPLE = (
    # (core counter, exported name without _total, help)
    ("deliveries", "transports_deliveries", "Publication frames handed to local sessions."),
    (
        "slow_consumers",
        "transports_slow_consumer_closes",
        "Sessions closed because their outbox overflowed (close code 4008).",
    ),
    (
        "forwarded",
        "transports_forwarded",
        "Requests forwarded to the process that holds their session.",
    ),
    ("backplane_errors", "transports_backplane_errors", "Backplane operations that failed."),
)


def _labelled(values: dict[str, int]) -> Iterator[tuple[list[str], int]]:
    for key, value in values.items():
        if key:
            yield key.split(","), value


class _Collector:
    """A prometheus-client collector that reads one engine's metrics on every scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # the names are fixed, but described only when collected

    def collect(self) -> Iterator[Any]:
        metrics = self.metrics
        snap = metrics.snapshot()
        yield _family(
            GaugeMetricFamily,
            "transports_connections",
            "Connections open now.",
            ["transport"],
            snap["connections"],
        )
        yield _family(
            CounterMetricFamily,
            "transports_negotiations",
            "Sessions, by the transport they first opened on.",
            ["transport"],
            snap["opened"],
        )
        yield _family(
            CounterMetricFamily,
            "transports_fallbacks",
            "Fallbacks reported by clients in their next negotiate.",
            ["from", "to", "reason"],
            snap["fallbacks"],
        )
        messages = CounterMetricFamily(
            "transports_messages",
            "Frames: client frames received (in) and frames written (out).",
            labels=["transport", "direction"],
        )
        for direction in ("in", "out"):
            for labels, value in _labelled(snap["messages_" + direction]):
                messages.add_metric([*labels, direction], value)
        yield messages
        for name, exported, help_text in _SIMPLE:
            yield CounterMetricFamily(exported, help_text, value=snap[name][""])
        histogram = metrics.delivery
        buckets = [
            ("+Inf" if bound == float("inf") else repr(bound), count)
            for bound, count in histogram.cumulative()
        ]
        yield HistogramMetricFamily(
            "transports_delivery_seconds",
            "Seconds from a publication reaching this process to its frame being written.",
            buckets=buckets,
            sum_value=histogram.sum,
        )
        yield _family(
            CounterMetricFamily,
            "transports_reconnects",
            "Subscribes that resumed from a position, by whether the gap was recovered.",
            ["transport", "recovered"],
            snap["reconnects"],
        )
        yield GaugeMetricFamily(
            "transports_presence_members",
            "Presence members held by this process (connections subscribed to topics with "
            "presence).",
            value=snap["presence_members"][""],
        )
        yield _family(
            CounterMetricFamily,
            "transports_direct_messages",
            "Messages sent to one connection (send, send_to), by where it was.",
            ["where"],
            snap["direct_messages"],
        )


def _family(kind: Any, name: str, help_text: str, labels: list[str], values: dict[str, int]) -> Any:
    """A labelled counter or gauge family holding ``values`` (the core's label keys)."""
    family = kind(name, help_text, labels=labels)
    for label_values, value in _labelled(values):
        family.add_metric(label_values, value)
    return family


class PrometheusExporter:
    """Renders one engine's metrics (``Realtime.prometheus()`` and the ``metrics_path`` route)."""

    def __init__(self, metrics: Metrics) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(metrics))

    def render(self) -> bytes:
        """The exposition, in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
