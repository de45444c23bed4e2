"""``GET /poll`` and ``POST /send`` served at the ASGI level, in front of Quart's routing.

Long-poll and SSE send one HTTP request per client message (and long-poll one more per reply),
and for such small requests Quart's per-request machinery (request and app contexts, routing,
the request and response objects, hooks) costs more than everything the library does with
them. These two routes have nothing for Quart to do: they answer with an engine
:class:`~transports.engine.Answer`. Everything else (other methods, CORS preflights, unknown
paths, SSE streams, negotiate) still goes through Quart, so refusals look the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from quart import Quart

from ..engine import Answer
from ..exceptions import PayloadTooBig, Refused
from ..protocol.origin import origin_allowed

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["install_fast_path"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CORS_HEADERS = "Content-Type, X-Realtime-Session, Authorization, Last-Event-ID"


class _ClientGone(Exception):
    """The client disconnected while its request body was arriving."""


def install_fast_path(app: Quart, realtime: Realtime) -> None:
    """Serve the long-poll and upstream routes in front of ``app``'s routing."""
    settings = realtime.settings
    routes: dict[tuple[str, str], bool] = {}
    if "longpoll" in settings.transports:
        routes[("GET", settings.url_prefix + "/poll")] = True
    if "sse" in settings.transports or "longpoll" in settings.transports:
        routes[("POST", settings.url_prefix + "/send")] = False
    inner: ASGIApp = app.asgi_app  # type: ignore[assignment]  # Quart's narrower types

    async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            poll = routes.get((scope["method"], scope["path"]))
            if poll is not None:
                await _serve(realtime, scope, receive, send, poll)
                return
        await inner(scope, receive, send)

    app.asgi_app = asgi_app  # type: ignore[method-assign,assignment]


async def _serve(
    realtime: Realtime, scope: Scope, receive: Receive, send: Send, poll: bool
) -> None:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    settings = realtime.settings
    engine = realtime.engine
    origin = headers.get("origin")
    scheme = "https" if scope.get("scheme") == "https" else "http"
    own = f"{scheme}://{headers.get('host', '')}"
    client = scope.get("client")
    address = client[0] if client else None
    token = headers.get("x-realtime-session")
    cors_origin = origin  # echoed in CORS headers only when allowed
    if not origin_allowed(origin, own, settings.allowed_origins):
        cors_origin = None
        answer = Answer.refused(Refused("forbidden_origin", "origin not allowed"))
    elif poll:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cursor = query.get("cursor", [None])[0]
        answer = await engine.poll(token, cursor, address)
    elif headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        answer = Answer.refused(
            Refused("unsupported_media_type", "Content-Type must be application/json")
        )
    else:

        async def read_body() -> bytes:
            return await _read_body(headers, receive, settings.max_body_size, settings.body_timeout)

        try:
            answer = await engine.post(token, read_body, address)
        except _ClientGone:
            return
    await _respond(send, answer, cors_origin, realtime)


async def _read_body(
    headers: dict[str, str], receive: Receive, limit: int, timeout: float
) -> bytes:
    """The request body, under the same rules as :func:`transports.server.common.read_body`."""
    if "transfer-encoding" in headers and "content-length" in headers:
        refused = Refused("bad_request", "Content-Length and Transfer-Encoding together")
        refused.close_connection = True  # RFC 9112 §6.3
        raise refused
    length_text = headers.get("content-length")
    if length_text is not None and length_text.isdigit() and int(length_text) > limit:
        raise PayloadTooBig(f"body larger than {limit} bytes")
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = await receive()
                if event["type"] == "http.disconnect":
                    raise _ClientGone
                data += event.get("body", b"")
                if len(data) > limit:
                    raise PayloadTooBig(f"body larger than {limit} bytes")
                if not event.get("more_body", False):
                    return bytes(data)
    except TimeoutError:
        raise Refused("request_timeout", "the request body arrived too slowly") from None


async def _respond(send: Send, answer: Answer, origin: str | None, realtime: Realtime) -> None:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in answer.headers.items()
    ]
    if answer.body or answer.status != 204:
        headers.append((b"content-length", str(len(answer.body)).encode()))
    allowed = realtime.settings.allowed_origins
    if origin is not None and allowed:
        headers.append((b"access-control-expose-headers", b"Retry-After"))
        if "*" in allowed:
            headers.append((b"access-control-allow-origin", b"*"))
        else:
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"Origin"),
            ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
