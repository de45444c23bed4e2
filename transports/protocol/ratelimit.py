"""Token buckets for rate limits. Pure: the clock is an argument."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; starts full.

    :meth:`take` spends tokens when there are enough and says how long to wait otherwise, so a
    refusal can carry an honest ``Retry-After``.
    """

    __slots__ = ("rate", "burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def available(self, now: float) -> float:
        """Tokens available at ``now`` (without spending any)."""
        return min(self.burst, self._tokens + (now - self._at) * self.rate)

    def take(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens: 0.0 when allowed, else the seconds until it would be."""
        tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if tokens >= cost:
            self._tokens = tokens - cost
            return 0.0
        self._tokens = tokens
        return (cost - tokens) / self.rate
