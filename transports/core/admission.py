"""Who may negotiate, and how many refused credentials an address may present: per-address
token buckets and session counts, all in this process."""

from __future__ import annotations

from collections import Counter

from ..protocol.errors import Refused, TicketError
from ..protocol.ratelimit import TokenBucket
from .context import Context

__all__ = ["DIAGNOSE_BURST", "DIAGNOSE_RATE", "Admission"]

DIAGNOSE_RATE = 5.0
"""Diagnostics publications per second per client address (docs/protocol.md §13)."""
DIAGNOSE_BURST = 30
"""Diagnostics publications one address may make at once: a diagnose run of every transport
makes about a dozen."""


class Admission:
    """Rate limits at the door (negotiate) and on credentials (tickets, tokens)."""

    def __init__(self, ctx: Context) -> None:
        self.settings = ctx.settings
        self.clock = ctx.clock
        self.metrics = ctx.metrics
        self.draining = False
        """Set when the process drains: no new session is accepted."""
        self.per_address: Counter[str] = Counter()
        """Live sessions per client address."""
        self._negotiations: dict[str, TokenBucket] = {}
        self._auth_failures: dict[str, TokenBucket] = {}
        self._diagnostics: dict[str, TokenBucket] = {}

    def admit(self, address: str | None) -> None:
        """Check that a client at ``address`` may negotiate now (before running ``on_connect``).

        Raises:
            Refused: ``unavailable`` (draining), ``rate_limited`` or ``too_many_connections``
                (its ``retry_after`` says when to come back).
        """
        settings = self.settings
        if self.draining:
            raise Refused("unavailable", "the server is shutting down")
        key = address or "?"
        if settings.negotiate_rate is not None:
            bucket = self._negotiations.get(key)
            now = self.clock()
            if bucket is None:
                bucket = self._negotiations[key] = TokenBucket(
                    settings.negotiate_rate, settings.negotiate_burst, now
                )
            wait = bucket.take(now)
            if wait:
                raise Refused.retry_later("rate_limited", "too many negotiations", wait)
        limit = settings.max_sessions_per_address
        if limit is not None and self.per_address[key] >= limit:
            raise Refused.retry_later(
                "too_many_connections", "too many sessions from this address", 5
            )

    def admit_diagnostic(self, address: str | None) -> None:
        """Check that a client at ``address`` may publish a diagnostics message now
        (``DIAGNOSE_RATE`` per second, ``DIAGNOSE_BURST`` at once).

        Raises:
            Refused: ``rate_limited`` (its ``retry_after`` says when to come back).
        """
        key = address or "?"
        now = self.clock()
        bucket = self._diagnostics.get(key)
        if bucket is None:
            bucket = self._diagnostics[key] = TokenBucket(DIAGNOSE_RATE, DIAGNOSE_BURST, now)
        wait = bucket.take(now)
        if wait:
            raise Refused.retry_later("rate_limited", "too many diagnostics publications", wait)

    def opened(self, address: str) -> None:
        """A session of ``address`` came to life here."""
        self.per_address[address] += 1

    def closed(self, address: str) -> None:
        """A session of ``address`` ended here."""
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]

    def credentials_budget(self, address: str | None) -> TokenBucket | None:
        """The bucket of refused credentials for ``address``; refuses at once when it is empty.

        Raises:
            Refused: ``rate_limited`` (this address presented too many refused credentials).
        """
        settings = self.settings
        if settings.auth_failure_rate is None:
            return None
        key = address or "?"
        bucket = self._auth_failures.get(key)
        now = self.clock()
        if bucket is None:
            bucket = self._auth_failures[key] = TokenBucket(
                settings.auth_failure_rate, settings.auth_failure_burst, now
            )
        if bucket.available(now) < 1:
            raise Refused.retry_later("rate_limited", "too many refused credentials", 1)
        return bucket

    def refused(self, bucket: TokenBucket | None, exc: Refused) -> None:
        """Charge a refused credential to its address's bucket."""
        if bucket is not None and (isinstance(exc, TicketError) or exc.code == "unknown_session"):
            bucket.take(self.clock())
            self.metrics.inc("refused_credentials")

    def forget_idle(self, now: float) -> None:
        """Drop the buckets of addresses that are full again (bounded memory)."""
        for buckets in (self._negotiations, self._auth_failures, self._diagnostics):
            if len(buckets) > 1000:
                for key, bucket in list(buckets.items()):
                    if bucket.available(now) >= bucket.burst:
                        del buckets[key]
