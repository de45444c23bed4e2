"""Reconnect delays: full-jitter exponential backoff. Pure: the random source is an argument."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 20.0,
    floor: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first retry).

    ``floor + uniform(0, min(cap, base * 2**attempt))``: spreading reconnects over the whole
    window keeps a restarted server from being hit by every client at once. ``floor`` is the
    server's ``retry`` hint.
    """
    window: float = min(cap, base * float(2 ** min(attempt, 30)))
    return floor + rand() * window
