"""The SSE transport: server to client on an event stream, client to server by POST (§5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from quart import Blueprint, Response, request

from ..engine import SessionChannel
from ..exceptions import Refused
from ..protocol.codes import CloseCode
from ..protocol.session import SyncResult
from ..protocol.sse import SSE_HEADERS, encode_frame, encode_hello, parse_last_event_id
from ..typing import TransportName
from . import Transport
from .common import error_response, origin_ok, refused_response

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["SSEChannel", "SSETransport"]


class SSEChannel(SessionChannel):
    """A channel whose downstream is an event stream; upstream frames arrive by POST."""

    transport: ClassVar[TransportName] = "sse"
    bidirectional: ClassVar[bool] = False
    _stream_task: asyncio.Task[Any] | None = None

    def abort(self) -> None:
        task = self._stream_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def stream(self, resync: bool) -> AsyncIterator[bytes]:
        """The response body: HELLO at once, then every due frame as it comes."""
        engine, session = self.engine, self.session
        clock = engine.clock
        max_bytes = engine.settings.poll_max_bytes
        self._stream_task = asyncio.current_task()
        try:
            yield encode_hello(self.hello(), int(engine.settings.retry * 1000))
            session.last_sent = clock()
            if resync:
                await engine.close(self, CloseCode.RESYNC, "resync")
            while True:
                await self.wait_due()
                if self.finished:
                    return
                taken = session.take(max_bytes)
                if not taken:
                    continue
                yield b"".join([encode_frame(frame, seq) for seq, frame in taken])
                session.last_sent = clock()
                if taken[-1][1].text.startswith("[9,"):
                    return
        finally:
            self._stream_task = None
            engine.detach(self)


class SSETransport(Transport):
    """``GET /sse?ticket=T`` (with ``Last-Event-ID`` on reconnect)."""

    name: ClassVar[TransportName] = "sse"
    bidirectional: ClassVar[bool] = False

    def register(self, blueprint: Blueprint, realtime: Realtime) -> None:
        engine = realtime.engine

        async def sse_route() -> Response:
            if not origin_ok(realtime):
                return error_response("forbidden_origin", "origin not allowed")
            try:
                last = parse_last_event_id(
                    request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
                )
            except ValueError:
                return error_response("bad_request", "Last-Event-ID must be a sequence number")
            try:
                session = await engine.session_for_ticket(
                    request.args.get("ticket"),
                    "sse",
                    reattach=last is not None,
                    address=request.remote_addr,
                )
                channel = engine.attach(session, "sse", lambda s: SSEChannel(engine, s))
            except Refused as exc:
                return refused_response(exc)
            assert isinstance(channel, SSEChannel)
            resync = False
            if last is not None:
                result = session.rewind(last)
                if result is SyncResult.AHEAD:
                    engine.detach(channel)
                    return error_response("bad_request", "Last-Event-ID is ahead of the stream")
                resync = result is SyncResult.TOO_OLD
            response = Response(channel.stream(resync), status=200, headers=SSE_HEADERS)
            response.timeout = None  # a stream must never be cut by Quart's response timeout
            return response

        blueprint.add_url_rule("/sse", "sse", sse_route, methods=["GET"])
