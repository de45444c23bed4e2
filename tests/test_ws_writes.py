"""The WebSocket carrier's writes, driven with ASGI events in this process: the writer task
sends frames in the order they were queued, one write at a time; a write that has to wait never
holds the reading task, and a handler that waits does not hold back what it already sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from quart import Quart

from transports import Channel, Realtime
from transports.bench.inproc import open_websocket

Event = MutableMapping[str, Any]


class Socket:
    """One WebSocket as an ASGI server presents it. ``slow`` sends wait a turn of the loop
    first (a socket whose buffer is full, or granian, whose sends always wait)."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Event] = asyncio.Queue()
        self.frames: list[Any] = []
        self.slow = 0
        self.sending = 0
        self.overlapped = False
        self.arrived = asyncio.Event()
        self.gate: asyncio.Event | None = None
        """While set to an unset event, sends wait for it (a socket taking no bytes)."""

    async def receive(self) -> Event:
        return await self.incoming.get()

    async def send(self, message: Event) -> None:
        if message["type"] != "websocket.send":
            return
        self.sending += 1
        if self.sending > 1:
            self.overlapped = True
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.slow:
                self.slow -= 1
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            self.frames.append(json.loads(message["text"]))
            self.arrived.set()
        finally:
            self.sending -= 1

    def push(self, frame: list[Any]) -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(frame)})

    async def until(self, test: Any) -> None:
        async with asyncio.timeout(5):
            while not test():
                self.arrived.clear()
                await self.arrived.wait()

    def replies(self) -> list[Any]:
        return [f[1] for f in self.frames if f[0] == 4]


def _app() -> tuple[Quart, Realtime, dict[str, asyncio.Event]]:
    app = Quart("ws-writes")
    rt = Realtime(app, secret_key=b"ws-writes-test-secret-0000000000", rate_limit=None)
    gates: dict[str, asyncio.Event] = {}

    @rt.on("echo")
    async def echo(channel: Channel, data: Any) -> Any:
        return data

    @rt.on("tell")
    async def tell(channel: Channel, data: Any) -> Any:
        await channel.send("told", data)
        return data

    @rt.on("tell-then-wait")
    async def tell_then_wait(channel: Channel, data: Any) -> Any:
        await channel.send("told", data)
        await gates.setdefault(str(data), asyncio.Event()).wait()
        return data

    return app, rt, gates


async def _open(app: Quart, client: Any) -> tuple[Socket, asyncio.Task[None]]:
    socket = Socket()
    task = await open_websocket(app, client, socket)
    await socket.until(lambda: socket.frames)  # HELLO
    return socket, task


async def test_a_message_sent_by_a_handler_leaves_before_its_reply() -> None:
    app, _, _ = _app()
    async with app.test_app() as test_app:
        socket, task = await _open(app, test_app.test_client())
        for ref in range(1, 6):
            socket.push([3, ref, "tell", ref])
        await socket.until(lambda: len(socket.replies()) == 5)
        # each MSG [2, event, data] comes right before the REPLY of the frame that sent it
        assert [(f[0], f[-1] if f[0] == 2 else f[1]) for f in socket.frames[1:]] == [
            (kind, ref) for ref in range(1, 6) for kind in (2, 4)
        ]
        assert not socket.overlapped
        task.cancel()


async def test_writes_that_wait_keep_their_order_and_never_overlap() -> None:
    app, rt, _ = _app()
    async with app.test_app() as test_app:
        socket, task = await _open(app, test_app.test_client())
        socket.slow = 1000
        socket.push([5, 900, "t", None])  # SUBSCRIBE
        await socket.until(lambda: 900 in socket.replies())

        async def publisher() -> None:
            for i in range(30):
                await rt.publish("t", "p", i)
                await asyncio.sleep(0)

        publishing = asyncio.create_task(publisher())
        for ref in range(1, 41):
            socket.push([3, ref, "echo", ref])
            if ref % 3 == 0:
                await asyncio.sleep(0)
        await publishing
        await socket.until(lambda: len(socket.replies()) == 41)
        await socket.until(lambda: sum(1 for f in socket.frames if f[0] == 1) == 30)
        assert socket.replies() == [900, *range(1, 41)]
        published = [f for f in socket.frames if f[0] == 1]  # PUB [1, topic, event, data, ...]
        assert [f[3] for f in published] == list(range(30))
        assert not socket.overlapped
        task.cancel()


async def test_a_waiting_handler_does_not_hold_back_what_it_sent() -> None:
    app, _, gates = _app()
    async with app.test_app() as test_app:
        socket, task = await _open(app, test_app.test_client())
        socket.push([3, 1, "tell-then-wait", 7])
        await socket.until(lambda: any(f[0] == 2 and f[-1] == 7 for f in socket.frames))
        assert socket.replies() == []  # the handler still waits
        gates["7"].set()
        await socket.until(lambda: socket.replies() == [1])
        socket.push([3, 2, "echo", 8])
        await socket.until(lambda: socket.replies() == [1, 2])
        task.cancel()


async def test_a_write_that_blocks_never_holds_the_reading_task() -> None:
    """The socket stops taking bytes in the middle of a reply (a client that stopped reading;
    on Hypercorn, a failed write that waits to hand its disconnect to the app's bounded receive
    queue). The connection keeps reading and applying frames meanwhile; once the socket takes
    bytes again, every reply arrives, in order, one write at a time."""
    app, _, _ = _app()
    applied: list[int] = []
    rt: Realtime = app.extensions["transports"]

    @rt.on("note")
    async def note(channel: Channel, data: Any) -> Any:
        applied.append(data)
        return data

    async with app.test_app() as test_app:
        socket, task = await _open(app, test_app.test_client())
        gate = socket.gate = asyncio.Event()
        for ref in range(1, 11):
            socket.push([3, ref, "note", ref])
        async with asyncio.timeout(5):
            while len(applied) < 10:
                await asyncio.sleep(0.01)
        assert socket.replies() == []  # nothing could be written, everything was applied
        gate.set()
        await socket.until(lambda: len(socket.replies()) == 10)
        assert socket.replies() == list(range(1, 11))
        assert not socket.overlapped
        task.cancel()
