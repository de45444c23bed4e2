"""Server-Sent Events: server to client on an event stream, client to server by POST (§5).

Events are encoded with sse-starlette's :class:`ServerSentEvent` (never hand-rolled framing):
each frame's ``data:`` block is encoded once, cached on the frame (:attr:`OutFrame.sse`) and
shared by every stream; only the per-session ``id:`` line differs between recipients. The
``id:`` is the session's sequence number, so a plain ``EventSource`` reconnect resumes through
``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from sse_starlette.event import ServerSentEvent

from ..core.answer import Answer
from ..core.connection import CarrierTraits, SessionChannel
from ..protocol.codes import CloseCode
from ..protocol.errors import Refused
from ..protocol.frames import OutFrame
from ..protocol.session import Retention, SyncResult
from ..protocol.sse import SSE_HEADERS, parse_last_event_id
from .base import Carrier, Reply, Request, Stream

__all__ = ["SSECarrier", "SSEChannel", "encode_frame", "encode_hello"]

TRAITS = CarrierTraits(
    name="sse",
    bidirectional=False,
    retention=Retention.RING,  # kept for a reconnect with Last-Event-ID
    pong_acknowledges=True,
    reattach_by_ticket=True,
)


def encode_frame(frame: OutFrame, seq: int | None = None) -> bytes:
    """One SSE event carrying ``frame``; with ``seq``, an ``id: seq`` line first.

    ``encode_frame(f, 7) == ServerSentEvent(id="7", data=f.text).encode()``: the ``data:`` block
    is cached on the frame, and the ``id:`` line is sse-starlette's encoding of an integer,
    which needs no escaping.
    """
    body = frame.sse
    if body is None:
        body = frame.sse = ServerSentEvent(data=frame.text).encode()
    if seq is None:
        return body
    return b"id: %d\r\n" % seq + body


def encode_hello(frame: OutFrame, retry_ms: int) -> bytes:
    """The first event of a stream: HELLO with a ``retry:`` reconnect hint for EventSource."""
    return ServerSentEvent(data=frame.text, retry=int(retry_ms)).encode()


class SSEChannel(SessionChannel):
    """A channel whose downstream is an event stream; upstream frames arrive by POST."""

    traits = TRAITS
    _stream_task: asyncio.Task[Any] | None = None

    def abort(self) -> None:
        task = self._stream_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def stream(self, resync: bool) -> AsyncGenerator[bytes, None]:
        """The response body: HELLO at once, then every due frame as it comes."""
        core, session = self.core, self.session
        clock = core.clock
        settings = core.settings
        self._stream_task = asyncio.current_task()
        try:
            yield encode_hello(self.hello(), int(settings.retry * 1000))
            session.last_sent = clock()
            if resync:
                await core.close(self, CloseCode.RESYNC, "resync")
            while True:
                await self.wait_due()
                if self.finished:
                    return
                taken = session.take(settings.poll_max_bytes)
                if not taken:
                    continue
                yield b"".join([encode_frame(frame, seq) for seq, frame in taken])
                session.last_sent = clock()
                core.wrote(TRAITS.name, taken)
                if taken[-1][1].closes:
                    return
        finally:
            self._stream_task = None
            core.detach(self)


class SSECarrier(Carrier):
    """``GET /sse?ticket=T`` (with ``Last-Event-ID`` on reconnect)."""

    traits = TRAITS
    routes = (("GET", "/sse"),)

    async def handle(self, request: Request) -> Reply:
        core = self.core
        try:
            last = parse_last_event_id(
                request.headers.get("last-event-id") or request.query.get("lastEventId")
            )
        except ValueError:
            return Answer.error("bad_request", "Last-Event-ID must be a sequence number")
        try:
            session = await core.session_for_ticket(
                request.query.get("ticket"),
                TRAITS,
                reattach=last is not None,
                address=request.address,
            )
            channel = core.attach(session, TRAITS, lambda s: SSEChannel(core, s))
        except Refused as exc:
            return Answer.refused(exc)
        assert isinstance(channel, SSEChannel)
        resync = False
        if last is not None:
            result = session.rewind(last)
            if result is SyncResult.AHEAD:
                core.detach(channel)
                return Answer.error("bad_request", "Last-Event-ID is ahead of the stream")
            resync = result is SyncResult.TOO_OLD
        return Stream(dict(SSE_HEADERS), channel.stream(resync))
