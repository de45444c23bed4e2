"""The one surface every carrier has, and the request and replies it trades with the edge.

A carrier is one transport on the server: its :class:`~transports.core.connection.CarrierTraits`
(name, bidirectional, what it retains...), the routes it serves under the URL prefix, the
channel class it attaches, and :meth:`Carrier.handle`, which turns one :class:`Request` into a
reply. The server's edge does everything HTTP has in common (origin, CORS, body limits, JSON
errors) before and after; a carrier never imports a web framework.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from ..core.answer import Answer
from ..core.connection import CarrierTraits, Core

__all__ = [
    "Carrier",
    "Endpoint",
    "Reply",
    "Request",
    "Socket",
    "SocketGone",
    "Stream",
    "Upgrade",
]


class SocketGone(Exception):
    """The client's connection is gone (raised by :meth:`Socket.receive`).

    ``code`` is the close code the ASGI server reported: 1006 (or None) when the connection
    dropped without a closing handshake, else the code of the client's close.
    """

    def __init__(self, code: int | None = None) -> None:
        super().__init__(code)
        self.code = code


class Socket(Protocol):
    """A message socket as the edge hands it to a carrier after an upgrade."""

    async def receive(self) -> str | bytes:
        """The next message; raises :class:`SocketGone` once the client is gone."""
        ...

    def send(self, message: str | bytes) -> Awaitable[None]:
        """Send one message (await the result)."""
        ...

    async def close(self, code: int, reason: str = "") -> None: ...


@dataclass(slots=True)
class Request:
    """One request under the prefix, as the edge parsed it (the origin is already allowed)."""

    method: str
    """``GET``, ``POST``... or ``WEBSOCKET`` for an upgrade."""
    path: str
    """The path under the URL prefix, e.g. ``/poll``."""
    query: dict[str, str]
    """Query parameters (the first value of each)."""
    headers: dict[str, str]
    """Request headers, names in lower case (the first value of each)."""
    address: str | None
    """The client's address."""
    read_body: Callable[[], Awaitable[bytes]] = field(repr=False)
    """The body, within the configured size and time limits (raises ``Refused``)."""


@dataclass(frozen=True, slots=True)
class Stream:
    """A streaming HTTP answer: status 200, ``headers``, then ``body`` until it ends."""

    headers: dict[str, str]
    body: AsyncGenerator[bytes, None]


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Accept the WebSocket upgrade, then run ``serve`` with the socket until it returns."""

    serve: Callable[[Socket], Awaitable[None]]


Reply = Answer | Stream | Upgrade
"""What :meth:`Carrier.handle` returns."""


class Endpoint(abc.ABC):
    """Something the edge routes requests to: a carrier, or the shared upstream POST."""

    routes: ClassVar[tuple[tuple[str, str], ...]]
    """``(method, path under the prefix)`` pairs this carrier serves; ``WEBSOCKET`` for an
    upgrade."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def install(self) -> None:  # noqa: B027  (a hook: most endpoints need nothing here)
        """Called once when the server starts using this carrier (e.g. to serve forwarded
        requests with ``core.serve_forwarded``)."""

    @abc.abstractmethod
    async def handle(self, request: Request) -> Reply:
        """Serve one request on one of :attr:`routes`. Refusals are :class:`Answer` objects
        (``Answer.refused(exc)``), never exceptions."""


class Carrier(Endpoint):
    """One transport on the server side.

    Subclasses set :attr:`traits` and :attr:`routes` and implement :meth:`handle`; register the
    class in :mod:`transports.carriers` (the only list of transport names).
    """

    traits: ClassVar[CarrierTraits]
    """How the core treats this transport's sessions."""
