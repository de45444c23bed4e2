"""A recording TCP proxy on loopback: counts (and optionally keeps) the bytes each way.

Used for "bytes on the wire per message" and for the captured exchanges in the docs. It
forwards every byte unchanged, so what it counts is exactly what the client and server wrote
(HTTP headers, chunked encoding, WebSocket framing and all).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field


@dataclass
class Chunk:
    """Bytes seen on one connection in one direction (``up``: client to server)."""

    conn: int
    up: bool
    at: float
    data: bytes


@dataclass
class RecordingProxy:
    """``127.0.0.1:port`` -> ``127.0.0.1:upstream``; ``up``/``down`` count bytes."""

    upstream: int
    record: bool = False
    up: int = 0
    down: int = 0
    connections: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> tuple[int, int]:
        """Bytes so far: (client to server, server to client)."""
        return self.up, self.down

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    if self.record:
                        self.chunks.append(Chunk(number, up, time.monotonic(), data))
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        tasks = [
            asyncio.create_task(pipe(reader, up_writer, True)),
            asyncio.create_task(pipe(up_reader, writer, False)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
