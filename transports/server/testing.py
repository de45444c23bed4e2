"""Drive a ``transports`` app in-process: a :class:`Connector` over Quart's test client.

The Python client (:func:`transports.client.connect`) then speaks the real protocol, on any of
the three transports, to an app running in the test's own event loop: no server, no port, no
network. Your ``on_connect``, ``on(event)``, authoriser and channel hooks run exactly as they
do behind Hypercorn. This is how the contract suite runs every scenario in-process before
running it again over real Hypercorn, and how docs/howto/testing.md tests an app:

.. code-block:: python

    from transports.client import connect
    from transports.server.testing import QuartTestConnector

    async with app.test_app() as test_app:          # runs the app's startup and shutdown
        client = await connect(
            "http://localhost/realtime",             # any host: only the path is used
            transports=["sse"],
            connector=QuartTestConnector(test_app.test_client()),
        )
        assert await client.send("chat.send", {"text": "hi"}) == {"ok": True}
        await client.close()

Use ``app.test_app()`` (not just ``app.test_client()``): the extension starts its engine when
the app starts serving. Build a fresh app for each test (an app factory): the engine, its
sessions and its topic histories belong to the event loop that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from quart.testing.connections import (
    HTTPDisconnectError,
    WebsocketDisconnectError,
    WebsocketResponseError,
)
from quart.typing import TestClientProtocol

from ..client.connector import (
    Connector,
    HTTPResponse,
    StreamResponse,
    WebSocketConnection,
    WebSocketRefused,
)

__all__ = ["QuartTestConnector"]


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


class _Stream(StreamResponse):
    def __init__(self, manager: Any, connection: Any) -> None:
        self._manager = manager
        self._connection = connection
        self.status = 0
        self.headers: Mapping[str, str] = {}
        self._first: bytes | None = None
        self._closed = False

    async def start(self) -> None:
        await self._connection.send_complete()
        first = await self._connection.receive()
        self._first = first
        self.status = self._connection.status_code or 0
        self.headers = dict(self._connection.headers or {})

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._first:
            first, self._first = self._first, None
            yield first
        while not self._closed:
            try:
                chunk = await self._connection.receive()
            except HTTPDisconnectError:
                return
            if not chunk:
                if self._connection._task.done():
                    return
                continue
            yield chunk

    async def read_all(self) -> bytes:
        data = bytearray(self._first or b"")
        self._first = None
        with contextlib.suppress(Exception):
            while True:
                chunk = await asyncio.wait_for(self._connection.receive(), 0.5)
                if not chunk:
                    break
                data += chunk
        return bytes(data)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._connection.disconnect()
                await self._manager.__aexit__(None, None, None)


class _Socket(WebSocketConnection):
    def __init__(self, manager: Any, connection: Any) -> None:
        self._manager = manager
        self._connection = connection
        self._code: int | None = None

    async def send(self, message: str | bytes) -> None:
        if self._code is not None:
            raise OSError("websocket closed")
        await self._connection.send(message)

    async def receive(self) -> str | bytes | None:
        if self._code is not None:
            return None
        try:
            return await self._connection.receive()  # type: ignore[no-any-return]
        except WebsocketDisconnectError as exc:
            self._code = int(exc.args[0]) if exc.args else 1000
            return None
        except WebsocketResponseError as exc:
            raise WebSocketRefused(exc.response.status_code) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._code is None:
            self._code = code
        with contextlib.suppress(Exception):
            await self._connection.disconnect()
            await self._manager.__aexit__(None, None, None)

    @property
    def close_code(self) -> int | None:
        return self._code

    @property
    def close_reason(self) -> str:
        return ""


class QuartTestConnector(Connector):
    """A :class:`Connector` that sends every request through ``client`` (Quart's test client).

    Pass it as ``connector=`` to :func:`transports.client.connect`. Every transport works
    through it: negotiate and ``POST /send`` as test requests, the SSE stream and long polls
    as streamed test requests, the WebSocket as a test WebSocket. Only the path and query of
    the URLs are used, so ``http://localhost/realtime`` reaches the app mounted at
    ``/realtime`` whatever its host.

    Args:
        client: the app's test client, ``test_app.test_client()`` inside
            ``async with app.test_app() as test_app`` (so the app's startup has run).
        origin: an ``Origin`` header to send with every request, to test what a browser page of
            that origin gets (``"https://elsewhere.example"`` is refused with
            ``403 forbidden_origin`` unless ``allowed_origins`` lists it). By default no
            ``Origin`` is sent, as from a non-browser client, which the server allows.
    """

    def __init__(self, client: TestClientProtocol, *, origin: str | None = None) -> None:
        self._client = client
        self._origin = origin

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        merged = dict(headers or {})
        if self._origin:
            merged.setdefault("Origin", self._origin)
        return merged

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        """One complete request through the test client (negotiate, ``POST /send``, a poll)."""
        async with asyncio.timeout(timeout):
            response = await self._client.open(  # type: ignore[call-arg]  # json is optional
                _path(url), method=method, headers=self._headers(headers), data=body
            )
            data = await response.get_data(as_text=False)
        return HTTPResponse(response.status_code, dict(response.headers), bytes(data))

    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> StreamResponse:
        """A streamed GET (the SSE stream), returned once its status and headers arrived."""
        manager = self._client.request(_path(url), method="GET", headers=self._headers(headers))
        connection = await manager.__aenter__()
        stream = _Stream(manager, connection)
        async with asyncio.timeout(timeout):
            await stream.start()
        return stream

    async def websocket(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> WebSocketConnection:
        """A test WebSocket to ``url``; a refused handshake raises ``WebSocketRefused`` from its
        first ``receive()``."""
        manager = self._client.websocket(_path(url), headers=self._headers(headers))
        connection = await manager.__aenter__()
        return _Socket(manager, connection)

    async def close(self) -> None:
        """Nothing to release: the test client belongs to the test."""
        return None
