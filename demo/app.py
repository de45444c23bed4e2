"""A minimal realtime app: a server clock on a topic and an echo handler.

(The full notification-feed demo replaces this page; the ``create_app`` factory stays.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from quart import Quart

from transports import Channel
from transports.server.extension import Realtime

PAGE = """<!doctype html>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>transports</title>
<h1>transports</h1>
<p>Transport: <b data-testid="transport">-</b>, state: <b data-testid="state">-</b></p>
<p>Server clock: <span id="clock">-</span></p>
<script type="module">
  import { connect } from "/realtime/client.js";
  const wanted = new URLSearchParams(location.search).get("transports");
  const client = connect("/realtime", wanted ? { transports: wanted.split(",") } : {});
  const show = (id, text) => { document.querySelector(`[data-testid=${id}]`).textContent = text; };
  client.on("transport", (e) => show("transport", e.transport));
  client.on("state", (e) => show("state", e.state));
  client.subscribe("clock", (m) => document.querySelector("#clock").textContent = m.data.time);
  window.client = client;
</script>
"""


def create_app(backplane: str = "memory://") -> Quart:
    """The demo app, on the given backplane (``memory://`` needs no other service)."""
    app = Quart(__name__)
    rt = Realtime(app, backplane=backplane)

    @rt.on("echo")
    async def echo(channel: Channel, data: Any) -> Any:
        return data

    @app.get("/")
    async def index() -> str:
        return PAGE

    async def clock() -> None:
        while True:
            await rt.publish("clock", "tick", {"time": time.strftime("%H:%M:%S")})
            await asyncio.sleep(1)

    task: list[asyncio.Task[None]] = []

    @app.before_serving
    async def start_clock() -> None:
        task.append(asyncio.create_task(clock()))

    @app.after_serving
    async def stop_clock() -> None:
        for t in task:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t

    return app
