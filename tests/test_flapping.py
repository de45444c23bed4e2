"""The Python client demotes a transport that flaps (policy ``flapping``): one that opens and
dies soon after, several times in a row, goes last in its order for ``flapping_retry`` seconds,
the server is told why, and the topics resume without loss."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from transports.client import Client
from transports.protocol.policy import POLICY

from .conftest import Server, eventually


def reopened(client: Client, reconnects: int) -> bool:
    return bool(client.stats["reconnects"] == reconnects and client.state == "open")


async def test_a_flapping_websocket_is_demoted_to_sse_then_tried_again(
    serve: Callable[..., Any],
) -> None:
    server: Server = await serve()
    client = await server.client("websocket", backoff=(0.05, 0.1), flapping_retry=2.0)
    client.transports = ["websocket", "sse"]
    await client.subscribe("feed")
    for cut in range(POLICY.flapping_times):
        assert (client.transport, client.stats["demotions"]) == ("websocket", 0)
        await server.realtime.publish("feed", "n", cut)
        assert (await client.next_message(5)).data == cut
        await client.force_reconnect()  # it died (1006) within seconds of opening
        await eventually(partial(reopened, client, cut + 1))
    assert client.transport == "sse"
    assert client.stats["demotions"] == 1
    assert client.fallback_reason.startswith("websocket: flapping (closed 3 times")
    await server.realtime.publish("feed", "n", "after")
    assert (await client.next_message(5)).data == "after"
    await eventually(
        lambda: server.realtime.metrics()["fallbacks"].get("websocket,sse,flapping", 0) == 1
    )
    # Once the demotion ends, the next connection tries WebSocket first again.
    await asyncio.sleep(2.1)
    await client.force_reconnect()
    await eventually(lambda: client.stats["reconnects"] == 4 and client.state == "open")
    assert client.transport == "websocket"
    await server.realtime.publish("feed", "n", "back")
    assert (await client.next_message(5)).data == "back"
