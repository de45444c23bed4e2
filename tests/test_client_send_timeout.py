"""The Python client's send timeout: a message whose REPLY does not come in time fails with
``ReplyError("timeout")``, is forgotten (never sent again), and leaves the client working;
sends with different timeouts each fail at their own time (one timer serves them all)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from transports import Channel, Realtime, ReplyError
from transports.client import connect
from transports.typing import TransportName

from .apps import make_app
from .servers import hypercorn_server

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
async def test_send_times_out_and_the_client_keeps_working(transport: TransportName) -> None:
    app = make_app()
    release = asyncio.Event()

    rt: Realtime = app.extensions["transports"]

    @rt.on("stall")
    async def stall(channel: Channel, data: Any) -> Any:
        await release.wait()
        return data

    async with hypercorn_server(app) as base:
        client = await connect(base + "/realtime", transports=[transport], timeout=10)
        try:
            started = time.monotonic()
            slow = asyncio.ensure_future(client.send("stall", 1, timeout=1.5))
            fast = asyncio.ensure_future(client.send("stall", 2, timeout=0.3))
            with pytest.raises(ReplyError) as info:
                await fast
            assert info.value.code == "timeout"
            assert 0.25 <= time.monotonic() - started < 1.2
            assert not slow.done()
            with pytest.raises(ReplyError) as info:
                await slow
            assert info.value.code == "timeout"
            assert time.monotonic() - started >= 1.45
            assert not client._pending and not client._deadlines
            release.set()
            assert await client.send("echo", "still here", timeout=10) == "still here"
            assert client.state == "open"
        finally:
            release.set()
            await client.close()
