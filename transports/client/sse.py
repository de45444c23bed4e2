"""Server-Sent Events (protocol §5): the stream down, ``POST /send`` up.

Accepted only once the HELLO event arrives within the deadline (a buffering proxy holds it
back). A dropped stream is reattached to the same session with ``Last-Event-ID``, as an
``EventSource`` does (§5.3), for as long as the policy's ``reattach`` budget allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import ClassVar

from ..protocol.codes import CloseCode
from ..protocol.frames import Close, Hello, Ping, Pong, ServerFrame
from ..protocol.policy import POLICY
from ..protocol.sse import SSEParser
from ..protocol.types import TransportName
from .connection import Attempts, decode
from .connector import StreamResponse
from .upstream import HTTPConnection, text_frame

__all__ = ["SSE"]


class SSE(HTTPConnection):
    name: ClassVar[TransportName] = "sse"

    response: StreamResponse
    chunks: AsyncIterator[bytes]

    async def open(self, deadline: float) -> None:
        self.parser = SSEParser()
        self.last_seq = 0
        async with asyncio.timeout(deadline):
            self.response = await self.connector.stream(
                self._stream_url(), headers={"Accept": "text/event-stream"}, timeout=deadline
            )
            if self.response.status != 200:
                body = await self.response.read_all()
                raise OSError(f"sse answered {self.response.status}: {body[:200]!r}")
            self.chunks = self.response.chunks()
            # Accept SSE only once the HELLO event arrives: a buffering proxy holds it back.
            hello = False
            while not hello:
                for frame in self._frames(await anext(self.chunks)):
                    if isinstance(frame, Hello):
                        hello = True
                    else:
                        self.early.append(frame)
        self.heard()
        self.start_upstream()
        self.tasks.append(asyncio.create_task(self._read()))
        self.tasks.append(asyncio.create_task(self.watchdog()))

    def _stream_url(self) -> str:
        return self.url("sse") + "?ticket=" + str(self.info["ticket"])

    def _frames(self, chunk: bytes) -> list[ServerFrame]:
        frames = []
        for event in self.parser.feed(chunk):
            if event.last_event_id.isdigit():
                self.last_seq = int(event.last_event_id)
            frame = decode(event.data)
            if frame is not None:
                frames.append(frame)
        return frames

    async def _read(self) -> None:
        attempts = self.attempts("sse")
        try:
            while True:
                with contextlib.suppress(OSError):
                    async for chunk in self.chunks:
                        attempts.recovered()
                        self.heard()
                        if await self._dispatch(chunk):
                            return
                # The stream dropped: reattach before giving the session up.
                if not await self._reattach(attempts):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end(CloseCode.ABNORMAL, f"stream failed: {exc}")

    async def _dispatch(self, chunk: bytes) -> bool:
        """Hand the frames of ``chunk`` over; True after a CLOSE."""
        for frame in self._frames(chunk):
            if isinstance(frame, Ping):
                await self.send([text_frame(Pong(self.last_seq))])
                continue
            self.received(frame)
            if isinstance(frame, Close):
                return True
        return False

    async def _reattach(self, attempts: Attempts) -> bool:
        """Open the stream again with ``Last-Event-ID``; False once the connection has ended
        (the budget spent, or an answer the policy does not retry: renegotiate, and resume
        by topic positions)."""
        while True:
            wait = attempts.failed()
            if wait is None:
                self.end(CloseCode.ABNORMAL, "stream lost")
                return False
            await self.sleep(wait)
            with contextlib.suppress(Exception):
                await self.response.close()
            headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.last_seq)}
            try:
                response = await self.connector.stream(
                    self._stream_url(), headers=headers, timeout=POLICY.requests["sse"].timeout
                )
            except OSError:  # TimeoutError included
                continue
            action, _ = attempts.answered(response)
            if action != "ok":
                await response.close()
                code = action if isinstance(action, int) else CloseCode.ABNORMAL
                self.end(code, f"stream reattach answered {response.status}")
                return False
            self.response = response
            self.parser = SSEParser()
            self.chunks = response.chunks()
            return True

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.response.close()
        await super().shutdown()
