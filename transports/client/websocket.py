"""WebSocket (protocol §4): both directions on one socket.

Accepted only after an application-level round trip (PING, then PONG): a proxy may accept the
upgrade and then go silent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from ..protocol.codes import CloseCode
from ..protocol.frames import Close, Hello, Ping, Pong, ServerFrame, encode_client_frame
from ..protocol.types import TransportName
from .connection import Connection, decode
from .connector import WebSocketConnection

__all__ = ["WebSocket"]

_LEAVE_TIMEOUT = 2.0
_PING = encode_client_frame(Ping())
_PONG = encode_client_frame(Pong())


class WebSocket(Connection):
    name: ClassVar[TransportName] = "websocket"
    binary: ClassVar[bool] = True

    socket: WebSocketConnection

    async def open(self, deadline: float) -> None:
        url = self.url("websocket").replace("http", "ws", 1) + "?ticket=" + self.info["ticket"]
        async with asyncio.timeout(deadline):
            self.socket = await self.connector.websocket(url, timeout=deadline)
            first = await self._next_frame("before HELLO")
            if not isinstance(first, Hello):
                raise OSError("websocket: the first frame was not HELLO")
            await self.socket.send(_PING)
            while not isinstance(frame := await self._next_frame("during the round trip"), Pong):
                self.early.append(frame)
        self.heard()
        self.tasks.append(asyncio.create_task(self._read()))
        self.tasks.append(asyncio.create_task(self.watchdog()))

    async def _next_frame(self, when: str) -> ServerFrame:
        """The next frame of a known type (others are skipped) while opening."""
        while True:
            message = await self.socket.receive()
            if message is None:
                raise OSError(f"websocket closed with {self.socket.close_code} {when}")
            frame = decode(message)
            if frame is not None:
                return frame

    async def _read(self) -> None:
        socket = self.socket
        try:
            while True:
                message = await socket.receive()
                if message is None:
                    self.end(socket.close_code or CloseCode.ABNORMAL, socket.close_reason)
                    return
                self.heard()
                frame = decode(message)
                if frame is None:
                    continue
                if isinstance(frame, Ping):
                    await socket.send(_PONG)
                    continue
                self.received(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end(CloseCode.ABNORMAL, f"websocket read failed: {exc}")

    async def send(self, frames: list[str | bytes]) -> None:
        for frame in frames:
            await self.socket.send(frame)

    async def leave(self) -> None:
        # CLOSE, then the closing handshake (in shutdown).
        with contextlib.suppress(Exception):
            close = encode_client_frame(Close(CloseCode.NORMAL, ""))
            await asyncio.wait_for(self.send([close]), _LEAVE_TIMEOUT)

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.socket.close(CloseCode.NORMAL, "")
        await super().shutdown()
