"""Every counter the core keeps, declared in one place, with one public read.

A metric is declared once in :data:`DECLARED` (name, help, labels); code anywhere in the core
counts with :meth:`Metrics.inc`, which refuses an undeclared name, so a new counter is one line
here and one call where it happens. Hot paths keep a plain integer (or a dict of integers by
label) and register a reader (:meth:`Metrics.observe`) instead of calling :meth:`inc` per
message; gauges are only readers, computed when asked. The one histogram,
:data:`DELIVERY_SECONDS`, keeps a list of bucket counts.

:meth:`Metrics.snapshot` is the public read (``Realtime.metrics()``); :attr:`Metrics.stats`
is the flat view the tests and the benchmark read: ``stats["opened"]`` is the total and
``stats["opened:websocket"]`` the count for one label value (several labels are joined with
``,``: ``stats["fallbacks:websocket,sse,timeout"]``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["DECLARED", "DELIVERY_BUCKETS", "DELIVERY_SAMPLE", "Histogram", "Metric", "Metrics"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One declared metric: its name, what it counts, its labels, and its kind."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    kind: str = "counter"
    """``counter`` (only goes up) or ``gauge`` (a value now)."""

    @property
    def label(self) -> str | None:
        """The first label (None without labels)."""
        return self.labels[0] if self.labels else None


DECLARED: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("negotiated", "sessions minted by negotiate"),
        Metric("opened", "sessions whose transport attached for the first time", ("transport",)),
        Metric("connections", "channels open now", ("transport",), "gauge"),
        Metric("closed", "channels that ended, by close code", ("code",)),
        Metric(
            "fallbacks",
            "fallbacks reported by clients in their next negotiate",
            ("from", "to", "reason"),
        ),
        Metric("messages_in", "client frames received", ("transport",)),
        Metric("messages_out", "frames written to connections", ("transport",)),
        Metric("reconnects", "subscribes with a resume position", ("transport", "recovered")),
        Metric("slow_consumers", "sessions closed because their outbox overflowed (4008)"),
        Metric("write_timeouts", "connections closed because writes stopped progressing"),
        Metric("resyncs", "sessions told to resubscribe after a gap in a topic (4010)"),
        Metric("frames_dropped", "frames that ended sessions still held"),
        Metric("handler_errors", "application hooks that raised"),
        Metric("retries_answered", "client messages answered from the reply memory"),
        Metric("refused_credentials", "tickets or tokens refused (counted per address)"),
        Metric("revoked", "connections closed by the revalidate hook (4501)"),
        Metric("forwarded", "requests forwarded to the process holding their session"),
        Metric("forward_failures", "forwarded requests that no process answered"),
        Metric("deliveries", "publication frames handed to local sessions"),
        Metric("backplane_errors", "backplane operations that failed"),
        Metric("presence_members", "presence members held by this process", (), "gauge"),
        Metric("direct_messages", "messages sent to one connection, by where it was", ("where",)),
    )
}
"""Every counter and gauge, by name."""

DELIVERY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the delivery-time histogram's buckets (``+Inf`` is implied)."""

DELIVERY_SAMPLE = 4
"""One publication in this many (the first, the fifth...) is timed, on every subscriber it is
written to: the histogram's cost on a large fan-out stays a fraction of a per-delivery one."""


class Histogram:
    """Observations counted in fixed buckets: a list of integers and a float sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Per bucket (not cumulative); the last is above every bound."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` per bucket, ending with ``inf``."""
        total = 0
        result = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            result.append((bound, total))
        return result


class Metrics:
    """The core's counters and gauges (see :data:`DECLARED`) and the delivery histogram."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._readers: dict[str, Callable[[], int]] = {}
        self._labelled: dict[str, Callable[[], Mapping[str, int]]] = {}
        self.delivery = Histogram(DELIVERY_BUCKETS)
        """Seconds from a publication reaching this process to its frame being written."""

    def inc(self, name: str, amount: int = 1, label: object = None) -> None:
        """Add ``amount`` to counter ``name`` (and to its ``label`` value, when given; a tuple
        for several labels).

        Raises:
            KeyError: ``name`` is not declared.
        """
        metric = DECLARED[name]
        self._counts[name] += amount
        if label is not None and metric.labels:
            if isinstance(label, tuple):
                label = ",".join(str(part) for part in label)
            self._counts[f"{name}:{label}"] += amount

    def observe(self, name: str, reader: Callable[[], int]) -> None:
        """Read counter ``name`` from ``reader`` (a hot path's own integer) when asked."""
        DECLARED[name]
        self._readers[name] = reader

    def observe_labelled(self, name: str, reader: Callable[[], Mapping[str, int]]) -> None:
        """Read ``name`` per label value from ``reader`` when asked; the total is their sum."""
        DECLARED[name]
        self._labelled[name] = reader

    @property
    def stats(self) -> Counter[str]:
        """Flat view: ``name`` for totals, ``name:label`` per label value (0 when unseen)."""
        counts = self._counts
        for name, reader in self._readers.items():
            counts[name] = reader()
        for name, labelled in self._labelled.items():
            values = dict(labelled())
            prefix = name + ":"
            for key in [key for key in counts if key.startswith(prefix)]:
                if key[len(prefix) :] not in values:
                    counts[key] = 0
            for label, value in values.items():
                counts[prefix + label] = value
            counts[name] = sum(values.values())
        return counts

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every declared metric: ``{name: {"": total, label_value: count, ...}}`` (several
        label values joined with ``,``, in the order of :attr:`Metric.labels`)."""
        stats = self.stats
        result: dict[str, dict[str, int]] = {name: {"": stats[name]} for name in DECLARED}
        for key, value in list(stats.items()):
            name, sep, label = key.partition(":")
            if sep and name in result:
                result[name][label] = value
        return result
