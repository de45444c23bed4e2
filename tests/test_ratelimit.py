"""Token buckets (pure)."""

from __future__ import annotations

import pytest

from transports.protocol.ratelimit import TokenBucket


def test_burst_then_rate() -> None:
    """A full bucket allows a burst, then refills at the rate, and says how long to wait."""
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) == pytest.approx(0.1)


def test_cost_and_cap() -> None:
    """A batch costs one token per frame; idle time never stores more than the burst."""
    bucket = TokenBucket(rate=1, burst=5, now=0.0)
    assert bucket.take(1000.0, cost=5) == 0.0
    assert bucket.take(1000.0, cost=1) == pytest.approx(1.0)
    assert bucket.take(1000.0, cost=10) == pytest.approx(10.0)


def test_invalid() -> None:
    """Nonsense limits are refused."""
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1, now=0)
