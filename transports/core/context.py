"""What every part of the core shares, passed as one object instead of a dozen arguments."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .hooks import Hooks
from .metrics import Metrics
from .settings import Settings

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    """The settings, the application's hooks, the counters, the time and the task spawner.

    ``clock`` (monotonic) and ``wallclock`` (for ticket expiry) read the engine's own clocks at
    each call, so tests that move ``engine.clock`` move every part.
    """

    settings: Settings
    hooks: Hooks
    metrics: Metrics
    node: str
    """This process's name among several."""
    clock: Callable[[], float]
    wallclock: Callable[[], float]
    spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]]
    """Runs a coroutine as a task the engine tracks and cancels when it stops."""
