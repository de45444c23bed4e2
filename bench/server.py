"""The benchmark server: the library's transports beside raw Quart routes (the ceiling).

``python -m bench.server --port P`` serves:

* ``/realtime/*``: ``transports`` with an ``echo`` handler and ``POST /bench/burst`` (publish N
  messages on a topic as fast as the server can);
* ``websocket /raw/ws``: a bare Quart WebSocket echo;
* ``websocket /raw/push?n=N&size=S``: a bare Quart WebSocket that sends N messages and closes;
* ``GET /raw/sse?n=N&size=S``: a bare Quart SSE stream of N events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request, websocket

from transports import Channel
from transports.server.extension import Realtime


def payload(size: int) -> str:
    """A JSON object of about ``size`` bytes."""
    return json.dumps({"pad": "x" * max(0, size - 11)})


def create_app() -> Quart:
    """The benchmark app."""
    app = Quart(__name__)
    rt = Realtime(app, outbox_max_frames=100_000, outbox_max_bytes=64 * 1024 * 1024)

    @rt.on("echo")
    async def echo(channel: Channel, data: Any) -> Any:
        return data

    @app.post("/bench/burst")
    async def burst() -> Any:
        body = await request.get_json()
        data = json.loads(payload(int(body.get("size", 100))))
        for _ in range(int(body["n"])):
            await rt.publish(body["topic"], "m", data)
        return {"ok": True}

    @app.websocket("/raw/ws")
    async def raw_echo() -> None:
        while True:
            message = await websocket.receive()
            await websocket.send(message)

    @app.websocket("/raw/push")
    async def raw_push() -> None:
        n = int(websocket.args.get("n", "1000"))
        text = payload(int(websocket.args.get("size", "100")))
        await websocket.accept()
        for _ in range(n):
            await websocket.send(text)
        await websocket.close(1000)

    @app.get("/raw/sse")
    async def raw_sse() -> Response:
        n = int(request.args.get("n", "1000"))
        line = b"data: " + payload(int(request.args.get("size", "100"))).encode() + b"\n\n"

        async def body() -> AsyncIterator[bytes]:
            for _ in range(n):
                yield line

        response = Response(body(), content_type="text/event-stream")
        response.timeout = None
        return response

    @app.get("/bench/pid")
    async def pid() -> Any:
        import os

        return {"pid": os.getpid()}

    return app


def main() -> None:
    """Serve the benchmark app until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(serve(create_app(), config))


if __name__ == "__main__":
    main()
