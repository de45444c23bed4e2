"""Every counter the core keeps, declared in one place, with one public read.

A counter is declared once in :data:`DECLARED` (name, help, label); code anywhere in the core
counts with :meth:`Metrics.inc`, which refuses an undeclared name, so a new counter is one line
here and one call where it happens. Hot paths keep a plain integer and register a reader
(:meth:`Metrics.observe`) instead of calling :meth:`inc` per message.

:meth:`Metrics.snapshot` is the public read (``Realtime.metrics()``); :attr:`Metrics.stats`
is the flat view the tests and the benchmark read: ``stats["opened"]`` is the total and
``stats["opened:websocket"]`` the count for one label value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DECLARED", "Metric", "Metrics"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One declared counter: its name, what it counts, and its label (if any)."""

    name: str
    help: str
    label: str | None = None


DECLARED: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("negotiated", "sessions minted by negotiate"),
        Metric("opened", "sessions whose transport attached for the first time", "transport"),
        Metric("closed", "channels that ended, by close code", "code"),
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
    )
}
"""Every counter, by name."""


class Metrics:
    """The core's counters (see :data:`DECLARED`)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._readers: dict[str, Callable[[], int]] = {}

    def inc(self, name: str, amount: int = 1, label: object = None) -> None:
        """Add ``amount`` to counter ``name`` (and to its ``label`` value, when given).

        Raises:
            KeyError: ``name`` is not declared.
        """
        metric = DECLARED[name]
        self._counts[name] += amount
        if label is not None and metric.label is not None:
            self._counts[f"{name}:{label}"] += amount

    def observe(self, name: str, reader: Callable[[], int]) -> None:
        """Read counter ``name`` from ``reader`` (a hot path's own integer) when asked."""
        DECLARED[name]
        self._readers[name] = reader

    @property
    def stats(self) -> Counter[str]:
        """Flat view: ``name`` for totals, ``name:label`` per label value (0 when unseen)."""
        for name, reader in self._readers.items():
            self._counts[name] = reader()
        return self._counts

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every declared counter: ``{name: {"": total, label_value: count, ...}}``."""
        stats = self.stats
        result: dict[str, dict[str, int]] = {name: {"": stats[name]} for name in DECLARED}
        for key, value in stats.items():
            name, sep, label = key.partition(":")
            if sep and name in result:
                result[name][label] = value
        return result
