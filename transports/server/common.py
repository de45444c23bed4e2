"""What the routes share: JSON errors, origin checks, bounded body reading."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from quart import Response, request, websocket

from ..engine import Answer
from ..exceptions import PayloadTooBig, Refused
from ..protocol.codes import ERROR_STATUS
from ..protocol.origin import origin_allowed

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["answer_response", "error_response", "origin_ok", "read_body", "refused_response"]


def error_response(code: str, message: str, *, headers: dict[str, str] | None = None) -> Response:
    """``{"error": code, "message": message}`` with the status of ``code`` (protocol §10.2)."""
    body = json.dumps({"error": code, "message": message})
    response = Response(body, status=ERROR_STATUS.get(code, 400), content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def answer_response(answer: Answer) -> Response:
    """The Quart response for an engine :class:`Answer`."""
    response = Response(answer.body, status=answer.status)
    if answer.status == 204:
        del response.headers["Content-Type"]  # no body, no type
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response


def refused_response(exc: Refused) -> Response:
    """The HTTP answer to a refused request (with ``Retry-After`` when it says when)."""
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return error_response(exc.code, exc.message, headers=headers)


def origin_ok(realtime: Realtime, *, is_websocket: bool = False) -> bool:
    """Whether the current request's ``Origin`` is allowed (same origin or the allow-list)."""
    current = websocket if is_websocket else request
    scheme = "https" if current.scheme in ("https", "wss") else "http"
    own = f"{scheme}://{current.host}"
    return origin_allowed(current.headers.get("Origin"), own, realtime.settings.allowed_origins)


async def read_body(limit: int, timeout: float) -> bytes:
    """The request body, refused before it grows past ``limit`` bytes or takes over ``timeout``.

    Raises:
        PayloadTooBig: ``Content-Length`` or the bytes received pass ``limit``.
        Refused: ``request_timeout`` when the body trickles in too slowly; ``bad_request`` when
            the request carries both ``Content-Length`` and ``Transfer-Encoding`` (RFC 9112
            §6.3: a smuggling shape, refused rather than guessed at).
    """
    if "Transfer-Encoding" in request.headers and "Content-Length" in request.headers:
        refused = Refused("bad_request", "Content-Length and Transfer-Encoding together")
        refused.close_connection = True  # RFC 9112 §6.3
        raise refused
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooBig(f"body larger than {limit} bytes")
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.body:
                data += chunk
                if len(data) > limit:
                    raise PayloadTooBig(f"body larger than {limit} bytes")
    except TimeoutError:
        raise Refused("request_timeout", "the request body arrived too slowly") from None
    return bytes(data)
