"""The SSE transport: server to client on an event stream, client to server by POST (§5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from quart import Blueprint, Quart, Response, request

from ..channels import SSEChannel
from ..exceptions import Refused
from ..protocol.session import SyncResult
from ..protocol.sse import SSE_HEADERS, parse_last_event_id
from ..typing import TransportName
from . import Transport
from .common import error_response, origin_ok, refused_response

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["SSEChannel", "SSETransport"]


class SSETransport(Transport):
    """``GET /sse?ticket=T`` (with ``Last-Event-ID`` on reconnect)."""

    name: ClassVar[TransportName] = "sse"
    bidirectional: ClassVar[bool] = False

    def register(self, app: Quart, blueprint: Blueprint, realtime: Realtime) -> None:
        engine = realtime.engine

        async def sse_route() -> Response:
            if not origin_ok(realtime):
                return error_response("forbidden_origin", "origin not allowed")
            try:
                last = parse_last_event_id(
                    request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
                )
            except ValueError:
                return error_response("bad_request", "Last-Event-ID must be a sequence number")
            try:
                session = await engine.session_for_ticket(
                    request.args.get("ticket"),
                    "sse",
                    reattach=last is not None,
                    address=request.remote_addr,
                )
                channel = engine.attach(session, "sse", lambda s: SSEChannel(engine, s))
            except Refused as exc:
                return refused_response(exc)
            assert isinstance(channel, SSEChannel)
            resync = False
            if last is not None:
                result = session.rewind(last)
                if result is SyncResult.AHEAD:
                    engine.detach(channel)
                    return error_response("bad_request", "Last-Event-ID is ahead of the stream")
                resync = result is SyncResult.TOO_OLD
            response = Response(channel.stream(resync), status=200, headers=SSE_HEADERS)
            response.timeout = None  # a stream must never be cut by Quart's response timeout
            return response

        blueprint.add_url_rule("/sse", "sse", sse_route, methods=["GET"])
