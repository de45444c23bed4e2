"""One transport connection of the Python client: the surface every transport implements.

A :class:`Connection` opens one transport on one negotiated session, hands the server frames it
reads to its client (through a :class:`Link`), sends encoded client frames, and ends with a
:class:`Closed` carrying a close code. The client never looks past this surface, so it never
names a transport: :mod:`transports.client.registry` maps names to classes.

Every decision about a failed request (ask again, how soon, or end with which code) comes from
the policy (:mod:`transports.protocol.policy`), through :class:`Attempts`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..protocol.codes import CloseCode
from ..protocol.frames import ServerFrame, UnknownFrameType, decode_server_frame
from ..protocol.policy import (
    POLICY,
    HTTPAction,
    RequestKind,
    http_action,
    liveness_limit,
    reattach_budget,
    reattach_delay,
    request_delay,
    retry_after as parse_retry_after,
)
from ..protocol.types import TransportName
from .connector import Connector

__all__ = ["Attempts", "Closed", "Connection", "Link", "RetryLater", "retry_after"]

log = logging.getLogger("transports.client")


class Closed(Exception):
    """A transport connection ended.

    ``retry_after`` is the least delay (seconds) before reconnecting that the server asked for
    (a ``Retry-After``), 0.0 when it did not.
    """

    def __init__(self, code: int, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


class RetryLater(OSError):
    """An answer the policy retries (a transient status); ``retry_after`` from its header."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Answer(Protocol):
    """An HTTP answer: a whole response, or the head of a stream."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


def retry_after(response: Answer) -> float:
    """The ``Retry-After`` of ``response`` in seconds (0.0 when absent or not a number), at
    most the policy's ``retryAfterCapMs``."""
    for name, value in response.headers.items():
        if name.lower() == "retry-after":
            return parse_retry_after(value)
    return 0.0


def decode(message: str | bytes) -> ServerFrame | None:
    """Decode a server frame; None for a well-formed frame of an unknown type (ignored, §2)."""
    try:
        return decode_server_frame(message)
    except UnknownFrameType as exc:
        log.debug("ignored a server frame of unknown type %s", exc.kind)
        return None


def wire_size(message: str | bytes) -> int:
    """Bytes of one frame as it travels (protocol §2.1: UTF-8 JSON, or the binary message)."""
    return len(message) if isinstance(message, bytes) else len(message.encode("utf-8"))


def positive(value: Any, default: float) -> float:
    """``value`` when it is a positive number (a negotiate answer's entry), else ``default``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def _limit(value: Any, default: int) -> int:
    """A negotiate ``limits`` entry when it is a number of at least 1, else ``default``."""
    return int(value) if positive(value, 0.0) >= 1 else default


def server_hint(info: dict[str, Any]) -> float:
    """The negotiate answer's ``retry`` in seconds (0.0 when absent), capped like Retry-After."""
    return min(positive(info.get("retry"), 0.0) / 1000, POLICY.retry_after_cap)


class Attempts:
    """The retries of one kind of session request on one connection, as the policy says.

    Sans-I/O: :meth:`answered` and :meth:`failed` decide, the caller sleeps and sends.
    """

    def __init__(
        self,
        kind: RequestKind,
        hint: float = 0.0,
        *,
        clock: Callable[[], float] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.kind = kind
        self.budget = reattach_budget(hint)
        """Seconds a request lost on the network is sent again, from the first loss in a row."""
        self.clock = clock or asyncio.get_running_loop().time
        self.rand = rand
        self.retried = 0
        """Answers in a row that the policy asked again."""
        self._lost = 0
        self._lost_at: float | None = None

    def answered(self, response: Answer) -> tuple[HTTPAction, float]:
        """The action for ``response`` and, for ``"retry"``, the seconds to wait first.

        An answer is not news that the network works again: the caller says so with
        :meth:`recovered` (a stream counts only once data flows)."""
        action = http_action(self.kind, response.status, self.retried)
        if action != "retry":
            self.retried = 0
            return action, 0.0
        delay = request_delay(self.kind, self.retried, retry_after(response), self.rand)
        self.retried += 1
        return action, delay

    def failed(self) -> float | None:
        """A request lost on the network: seconds to wait before sending it again, or None
        once the budget is spent (the connection ends with 1006)."""
        now = self.clock()
        if self._lost_at is None:
            self._lost_at = now
        left = self.budget - (now - self._lost_at)
        if left <= 0:
            return None
        delay = reattach_delay(self._lost, left, self.rand)
        self._lost += 1
        return delay

    def recovered(self) -> None:
        """The network works again (an answer, or data on a stream)."""
        self._lost, self._lost_at = 0, None


@dataclass(frozen=True, slots=True)
class Link:
    """What a connection reaches of its client."""

    connector: Connector
    origin: str
    """``scheme://host:port`` of the client's URL, for the relative URLs of a negotiate answer."""
    deliver: Callable[[Connection, ServerFrame], None]
    """Hand a server frame to the client (ignored unless the connection is the current one)."""
    refuse: Callable[[str, int, int], None]
    """The server refused a frame on its own as too large: ``(frame, size, limit)``."""


class Connection(abc.ABC):
    """One transport connection to one session: the surface every transport implements."""

    name: ClassVar[TransportName]
    """The transport's name in the negotiate answer (its key in the registry)."""
    binary: ClassVar[bool] = False
    """Whether binary frames travel as they are (WebSocket binary messages), not as base64."""

    def __init__(self, link: Link, info: dict[str, Any]) -> None:
        self.link = link
        self.connector = link.connector
        self.info = info
        self.token: str = info["token"]
        self.hint = server_hint(info)
        """The server's ``retry`` (seconds), 0.0 when it sent none."""
        self.closed: asyncio.Future[Closed] = asyncio.get_running_loop().create_future()
        self.tasks: list[asyncio.Task[Any]] = []
        self.early: list[ServerFrame] = []
        """Frames read while opening, before the client adopted this connection."""
        self.heartbeat = positive(info.get("heartbeat"), POLICY.heartbeat * 1000) / 1000
        limits = info.get("limits")
        limits = limits if isinstance(limits, dict) else {}
        defaults = POLICY.limits
        self.max_message = _limit(limits.get("message"), defaults["message"])
        """The largest frame the server accepts (``limits.message``, protocol §11)."""
        self.max_body = _limit(limits.get("body"), defaults["body"])
        """The largest ``POST /send`` body (``limits.body``)."""
        self.batch = _limit(limits.get("batch"), defaults["batch"])
        """The most frames in one ``POST /send`` (``limits.batch``)."""
        self.last_heard = asyncio.get_running_loop().time()
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How the connection waits before asking again (tests replace it)."""
        self.random: Callable[[], float] = random.random
        """The random source of its retry delays (tests replace it)."""

    def attempts(self, kind: RequestKind) -> Attempts:
        """A fresh count of the retries of ``kind`` requests on this connection."""
        return Attempts(kind, self.hint, rand=self.random)

    @property
    def max_frame(self) -> int:
        """The largest frame this connection can carry, in bytes as it travels."""
        return self.max_message

    @property
    def silence_limit(self) -> float:
        """Seconds of silence from the server after which this connection is dead."""
        return liveness_limit(self.heartbeat)

    def url(self, name: str) -> str:
        """The absolute URL of ``urls[name]`` in the negotiate answer."""
        path: str = self.info["urls"][name]
        return path if "://" in path else self.link.origin + path

    def end(self, code: int, reason: str, retry_after: float = 0.0) -> None:
        """End the connection with ``code`` (the client then asks the policy what next)."""
        if not self.closed.done():
            self.closed.set_result(Closed(code, reason, retry_after))

    def heard(self) -> None:
        """Something arrived from the server."""
        self.last_heard = asyncio.get_running_loop().time()

    def received(self, frame: ServerFrame) -> None:
        self.link.deliver(self, frame)

    @abc.abstractmethod
    async def open(self, deadline: float) -> None:
        """Open the transport on the negotiated session within ``deadline`` seconds.

        Raises whatever failed (OSError, TimeoutError, :class:`Closed`...): the client then
        tries its next transport.
        """

    @abc.abstractmethod
    async def send(self, frames: list[str | bytes]) -> None:
        """Send encoded client frames, in order."""

    @abc.abstractmethod
    async def leave(self) -> None:
        """Tell the server the client leaves (CLOSE 1000), best effort, within two seconds."""

    async def shutdown(self) -> None:
        """Stop every task of this connection and release what it holds."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task

    async def watchdog(self) -> None:
        """End the connection when the server stays silent past the liveness limit."""
        loop = asyncio.get_running_loop()
        while not self.closed.done():
            silence = loop.time() - self.last_heard
            limit = self.silence_limit
            if silence > limit:
                self.end(CloseCode.ABNORMAL, "server silent")
                return
            await asyncio.sleep(max(0.05, limit - silence))
