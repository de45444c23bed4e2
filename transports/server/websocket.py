"""The WebSocket transport: both directions on one socket (docs/protocol.md §4)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from quart import Blueprint, Response, websocket

from ..engine import Engine, SessionChannel
from ..exceptions import PayloadTooBig, ProtocolError, Refused
from ..protocol.codes import CloseCode
from ..protocol.frames import decode_client_frame
from ..protocol.session import Session, State
from ..typing import TransportName
from . import Transport
from .common import error_response, origin_ok, refused_response

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["WebSocketChannel", "WebSocketTransport"]

log = logging.getLogger("transports.websocket")


class WebSocketChannel(SessionChannel):
    """A channel carried by one WebSocket: frames both ways, one per message.

    One runner task (owned by the engine, not by Quart's request) reads a frame, applies it and
    writes what it produced, all in one turn of the event loop; a writer task sends what other
    tasks queue (publications, ``channel.send`` from elsewhere). A lock around "take and send"
    keeps frames in order between the two. Because Quart cancels the request task, not the
    runner, when the client disconnects, a handler that started always finishes.
    """

    transport: ClassVar[TransportName] = "websocket"
    bidirectional: ClassVar[bool] = True
    uses_dispatcher: ClassVar[bool] = False

    def __init__(self, engine: Engine, session: Session) -> None:
        super().__init__(engine, session)
        self._lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._receiving = False
        self._dispatching = False
        self._owed = False
        self._gone = False
        self._socket_closed = False
        self._writer: asyncio.Task[None] | None = None
        session.waker = self._wake

    def abort(self) -> None:
        # A write blocked on a client that stopped reading: stop it and stop reading too.
        self._gone = True
        for task in (self._writer, self._runner):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    def _wake(self) -> None:
        # Frames the runner queues while applying a frame are sent by the runner itself right
        # after; waking the writer for them would cost a task switch per message.
        if self._dispatching and asyncio.current_task() is self._runner:
            if not self._owed:
                self._owed = True
                asyncio.get_running_loop().call_soon(self._settle)
            return
        self._due.set()

    def _settle(self) -> None:
        self._owed = False
        if self.session.pending:  # the handler is still waiting on something: writer's turn
            self._due.set()

    async def serve(self, socket: Any) -> None:
        """Run the connection until it ends (called from the WebSocket route)."""
        runner = self.engine.spawn(self._run(socket), f"transports-ws-{self.session.public_id}")
        self._runner = runner
        try:
            await asyncio.shield(runner)
        except asyncio.CancelledError:
            # The client went away: Quart cancels this request task. Stop the runner only
            # while it waits for input; a frame being applied is finished first.
            self._gone = True
            if self._receiving:
                runner.cancel()
            raise

    async def _run(self, socket: Any) -> None:
        engine, session = self.engine, self.session
        limits = engine.limits
        backlog_limit = engine.settings.max_websocket_backlog
        await socket.send(self.hello().text)
        session.last_sent = engine.clock()
        writer = self._writer = asyncio.create_task(
            self._write(socket), name="transports-ws-writer"
        )
        try:
            while session.state is State.OPEN and not self._gone:
                self._receiving = True
                try:
                    message = await socket.receive()
                finally:
                    self._receiving = False
                if not message:
                    raise ProtocolError("bad_frame", "empty message")
                frame = decode_client_frame(message, limits)
                if engine.over_rate(session) or self._backlog(socket) > backlog_limit:
                    await engine.close(self, CloseCode.RATE_LIMITED, "too many messages")
                    break
                self._dispatching = True
                try:
                    await engine.dispatch(self, frame)
                finally:
                    self._dispatching = False
                if session.pending and not self._lock.locked():
                    await self._flush(socket)
        except PayloadTooBig as exc:
            await engine.close(self, CloseCode.TOO_BIG, exc.message)
        except ProtocolError as exc:
            await engine.close(self, CloseCode.BAD_REQUEST, exc.message)
        except asyncio.CancelledError:
            if not self._gone:
                writer.cancel()
                raise  # the engine is stopping
        if self._gone:
            writer.cancel()
            engine.close_now(session, CloseCode.ABNORMAL, "connection lost")
            return
        # Closing on our side: let the writer deliver the close frame (unless the runner
        # already did), then end.
        if self._socket_closed:
            writer.cancel()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(writer, timeout=5)
        engine.close_now(session, session.close_code or CloseCode.NORMAL, session.close_reason)

    @staticmethod
    def _backlog(socket: Any) -> int:
        """Messages Quart has received for this socket and we have not read yet.

        Quart moves incoming messages into an unbounded queue of its own (``Websocket._receive``
        is that queue's ``get``), so a flood fills memory unless someone looks at it.
        """
        queue = getattr(getattr(socket, "_receive", None), "__self__", None)
        return queue.qsize() if isinstance(queue, asyncio.Queue) else 0

    async def _flush(self, socket: Any) -> None:
        session = self.session
        async with self._lock:
            if self._socket_closed:
                return
            for _, frame in session.take():
                if frame.text.startswith("[9,"):
                    await self._close_socket(socket)
                    return
                await socket.send(frame.ws)
            session.last_sent = self.engine.clock()

    async def _close_socket(self, socket: Any) -> None:
        self._socket_closed = True
        session = self.session
        await socket.close(session.close_code or 1000, session.close_reason[:120])

    async def _write(self, socket: Any) -> None:
        try:
            while not self._socket_closed:
                await self.wait_due()
                if self.finished:
                    async with self._lock:
                        if not self._socket_closed:
                            await self._close_socket(socket)
                    return
                await self._flush(socket)
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket broke under us; the reader will see the disconnect
            log.debug("websocket write failed", exc_info=True)


class WebSocketTransport(Transport):
    """``GET /ws?ticket=T`` with the WebSocket upgrade."""

    name: ClassVar[TransportName] = "websocket"
    bidirectional: ClassVar[bool] = True

    def register(self, blueprint: Blueprint, realtime: Realtime) -> None:
        engine = realtime.engine

        async def ws_route() -> Response | None:
            if not origin_ok(realtime, is_websocket=True):
                return error_response("forbidden_origin", "origin not allowed")
            try:
                session = await engine.session_for_ticket(
                    websocket.args.get("ticket"), "websocket", address=websocket.remote_addr
                )
                channel = engine.attach(session, "websocket", lambda s: WebSocketChannel(engine, s))
            except Refused as exc:
                return refused_response(exc)
            assert isinstance(channel, WebSocketChannel)
            await websocket.accept()
            await channel.serve(websocket._get_current_object())  # type: ignore[attr-defined]
            return None

        blueprint.add_websocket("/ws", "ws", ws_route)
