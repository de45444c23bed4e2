"""The Python client's :class:`Client`: one logical connection over whichever transport works.

It negotiates, opens the first transport of its order that proves itself, reconnects as the
policy says (:mod:`transports.protocol.policy`), resumes every subscription from its last
position, drops duplicates by offset, and re-sends unacknowledged messages with the same ref so
the server applies them once. Transports are reached only through the
:class:`~transports.client.connection.Connection` surface and the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..protocol import policy
from ..protocol.codes import CloseCode
from ..protocol.errors import (
    ChannelClosed,
    NegotiationError,
    ProtocolError,
    ReplyError,
    channel_closed,
)
from ..protocol.frames import (
    PRESENCE_EVENTS,
    Close,
    Event,
    Msg,
    Position,
    PresenceQuery,
    Pub,
    Reply,
    ServerFrame,
    Subscribe,
    Unsubscribe,
    encode_client_frame,
)
from ..protocol.policy import POLICY
from ..protocol.types import Data, TransportName
from .connection import Closed, Connection, Link, RetryLater, server_hint, wire_size
from .connector import Connector, WebSocketRefused
from .incoming import Incoming, Topic, reply_error
from .negotiate import CREDENTIALS_REFUSED, CredentialsRefused, NegotiateRefused, Token, negotiate
from .registry import CONNECTIONS, DEFAULT_ORDER

__all__ = ["Client", "connect"]

log = logging.getLogger("transports.client")

_OPEN_FAILURES = (
    OSError,  # TimeoutError included
    WebSocketRefused,
    Closed,
    StopAsyncIteration,
    ProtocolError,  # a malformed first frame or poll answer
)
"""What a transport that failed while opening raises: the client tries the next one."""


def fallback_cause(exc: BaseException) -> str:
    """The reason code (policy.json ``fallbackReasons``) of a transport that failed to open
    with ``exc``, as the next negotiate reports it: ``timeout`` (not proven within its
    deadline), ``refused`` (the upgrade was refused), ``closed`` (it closed before it was
    usable), ``error`` (any other failure: the network, a malformed frame)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, WebSocketRefused):
        return "refused"
    if isinstance(exc, Closed | StopAsyncIteration):
        return "closed"
    return "error"


_TIMER_SLACK = 0.001
"""A timer may run this much (seconds) before its time: deadlines that close count as passed."""

Pending = tuple[str | bytes, str | bytes, "asyncio.Future[Any]"]
"""A message waiting for its REPLY: its frame as text, as a native WebSocket message, and the
future of :meth:`Client.send`."""

Resubscribed = tuple[str, Position | None, "asyncio.Future[Any]"]
"""A topic subscribed again after a reconnect: its position then, and the future of its REPLY."""


class Client:
    """A connection to a ``transports`` server that survives reconnects and transport changes.

    Build it with :func:`connect`. Listeners (:meth:`on`): ``"transport"`` (name),
    ``"state"`` (``connecting``/``open``/``reconnecting``/``closed``), ``"error"`` (an
    exception), ``"recovered"`` (``(topic, bool)``), ``"message"`` (:class:`Incoming`),
    ``"join"`` and ``"leave"`` (``(topic, member)``, for topics subscribed with
    ``presence=True``; a member is ``{"id", "info"}``).

    ``token`` is a bearer token or a function (sync or async) called before every negotiate.
    With a function, a session the server ends for its credentials (4501, the app's
    ``revalidate`` hook) is renewed: the function is called at once and the client resumes on a
    new session, nothing lost or applied twice (``stats["reauthentications"]``). If it returns
    nothing or raises, or the server refuses the new token, or closes with 4501 again within
    ``reauthenticate.minUpMs`` of the renewal, the client closes with 4501
    ``"credentials refused"`` (:attr:`closed`; the ``"error"`` listeners get a
    :class:`~transports.client.negotiate.CredentialsRefused`). See the policy's ``reauthenticate``.

    A transport that opens and then dies soon after, ``flapping.times`` times in a row (the
    policy's ``flapping``: a proxy that accepts WebSocket, then cuts it), is demoted: it goes last
    in the order for ``flapping_retry`` seconds (300), ``fallback_reason`` says so
    (``"websocket: flapping (closed 3 times within 10 s of opening)"``), the server is told in
    the next negotiate, and ``stats["demotions"]`` counts it.
    """

    def __init__(
        self,
        url: str,
        connector: Connector,
        *,
        transports: Sequence[TransportName] = DEFAULT_ORDER,
        token: Token = None,
        deadlines: Mapping[str, float] | None = None,
        backoff: tuple[float, float] = (POLICY.backoff_base, POLICY.backoff_cap),
        send_timeout: float = 10.0,
        max_queue: int = 1000,
        queue_messages: bool = True,
        own_connector: bool = False,
        flapping_retry: float = 300.0,
    ) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.connector = connector
        self.transports = list(transports)
        self.token = token
        self.deadlines = {name: POLICY.deadline(name) for name in CONNECTIONS}
        self.deadlines.update(deadlines or {})
        self.backoff = backoff
        self.send_timeout = send_timeout
        self.max_queue = max_queue
        self.client_key = secrets.token_urlsafe(16)
        self.state = "connecting"
        self.transport: TransportName | None = None
        self.public_id: str | None = None
        self.stats: dict[str, Any] = {
            "reconnects": 0,
            "reauthentications": 0,
            "demotions": 0,
            "fallbacks": [],
            "duplicates": 0,
            "gaps": 0,
        }
        self.fallback_reason = ""
        self._fallback_report: dict[str, str] | None = None
        """The last fallback, sent with the next negotiate (docs/protocol.md §3), then cleared."""
        self._own_connector = own_connector
        self.flapping_retry = flapping_retry
        """Seconds a transport demoted for flapping goes last in the order before it is tried
        first again (this client has no background probe; the browser client's probe decides
        instead)."""
        self._flaps: dict[str, int] = {}
        self._demoted: dict[str, float] = {}
        """Transports demoted for flapping, and until when (loop time)."""
        self._loop = asyncio.get_running_loop()
        self._link = Link(connector, self._origin, self._on_frame, self._refuse_frame)
        self._topics: dict[str, Topic] = {}
        self._pending: dict[int, Pending] = {}
        self._control: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._deadlines: dict[int, tuple[float, asyncio.Future[Any]]] = {}
        """When each :meth:`send` waiting for its REPLY times out (loop time)."""
        self._deadline_timer: asyncio.TimerHandle | None = None
        """One timer for every waiting send, at the earliest deadline (a timer per send cost
        more than the rest of the send's own work)."""
        self._next_ref = 1
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._messages: asyncio.Queue[Incoming] | None = asyncio.Queue() if queue_messages else None
        self._connection: Connection | None = None
        self._opened = asyncio.Event()
        self._closed: ChannelClosed | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()
        self._reauthenticating = False
        """A close of ``reauthenticate.codes`` (4501): the next negotiate needs a fresh token."""
        self._retry_hint = 0.0
        """The server's ``retry`` (seconds) from the last negotiate answer, 0.0 before one."""
        self._random: Callable[[], float] = random.random
        """The random source of the reconnect backoff (tests replace it)."""

    # --- public API --------------------------------------------------------------------

    @property
    def closed(self) -> ChannelClosed | None:
        """Why the client stopped (its ``code`` and ``reason``), None while it runs. After a
        failed re-authentication: 4501 ``"credentials refused"``."""
        return self._closed

    def on(self, name: str, listener: Callable[..., Any]) -> Callable[[], None]:
        """Call ``listener`` on ``name``; returns a function that removes it."""
        self._listeners.setdefault(name, []).append(listener)
        return lambda: self._listeners.get(name, []).remove(listener)

    async def wait_open(self, timeout: float | None = None) -> None:
        """Wait until a transport is open. Raises the terminal error if the client closed."""
        async with asyncio.timeout(timeout):
            while not self._opened.is_set():
                if self._closed is not None:
                    raise self._closed
                waiter = asyncio.ensure_future(self._opened.wait())
                ended = asyncio.ensure_future(self._ended.wait())
                try:
                    await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    ended.cancel()
        if self._closed is not None:
            raise self._closed

    async def subscribe(
        self,
        topic: str,
        handler: Callable[[Incoming], Any] | None = None,
        *,
        presence: bool = False,
    ) -> Callable[[], Any]:
        """Subscribe to ``topic``; ``handler`` (sync or async) gets each :class:`Incoming`.

        With ``presence=True`` the client also follows who is subscribed to the topic (a topic
        the server has presence for, docs/presence.md): :meth:`members` lists them, and the
        ``"join"``/``"leave"`` listeners hear every change; after a reconnect only the
        differences are reported. When the server refuses the presence part (no presence on
        that topic, or not allowed), the subscription still stands and the ``"error"``
        listeners get a :class:`ReplyError`.

        Returns once the server has confirmed the subscription (waiting for a connection if
        there is none), so every publication after that moment is delivered. Returns an async
        function that unsubscribes. Raises :class:`ReplyError` when the server refuses, and
        :class:`TimeoutError` when no confirmation comes within three send timeouts.
        """
        entry = self._topics.get(topic)
        new = entry is None
        if entry is None:
            entry = self._topics[topic] = Topic(ready=self._loop.create_future())
        if handler is not None:
            entry.handlers.append(handler)
        upgrade = presence and not entry.presence and not new
        if presence:
            entry.presence = True
        if (new or upgrade) and self._connection is not None:
            ref = self._ref()
            self._control[ref] = (topic, self._quiet_future())
            # Subscribing again to ask for presence too resumes from where the topic is.
            frame = Subscribe(ref, topic, entry.position if upgrade else None, entry.presence)
            await self._transmit([encode_client_frame(frame)])
        if entry.ready is not None:
            # Wait until the server confirms the subscription (publications from then on are
            # delivered). Disconnected or cut before the reply: the (re)connection subscribes
            # every topic and its reply resolves this.
            try:
                async with asyncio.timeout(self.send_timeout * 3):
                    await asyncio.shield(entry.ready)
            except ReplyError:
                self._topics.pop(topic, None)
                raise

        async def unsubscribe() -> None:
            await self.unsubscribe(topic)

        return unsubscribe

    async def unsubscribe(self, topic: str) -> None:
        """Leave ``topic``."""
        if self._topics.pop(topic, None) is not None and self._connection is not None:
            ref = self._ref()
            future = self._control_future(ref, "$unsub")
            await self._transmit([encode_client_frame(Unsubscribe(ref, topic))])
            with contextlib.suppress(Exception):
                await asyncio.wait_for(future, self.send_timeout)

    async def presence(self, topic: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Who is subscribed to ``topic`` now, on every server process:
        ``{"members": [{"id", "info"}, ...], "count": n, "truncated": bool}``.

        Waits for a connection if there is none. Raises :class:`ReplyError`
        (``presence_disabled``, ``forbidden``, ``bad_topic``, ``timeout``...).
        """
        if self._closed is not None:
            raise self._closed
        await self.wait_open(timeout if timeout is not None else self.send_timeout)
        ref = self._ref()
        future = self._control_future(ref, "$presence")
        await self._transmit([encode_client_frame(PresenceQuery(ref, topic))])
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.send_timeout):
                result = await future
        except TimeoutError:
            self._control.pop(ref, None)
            raise ReplyError("timeout", "no answer in time") from None
        return result if isinstance(result, dict) else {}

    def members(self, topic: str) -> list[dict[str, Any]]:
        """The members of ``topic`` as this client knows them (a topic subscribed with
        ``presence=True``): the last snapshot with every join and leave since applied."""
        entry = self._topics.get(topic)
        if entry is None or entry.members is None:
            return []
        return [{"id": member, "info": info} for member, info in entry.members.items()]

    def position(self, topic: str) -> Position | None:
        """The last position processed on ``topic``."""
        entry = self._topics.get(topic)
        return entry.position if entry else None

    async def send(self, event: str, data: Data = None, *, timeout: float | None = None) -> Any:
        """Send a message; return the data of the server's acknowledgement.

        While disconnected it is queued (up to ``max_queue``) and sent once reconnected; an
        unacknowledged message is sent again after a reconnect with the same ref, and the
        server applies it once.

        A message whose frame is larger than the server accepts (``limits.message`` of the
        negotiate answer, measured as the server measures it: protocol §2.1) is never sent:
        it fails with ``ReplyError("payload_too_large")`` at once when connected, otherwise
        once a connection tells the limit. The connection stays up.

        Raises:
            ReplyError: the server answered with an error status, or ``timeout``/``queue_full``/
                ``payload_too_large``.
            ChannelClosed: the client is closed.
        """
        if self._closed is not None:
            raise self._closed
        if len(self._pending) >= self.max_queue:
            raise ReplyError("queue_full", "too many messages waiting")
        ref = self._ref()
        frame = Event(ref, event, data)
        text = encode_client_frame(frame)
        binary = isinstance(data, bytes | bytearray | memoryview)
        native = encode_client_frame(frame, binary_native=True) if binary else text
        connection = self._connection
        if connection is not None:
            too_big = self._too_big(connection, text, native)
            if too_big is not None:
                raise too_big
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[ref] = (text, native, future)
        if connection is not None:
            await self._transmit([native if connection.binary else text])
        loop = self._loop
        deadline = loop.time() + (timeout if timeout is not None else self.send_timeout)
        self._deadlines[ref] = (deadline, future)
        timer = self._deadline_timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._deadline_timer = loop.call_at(deadline, self._expire_sends)
        try:
            return await future
        finally:
            self._deadlines.pop(ref, None)

    def _expire_sends(self) -> None:
        """Fail the sends whose deadline passed (``ReplyError("timeout")``; never sent again),
        and set the timer for the next deadline."""
        self._deadline_timer = None
        now = self._loop.time() + _TIMER_SLACK
        earliest: float | None = None
        for ref, (deadline, future) in list(self._deadlines.items()):
            if future.done():
                del self._deadlines[ref]
            elif deadline <= now:
                del self._deadlines[ref]
                self._pending.pop(ref, None)
                future.set_exception(ReplyError("timeout", "no acknowledgement in time"))
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._deadline_timer = self._loop.call_at(earliest, self._expire_sends)

    async def messages(self) -> AsyncIterator[Incoming]:
        """Every publication and direct message, in arrival order."""
        if self._messages is None:
            raise RuntimeError("created with queue_messages=False")
        while True:
            yield await self._messages.get()

    async def next_message(self, timeout: float | None = None) -> Incoming:
        """The next publication or direct message."""
        if self._messages is None:
            raise RuntimeError("created with queue_messages=False")
        return await asyncio.wait_for(self._messages.get(), timeout)

    async def close(self) -> None:
        """Close the connection for good."""
        if self._closed is None:
            self._closed = channel_closed(CloseCode.NORMAL, "closed by the client")
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._connection is not None:  # tell the server, so it frees the session now
            await self._connection.leave()
        await self._drop_connection()
        self._set_state("closed")
        self._fail_pending(self._closed)
        if self._own_connector:
            await self.connector.close()

    async def force_reconnect(self, code: int = CloseCode.ABNORMAL, reason: str = "forced") -> None:
        """End the current connection as if the network dropped it (for tests and switches)."""
        if self._connection is not None:
            self._connection.end(code, reason)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- sending -----------------------------------------------------------------------

    def _ref(self) -> int:
        ref = self._next_ref
        self._next_ref += 1
        return ref

    @staticmethod
    def _too_big(
        connection: Connection, text: str | bytes, native: str | bytes
    ) -> ReplyError | None:
        """The error for a frame ``connection`` cannot carry (protocol §2.1, §11), else None."""
        message = native if connection.binary else text
        limit = connection.max_frame
        if len(message) * 4 <= limit:  # fits however it encodes: no encode on the send path
            return None
        size = wire_size(message)
        if size <= limit:
            return None
        return ReplyError(
            "payload_too_large",
            f"the frame is {size} bytes, over the server's limit of {limit} bytes",
        )

    def _refuse_frame(self, text: str, size: int, limit: int) -> None:
        """The server refused ``text`` alone as too large (413): fail its message, if any."""
        log.warning("the server refused a frame of %d bytes as too large; dropped", size)
        for ref, (pending, _, future) in list(self._pending.items()):
            if pending == text:
                del self._pending[ref]
                if not future.done():
                    future.set_exception(
                        ReplyError(
                            "payload_too_large",
                            f"the frame is {size} bytes; the server refused it (limit {limit})",
                        )
                    )

    def _control_future(self, ref: int, kind: str) -> asyncio.Future[Any]:
        future = self._quiet_future()
        self._control[ref] = (kind, future)
        return future

    def _quiet_future(self) -> asyncio.Future[Any]:
        """A future whose failure may go unobserved (a subscribe's reply: subscribe() reads the
        topic's own future), without asyncio's "exception was never retrieved" at exit."""
        future: asyncio.Future[Any] = self._loop.create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future

    async def _transmit(self, frames: list[str | bytes]) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            await connection.send(frames)
        except Exception as exc:
            connection.end(CloseCode.ABNORMAL, f"send failed: {exc}")

    # --- receiving ---------------------------------------------------------------------

    def _emit(self, name: str, *args: Any) -> None:
        for listener in list(self._listeners.get(name, ())):
            try:
                result = listener(*args)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:
                log.exception("listener for %r failed", name)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._emit("state", state)

    def _fail_pending(self, error: BaseException) -> None:
        for _, _, future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        for _, future in self._control.values():
            if not future.done():
                future.set_exception(error)
        self._control.clear()

    def _on_frame(self, connection: Connection, frame: ServerFrame) -> None:
        if connection is not self._connection:
            return  # a frame from a connection we already left
        if isinstance(frame, Pub):
            if frame.topic.startswith(PRESENCE_EVENTS):
                self._on_presence_event(frame)
            else:
                self._on_pub(frame)
        elif isinstance(frame, Reply):
            self._on_reply(frame)
        elif isinstance(frame, Msg):
            self._deliver(Incoming(frame.event, frame.data))
        elif isinstance(frame, Close):
            connection.end(frame.code, frame.reason)

    def _on_pub(self, pub: Pub) -> None:
        entry = self._topics.get(pub.topic)
        if entry is None:
            return
        position = entry.position
        if position is not None and position.epoch == pub.epoch:
            if pub.offset <= position.offset:
                self.stats["duplicates"] += 1
                return
            if pub.offset > position.offset + 1:
                # The server never skips; if it did, resume from what we have.
                self.stats["gaps"] += 1
                if self._connection is not None:
                    self._connection.end(CloseCode.RESYNC, "gap seen by the client")
                return
        entry.position = Position(pub.epoch, pub.offset)
        incoming = Incoming(pub.event, pub.data, pub.topic, pub.offset, pub.epoch)
        for handler in list(entry.handlers):
            try:
                result = handler(incoming)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:
                log.exception("subscription handler failed")
        self._deliver(incoming)

    def _on_presence_event(self, pub: Pub) -> None:
        topic = pub.topic[len(PRESENCE_EVENTS) :]
        entry = self._topics.get(topic)
        if entry is None or entry.members is None or not isinstance(pub.data, dict):
            return
        position = entry.presence_position
        if position is None:
            return  # no snapshot with events yet: nothing to apply these to
        if position.epoch == pub.epoch and pub.offset <= position.offset:
            return  # before the snapshot, or seen already
        entry.presence_position = Position(pub.epoch, pub.offset)
        member_id, info = pub.data.get("id"), pub.data.get("info")
        if not isinstance(member_id, str):
            return
        if pub.event == "join" and member_id not in entry.members:
            entry.members[member_id] = info
            self._emit("join", topic, {"id": member_id, "info": info})
        elif pub.event == "leave" and member_id in entry.members:
            gone = entry.members.pop(member_id)
            self._emit("leave", topic, {"id": member_id, "info": gone})
        elif pub.event == "leave" and entry.truncated:
            # A member the truncated listing left out: reported, the app may never have seen it.
            self._emit("leave", topic, {"id": member_id, "info": info})

    def _on_snapshot(self, topic: str, entry: Topic, data: Any) -> None:
        """A SUB reply's presence part: adopt the snapshot, report what changed since the
        last one (nothing on the first), or report why the server refused."""
        snapshot = data.get("presence") if isinstance(data, dict) else None
        if not isinstance(snapshot, dict):
            return
        if "error" in snapshot:
            # As the browser client: the members are unknown now, and say why.
            entry.members, entry.presence_position = {}, None
            self._emit("error", ReplyError(str(snapshot["error"]), str(snapshot.get("message"))))
            return
        members: dict[str, Any] = {}
        for item in snapshot.get("members") or ():
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                members[item["id"]] = item.get("info")
        before, entry.members = entry.members, members
        entry.truncated = bool(snapshot.get("truncated"))
        entry.presence_position = None
        if snapshot.get("events") and "epoch" in snapshot and "offset" in snapshot:
            entry.presence_position = Position(str(snapshot["epoch"]), int(snapshot["offset"]))
        if before is None:
            return
        for member_id, info in before.items():
            if member_id not in members:
                self._emit("leave", topic, {"id": member_id, "info": info})
        for member_id, info in members.items():
            if member_id not in before:
                self._emit("join", topic, {"id": member_id, "info": info})

    def _deliver(self, incoming: Incoming) -> None:
        if self._messages is not None:
            self._messages.put_nowait(incoming)
        self._emit("message", incoming)

    def _on_reply(self, reply: Reply) -> None:
        ref = reply.ref
        if isinstance(ref, int) and ref in self._pending:
            _, _, future = self._pending.pop(ref)
            if not future.done():
                if reply.status == "ok":
                    future.set_result(reply.data)
                else:
                    future.set_exception(reply_error(reply))
            return
        control = self._control.pop(ref, None) if isinstance(ref, int) else None
        if control is None:
            return
        topic, future = control
        entry = self._topics.get(topic)
        if entry is not None:
            entry.confirmed(reply)
            if entry.presence and reply.status == "ok":
                self._on_snapshot(topic, entry, reply.data)
        if future.done():
            return
        if reply.status == "ok":
            future.set_result(reply.data)
        else:
            future.set_exception(reply_error(reply))

    # --- connecting --------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background (``connect()`` does this)."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="transports-client")

    async def _open_one(self) -> Connection:
        """Negotiate and open the first transport that works, in order."""
        errors = []
        order = self._order()
        for index, name in enumerate(order):
            info = await negotiate(
                self.connector,
                self.url,
                token=self.token,
                client_key=self.client_key,
                transports=order[index:],
                fallback=self._fallback_report,
                fresh=self._reauthenticating,
            )
            self._fallback_report = None
            self._retry_hint = server_hint(info)
            if name not in info.get("transports", []) or name not in CONNECTIONS:
                reason = f"{name}: not offered by the server"  # as the browser client says
                errors.append(reason)
                if index + 1 < len(order):
                    self._record_fallback(name, order[index + 1], reason)
                continue
            connection = CONNECTIONS[name](self._link, info)
            try:
                await connection.open(self.deadlines.get(name, POLICY.deadline(name)))
            except _OPEN_FAILURES as exc:
                reason = f"{name}: {type(exc).__name__} {exc}".strip()
                errors.append(reason)
                await connection.shutdown()
                if index + 1 < len(order):
                    following = order[index + 1]
                    self._record_fallback(name, following, reason)
                    self._fallback_report = {
                        "from": name,
                        "to": following,
                        "reason": fallback_cause(exc),
                    }
                continue
            return connection
        raise OSError("no transport could be opened: " + "; ".join(errors))

    def _order(self) -> list[TransportName]:
        """The transports to try, best first: those demoted for flapping go last until their
        demotion ends."""
        now = self._loop.time()
        for name, until in list(self._demoted.items()):
            if until <= now:
                del self._demoted[name]
        kept = [name for name in self.transports if name not in self._demoted]
        return kept + [name for name in self.transports if name in self._demoted]

    def _count_flap(self, name: TransportName, code: int, up_for: float) -> None:
        """Count a close of ``name`` (policy ``flapping``); demote it once it flaps
        ``flapping.times`` times in a row."""
        count = self._flaps[name] = policy.flap_count(self._flaps.get(name, 0), code, up_for)
        if count < POLICY.flapping_times or name in self._demoted:
            return
        self._flaps[name] = 0
        self._demoted[name] = self._loop.time() + self.flapping_retry
        self.stats["demotions"] += 1
        order = self._order()
        if order[0] != name:
            within = round(POLICY.flapping_up_for)
            reason = f"{name}: flapping (closed {count} times within {within} s of opening)"
            self._record_fallback(name, order[0], reason)
            self._fallback_report = {"from": name, "to": order[0], "reason": "flapping"}

    def _record_fallback(self, name: str, following: str, reason: str) -> None:
        self.fallback_reason = reason
        self.stats["fallbacks"].append({"from": name, "to": following, "reason": reason})

    def _reconnect_delay(self, attempt: int, retry_after: float = 0.0) -> float:
        """Seconds before reconnect attempt ``attempt`` (the policy's backoff and hint).

        Full-jitter exponential backoff above the server's ``retry`` hint (a lower bound, so a
        restarted server is not hit by every client at once), and never less than a
        ``Retry-After`` the server sent.
        """
        base, cap = self.backoff
        delay = policy.reconnect_delay(attempt, self._retry_hint, self._random, base=base, cap=cap)
        return max(delay, retry_after)

    async def _run(self) -> None:
        attempt = 0
        while self._closed is None:
            try:
                connection = await self._open_one()
            except CredentialsRefused as exc:
                self._terminal(exc.close_code, CREDENTIALS_REFUSED, exc)
                return
            except NegotiationError as exc:
                code = (
                    exc.close_code if isinstance(exc, NegotiateRefused) else CloseCode.UNAUTHORIZED
                )
                self._terminal(code, str(exc), exc)
                return
            except (OSError, ValueError) as exc:  # TimeoutError and RetryLater included
                self._emit("error", exc)
                self._set_state("reconnecting")
                wait = exc.retry_after if isinstance(exc, RetryLater) else 0.0
                delay = self._reconnect_delay(attempt, wait)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            reauthenticated, self._reauthenticating = self._reauthenticating, False
            if reauthenticated:
                self.stats["reauthentications"] += 1
            ended, up_for = await self._adopt(connection)
            self._count_flap(connection.name, ended.code, up_for)
            self._opened.clear()
            self.transport = None
            await self._drop_connection()
            if self._closed is not None:
                return
            action = policy.after_close(
                ended.code, up_for, renewable=callable(self.token), reauthenticated=reauthenticated
            )
            if action == "stop":
                if callable(self.token) and policy.after_close(ended.code) == "reauthenticate":
                    # Refused again right after re-authenticating (reauthenticate.minUpMs):
                    # the fresh token is no better, asking again would loop.
                    detail = f"closed with {ended.code} ({ended.reason}) again at once"
                    self._terminal(ended.code, CREDENTIALS_REFUSED, CredentialsRefused(detail))
                else:
                    self._terminal(ended.code, ended.reason, None)
                return
            self.stats["reconnects"] += 1
            self._set_state("reconnecting")
            if action == "reauthenticate":
                # The credentials ran out (the app's revalidate hook said no): ask the token
                # function for a fresh one and negotiate with it at once, resuming every topic.
                self._reauthenticating = True
                continue
            attempt = 0 if policy.is_stable(up_for) else attempt + 1
            await asyncio.sleep(self._reconnect_delay(attempt, ended.retry_after))

    def _terminal(self, code: int, reason: str, error: Exception | None) -> None:
        self._closed = channel_closed(code, reason)
        self._set_state("closed")
        self._emit("error", error or self._closed)
        self._fail_pending(self._closed)
        self._ended.set()

    def _resend(self, connection: Connection) -> tuple[list[str | bytes], list[Resubscribed]]:
        """SUB for every topic (from its position) and every unacknowledged message, encoded
        for ``connection`` (a message too large for it fails instead); and the SUB replies to
        wait for."""
        frames: list[str | bytes] = []
        waits: list[Resubscribed] = []
        for topic, entry in self._topics.items():
            ref = self._ref()
            waits.append((topic, entry.position, self._control_future(ref, topic)))
            frames.append(
                encode_client_frame(Subscribe(ref, topic, entry.position, entry.presence))
            )
        for ref, (text, native, future) in list(self._pending.items()):
            too_big = self._too_big(connection, text, native)
            if too_big is not None:  # queued before the limit was known: never sent
                del self._pending[ref]
                if not future.done():
                    future.set_exception(too_big)
                continue
            frames.append(native if connection.binary else text)
        return frames, waits

    async def _adopt(self, connection: Connection) -> tuple[Closed, float]:
        """Make ``connection`` current: resubscribe, resend, then wait for its end.

        Returns how it ended and how long (seconds) it was up.
        """
        self._connection = connection
        self.transport = connection.name
        self.public_id = connection.info.get("id")
        early, connection.early = connection.early, []
        for frame in early:
            self._on_frame(connection, frame)
        started = self._loop.time()
        frames, waits = self._resend(connection)
        if frames:
            await self._transmit(frames)
        self._emit("transport", connection.name)
        self._set_state("open")
        self._opened.set()
        reporter = asyncio.ensure_future(self._report_recovery(waits)) if waits else None
        try:
            ended = await connection.closed
        finally:
            if reporter is not None:
                reporter.cancel()
        return ended, self._loop.time() - started

    async def _report_recovery(self, waits: list[Resubscribed]) -> None:
        for topic, since, future in waits:
            try:
                data = await asyncio.wait_for(future, self.send_timeout)
            except Exception:
                continue
            if since is not None and isinstance(data, dict):
                self._emit("recovered", topic, bool(data.get("recovered")))

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.shutdown()


async def connect(
    url: str,
    *,
    transports: Sequence[TransportName] = DEFAULT_ORDER,
    connector: Connector | None = None,
    wait: bool = True,
    timeout: float = 30.0,
    **options: Any,
) -> Client:
    """Connect to the ``transports`` server mounted at ``url`` (``http://host:port/realtime``).

    ``connector`` defaults to a new
    :class:`~transports.client.aiohttp_connector.AiohttpConnector`.
    With ``wait`` (the default), returns once a transport is open (or raises the terminal
    error); otherwise connects in the background. ``options`` go to :class:`Client`.
    """
    own = connector is None
    if connector is None:
        from .aiohttp_connector import AiohttpConnector

        connector = AiohttpConnector(origin=None)
    client = Client(url, connector, transports=transports, own_connector=own, **options)
    client.start()
    if wait:
        try:
            await client.wait_open(timeout)
        except BaseException:
            await client.close()
            raise
    return client
