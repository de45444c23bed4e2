"""Heartbeats against a real server (docs/protocol.md §9): a client that answers PINGs stays
connected however busy or quiet its connection is, and one that stops answering is closed with
4000 in about twice the heartbeat.

The server's heartbeat is 1 s here (the sweeper then passes every 0.25 s).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from transports.client import connect
from transports.server.extension import Realtime
from transports.typing import TransportName

from .apps import make_app
from .conftest import TRANSPORTS
from .servers import hypercorn_server

HEARTBEAT = 1.0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_listener_on_a_busy_topic_is_never_timed_out(transport: TransportName) -> None:
    """A client that only listens (sends nothing of its own) on a topic with a publication
    every 0.2 s, for more than three heartbeats: the connection is never quiet for a heartbeat,
    yet the server must still hear from the client. It stays on its first connection (no
    ``on_disconnect``, no 4000) and gets every publication once, in order.

    A quiet second first, so that an SSE client has answered a PING before the busy part and
    is held to answering them (§9)."""
    app = make_app(heartbeat=HEARTBEAT)
    realtime = app.extensions["transports"]
    async with hypercorn_server(app) as base:
        client = await connect(base + "/realtime", transports=[transport])
        await client.subscribe("feed")
        got: list[Any] = []

        async def collect() -> None:
            async for message in client.messages():
                got.append(message.data)

        collector = asyncio.create_task(collect())
        try:
            await asyncio.sleep(1.6 * HEARTBEAT)
            busy_until = time.monotonic() + 3.5 * HEARTBEAT
            sent = 0
            while time.monotonic() < busy_until:
                await realtime.publish("feed", "tick", sent)
                sent += 1
                await asyncio.sleep(0.2)
            deadline = time.monotonic() + 5
            while len(got) < sent and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert app.config["DISCONNECTS"] == [], "the listener was disconnected"
            assert got == list(range(sent))
            assert client.transport == transport
        finally:
            collector.cancel()
            await client.close()


async def _negotiate(http: aiohttp.ClientSession, base: str) -> str:
    async with http.post(
        base + "/realtime/negotiate", json={"v": 1, "transports": ["websocket"]}
    ) as response:
        assert response.status == 200
        info = await response.json()
    return str(info["ticket"])


@pytest.mark.parametrize("busy", [False, True], ids=["quiet", "busy"])
async def test_a_websocket_client_that_stops_answering_is_closed_with_4000(busy: bool) -> None:
    """A WebSocket client that reads everything and answers no PING: the server PINGs it
    (on a quiet connection, and on one kept busy by publications alike) and closes it with
    4000 "heartbeat timeout" after about twice the heartbeat; ``on_disconnect`` hears 4000."""
    app = make_app(heartbeat=HEARTBEAT)
    realtime = app.extensions["transports"]
    async with hypercorn_server(app) as base, aiohttp.ClientSession() as http:
        ticket = await _negotiate(http, base)
        url = base.replace("http", "ws", 1) + "/realtime/ws?ticket=" + ticket
        async with http.ws_connect(url) as ws:
            opened = time.monotonic()
            await ws.send_str('[5,1,"feed",null]')  # SUB: the last frame this client sends
            pings = 0
            publications = 0

            async def publish() -> None:
                n = 0
                while busy:
                    await realtime.publish("feed", "tick", n)
                    n += 1
                    await asyncio.sleep(0.2)

            publisher = asyncio.create_task(publish())
            try:
                async with asyncio.timeout(6 * HEARTBEAT):
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            break
                        frame = json.loads(message.data)
                        pings += frame == [7]
                        publications += frame[0] == 1
            finally:
                publisher.cancel()
            closed_after = time.monotonic() - opened
            assert ws.close_code == 4000
        assert pings >= 1, "the server never asked the client"
        assert busy == (publications > 0)
        # Twice the heartbeat, plus a sweep (0.25 s) and slack for a busy machine.
        assert 2 * HEARTBEAT <= closed_after < 2 * HEARTBEAT + 1.5, closed_after
    assert [code for _, code, _ in app.config["DISCONNECTS"]] == [4000]


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_stalled_server_does_not_time_out_its_clients(transport: TransportName) -> None:
    """A handler that blocks the server's event loop for 2.2 s (more than twice the 1 s
    heartbeat; a long garbage collection or a burst of connections does the same at scale):
    nothing could be read meanwhile, so the clients' silence is the server's own. Neither the
    client that sent the message nor one that only listens is closed with 4000; both stay on
    their first connection and get a publication made after the stall."""
    app = make_app(heartbeat=HEARTBEAT)
    realtime: Realtime = app.extensions["transports"]

    @realtime.on("stall")
    async def stall(channel: Any, data: Any) -> str:
        time.sleep(2.2)  # blocks the loop on purpose
        return "done"

    async with hypercorn_server(app) as base:
        listener = await connect(base + "/realtime", transports=[transport])
        staller = await connect(base + "/realtime", transports=[transport])
        await listener.subscribe("feed")
        await asyncio.sleep(1.6 * HEARTBEAT)  # PINGs answered: both held to answering
        assert await staller.send("stall", None) == "done"
        await asyncio.sleep(3 * HEARTBEAT)
        await realtime.publish("feed", "after", 1)
        message = await asyncio.wait_for(anext(listener.messages()), 5)
        assert (message.event, message.data) == ("after", 1)
        assert app.config["DISCONNECTS"] == []
        assert listener.transport == staller.transport == transport
        await listener.close()
        await staller.close()
