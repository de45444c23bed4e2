"""The channels: one connected client over each transport, and what they share.

:class:`SessionChannel` implements the :class:`~transports.channel.Channel` API over a
:class:`~transports.protocol.session.Session` driven by the engine; each transport's subclass adds
the loop that moves due frames to its connection:

* :class:`WebSocketChannel`: one runner task reads, applies and writes in one turn; a writer task
  sends what other tasks queue;
* :class:`SSEChannel`: the event-stream response body;
* :class:`LongPollChannel`: one held poll at a time.

Nothing here imports Quart: the server layer hands over a socket-like object or iterates the
stream, and the engine can run a poll for a request that reached another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from .channel import Channel, Message
from .exceptions import ChannelClosed, PayloadTooBig, ProtocolError, channel_closed
from .protocol.codes import CloseCode
from .protocol.frames import (
    ClientFrame,
    OutFrame,
    Position,
    decode_client_frame,
    hello_frame,
    msg_frame,
    valid_topic,
)
from .protocol.longpoll import encode_poll
from .protocol.session import Session, State, SyncResult
from .protocol.sse import encode_frame, encode_hello
from .typing import Data, Identity, TransportName

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["LongPollChannel", "SSEChannel", "SessionChannel", "SocketGone", "WebSocketChannel"]

log = logging.getLogger("transports")

_INBOX_SIZE = 100


class SocketGone(Exception):
    """The WebSocket client disconnected (raised by a socket's ``receive()``).

    ``code`` is the close code the ASGI server reported: 1006 (or None) when the connection
    dropped without a closing handshake, else the code of the client's close.
    """

    def __init__(self, code: int | None = None) -> None:
        super().__init__(code)
        self.code = code


class SessionChannel(Channel):
    """What every transport's channel shares: a :class:`Session` driven by the engine.

    Transport subclasses (in ``transports.server``) add the loop that writes due frames to
    their connection; they wait on :meth:`wait_due`.
    """

    bidirectional = False

    def __init__(self, engine: Engine, session: Session) -> None:
        self.engine = engine
        self.session = session
        self._due = asyncio.Event()
        self._closed: ChannelClosed | None = None
        self._handler_task: asyncio.Task[None] | None = None
        # A queue costs memory on every idle connection: made only when a handler needs it.
        self._inbox_queue: asyncio.Queue[Message | None] | None = None
        session.waker = self._due.set

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.session.public_id!r}, {self.session.state.name})"

    @property
    def _inbox(self) -> asyncio.Queue[Message | None]:
        """Messages for :meth:`receive` (only with a channel handler)."""
        if self._inbox_queue is None:
            self._inbox_queue = asyncio.Queue(_INBOX_SIZE)
        return self._inbox_queue

    # --- the Channel API ---------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.session.public_id

    @property
    def identity(self) -> Identity:
        return self.session.identity

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self.session.topics)

    def _check_open(self) -> None:
        if self.session.state >= State.CLOSING:
            session = self.session
            raise self._closed or channel_closed(
                session.close_code or CloseCode.NORMAL, session.close_reason
            )

    async def send(self, event: str, data: Data = None) -> None:
        self._check_open()
        self.session.push(msg_frame(event, data))

    async def receive(self) -> Message:
        if self._closed is not None and self._inbox.empty():
            raise self._closed
        message = await self._inbox.get()
        if message is None:
            self._inbox.put_nowait(None)  # wake any other receiver too
            assert self._closed is not None
            raise self._closed
        return message

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        await self.engine.close(self, code, reason)

    async def subscribe(self, topic: str, since: Position | None = None) -> bool:
        self._check_open()
        if not valid_topic(topic, self.engine.limits):
            raise ProtocolError("bad_topic", "invalid topic name")
        history = await self.engine.hub.join(self.session, topic, since, None)
        return history.recovered if since is not None else True

    async def unsubscribe(self, topic: str) -> None:
        await self.engine.hub.leave(self.session, [topic])

    # --- for transports ----------------------------------------------------------------

    async def submit_all(self, frames: list[ClientFrame]) -> None:
        """Apply a batch of client frames (a POST body) in order, and wait until it is done.

        The frames are applied by a task the engine owns, not by the request: if the client
        drops the request meanwhile, a handler that started still finishes, so its reply can be
        remembered and a retry of that message is never applied twice. The session admits one
        POST at a time, so batches never overlap.
        """
        if self._closed is not None:
            raise self._closed
        task = self.engine.spawn(self._apply(frames), "transports-apply")
        await asyncio.shield(task)

    async def _apply(self, frames: list[ClientFrame]) -> None:
        engine = self.engine
        for frame in frames:
            if self._closed is not None:
                return  # not acknowledged: the client sends these again
            try:
                await engine.dispatch(self, frame)
            except Exception:
                log.exception("dispatch failed")

    async def wait_due(self, timeout: float | None = None) -> bool:
        """Wait until frames are due (True) or ``timeout`` passes (False).

        Also returns at once when the session is gone (:attr:`finished`).
        """
        if self.session.pending or self.finished:
            return True
        self._due.clear()
        if self.session.pending:
            return True
        if timeout is None:
            await self._due.wait()
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._due.wait()
        except TimeoutError:
            return bool(self.session.pending)
        return True

    @property
    def finished(self) -> bool:
        """The session is gone for good: transports stop serving it."""
        return self.session.state is State.CLOSED

    def wake(self) -> None:
        """Make :meth:`wait_due` return (for example to end a superseded poll)."""
        self._due.set()

    def hello(self) -> OutFrame:
        """The HELLO frame for this channel."""
        return hello_frame(
            {
                "v": 1,
                "id": self.session.public_id,
                "transport": self.transport,
                "heartbeat": int(self.engine.settings.heartbeat * 1000),
            }
        )

    def abort(self) -> None:
        """Stop writing to a connection whose writes no longer progress (transport-specific)."""

    def _shutdown(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = channel_closed(code, reason)
            if self._inbox_queue is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    self._inbox_queue.put_nowait(None)
        self._due.set()


class WebSocketChannel(SessionChannel):
    """A channel carried by one WebSocket: frames both ways, one per message.

    The connection's own task reads a frame and applies it; a writer task sends every frame
    that becomes due. The reading task never writes: when the connection dies during a write,
    the ASGI server hands the disconnect to the app's receive queue (Hypercorn does this from
    inside the failed write), and only a reader that is free to drain that queue can receive
    it. A disconnect arrives as :class:`SocketGone` from ``receive()``, never as a
    cancellation, so a handler that started always finishes.
    """

    transport: ClassVar[TransportName] = "websocket"
    bidirectional: ClassVar[bool] = True

    def __init__(self, engine: Engine, session: Session) -> None:
        super().__init__(engine, session)
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

    async def serve(self, socket: Any) -> None:
        """Run the connection in this task until it ends.

        ``socket`` has ``receive()`` (raising :class:`SocketGone` once the client is gone),
        ``send(message)`` and ``close(code, reason)``; the server layer passes an
        :class:`~transports.server.websocket.ASGISocket`. Nothing cancels this task when the
        client disconnects, so a frame being applied is always finished.
        """
        self._runner = asyncio.current_task()
        engine, session = self.engine, self.session
        gone_code: int | None = None
        limits = engine.limits
        session.push(self.hello())  # HELLO is the first frame the writer sends
        writer = self._writer = asyncio.create_task(
            self._write(socket), name="transports-ws-writer"
        )
        try:
            while session.state is State.OPEN and not self._gone:
                message = await socket.receive()
                if not message:
                    raise ProtocolError("bad_frame", "empty message")
                frame = decode_client_frame(message, limits)
                if engine.over_rate(session):
                    await engine.close(self, CloseCode.RATE_LIMITED, "too many messages")
                    break
                await engine.dispatch(self, frame)
        except SocketGone as exc:
            self._gone = True
            gone_code = exc.code
        except PayloadTooBig as exc:
            await engine.close(self, CloseCode.TOO_BIG, exc.message)
        except ProtocolError as exc:
            await engine.close(self, CloseCode.BAD_REQUEST, exc.message)
        except asyncio.CancelledError:
            writer.cancel()
            if not self._gone:
                engine.close_now(session, CloseCode.GOING_AWAY, "server stopping")
            raise
        if self._gone:
            writer.cancel()
            # 1005 is ambiguous (a close frame without a code, or what uvicorn reports for a
            # dropped connection): never call a dropped connection clean.
            if gone_code is None or not 1000 <= gone_code <= 4999 or gone_code in (1005, 1006):
                engine.close_now(session, CloseCode.ABNORMAL, "connection lost")
            else:  # the client's closing handshake, as a CLOSE frame is on SSE and long-poll
                engine.close_now(session, gone_code, "closed by the client")
            return
        # Closing on our side: let the writer deliver the close frame, while this task keeps
        # reading so that the server can hand over a disconnect.
        try:
            async with asyncio.timeout(5):
                while not writer.done():
                    reading = asyncio.ensure_future(socket.receive())
                    await asyncio.wait({reading, writer}, return_when=asyncio.FIRST_COMPLETED)
                    if not reading.done():
                        reading.cancel()
                    elif reading.exception() is not None:
                        break  # gone, or anything else: the connection is over
        except TimeoutError:
            writer.cancel()
        engine.close_now(session, session.close_code or CloseCode.NORMAL, session.close_reason)

    async def _write(self, socket: Any) -> None:
        session, clock = self.session, self.engine.clock
        try:
            while True:
                await self.wait_due()
                if self.finished:
                    if not self._socket_closed:
                        self._socket_closed = True
                        await socket.close(session.close_code or 1000, session.close_reason)
                    return
                for _, frame in session.take():
                    if frame.text.startswith("[9,"):
                        self._socket_closed = True
                        await socket.close(session.close_code or 1000, session.close_reason)
                        return
                    await socket.send(frame.ws)
                session.last_sent = clock()
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket broke under us; the reader will see the disconnect
            log.debug("websocket write failed", exc_info=True)


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


class LongPollChannel(SessionChannel):
    """A channel whose downstream is a series of held GET requests."""

    transport: ClassVar[TransportName] = "longpoll"
    bidirectional: ClassVar[bool] = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._generation = 0
        self._greeted = False

    async def poll(self, cursor: int) -> bytes:
        """Answer one poll: frames after ``cursor`` now, or after waiting up to the window."""
        engine, session = self.engine, self.session
        settings = engine.settings
        self._generation += 1
        generation = self._generation
        try:
            # HELLO has no sequence number, so a cursor of 0 is the only sign that the client
            # may not have it (the first response was lost, or superseded): it opens every
            # response to such a poll. Only the first poll is answered without waiting.
            head: list[OutFrame] = [self.hello()] if cursor == 0 else []
            first = not self._greeted
            self._greeted = True
            result = session.rewind(cursor)
            if result is SyncResult.TOO_OLD:
                await engine.close(self, CloseCode.RESYNC, "resync")
            if not session.pending and not first:
                await self.wait_due(settings.poll_window)
            if generation != self._generation or self.finished:  # superseded, or gone
                return encode_poll(cursor, [])
            taken = session.take(settings.poll_max_bytes)
            session.last_sent = engine.clock()
            last = taken[-1][0] if taken else cursor
            return encode_poll(last, head + [frame for _, frame in taken])
        finally:
            if generation == self._generation:
                engine.detach(self)

    def supersede(self) -> None:
        """End the poll in flight (a newer one arrived)."""
        self._generation += 1
        self.wake()
