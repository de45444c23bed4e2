"""``POST /send``: the uplink of every carrier that is not bidirectional (§6.2).

A body is a batch of client frames for one session, applied in order; the answer is 204 once
they are applied (their replies travel downstream), or 200 with the replies to its EVENT and
PUBLISH frames when the client asks for JSON (``Accept: application/json``). A POST that lands
on another process is forwarded to the one holding the session, body and all.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.answer import JSON_HEADERS, Answer
from ..core.connection import Core
from ..protocol.errors import Refused, SessionElsewhere
from ..protocol.frames import decode_batch
from ..protocol.longpoll import encode_send_answer
from ..protocol.session import State
from .base import Endpoint, Reply, Request
from .longpoll import SESSION_HEADER

__all__ = ["Upstream"]


class Upstream(Endpoint):
    """``POST /send`` with ``X-Realtime-Session`` and a JSON batch."""

    routes = (("POST", "/send"),)

    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self._posting: set[str] = set()

    def install(self) -> None:
        self.core.serve_forwarded("post", self._forwarded)

    async def handle(self, request: Request) -> Reply:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return Answer.error("unsupported_media_type", "Content-Type must be application/json")
        return await self.post(
            request.headers.get(SESSION_HEADER),
            request.read_body,
            request.address,
            replies="application/json" in request.headers.get("accept", "").lower(),
        )

    async def _forwarded(self, call: dict[str, Any]) -> Answer:
        body = base64.b64decode(str(call.get("b", "")))

        async def read_body() -> bytes:
            return body

        return await self.post(
            call.get("t"), read_body, call.get("a"), hop=True, replies=bool(call.get("r"))
        )

    async def post(
        self,
        token: str | None,
        read_body: Callable[[], Awaitable[bytes]],
        address: str | None,
        hop: bool = False,
        replies: bool = False,
    ) -> Answer:
        """Answer ``POST /send`` (protocol §6.2), wherever the session lives; with
        ``replies``, answer with the replies to the batch's EVENT and PUBLISH frames."""
        core = self.core
        try:
            session = await core.session_for_token(token, None, address)
        except SessionElsewhere as exc:
            if hop:
                return Answer.refused(Refused("unknown_session", "unknown or expired session"))
            try:
                body = await read_body()
            except Refused as refused:
                return Answer.refused(refused)
            call = {
                "k": "post",
                "t": token,
                "b": base64.b64encode(body).decode(),
                "a": address,
                "r": replies,
            }
            return await core.forward(exc.node, call, core.settings.body_timeout + 30)
        except Refused as exc:
            return Answer.refused(exc)
        channel = core.channel_of(session)
        try:
            if channel is None or session.state is not State.OPEN:
                raise Refused("conflict", "attach a transport to the session first")
            if session.sid in self._posting:
                raise Refused("conflict", "another POST for this session is in progress")
            self._posting.add(session.sid)
            try:
                frames = decode_batch(await read_body(), core.limits)
                wait = core.over_rate(session, len(frames))
                if wait:
                    raise Refused.retry_later("rate_limited", "too many messages", wait)
                answered = await channel.submit_all(frames, replies)
            finally:
                self._posting.discard(session.sid)
        except Refused as exc:
            return Answer.refused(exc)
        session.last_seen = core.clock()
        if not replies:
            return Answer(204)
        if answered and session.transport is not None:
            core.wrote(session.transport, [(0, frame) for frame in answered])  # metrics
        return Answer(200, encode_send_answer(answered), dict(JSON_HEADERS))
