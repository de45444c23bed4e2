"""Long-polling (§6.1), and the ``POST /send`` upstream that SSE and long-poll share (§6.2)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from quart import Blueprint, Response, request

from ..channels import LongPollChannel
from ..exceptions import Refused
from ..protocol.frames import decode_batch
from ..protocol.longpoll import parse_cursor
from ..protocol.session import State
from ..typing import TransportName
from . import Transport
from .common import error_response, origin_ok, read_body, refused_response

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["LongPollChannel", "LongPollTransport", "register_send"]

SESSION_HEADER = "X-Realtime-Session"


class LongPollTransport(Transport):
    """``GET /poll?cursor=N`` with ``X-Realtime-Session``."""

    name: ClassVar[TransportName] = "longpoll"
    bidirectional: ClassVar[bool] = False

    def register(self, blueprint: Blueprint, realtime: Realtime) -> None:
        engine = realtime.engine

        async def poll_route() -> Response:
            if not origin_ok(realtime):
                return error_response("forbidden_origin", "origin not allowed")
            try:
                session = await engine.session_for_token(
                    request.headers.get(SESSION_HEADER), "longpoll", request.remote_addr
                )
                cursor = parse_cursor(request.args.get("cursor"))
                if cursor > session.sent_seq:
                    return error_response("bad_request", "cursor is ahead of the session")
                existing = engine.channel_of(session)
                if existing is not None and session.attached:
                    assert isinstance(existing, LongPollChannel)
                    existing.supersede()
                    session.detach(engine.clock())
                channel = engine.attach(session, "longpoll", lambda s: LongPollChannel(engine, s))
            except Refused as exc:
                return refused_response(exc)
            assert isinstance(channel, LongPollChannel)
            body = await channel.poll(cursor)
            response = Response(body, status=200, content_type="application/json")
            response.headers["Cache-Control"] = "no-store"
            return response

        blueprint.add_url_rule("/poll", "poll", poll_route, methods=["GET"])


def register_send(blueprint: Blueprint, realtime: Realtime) -> None:
    """``POST /send``: a batch of client frames for an SSE or long-poll session."""
    engine = realtime.engine
    settings = realtime.settings
    posting: set[str] = set()

    async def send_route() -> Response:
        if not origin_ok(realtime):
            return error_response("forbidden_origin", "origin not allowed")
        content_type = (request.mimetype or "").lower()
        if content_type != "application/json":
            return error_response("unsupported_media_type", "Content-Type must be application/json")
        try:
            session = await engine.session_for_token(
                request.headers.get(SESSION_HEADER), None, request.remote_addr
            )
            channel = engine.channel_of(session)
            if channel is None or session.state is not State.OPEN:
                raise Refused("conflict", "attach a transport to the session first")
            if session.sid in posting:
                raise Refused("conflict", "another POST for this session is in progress")
            posting.add(session.sid)
            try:
                body = await read_body(settings.max_body_size, settings.body_timeout)
                frames = decode_batch(body, engine.limits)
                wait = engine.over_rate(session, len(frames))
                if wait:
                    refused = Refused("rate_limited", "too many messages")
                    refused.retry_after = max(1, int(wait + 0.999))  # type: ignore[attr-defined]
                    raise refused
                await channel.submit_all(frames)
            finally:
                posting.discard(session.sid)
        except Refused as exc:
            return refused_response(exc)
        except asyncio.CancelledError:
            raise
        session.last_seen = engine.clock()
        return Response("", status=204)

    blueprint.add_url_rule("/send", "send", send_route, methods=["POST"])
