"""A connected client's channel as the core drives it, and the interface between core and carriers.

The core never names a transport: where behaviour differs between transports it reads the
:class:`CarrierTraits` of the carrier that attached the session. Carriers (``transports.carriers``)
subclass :class:`SessionChannel` with the loop that moves due frames to their connection, and
reach the core only through :class:`Core`, the small interface the engine implements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..backplanes import History
from ..protocol.codes import CloseCode
from ..protocol.errors import ChannelClosed, ProtocolError, channel_closed
from ..protocol.frames import (
    ClientFrame,
    Limits,
    OutFrame,
    Position,
    hello_frame,
    msg_frame,
    valid_topic,
)
from ..protocol.session import Retention, Session, State
from ..protocol.types import Data, Identity, TransportName
from .answer import Answer
from .channel import Channel, Message
from .settings import Settings

__all__ = ["CarrierTraits", "Core", "Forwarded", "SessionChannel"]

log = logging.getLogger("transports")

_INBOX_SIZE = 100


@dataclass(frozen=True, slots=True)
class CarrierTraits:
    """How one transport behaves, as far as the core is concerned."""

    name: str
    """The transport's name on the wire (negotiate, HELLO, :attr:`Channel.transport`)."""
    bidirectional: bool
    """One connection carries both directions; otherwise client frames come by ``POST /send``."""
    retention: Retention
    """What the session's outbox keeps after a write (see :mod:`transports.protocol.session`)."""
    pings: bool = True
    """The server sends PING when the connection is quiet (a held poll is its own heartbeat)."""
    must_answer_pings: bool = False
    """The client must always answer PINGs; otherwise only once it has answered one (a plain
    EventSource cannot answer at all)."""
    pong_acknowledges: bool = False
    """A PONG carrying a sequence number acknowledges the stream up to it."""
    reattach_by_ticket: bool = False
    """A spent ticket may reattach a dropped stream to its own live session."""
    attach_by_token: bool = False
    """The first request attaches with the session token instead of a connect ticket (a
    session may then come to life on whichever process receives it)."""
    watch_writes: bool = True
    """Writes that stop progressing while frames are due mean a slow consumer."""


Forwarded = Callable[[dict[str, Any]], Awaitable[Answer]]
"""Serves a request another process forwarded here (``hop`` set): the call's fields in, the
answer out."""


class Core(Protocol):
    """The engine, as carriers see it."""

    settings: Settings
    limits: Limits

    def clock(self) -> float: ...

    def hello_info(self, session: Session) -> dict[str, Any]: ...

    async def session_for_ticket(
        self,
        ticket: str | None,
        traits: CarrierTraits,
        *,
        reattach: bool = False,
        address: str | None = None,
    ) -> Session: ...

    async def session_for_token(
        self, token: str | None, traits: CarrierTraits | None, address: str | None = None
    ) -> Session: ...

    def attach(
        self,
        session: Session,
        traits: CarrierTraits,
        factory: Callable[[Session], SessionChannel],
    ) -> SessionChannel: ...

    def channel_of(self, session: Session) -> SessionChannel | None: ...

    async def join(
        self, session: Session, topic: str, since: Position | None, ref: int | str | None
    ) -> History: ...

    async def leave(self, session: Session, topics: Iterable[str]) -> None: ...

    def detach(self, channel: SessionChannel) -> None: ...

    def dispatch(self, channel: SessionChannel, frame: ClientFrame) -> Awaitable[None]: ...

    def over_rate(self, session: Session, frames: int = 1) -> float: ...

    def wrote(self, transport: str, frames: list[tuple[int, OutFrame]]) -> None: ...

    async def close(self, channel: SessionChannel, code: int, reason: str) -> None: ...

    def finish(
        self, session: Session, code: int, reason: str, *, goodbye: bool = False
    ) -> None: ...

    def spawn(self, coro: Awaitable[Any], name: str, eager: bool = False) -> asyncio.Task[Any]: ...

    async def forward(self, node: str, call: dict[str, Any], timeout: float) -> Answer: ...

    def serve_forwarded(self, kind: str, handler: Forwarded) -> None: ...


class _Due:
    """``asyncio.Event`` as a connection's writer uses it, for less: a flag, and one future per
    wait (no loop check and no deque per wait, no deque per idle connection). The writer waits
    on it once per write, and a session wakes it once per frame queued."""

    __slots__ = ("flag", "waiters")

    def __init__(self) -> None:
        self.flag = False
        self.waiters: list[asyncio.Future[None]] | None = None

    def set(self) -> None:
        if not self.flag:
            self.flag = True
            waiters = self.waiters
            if waiters is not None:
                self.waiters = None
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    def clear(self) -> None:
        self.flag = False

    async def wait(self) -> None:
        if self.flag:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = [waiter]
        else:
            waiters.append(waiter)
        try:
            await waiter
        except BaseException:  # cancelled (a timeout): forget it unless set() already did
            if self.waiters is waiters:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
            raise


class SessionChannel(Channel):
    """What every transport's channel shares: a :class:`Session` driven by the core.

    Carriers subclass it with the loop that writes due frames to their connection; they wait
    on :meth:`wait_due`. ``traits`` is the carrier's; :attr:`transport` and
    :attr:`bidirectional` come from it.
    """

    traits: CarrierTraits

    def __init__(self, core: Core, session: Session) -> None:
        self.core = core
        self.session = session
        self._due = _Due()
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
    def transport(self) -> TransportName:
        return self.traits.name

    @property
    def bidirectional(self) -> bool:
        return self.traits.bidirectional

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
        await self.core.close(self, code, reason)

    async def subscribe(self, topic: str, since: Position | None = None) -> bool:
        self._check_open()
        if not valid_topic(topic, self.core.limits):
            raise ProtocolError("bad_topic", "invalid topic name")
        history = await self.core.join(self.session, topic, since, None)
        return history.recovered if since is not None else True

    async def unsubscribe(self, topic: str) -> None:
        await self.core.leave(self.session, [topic])

    # --- for transports ----------------------------------------------------------------

    async def submit_all(
        self, frames: list[ClientFrame], gather_replies: bool = False
    ) -> list[OutFrame]:
        """Apply a batch of client frames (a POST body) in order, and wait until it is done.

        The frames are applied by a task the engine owns, not by the request: if the client
        drops the request meanwhile, a handler that started still finishes, so its reply can be
        remembered and a retry of that message is never applied twice. The session admits one
        POST at a time, so batches never overlap.

        With ``gather_replies``, the REPLY frames to the batch's EVENT and PUBLISH frames are
        returned instead of queued (the POST answers with them, protocol §6.2); if the request
        is cancelled first, those gathered so far and those still to come are queued after all.
        """
        if self._closed is not None:
            raise self._closed
        sink: list[OutFrame] | None = [] if gather_replies else None
        task = self.core.spawn(self._apply(frames, sink), "transports-apply", eager=True)
        if task.done() and not task.cancelled():  # started eagerly, never waited (3.12+)
            task.result()
            return sink or []
        # (A task cancelled before it waited goes through the shield too: it raises at once,
        # and the replies gathered so far are queued below.)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if sink is not None:
                session = self.session
                if session.reply_sink is sink:
                    session.reply_sink = None
                for frame in sink:
                    session.push(frame)
                sink.clear()
            raise
        return sink or []

    async def _apply(self, frames: list[ClientFrame], sink: list[OutFrame] | None) -> None:
        core = self.core
        session = self.session
        if sink is not None:
            session.reply_sink = sink
        try:
            for frame in frames:
                if self._closed is not None:
                    return  # not acknowledged: the client sends these again
                try:
                    await core.dispatch(self, frame)
                except Exception:
                    log.exception("dispatch failed")
        finally:
            if sink is not None and session.reply_sink is sink:
                session.reply_sink = None

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
        return hello_frame(self.core.hello_info(self.session))

    def abort(self) -> None:
        """Stop writing to a connection whose writes no longer progress (transport-specific)."""

    def shutdown(self, code: int, reason: str) -> None:
        """The session ended (called once by the core): wake every waiter."""
        if self._closed is None:
            self._closed = channel_closed(code, reason)
            if self._inbox_queue is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    self._inbox_queue.put_nowait(None)
        self._due.set()
