"""The WebSocket transport: both directions on one socket (docs/protocol.md §4)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from quart import Blueprint, Response, websocket

from ..channels import WebSocketChannel
from ..exceptions import Refused
from ..typing import TransportName
from . import Transport
from .common import error_response, origin_ok, refused_response

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["WebSocketChannel", "WebSocketTransport"]

log = logging.getLogger("transports.websocket")


class WebSocketTransport(Transport):
    """``GET /ws?ticket=T`` with the WebSocket upgrade."""

    name: ClassVar[TransportName] = "websocket"
    bidirectional: ClassVar[bool] = True

    def register(self, blueprint: Blueprint, realtime: Realtime) -> None:
        engine = realtime.engine

        async def ws_route() -> Response | None:
            if not origin_ok(realtime, is_websocket=True):
                return error_response("forbidden_origin", "origin not allowed")
            try:
                session = await engine.session_for_ticket(
                    websocket.args.get("ticket"), "websocket", address=websocket.remote_addr
                )
                channel = engine.attach(session, "websocket", lambda s: WebSocketChannel(engine, s))
            except Refused as exc:
                return refused_response(exc)
            assert isinstance(channel, WebSocketChannel)
            await websocket.accept()
            await channel.serve(websocket._get_current_object())  # type: ignore[attr-defined]
            return None

        blueprint.add_websocket("/ws", "ws", ws_route)
