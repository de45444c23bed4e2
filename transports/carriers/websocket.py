"""WebSocket: both directions on one socket (docs/protocol.md §4).

One task per connection reads a frame, applies it and reads the next; a writer task sends every
frame that becomes due. The reading task never writes: when the connection dies during a
write, the ASGI server hands the disconnect to the app's receive queue (Hypercorn does this
from inside the failed write), and only a reader that is free to drain that queue can receive
it. A disconnect arrives as :class:`SocketGone` from ``receive()``, never as a cancellation, so
a handler that started always finishes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..core.answer import Answer
from ..core.connection import CarrierTraits, Core, SessionChannel
from ..protocol.codes import CloseCode
from ..protocol.errors import PayloadTooBig, ProtocolError, Refused
from ..protocol.frames import decode_client_frame
from ..protocol.session import Retention, Session, State
from .base import Carrier, Reply, Request, Socket, SocketGone, Upgrade

__all__ = ["WebSocketCarrier", "WebSocketChannel"]

log = logging.getLogger("transports.websocket")

TRAITS = CarrierTraits(
    name="websocket",
    bidirectional=True,
    retention=Retention.NONE,  # the socket itself is the reliable pipe
    must_answer_pings=True,
)

_RETRY_LATER = frozenset({"rate_limited", "too_many_connections", "unavailable"})
"""Refusals that a client may try again after ``Retry-After`` seconds."""


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark ``future``'s outcome as seen (asyncio logs an exception nobody retrieved)."""
    if not future.cancelled():
        future.exception()


class WebSocketChannel(SessionChannel):
    """A channel carried by one WebSocket: frames both ways, one per message."""

    traits = TRAITS

    def __init__(self, core: Core, session: Session) -> None:
        super().__init__(core, session)
        self._runner: asyncio.Task[Any] | None = None
        self._gone = False
        self._socket_closed = False
        self._writer: asyncio.Task[None] | None = None

    def abort(self) -> None:
        # A write blocked on a client that stopped reading: stop it and stop reading too.
        self._gone = True
        for task in (self._writer, self._runner):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    async def serve(self, socket: Socket) -> None:
        """Run the connection in this task until it ends. Nothing cancels this task when the
        client disconnects, so a frame being applied is always finished."""
        self._runner = asyncio.current_task()
        core, session = self.core, self.session
        gone_code: int | None = None
        limits = core.limits
        session.push(self.hello())  # HELLO is the first frame the writer sends
        writer = self._writer = asyncio.create_task(
            self._write(socket), name="transports-ws-writer"
        )
        receive, over_rate, dispatch = socket.receive, core.over_rate, core.dispatch
        try:
            while session.state is State.OPEN and not self._gone:
                message = await receive()
                if not message:
                    raise ProtocolError("bad_frame", "empty message")
                frame = decode_client_frame(message, limits)
                if over_rate(session):
                    await core.close(self, CloseCode.RATE_LIMITED, "too many messages")
                    break
                await dispatch(self, frame)
        except SocketGone as exc:
            self._gone = True
            gone_code = exc.code
        except PayloadTooBig as exc:
            await core.close(self, CloseCode.TOO_BIG, exc.message)
        except ProtocolError as exc:
            await core.close(self, CloseCode.BAD_REQUEST, exc.message)
        except asyncio.CancelledError:
            writer.cancel()
            if not self._gone:
                core.finish(session, CloseCode.GOING_AWAY, "server stopping")
            raise
        if self._gone:
            writer.cancel()
            # 1005 is ambiguous (a close frame without a code, or what uvicorn reports for a
            # dropped connection): never call a dropped connection clean.
            if gone_code is None or not 1000 <= gone_code <= 4999 or gone_code in (1005, 1006):
                core.finish(session, CloseCode.ABNORMAL, "connection lost")
            else:  # the client's closing handshake, as a CLOSE frame is on SSE and long-poll
                # 1001: the browser left the page; 1000 without a CLOSE frame is a client that
                # ends this connection to make another (a reconnect keeps its presence).
                core.finish(session, gone_code, "closed by the client", goodbye=gone_code == 1001)
            return
        # Closing on our side: let the writer deliver the close frame, while this task keeps
        # reading so that the server can hand over a disconnect.
        try:
            async with asyncio.timeout(5):
                while not writer.done():
                    reading = asyncio.ensure_future(socket.receive())
                    # Its end is read here or not at all (the 5 s can pass while it waits):
                    # a disconnect it reports later is expected, not an error to log.
                    reading.add_done_callback(_consume)
                    await asyncio.wait({reading, writer}, return_when=asyncio.FIRST_COMPLETED)
                    if not reading.done():
                        reading.cancel()
                    elif reading.exception() is not None:
                        break  # gone, or anything else: the connection is over
        except TimeoutError:
            writer.cancel()
        core.finish(session, session.close_code or CloseCode.NORMAL, session.close_reason)

    async def _write(self, socket: Socket) -> None:
        session, clock, wrote = self.session, self.core.clock, self.core.wrote
        send = socket.send
        due = self._due
        try:
            while True:
                # wait_due() without its timeout, inline: this runs once per write.
                if not session.pending and session.state is not State.CLOSED:
                    due.clear()
                    if not session.pending:
                        await due.wait()
                if self.finished:
                    if not self._socket_closed:
                        self._socket_closed = True
                        await socket.close(session.close_code or 1000, session.close_reason)
                    return
                taken = session.take()
                for _, frame in taken:
                    if frame.closes:
                        self._socket_closed = True
                        await socket.close(session.close_code or 1000, session.close_reason)
                        return
                    await send(frame.ws)
                session.last_sent = clock()
                wrote(TRAITS.name, taken)
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket broke under us; the reader will see the disconnect
            log.debug("websocket write failed", exc_info=True)


class WebSocketCarrier(Carrier):
    """``GET /ws?ticket=T`` with the WebSocket upgrade."""

    traits = TRAITS
    routes = (("WEBSOCKET", "/ws"),)

    async def handle(self, request: Request) -> Reply:
        core = self.core
        try:
            session = await core.session_for_ticket(
                request.query.get("ticket"), TRAITS, address=request.address
            )
            channel = core.attach(session, TRAITS, lambda s: WebSocketChannel(core, s))
        except Refused as exc:
            if exc.retry_after is None and exc.code in _RETRY_LATER:
                exc.retry_after = 1
            return Answer.refused(exc)
        assert isinstance(channel, WebSocketChannel)
        return Upgrade(channel.serve)
