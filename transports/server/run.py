"""Serve an app with Hypercorn so that a shutdown tells realtime clients first.

ASGI gives an application no notice between "the server stops accepting" and "the server
cancels open connections": Hypercorn waits ``graceful_timeout`` for requests to end and then
cancels them, and only afterwards runs the app's shutdown hooks. Realtime connections never end
on their own, so under the plain ``hypercorn`` command their clients just see the connection
drop (WebSocket 1011 or 1006, a cut SSE stream) and reconnect after noticing it.

:func:`serve` closes that gap: on SIGINT/SIGTERM (or your ``shutdown_trigger``) it first calls
:meth:`Realtime.drain`, so every client is told 1001 "going away" and reconnects at once, and
then lets Hypercorn stop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from quart import Quart

__all__ = ["serve"]


async def serve(
    app: Quart,
    config: Config | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    drain_timeout: float = 5.0,
) -> None:
    """Run ``app`` on Hypercorn until a signal (or ``shutdown_trigger``), draining first."""
    config = config or Config()
    realtime = app.extensions.get("transports")
    if realtime is not None:
        # Hypercorn assembles whole WebSocket messages up to its own limit (16 MiB) before the
        # app sees them: make that the library's limit (plus room for framing) instead.
        limit = realtime.settings.max_message_size + 1024
        config.websocket_max_message_size = min(config.websocket_max_message_size, limit)
    if shutdown_trigger is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        shutdown_trigger = stop.wait
    trigger = shutdown_trigger

    async def drain_then_stop() -> None:
        await trigger()
        realtime = app.extensions.get("transports")
        if realtime is not None:
            await realtime.drain(timeout=drain_timeout)

    await hypercorn_serve(app, config, shutdown_trigger=drain_then_stop)
