"""The app ``bench.scaleout`` serves: the library on a Redis backplane, an echo handler, and
``POST /bench/burst`` to publish N messages as fast as the server can."""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, request

from transports import Channel
from transports.server.extension import Realtime

app = Quart(__name__)
rt = Realtime(
    app,
    backplane=os.environ.get("BENCH_REDIS", "memory://"),
    secret_key=os.environ.get("TRANSPORTS_SECRET_KEY", "bench-scaleout-key").encode(),
    max_sessions_per_address=None,
    negotiate_rate=None,
    outbox_max_frames=100_000,
    outbox_max_bytes=64 * 1024 * 1024,
)


@rt.on("echo")
async def echo(channel: Channel, data: Any) -> Any:
    return data


@app.post("/bench/burst")
async def burst() -> Any:
    body = await request.get_json()
    payload = {"pad": "x" * 89}
    for _ in range(int(body["n"])):
        await rt.publish(body["topic"], "m", payload)
    return {"ok": True}
