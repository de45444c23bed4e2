"""How the Python client reaches a server: real HTTP (aiohttp) or an in-process test client.

The client's protocol logic only calls these methods, so the same client (and the same
contract tests) runs against a real server and against Quart's test client
(:class:`transports.server.testing.QuartTestConnector`).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

__all__ = ["Connector", "HTTPResponse", "StreamResponse", "WebSocketConnection", "WebSocketRefused"]


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A complete HTTP response."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class StreamResponse(abc.ABC):
    """A response whose body arrives over time (SSE)."""

    status: int
    headers: Mapping[str, str]

    @abc.abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, until the server ends it (or :meth:`close`)."""

    @abc.abstractmethod
    async def read_all(self) -> bytes:
        """The whole body (for error responses)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop reading and drop the connection."""


class WebSocketRefused(Exception):
    """The server answered the WebSocket handshake with an HTTP response."""

    def __init__(self, status: int, body: bytes = b"") -> None:
        super().__init__(f"websocket handshake refused with {status}")
        self.status = status
        self.body = body


class WebSocketConnection(abc.ABC):
    """An open WebSocket."""

    @abc.abstractmethod
    async def send(self, message: str | bytes) -> None:
        """Send one message."""

    @abc.abstractmethod
    async def receive(self) -> str | bytes | None:
        """The next message, or None once the socket closed (see :attr:`close_code`)."""

    @abc.abstractmethod
    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket."""

    @property
    @abc.abstractmethod
    def close_code(self) -> int | None:
        """The close code once closed (1006 when the connection just dropped)."""

    @property
    @abc.abstractmethod
    def close_reason(self) -> str:
        """The close reason once closed."""


class Connector(abc.ABC):
    """Opens HTTP requests, streams and WebSockets to one server."""

    @abc.abstractmethod
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        """Send a request and read the whole response. Raises :class:`OSError` on network
        failure and :class:`TimeoutError` after ``timeout`` seconds."""

    @abc.abstractmethod
    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> StreamResponse:
        """Send a GET and return as soon as the response headers arrive."""

    @abc.abstractmethod
    async def websocket(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> WebSocketConnection:
        """Open a WebSocket. Raises :class:`WebSocketRefused` when the server answers HTTP."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and pools."""
