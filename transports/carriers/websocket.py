"""WebSocket: both directions on one socket (docs/protocol.md §4).

One task per connection reads a frame, applies it and reads the next; a writer task sends every
frame that becomes due. The reading task never writes: when the connection dies during a
write, the ASGI server hands the disconnect to the app's receive queue (Hypercorn does this
from inside the failed write), and only a reader that is free to drain that queue can receive
it. A disconnect arrives as :class:`SocketGone` from ``receive()``, never as a cancellation, so
a handler that started always finishes.

The fast path of a reply: while the reading task applies a frame, what it queues does not wake
the writer. When the frame was applied without suspending and the writer is idle, the reading
task starts the write itself (one task switch less per round trip); a write that cannot finish
at once (the socket is backed up, or the server is handing over a disconnect) is finished by a
task of its own, and the writer waits for it, so the reading task is never held by a write and
frames keep their order. A frame whose handler suspends wakes the writer as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

from ..core.answer import Answer
from ..core.connection import CarrierTraits, Core, SessionChannel
from ..protocol.codes import CloseCode
from ..protocol.errors import PayloadTooBig, ProtocolError, Refused
from ..protocol.frames import OutFrame, decode_client_frame
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


_MAX_HANDOFFS = 3
"""Writes started by the reading task that had to be finished by a task, after which the
connection's replies go through its writer only."""


class _Resume:
    """Awaiting it goes on with a coroutine that was stepped by hand up to its first suspension
    (``yielded``), exactly as ``await coro`` would have (``yield from`` spelled out)."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.yielded
        while True:
            try:
                sent = yield value
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class WebSocketChannel(SessionChannel):
    """A channel carried by one WebSocket: frames both ways, one per message."""

    traits = TRAITS

    def __init__(self, core: Core, session: Session) -> None:
        super().__init__(core, session)
        self._runner: asyncio.Task[Any] | None = None
        self._gone = False
        self._socket_closed = False
        self._writer: asyncio.Task[None] | None = None
        self._sending: asyncio.Task[None] | None = None
        """The rest of a write the reading task started and could not finish at once."""
        self._holding = False
        """The reading task is applying a frame: frames queued meanwhile do not wake the writer."""
        self._owed = False
        """Frames were queued while holding."""
        self._idle = False
        """The writer waits for frames, and nothing woke it."""
        self._handoffs = 0
        """Writes the reading task started and could not finish at once. On a server whose
        sends always wait (granian) each would cost a task: after a few, the writer writes."""
        session.waker = self._wake

    def _wake(self) -> None:
        if self._holding:
            self._owed = True
        else:
            self._due.set()

    def abort(self) -> None:
        # A write blocked on a client that stopped reading: stop it and stop reading too.
        self._gone = True
        for task in (self._sending, self._writer, self._runner):
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
        try:
            while session.state is State.OPEN and not self._gone:
                message = await socket.receive()
                if not message:
                    raise ProtocolError("bad_frame", "empty message")
                frame = decode_client_frame(message, limits)
                if core.over_rate(session):
                    await core.close(self, CloseCode.RATE_LIMITED, "too many messages")
                    break
                # Applied by hand up to its first suspension, so that this task knows whether
                # the frame was applied at once (then it may write the reply itself).
                self._holding = True
                try:
                    applying = core.dispatch(self, frame)
                    try:
                        suspended = applying.send(None)
                    except StopIteration:
                        pass
                    else:  # the handler waits for something: the writer writes meanwhile
                        self._release()
                        await _Resume(applying, suspended)
                except BaseException:
                    self._release()
                    raise
                self._holding = False
                if self._owed:
                    self._owed = False
                    self._flush(socket)
        except SocketGone as exc:
            self._gone = True
            gone_code = exc.code
        except PayloadTooBig as exc:
            await core.close(self, CloseCode.TOO_BIG, exc.message)
        except ProtocolError as exc:
            await core.close(self, CloseCode.BAD_REQUEST, exc.message)
        except asyncio.CancelledError:
            writer.cancel()
            if self._sending is not None:
                self._sending.cancel()
            if not self._gone:
                core.finish(session, CloseCode.GOING_AWAY, "server stopping")
            raise
        if self._gone:
            writer.cancel()
            if self._sending is not None:
                self._sending.cancel()
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
        try:
            while True:
                if self._sending is not None:
                    await self._sending
                if not (session.pending or self.finished):
                    self._idle = True
                    try:
                        await self.wait_due()
                    finally:
                        self._idle = False
                    if self._sending is not None:
                        await self._sending
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

    def _release(self) -> None:
        """Stop holding; wake the writer for what was queued meanwhile."""
        self._holding = False
        if self._owed:
            self._owed = False
            self._due.set()

    def _flush(self, socket: Socket) -> None:
        """Write what the frame just applied queued: here when the writer is idle (nothing
        else queued, nothing being written), else by waking the writer."""
        session = self.session
        if (
            not self._idle
            or self._due.flag
            or self._sending is not None
            or self._handoffs >= _MAX_HANDOFFS
            or session.state is not State.OPEN
        ):
            self._due.set()
            return
        taken = session.take()
        for index, (_, frame) in enumerate(taken):
            writing = socket.send(frame.ws)
            try:
                suspended = writing.send(None)
            except StopIteration:
                continue
            except Exception:
                self._broken()
                return
            # Cannot finish at once: a task of its own finishes it (and the rest), and the writer
            # waits for that task before it writes anything else.
            self._handoffs += 1
            self._sending = asyncio.create_task(
                self._send_rest(socket, _Resume(writing, suspended), taken, index + 1),
                name="transports-ws-send",
            )
            return
        self._sent(taken)

    async def _send_rest(
        self,
        socket: Socket,
        writing: _Resume,
        taken: list[tuple[int, OutFrame]],
        start: int,
    ) -> None:
        try:
            await writing
            for _, frame in taken[start:]:
                await socket.send(frame.ws)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._broken()
            return
        finally:
            self._sending = None
        self._sent(taken)

    def _sent(self, taken: list[tuple[int, OutFrame]]) -> None:
        self.session.last_sent = self.core.clock()
        self.core.wrote(TRAITS.name, taken)

    def _broken(self) -> None:
        # As when the writer's own write fails: nothing more is written; the reader will see
        # the disconnect.
        log.debug("websocket write failed", exc_info=True)
        if self._writer is not None:
            self._writer.cancel()


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
