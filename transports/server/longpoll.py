"""Long-polling (§6.1), and the ``POST /send`` upstream that SSE and long-poll share (§6.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from quart import Blueprint, Quart, Response, request

from ..channels import LongPollChannel
from ..typing import TransportName
from . import Transport
from .common import answer_response, error_response, origin_ok, read_body

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["LongPollChannel", "LongPollTransport", "register_send"]

SESSION_HEADER = "X-Realtime-Session"


class LongPollTransport(Transport):
    """``GET /poll?cursor=N`` with ``X-Realtime-Session``."""

    name: ClassVar[TransportName] = "longpoll"
    bidirectional: ClassVar[bool] = False

    def register(self, app: Quart, blueprint: Blueprint, realtime: Realtime) -> None:
        engine = realtime.engine

        async def poll_route() -> Response:
            if not origin_ok(realtime):
                return error_response("forbidden_origin", "origin not allowed")
            answer = await engine.poll(
                request.headers.get(SESSION_HEADER),
                request.args.get("cursor"),
                request.remote_addr,
            )
            return answer_response(answer)

        blueprint.add_url_rule("/poll", "poll", poll_route, methods=["GET"])


def register_send(blueprint: Blueprint, realtime: Realtime) -> None:
    """``POST /send``: a batch of client frames for an SSE or long-poll session."""
    engine = realtime.engine
    settings = realtime.settings

    async def send_route() -> Response:
        if not origin_ok(realtime):
            return error_response("forbidden_origin", "origin not allowed")
        if (request.mimetype or "").lower() != "application/json":
            return error_response("unsupported_media_type", "Content-Type must be application/json")

        async def body() -> bytes:
            return await read_body(settings.max_body_size, settings.body_timeout)

        answer = await engine.post(request.headers.get(SESSION_HEADER), body, request.remote_addr)
        return answer_response(answer)

    blueprint.add_url_rule("/send", "send", send_route, methods=["POST"])
