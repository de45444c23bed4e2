"""Full-jitter backoff (catalogue N4)."""

from __future__ import annotations

from transports.protocol.policy import backoff_delay


def test_window_grows_then_caps() -> None:
    """With the random source at its maximum, the delay doubles up to the cap."""
    delays = [backoff_delay(n, base=0.5, cap=20, rand=lambda: 1.0) for n in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_full_jitter_spans_zero_to_window() -> None:
    """Delays spread over [floor, floor + window]: clients do not reconnect in step."""
    assert backoff_delay(3, base=0.5, cap=20, floor=1.0, rand=lambda: 0.0) == 1.0
    samples = {round(backoff_delay(4, base=1, cap=20), 3) for _ in range(200)}
    assert len(samples) > 100
    assert all(0 <= s <= 16 for s in samples)


def test_huge_attempt_does_not_overflow() -> None:
    """A client that retried for days still gets a capped delay."""
    assert backoff_delay(10_000, cap=5, rand=lambda: 1.0) == 5
