"""Real servers for tests: Hypercorn in-process on a loopback port, with its own shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config


@contextlib.asynccontextmanager
async def hypercorn_server(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with Hypercorn on 127.0.0.1 and a free port; yield its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    hconfig = Config()
    hconfig.bind = [f"fd://{sock.fileno()}"]
    hconfig.accesslog = None
    hconfig.errorlog = None
    hconfig.graceful_timeout = 1
    for key, value in config.items():
        setattr(hconfig, key, value)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, hconfig, shutdown_trigger=stop.wait))
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            await asyncio.sleep(0.01)
        # The port accepts before the app's startup hooks have finished: wait for them too.
        realtime = getattr(app, "extensions", {}).get("transports")
        for _ in range(500):
            if realtime is None or realtime.engine.running:
                break
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        # Hypercorn owns the fd it was given and closed it: forget it without closing it again
        # (a later close could hit an unrelated socket that reused the number).
        sock.detach()
