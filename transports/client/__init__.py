"""The Python client: talks to a ``transports`` server the way the browser client does.

.. code-block:: python

    from transports.client import connect

    client = await connect("http://127.0.0.1:8000/realtime", transports=["sse", "longpoll"])
    await client.subscribe("news", lambda message: print(message.data))
    reply = await client.send("chat.send", {"text": "hi"})   # the server's acknowledgement
    await client.close()

It negotiates, tries the transports in order (accepting WebSocket only after a round trip and
SSE only when the server's HELLO arrives within a deadline), reconnects with full-jitter
backoff, resumes every subscription from its last position (``recovered`` events say when that
was impossible), drops duplicates by offset, and re-sends unacknowledged messages with the same
ref so the server applies them once. It speaks only docs/protocol.md.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import json
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..protocol.backoff import backoff_delay
from ..protocol.codes import CloseCode, is_reconnect_code
from ..protocol.errors import (
    ChannelClosed,
    NegotiationError,
    ProtocolError,
    ReplyError,
    channel_closed,
)
from ..protocol.frames import (
    Close,
    Event,
    Hello,
    Msg,
    Ping,
    Pong,
    Position,
    Pub,
    Reply,
    ServerFrame,
    Subscribe,
    UnknownFrameType,
    Unsubscribe,
    decode_server_frame,
    encode_client_frame,
)
from ..protocol.longpoll import decode_poll, encode_batch
from ..protocol.sse import SSEParser
from ..protocol.types import TRANSPORT_NAMES, Data, TransportName
from .connector import Connector, HTTPResponse, WebSocketRefused

__all__ = ["Client", "Incoming", "connect"]

log = logging.getLogger("transports.client")

_DEADLINES: dict[str, float] = {"websocket": 2.5, "sse": 2.5, "longpoll": 10.0}
_SESSION_RETRIES = 4
"""Network failures tolerated in a row on one SSE or long-poll session before renegotiating."""
_SILENCE_SLACK = 10.0
_HTTP_RETRIES = 8
"""Transient answers (408, 429, 5xx) in a row to ``POST /send`` before the connection ends."""
_RETRY_AFTER_CAP = 600.0
"""The longest ``Retry-After`` (seconds) the client honours; a larger value is cut to this."""
_DEFAULT_MESSAGE = 64 * 1024
_DEFAULT_BODY = 1024 * 1024
_DEFAULT_BATCH = 100


def _positive_int(value: Any, default: int) -> int:
    """``value`` when it is a positive number (a negotiate ``limits`` entry), else ``default``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return default


def _transient(status: int) -> bool:
    """HTTP answers worth asking again (protocol §3): 408, 429 and 5xx."""
    return status in (408, 429) or status >= 500


def _retry_after(response: HTTPResponse) -> float:
    """The ``Retry-After`` of ``response`` in seconds (0.0 when absent or not a number)."""
    for name, value in response.headers.items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value.strip())
            except ValueError:
                return 0.0
            return min(seconds, _RETRY_AFTER_CAP) if seconds > 0 else 0.0
    return 0.0


def _decode(message: str | bytes) -> ServerFrame | None:
    """Decode a server frame; None for a well-formed frame of an unknown type (ignored, §2)."""
    try:
        return decode_server_frame(message)
    except UnknownFrameType as exc:
        log.debug("ignored a server frame of unknown type %s", exc.kind)
        return None


def _wire_size(message: str | bytes) -> int:
    """Bytes of one frame as it travels (protocol §2.1: UTF-8 JSON, or the binary message)."""
    return len(message) if isinstance(message, bytes) else len(message.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message from the server: a topic publication (``topic`` set) or a direct message."""

    event: str
    data: Data
    topic: str | None = None
    offset: int | None = None
    epoch: str | None = None

    @property
    def id(self) -> str | None:
        """A publication's message id, ``epoch:topic:offset`` (protocol §7); None for MSG."""
        if self.topic is None:
            return None
        return f"{self.epoch}:{self.topic}:{self.offset}"


class _Closed(Exception):
    """A transport connection ended (internal).

    ``retry_after`` is the least delay (seconds) before reconnecting that the server asked for
    (a ``Retry-After``), 0.0 when it did not.
    """

    def __init__(self, code: int, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


class _RetryLater(OSError):
    """A transient HTTP answer (408, 429, 5xx); ``retry_after`` from its ``Retry-After``."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _NegotiateRefused(NegotiationError):
    """Negotiate answered with a final status (protocol §3): asking again would not help."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"negotiate refused: {status} {error}".strip())
        self.status = status

    @property
    def close_code(self) -> int:
        if self.status == 401:
            return CloseCode.UNAUTHORIZED
        if self.status == 403:
            return CloseCode.FORBIDDEN
        return CloseCode.BAD_REQUEST


@dataclass
class _Topic:
    position: Position | None = None
    handlers: list[Callable[[Incoming], Any]] = field(default_factory=list)
    ready: asyncio.Future[Any] | None = None
    """Resolved by the first successful SUB reply (whichever connection carried it)."""


class _Connection(abc.ABC):
    """One transport connection to one session."""

    name: TransportName

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        self.client = client
        self.info = info
        self.token: str = info["token"]
        self.closed: asyncio.Future[_Closed] = asyncio.get_running_loop().create_future()
        self.tasks: list[asyncio.Task[Any]] = []
        self.heartbeat = info.get("heartbeat", 25000) / 1000
        limits = info.get("limits")
        limits = limits if isinstance(limits, dict) else {}
        self.max_message = _positive_int(limits.get("message"), _DEFAULT_MESSAGE)
        """The largest frame the server accepts (``limits.message``, protocol §11)."""
        self.max_body = _positive_int(limits.get("body"), _DEFAULT_BODY)
        """The largest ``POST /send`` body (``limits.body``)."""
        self.batch = _positive_int(limits.get("batch"), _DEFAULT_BATCH)
        """The most frames in one ``POST /send`` (``limits.batch``)."""

    @property
    def max_frame(self) -> int:
        """The largest frame this connection can carry, in bytes as it travels."""
        return self.max_message

    def url(self, name: str) -> str:
        return self.client._absolute(self.info["urls"][name])

    def end(self, code: int, reason: str, retry_after: float = 0.0) -> None:
        if not self.closed.done():
            self.closed.set_result(_Closed(code, reason, retry_after))

    @abc.abstractmethod
    async def open(self, deadline: float) -> None:
        """Open the transport on the negotiated session within ``deadline`` seconds."""

    @abc.abstractmethod
    async def send(self, frames: list[str | bytes]) -> None:
        """Send encoded client frames, in order."""

    async def shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task

    def received(self, frame: ServerFrame) -> None:
        self.client._on_frame(self, frame)

    async def watchdog(self) -> None:
        """End the connection when the server stays silent past heartbeat + slack."""
        client = self.client
        while not self.closed.done():
            silence = client._loop.time() - client._last_heard
            limit = self.heartbeat + _SILENCE_SLACK
            if silence > limit:
                self.end(CloseCode.ABNORMAL, "server silent")
                return
            await asyncio.sleep(max(0.05, limit - silence))


class _WebSocket(_Connection):
    name: TransportName = "websocket"

    async def open(self, deadline: float) -> None:
        client = self.client
        url = self.url("websocket").replace("http", "ws", 1) + "?ticket=" + self.info["ticket"]
        async with asyncio.timeout(deadline):
            self.socket = await client.connector.websocket(url, timeout=deadline)
            first: ServerFrame | None = None
            while first is None:  # frames of unknown types are skipped
                message = await self.socket.receive()
                if message is None:
                    raise OSError(f"websocket closed with {self.socket.close_code} before HELLO")
                first = _decode(message)
            if not isinstance(first, Hello):
                raise OSError("websocket: the first frame was not HELLO")
            # An application-level round trip: a proxy may accept the upgrade, then go silent.
            await self.socket.send("[7]")
            while True:
                message = await self.socket.receive()
                if message is None:
                    raise OSError("websocket closed during the round trip")
                frame = _decode(message)
                if frame is None:
                    continue
                if isinstance(frame, Pong):
                    break
                client._early.append(frame)
        client._heard()
        self.tasks.append(asyncio.create_task(self._read()))
        self.tasks.append(asyncio.create_task(self.watchdog()))

    async def _read(self) -> None:
        socket = self.socket
        try:
            while True:
                message = await socket.receive()
                if message is None:
                    self.end(socket.close_code or 1006, socket.close_reason)
                    return
                self.client._heard()
                frame = _decode(message)
                if frame is None:
                    continue
                if isinstance(frame, Ping):
                    await socket.send("[8]")
                    continue
                self.received(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end(CloseCode.ABNORMAL, f"websocket read failed: {exc}")

    async def send(self, frames: list[str | bytes]) -> None:
        for frame in frames:
            await self.socket.send(frame)

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.socket.close(1000, "")
        await super().shutdown()


class _HTTPUpstream(_Connection):
    """SSE and long-poll send client frames by POST, one request in flight at a time.

    Frames wait in an outbox and leave in batches of at most ``limits.batch`` frames and
    ``limits.body`` bytes (protocol §6.2), the browser client's rule.
    """

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        super().__init__(client, info)
        self._outbox: deque[tuple[str, int]] = deque()
        """Encoded frames waiting for a POST, with their size in bytes."""
        self._wake = asyncio.Event()
        self._cap = self.batch
        """Frames per POST now: halved after a 413 (or a repeated 429), grows back after."""

    @property
    def max_frame(self) -> int:
        # A frame travels alone at worst: ``[frame]`` must fit in the body limit too.
        return min(self.max_message, self.max_body - 2)

    def start_upstream(self) -> None:
        self.tasks.append(asyncio.create_task(self._post_loop()))

    async def send(self, frames: list[str | bytes]) -> None:
        for frame in frames:
            text = frame if isinstance(frame, str) else frame.decode("utf-8")
            self._outbox.append((text, _wire_size(text)))
        self._wake.set()

    def _take_batch(self) -> list[tuple[str, int]]:
        """The next batch off the outbox: at least one frame, then as many as fit."""
        batch: list[tuple[str, int]] = []
        size = 2  # the brackets
        while self._outbox and len(batch) < self._cap:
            text, length = self._outbox[0]
            extra = length + (1 if batch else 0)  # the comma
            if batch and size + extra > self.max_body:
                break
            self._outbox.popleft()
            batch.append((text, length))
            size += extra
        return batch

    def _put_back(self, batch: list[tuple[str, int]]) -> None:
        """Return ``batch`` to the front of the outbox, in order."""
        self._outbox.extendleft(reversed(batch))

    async def _request(self, url: str, headers: dict[str, str], body: bytes) -> HTTPResponse:
        """POST ``body``; network failures and 409 (another POST finishing) are retried."""
        for attempt in range(1, _SESSION_RETRIES + 1):
            try:
                response = await self.client.connector.request(
                    "POST", url, headers=headers, body=body, timeout=30
                )
            except (OSError, TimeoutError):
                # Lost on the way; the same frames again are safe (refs are deduplicated).
                if attempt == _SESSION_RETRIES:
                    raise
                await asyncio.sleep(0.05 * attempt)
                continue
            if response.status == 409 and attempt < _SESSION_RETRIES:
                await asyncio.sleep(0.05 * attempt)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_loop(self) -> None:
        client = self.client
        headers = {"Content-Type": "application/json", "X-Realtime-Session": self.token}
        url = self.url("send")
        transient = 0  # transient answers in a row
        try:
            while True:
                while not self._outbox:
                    self._wake.clear()
                    await self._wake.wait()
                batch = self._take_batch()
                response = await self._request(url, headers, encode_batch([t for t, _ in batch]))
                status = response.status
                if status < 300:
                    transient = 0
                    self._cap = min(self.batch, self._cap * 2)
                    continue
                if status == 413:
                    # The body (or too many frames) over the server's limit: smaller batches;
                    # a single frame the server refuses is dropped and its message fails,
                    # instead of the same frames being sent again after every reconnect.
                    if len(batch) > 1:
                        self._put_back(batch)
                        self._cap = max(1, len(batch) // 2)
                        continue
                    client._refuse_frame(batch[0][0], batch[0][1], self.max_frame)
                    continue
                if _transient(status):
                    # 408, 429 (the session's rate limit: nothing applied, protocol §6.2) and
                    # 5xx: the same frames again, after the server's Retry-After at least.
                    transient += 1
                    wait = _retry_after(response)
                    if transient > _HTTP_RETRIES:
                        code = {429: CloseCode.RATE_LIMITED, 503: CloseCode.TRY_AGAIN_LATER}
                        self.end(
                            code.get(status, CloseCode.ABNORMAL),
                            f"POST /send answered {status}",
                            wait,
                        )
                        return
                    self._put_back(batch)
                    if status == 429 and transient > 1 and len(batch) > 1:
                        # A batch may cost more than the session's burst: send less at once.
                        self._cap = max(1, len(batch) // 2)
                    delay = backoff_delay(transient - 1, base=0.1, cap=2.0)
                    await asyncio.sleep(max(wait, delay))
                    continue
                if status == 404:
                    self.end(CloseCode.SESSION_EXPIRED, "session expired")
                    return
                self.end(CloseCode.ABNORMAL, f"POST /send answered {status}")
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end(CloseCode.ABNORMAL, f"POST /send failed: {exc}")


class _SSE(_HTTPUpstream):
    name: TransportName = "sse"

    async def open(self, deadline: float) -> None:
        client = self.client
        url = self.url("sse") + "?ticket=" + self.info["ticket"]
        self.parser = SSEParser()
        self.last_seq = 0
        async with asyncio.timeout(deadline):
            self.response = await client.connector.stream(
                url, headers={"Accept": "text/event-stream"}, timeout=deadline
            )
            if self.response.status != 200:
                body = await self.response.read_all()
                raise OSError(f"sse answered {self.response.status}: {body[:200]!r}")
            self.chunks = self.response.chunks()
            # Accept SSE only once the HELLO event arrives: a buffering proxy holds it back.
            pending: list[ServerFrame] = []
            hello = False
            while not hello:
                chunk = await self.chunks.__anext__()
                for frame in self._frames(chunk):
                    if isinstance(frame, Hello):
                        hello = True
                    else:
                        pending.append(frame)
        client._heard()
        client._early.extend(pending)
        self.start_upstream()
        self.tasks.append(asyncio.create_task(self._read()))
        self.tasks.append(asyncio.create_task(self.watchdog()))

    def _frames(self, chunk: bytes) -> list[ServerFrame]:
        frames = []
        for event in self.parser.feed(chunk):
            if event.last_event_id.isdigit():
                self.last_seq = int(event.last_event_id)
            frame = _decode(event.data)
            if frame is not None:
                frames.append(frame)
        return frames

    async def _read(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    async for chunk in self.chunks:
                        failures = 0
                        self.client._heard()
                        for frame in self._frames(chunk):
                            if isinstance(frame, Ping):
                                await self.send([f"[8,{self.last_seq}]"])
                                continue
                            self.received(frame)
                            if isinstance(frame, Close):
                                return
                except OSError:
                    pass
                # The stream dropped: reattach to the same session with Last-Event-ID, as an
                # EventSource does (protocol §5.3), before giving the session up.
                failures += 1
                if failures > _SESSION_RETRIES or not await self._reattach():
                    self.end(CloseCode.ABNORMAL, "stream lost")
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end(CloseCode.ABNORMAL, f"stream failed: {exc}")

    async def _reattach(self) -> bool:
        await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):
            await self.response.close()
        url = self.url("sse") + "?ticket=" + self.info["ticket"]
        try:
            response = await self.client.connector.stream(
                url,
                headers={"Accept": "text/event-stream", "Last-Event-ID": str(self.last_seq)},
                timeout=5,
            )
        except (OSError, TimeoutError):
            return True  # try again (counted by the caller)
        if response.status != 200:
            await response.close()
            return False  # the session is gone: renegotiate and resume by topic positions
        self.response = response
        self.parser = SSEParser()
        self.chunks = response.chunks()
        return True

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.response.close()
        await super().shutdown()


class _LongPoll(_HTTPUpstream):
    name: TransportName = "longpoll"

    async def open(self, deadline: float) -> None:
        self.cursor = 0
        self.window = self.info.get("pollWindow", 25000) / 1000
        frames = await self._poll(deadline)
        if not frames or not isinstance(frames[0], Hello):
            raise OSError("the first poll did not start with HELLO")
        self.client._heard()
        self.client._early.extend(frames[1:])
        self.start_upstream()
        self.tasks.append(asyncio.create_task(self._loop()))

    async def _poll(self, timeout: float) -> list[ServerFrame]:
        response = await self.client.connector.request(
            "GET",
            f"{self.url('longpoll')}?cursor={self.cursor}",
            headers={"X-Realtime-Session": self.token},
            timeout=timeout,
        )
        if response.status == 404:
            raise _Closed(CloseCode.SESSION_EXPIRED, "session expired")
        if response.status != 200:
            retry_after = _retry_after(response) if _transient(response.status) else 0.0
            raise _RetryLater(f"poll answered {response.status}", retry_after)
        result = decode_poll(response.body)
        if result.skipped:
            log.debug("ignored %d server frames of unknown types", result.skipped)
        self.cursor, frames = result.cursor, result.frames
        return frames

    async def _loop(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    frames = await self._poll(self.window + _SILENCE_SLACK)
                except (OSError, TimeoutError) as exc:
                    # A poll lost on the way: ask again with the same cursor; the server
                    # sends the same frames again (protocol §6.1). A 429 or 503 says when.
                    failures += 1
                    wait = exc.retry_after if isinstance(exc, _RetryLater) else 0.0
                    if failures >= _SESSION_RETRIES:
                        raise _Closed(CloseCode.ABNORMAL, f"poll failed: {exc}", wait) from exc
                    await asyncio.sleep(max(wait, 0.05 * failures))
                    continue
                failures = 0
                self.client._heard()
                for frame in frames:
                    self.received(frame)
                    if isinstance(frame, Close):
                        return
        except asyncio.CancelledError:
            raise
        except _Closed as exc:
            self.end(exc.code, exc.reason, exc.retry_after)
        except Exception as exc:
            self.end(CloseCode.ABNORMAL, f"poll failed: {exc}")


_CONNECTIONS: dict[str, type[_Connection]] = {
    "websocket": _WebSocket,
    "sse": _SSE,
    "longpoll": _LongPoll,
}


class Client:
    """A connection to a ``transports`` server that survives reconnects and transport changes.

    Build it with :func:`connect`. Listeners (:meth:`on`): ``"transport"`` (name),
    ``"state"`` (``connecting``/``open``/``reconnecting``/``closed``), ``"error"`` (an
    exception), ``"recovered"`` (``(topic, bool)``), ``"message"`` (:class:`Incoming`).
    """

    def __init__(
        self,
        url: str,
        connector: Connector,
        *,
        transports: Sequence[TransportName] = TRANSPORT_NAMES,
        token: str | Callable[[], Any] | None = None,
        deadlines: Mapping[str, float] | None = None,
        backoff: tuple[float, float] = (0.5, 20.0),
        send_timeout: float = 10.0,
        max_queue: int = 1000,
        queue_messages: bool = True,
        own_connector: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.connector = connector
        self.transports = list(transports)
        self.token = token
        self.deadlines = {**_DEADLINES, **(deadlines or {})}
        self.backoff = backoff
        self.send_timeout = send_timeout
        self.max_queue = max_queue
        self.client_key = secrets.token_urlsafe(16)
        self.state = "connecting"
        self.transport: TransportName | None = None
        self.public_id: str | None = None
        self.stats: dict[str, Any] = {"reconnects": 0, "fallbacks": [], "duplicates": 0, "gaps": 0}
        self.fallback_reason = ""
        self._own_connector = own_connector
        self._loop = asyncio.get_running_loop()
        self._last_heard = self._loop.time()
        self._topics: dict[str, _Topic] = {}
        self._pending: dict[int, tuple[str | bytes, str | bytes, asyncio.Future[Any]]] = {}
        self._control: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._next_ref = 1
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._messages: asyncio.Queue[Incoming] | None = asyncio.Queue() if queue_messages else None
        self._connection: _Connection | None = None
        self._early: list[ServerFrame] = []
        self._opened = asyncio.Event()
        self._closed: ChannelClosed | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()
        self._retry_hint = 0.0
        """The server's ``retry`` (seconds) from the last negotiate answer, 0.0 before one."""

    # --- public API --------------------------------------------------------------------

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
        self, topic: str, handler: Callable[[Incoming], Any] | None = None
    ) -> Callable[[], Any]:
        """Subscribe to ``topic``; ``handler`` (sync or async) gets each :class:`Incoming`.

        Returns once the server has confirmed the subscription (waiting for a connection if
        there is none), so every publication after that moment is delivered. Returns an async
        function that unsubscribes. Raises :class:`ReplyError` when the server refuses, and
        :class:`TimeoutError` when no confirmation comes within three send timeouts.
        """
        entry = self._topics.get(topic)
        new = entry is None
        if entry is None:
            entry = self._topics[topic] = _Topic(ready=self._loop.create_future())
        if handler is not None:
            entry.handlers.append(handler)
        if new and self._connection is not None:
            ref = self._ref()
            self._control[ref] = (topic, self._quiet_future())
            await self._transmit([encode_client_frame(Subscribe(ref, topic, None))])
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
            future = self._control_future(ref, "unsub")
            await self._transmit([encode_client_frame(Unsubscribe(ref, topic))])
            with contextlib.suppress(Exception):
                await asyncio.wait_for(future, self.send_timeout)

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
            await self._transmit([self._wire(text, native)])
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.send_timeout):
                return await future
        except TimeoutError:
            self._pending.pop(ref, None)
            raise ReplyError("timeout", "no acknowledgement in time") from None

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
        connection = self._connection
        if connection is not None:  # tell the server, so it frees the session now
            with contextlib.suppress(Exception):
                if isinstance(connection, _WebSocket):  # CLOSE, then the closing handshake
                    await asyncio.wait_for(connection.send(['[9,1000,""]']), 2)
                elif isinstance(connection, _HTTPUpstream):
                    await self.connector.request(
                        "POST",
                        connection.url("send"),
                        headers={
                            "Content-Type": "application/json",
                            "X-Realtime-Session": connection.token,
                        },
                        body=b'[[9,1000,""]]',
                        timeout=2,
                    )
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

    # --- internals ---------------------------------------------------------------------

    def _absolute(self, path: str) -> str:
        return path if "://" in path else self._origin + path

    def _ref(self) -> int:
        ref = self._next_ref
        self._next_ref += 1
        return ref

    def _wire(self, text: str | bytes, native: str | bytes) -> str | bytes:
        return native if self.transport == "websocket" else text

    @staticmethod
    def _too_big(
        connection: _Connection, text: str | bytes, native: str | bytes
    ) -> ReplyError | None:
        """The error for a frame ``connection`` cannot carry (protocol §2.1, §11), else None."""
        message = native if connection.name == "websocket" else text
        limit = connection.max_frame
        if len(message) * 4 <= limit:  # fits however it encodes: no encode on the send path
            return None
        size = _wire_size(message)
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

    def _heard(self) -> None:
        self._last_heard = self._loop.time()

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

    def _on_frame(self, connection: _Connection, frame: ServerFrame) -> None:
        if connection is not self._connection:
            return  # a frame from a connection we already left
        if isinstance(frame, Pub):
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
                    message = reply.data.get("message", "") if isinstance(reply.data, dict) else ""
                    future.set_exception(ReplyError(reply.status, message))
            return
        control = self._control.pop(ref, None) if isinstance(ref, int) else None
        if control is None:
            return
        topic, future = control
        entry = self._topics.get(topic)
        if entry is not None and entry.ready is not None and not entry.ready.done():
            if reply.status == "ok":
                entry.ready.set_result(reply.data)
            else:
                message = reply.data.get("message", "") if isinstance(reply.data, dict) else ""
                entry.ready.set_exception(ReplyError(reply.status, message))
                entry.ready.exception()  # retrieved by subscribe(); avoid "never retrieved"
        if reply.status == "ok" and isinstance(reply.data, dict) and "epoch" in reply.data:
            if entry is not None:
                data = reply.data
                start = Position(str(data["epoch"]), int(data["offset"]))
                if (
                    not data.get("recovered", True)
                    or entry.position is None
                    or entry.position.epoch != start.epoch
                ):
                    entry.position = start
        if future.done():
            return
        if reply.status == "ok":
            future.set_result(reply.data)
        else:
            message = reply.data.get("message", "") if isinstance(reply.data, dict) else ""
            future.set_exception(ReplyError(reply.status, message))

    # --- connecting --------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background (``connect()`` does this)."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="transports-client")

    async def _negotiate(self, transports: Sequence[str]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        token = self.token
        if callable(token):
            token = token()
            if inspect.isawaitable(token):
                token = await token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"v": 1, "client": self.client_key, "transports": list(transports)})
        response = await self.connector.request(
            "POST", self.url + "/negotiate", headers=headers, body=body.encode(), timeout=10
        )
        if response.status != 200:
            try:
                error = str(json.loads(response.body).get("error", ""))[:64]
            except (ValueError, AttributeError, RecursionError):
                error = ""
            # Protocol §3: 408, 429 and 5xx are retried with backoff (at least Retry-After);
            # every other answer (400, 401, 403, 404, 405, 413, 415...) is final.
            if _transient(response.status):
                raise _RetryLater(
                    f"negotiate answered {response.status} {error}".strip(),
                    _retry_after(response),
                )
            raise _NegotiateRefused(response.status, error)
        # A malformed answer (too deep for the parser, or not an object) is a failed attempt
        # (ValueError: retried with backoff), never an exception that kills the client's task.
        try:
            info: Any = json.loads(response.body)
        except RecursionError:
            raise ValueError("negotiate answer is nested too deep") from None
        if not isinstance(info, dict):
            raise ValueError("negotiate answer is not a JSON object")
        retry = info.get("retry")
        if isinstance(retry, int | float) and not isinstance(retry, bool) and retry >= 0:
            self._retry_hint = min(float(retry) / 1000, _RETRY_AFTER_CAP)
        return info

    async def _open_one(self) -> _Connection:
        """Negotiate and open the first transport that works, in order."""
        errors = []
        for index, name in enumerate(self.transports):
            info = await self._negotiate(self.transports[index:])
            if name not in info.get("transports", []):
                errors.append(f"{name}: not enabled by the server")
                continue
            connection = _CONNECTIONS[name](self, info)
            self._early = []
            try:
                await connection.open(self.deadlines[name])
            except (
                OSError,
                TimeoutError,
                WebSocketRefused,
                _Closed,
                StopAsyncIteration,
                ProtocolError,  # a malformed first frame or poll answer
            ) as exc:
                reason = f"{name}: {type(exc).__name__} {exc}".strip()
                errors.append(reason)
                await connection.shutdown()
                if index + 1 < len(self.transports):
                    self.fallback_reason = reason
                    self.stats["fallbacks"].append(
                        {"from": name, "to": self.transports[index + 1], "reason": reason}
                    )
                continue
            return connection
        raise OSError("no transport could be opened: " + "; ".join(errors))

    def _reconnect_delay(self, attempt: int, retry_after: float = 0.0) -> float:
        """Seconds before reconnect attempt ``attempt`` (protocol §10.1).

        Full-jitter exponential backoff on top of the server's ``retry`` hint (a lower bound,
        so a restarted server is not hit by every client at once), and never less than a
        ``Retry-After`` the server sent.
        """
        delay = backoff_delay(
            attempt, base=self.backoff[0], cap=self.backoff[1], floor=self._retry_hint
        )
        return max(delay, retry_after)

    async def _run(self) -> None:
        attempt = 0
        while self._closed is None:
            try:
                connection = await self._open_one()
            except NegotiationError as exc:
                code = (
                    exc.close_code if isinstance(exc, _NegotiateRefused) else CloseCode.UNAUTHORIZED
                )
                self._terminal(code, str(exc), exc)
                return
            except (OSError, TimeoutError, ValueError) as exc:
                self._emit("error", exc)
                self._set_state("reconnecting")
                wait = exc.retry_after if isinstance(exc, _RetryLater) else 0.0
                delay = self._reconnect_delay(attempt, wait)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            ended, stable = await self._adopt(connection)
            self._opened.clear()
            self.transport = None
            await self._drop_connection()
            if self._closed is not None:
                return
            if not is_reconnect_code(ended.code):
                self._terminal(ended.code, ended.reason, None)
                return
            self.stats["reconnects"] += 1
            self._set_state("reconnecting")
            attempt = 0 if stable else attempt + 1
            await asyncio.sleep(self._reconnect_delay(attempt, ended.retry_after))

    def _terminal(self, code: int, reason: str, error: Exception | None) -> None:
        self._closed = channel_closed(code, reason)
        self._set_state("closed")
        self._emit("error", error or self._closed)
        self._fail_pending(self._closed)
        self._ended.set()

    async def _adopt(self, connection: _Connection) -> tuple[_Closed, bool]:
        """Make ``connection`` current: resubscribe, resend, then wait for its end.

        Returns how it ended and whether it was up long enough to reset the backoff.
        """
        self._connection = connection
        self.transport = connection.name
        self.public_id = connection.info.get("id")
        early, self._early = self._early, []
        for frame in early:
            self._on_frame(connection, frame)
        started = self._loop.time()
        resubscribe = [(topic, entry.position) for topic, entry in self._topics.items()]
        frames: list[str | bytes] = []
        waits: list[tuple[str, Position | None, asyncio.Future[Any]]] = []
        for topic, since in resubscribe:
            ref = self._ref()
            waits.append((topic, since, self._control_future(ref, topic)))
            frames.append(encode_client_frame(Subscribe(ref, topic, since)))
        for ref, (text, native, future) in list(self._pending.items()):
            too_big = self._too_big(connection, text, native)
            if too_big is not None:  # queued before the limit was known: never sent
                del self._pending[ref]
                if not future.done():
                    future.set_exception(too_big)
                continue
            frames.append(self._wire(text, native))
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
        return ended, self._loop.time() - started > 5

    async def _report_recovery(
        self, waits: list[tuple[str, Position | None, asyncio.Future[Any]]]
    ) -> None:
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
    transports: Sequence[TransportName] = TRANSPORT_NAMES,
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
