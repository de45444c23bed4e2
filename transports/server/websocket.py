"""The WebSocket transport: both directions on one socket (docs/protocol.md §4).

The ``/ws`` route is served at the ASGI level, in front of Quart's own routing, rather than as a
Quart websocket route: Quart runs each WebSocket as two tasks (one moving every incoming
message into an unbounded queue, one for the handler) and cancels the handler when the client
disconnects. Talking ASGI directly, one task reads a frame, applies it and writes the reply;
the ASGI server's bounded receive queue pushes back on a client that sends faster than it is
served; a disconnect arrives as an event, so a handler that started always finishes. Handlers
still run inside the app context (``current_app`` works); Quart's ``websocket`` global does not
exist for them: the ``channel`` is their handle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

from quart import Blueprint, Quart

from ..channels import SocketGone, WebSocketChannel
from ..exceptions import Refused
from ..protocol.codes import ERROR_STATUS
from ..protocol.origin import origin_allowed
from ..typing import TransportName
from . import Transport
from .hardening import close_oversized_websockets

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["ASGISocket", "WebSocketChannel", "WebSocketTransport"]

log = logging.getLogger("transports.websocket")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGISocket:
    """The small socket surface :class:`WebSocketChannel` needs, over raw ASGI events."""

    __slots__ = ("_receive", "_send")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send

    async def receive(self) -> str | bytes:
        """The next message. Raises :class:`SocketGone` once the client disconnected."""
        while True:
            event = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                text = event.get("text")
                if text is not None:
                    return str(text)
                data = event.get("bytes")
                return bytes(data) if data is not None else b""
            if kind == "websocket.disconnect":
                code = event.get("code")
                raise SocketGone(code if isinstance(code, int) else None)

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._send({"type": "websocket.send", "text": message})
        else:
            await self._send({"type": "websocket.send", "bytes": message})

    async def close(self, code: int, reason: str = "") -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


class WebSocketTransport(Transport):
    """``GET /ws?ticket=T`` with the WebSocket upgrade, served in front of Quart's routing."""

    name: ClassVar[TransportName] = "websocket"
    bidirectional: ClassVar[bool] = True

    def register(self, app: Quart, blueprint: Blueprint, realtime: Realtime) -> None:
        path = realtime.settings.url_prefix + "/ws"
        # A message over Hypercorn's size limit is refused by Hypercorn, not by this module;
        # make that refusal close the connection (hardening.py, issue 12).
        close_oversized_websockets()
        inner: ASGIApp = app.asgi_app  # type: ignore[assignment]  # Quart's narrower types

        async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "websocket" and scope["path"] == path:
                await _serve(app, realtime, scope, receive, send)
            else:
                await inner(scope, receive, send)

        app.asgi_app = asgi_app  # type: ignore[method-assign,assignment]


_RETRY_LATER = frozenset({"rate_limited", "too_many_connections", "unavailable"})
"""Refusals that a client may try again after ``Retry-After`` seconds."""


async def _refuse(
    scope: Scope, send: Send, code: str, message: str, retry_after: int | None = None
) -> None:
    """Refuse the handshake with an HTTP status and a JSON body (403, 401, 404...)."""
    if retry_after is None and code in _RETRY_LATER:
        retry_after = 1
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = json.dumps({"error": code, "message": message}).encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": ERROR_STATUS.get(code, 400),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    *([(b"retry-after", str(retry_after).encode())] if retry_after else []),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # the server cannot answer HTTP here: refusing before accept means 403
        await send({"type": "websocket.close", "code": 1008})


async def _serve(
    app: Quart, realtime: Realtime, scope: Scope, receive: Receive, send: Send
) -> None:
    # The first event is websocket.connect (ASGISocket.receive skips it): nothing to wait for
    # before deciding, and Quart's test client does not send it at all.
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    own = f"{scheme}://{headers.get('host', '')}"
    engine = realtime.engine
    if not origin_allowed(headers.get("origin"), own, realtime.settings.allowed_origins):
        await _refuse(scope, send, "forbidden_origin", "origin not allowed")
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    ticket = query.get("ticket", [None])[0]
    client = scope.get("client")
    address = client[0] if client else None
    try:
        session = await engine.session_for_ticket(ticket, "websocket", address=address)
        channel = engine.attach(session, "websocket", lambda s: WebSocketChannel(engine, s))
    except Refused as exc:
        await _refuse(scope, send, exc.code, exc.message, getattr(exc, "retry_after", None))
        return
    assert isinstance(channel, WebSocketChannel)
    await send({"type": "websocket.accept"})
    async with app.app_context():
        await channel.serve(ASGISocket(receive, send))
