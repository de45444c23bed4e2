"""The one ASGI edge in front of the app: everything HTTP has in common, in one place.

Every request under the URL prefix passes here first. The edge parses the scope once, checks
the ``Origin`` (same origin or the allow-list) on every endpoint and on negotiate, answers CORS
preflights and adds the CORS headers of allowed cross-origin answers, reads request bodies
within the size and time limits, and writes what a carrier returns: an
:class:`~transports.core.answer.Answer`, a :class:`~transports.carriers.Stream` (SSE) or an
:class:`~transports.carriers.Upgrade` (WebSocket). Requests for no endpoint (negotiate,
client.js, unknown paths and wrong methods) go on to Quart, with CORS added on the way out.

Serving the endpoints here rather than as Quart routes matters for cost: Quart's per-request
machinery (contexts, routing, request and response objects) costs more than everything the
library does with a small poll or POST, and Quart runs each WebSocket as two tasks with an
unbounded queue between them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from quart import Quart

from ..carriers import Endpoint, Request, SocketGone, Stream, Upgrade
from ..core.answer import Answer
from ..core.settings import Settings
from ..core.steps import start
from ..protocol.errors import PayloadTooBig, Refused
from ..protocol.origin import origin_allowed

__all__ = ["ASGISocket", "ClientGone", "Edge", "read_asgi_body", "read_limited"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CORS_HEADERS = "Content-Type, X-Realtime-Session, Authorization, Last-Event-ID"


class ClientGone(Exception):
    """The client disconnected while its request body was arriving."""


def _check_framing(headers: dict[str, str], limit: int) -> None:
    if "transfer-encoding" in headers and "content-length" in headers:
        raise Refused(
            "bad_request", "Content-Length and Transfer-Encoding together", close_connection=True
        )
    length_text = headers.get("content-length")
    if length_text is not None and length_text.isdigit() and int(length_text) > limit:
        raise PayloadTooBig(f"body larger than {limit} bytes")


async def read_limited(
    chunks: AsyncIterator[bytes],
    headers: dict[str, str],
    limit: int,
    timeout: float,
) -> bytes:
    """A request body, refused before it grows past ``limit`` bytes or takes over ``timeout``.

    ``headers`` are the request's (names in lower case). Used by negotiate; the edge reads its
    endpoints' bodies with :func:`read_asgi_body`, under the same rules.

    Raises:
        PayloadTooBig: ``Content-Length`` or the bytes received pass ``limit``.
        Refused: ``request_timeout`` when the body trickles in too slowly; ``bad_request`` when
            the request carries both ``Content-Length`` and ``Transfer-Encoding`` (RFC 9112
            §6.3: a smuggling shape, refused rather than guessed at, and the connection closed).
    """
    _check_framing(headers, limit)
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in chunks:
                data += chunk
                if len(data) > limit:
                    raise PayloadTooBig(f"body larger than {limit} bytes")
    except TimeoutError:
        raise Refused("request_timeout", "the request body arrived too slowly") from None
    return bytes(data)


def _event(event: MutableMapping[str, Any], data: bytearray, limit: int) -> bool:
    """Add ``event``'s body to ``data``; True while more is to come."""
    if event["type"] == "http.disconnect":
        raise ClientGone
    data += event.get("body", b"")
    if len(data) > limit:
        raise PayloadTooBig(f"body larger than {limit} bytes")
    return bool(event.get("more_body", False))


async def read_asgi_body(
    receive: Receive, headers: dict[str, str], limit: int, timeout: float
) -> bytes:
    """A request body from ASGI ``http.request`` events, under :func:`read_limited`'s rules.

    A small body has usually arrived with its headers: the server hands it over at the first
    ``receive()`` without waiting, and then no timer is armed. Only an event the server does
    not have yet is waited for under the ``timeout`` (counted from the call).

    Raises:
        ClientGone: the client disconnected before the body was whole.
        PayloadTooBig, Refused: as :func:`read_limited`.
    """
    _check_framing(headers, limit)
    deadline = asyncio.get_running_loop().time() + timeout
    data = bytearray()
    done, waiting = start(receive())  # at once if the body is in (no timer then)
    if done:
        if not _event(waiting, data, limit):
            return bytes(data)
        waiting = None
    try:
        async with asyncio.timeout_at(deadline):
            more = True
            if waiting is not None:
                more = _event(await waiting, data, limit)
            while more:
                more = _event(await receive(), data, limit)
    except TimeoutError:
        raise Refused("request_timeout", "the request body arrived too slowly") from None
    return bytes(data)


class ASGISocket:
    """The socket surface a carrier needs after an upgrade, over raw ASGI events."""

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

    def send(self, message: str | bytes) -> Awaitable[None]:
        """Send one message (await the result; the ASGI server's own awaitable, no coroutine
        of ours around it: this runs once per frame written)."""
        if isinstance(message, str):
            return self._send({"type": "websocket.send", "text": message})
        return self._send({"type": "websocket.send", "bytes": message})

    async def close(self, code: int, reason: str = "") -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


def _encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class Edge:
    """The ASGI app in front of Quart's (see the module docstring).

    Args:
        app: the Quart app (its ASGI app is what requests for no endpoint go on to).
        settings: the extension's settings (prefix, origins, body limits).
        endpoints: the carriers and the upstream, by ``(method, path under the prefix)``.
    """

    def __init__(self, app: Quart, settings: Settings, endpoints: dict[tuple[str, str], Endpoint]):
        self.app = app
        self.inner: ASGIApp = app.asgi_app  # type: ignore[assignment]  # Quart's narrower types
        self.settings = settings
        self.prefix = settings.url_prefix
        self.endpoints = endpoints
        self.guarded = {path for _, path in endpoints} | {"/negotiate"}
        """Paths whose requests must come from an allowed origin."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path: str = scope.get("path", "")
        if not path.startswith("/"):  # an absolute-form target: route it by its path
            path = urlsplit(path).path
        if kind not in ("http", "websocket") or not path.startswith(self.prefix + "/"):
            await self.inner(scope, receive, send)
            return
        sub = path[len(self.prefix) :]
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        origin = headers.get("origin")
        secure = scope.get("scheme") in ("https", "wss")
        own = ("https://" if secure else "http://") + headers.get("host", "")
        allowed_origins = self.settings.allowed_origins
        allowed = origin_allowed(origin, own, allowed_origins)
        cors = origin if origin is not None and allowed and allowed_origins else None
        if kind == "websocket":
            await self._websocket(scope, receive, send, sub, headers, allowed)
            return
        method = scope["method"]
        if method == "OPTIONS":
            await self._write(send, Answer(204, b"", {"Allow": "GET, POST"}), cors, preflight=True)
            return
        if not allowed and sub in self.guarded:
            await self._write(send, Answer.error("forbidden_origin", "origin not allowed"), None)
            return
        endpoint = self.endpoints.get((method, sub))
        if endpoint is None:  # negotiate, client.js, refusals: Quart's routes, CORS added here
            await self.inner(scope, receive, self._with_cors(send, cors))
            return
        settings = self.settings

        async def read_body() -> bytes:
            return await read_asgi_body(
                receive, headers, settings.max_body_size, settings.body_timeout
            )

        request = Request(method, sub, _query(scope), headers, _address(scope), read_body)
        try:
            reply = await endpoint.handle(request)
        except ClientGone:
            return
        except Refused as exc:  # a refusal raised while reading the body
            reply = Answer.refused(exc)
        if isinstance(reply, Stream):
            await self._stream(receive, send, reply, cors)
        elif isinstance(reply, Answer):
            await self._write(send, reply, cors)
        else:
            raise TypeError(f"an HTTP endpoint returned {reply!r}")

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        sub: str,
        headers: dict[str, str],
        allowed: bool,
    ) -> None:
        endpoint = self.endpoints.get(("WEBSOCKET", sub))
        if endpoint is None:
            await self.inner(scope, receive, send)
            return
        # The first event is websocket.connect (ASGISocket.receive skips it): nothing to wait
        # for before deciding, and Quart's test client does not send it at all.
        if not allowed:
            reply: object = Answer.error("forbidden_origin", "origin not allowed")
        else:

            async def no_body() -> bytes:
                return b""

            request = Request("WEBSOCKET", sub, _query(scope), headers, _address(scope), no_body)
            reply = await endpoint.handle(request)
        if isinstance(reply, Upgrade):
            await send({"type": "websocket.accept"})
            async with self.app.app_context():
                await reply.serve(ASGISocket(receive, send))
        elif isinstance(reply, Answer):
            await _refuse_handshake(scope, send, reply)
        else:
            raise TypeError(f"a WebSocket endpoint returned {reply!r}")

    def _cors_headers(self, origin: str, preflight: bool) -> dict[str, str]:
        headers = {"Access-Control-Expose-Headers": "Retry-After"}
        if "*" in self.settings.allowed_origins:
            headers["Access-Control-Allow-Origin"] = "*"
        else:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
            headers["Vary"] = "Origin"
        if preflight:
            headers["Access-Control-Allow-Methods"] = "GET, POST"
            headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            headers["Access-Control-Max-Age"] = "600"
        return headers

    def _with_cors(self, send: Send, origin: str | None) -> Send:
        if origin is None:
            return send
        extra = _encode_headers(self._cors_headers(origin, False))

        async def cors_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return cors_send

    async def _write(
        self, send: Send, answer: Answer, cors: str | None, *, preflight: bool = False
    ) -> None:
        headers = dict(answer.headers)
        if cors is not None:
            headers.update(self._cors_headers(cors, preflight))
        encoded = _encode_headers(headers)
        if answer.body or answer.status != 204:
            encoded.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": encoded})
        await send({"type": "http.response.body", "body": answer.body})

    async def _stream(self, receive: Receive, send: Send, stream: Stream, cors: str | None) -> None:
        """Write ``stream`` until it ends, the client goes, or its carrier aborts it."""
        headers = dict(stream.headers)
        if cors is not None:
            headers.update(self._cors_headers(cors, False))
        task = asyncio.current_task()
        assert task is not None
        # Watch for the client leaving with a pending receive() and a callback, not a task of
        # our own per stream: a disconnect cancels this task, which ends the body.
        watching: asyncio.Future[Any] | None = None

        def watch(done: asyncio.Future[Any] | None = None) -> None:
            nonlocal watching
            if done is not None:
                if done.cancelled() or done.exception() is not None:
                    return
                if done.result().get("type") == "http.disconnect":
                    task.cancel()
                    return
            watching = asyncio.ensure_future(receive())
            watching.add_done_callback(watch)

        watch()
        body = stream.body
        try:
            await send(
                {"type": "http.response.start", "status": 200, "headers": _encode_headers(headers)}
            )
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # The client went (the watcher), the carrier aborted a stuck stream, or the server
            # is stopping: the response is over in every case, and the app returns.
            while task.cancelling():
                task.uncancel()
        except OSError:
            pass  # the connection broke under a write
        finally:
            if watching is not None:
                watching.remove_done_callback(watch)
                watching.cancel()
            with contextlib.suppress(BaseException):
                await body.aclose()


async def _refuse_handshake(scope: Scope, send: Send, answer: Answer) -> None:
    """Refuse a WebSocket handshake with the answer's status and JSON body, where the server
    can send HTTP at this point; otherwise close before accepting (the client sees 403)."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = {**answer.headers, "Content-Length": str(len(answer.body))}
        await send(
            {
                "type": "websocket.http.response.start",
                "status": answer.status,
                "headers": _encode_headers(headers),
            }
        )
        await send({"type": "websocket.http.response.body", "body": answer.body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def _query(scope: Scope) -> dict[str, str]:
    text = scope.get("query_string", b"").decode("latin-1")
    query: dict[str, str] = {}
    if "%" in text or "+" in text:
        for key, value in parse_qsl(text):
            query.setdefault(key, value)
        return query
    # Nothing to unquote (a cursor, a ticket): what parse_qsl returns, without its machinery.
    for part in text.split("&"):
        key, equals, value = part.partition("=")
        if equals and value:
            query.setdefault(key, value)
    return query


def _address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
