"""The WebSocket transport: both directions on one socket (docs/protocol.md §4)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from quart import Blueprint, Response, websocket

from ..engine import SessionChannel
from ..exceptions import PayloadTooBig, ProtocolError, Refused
from ..protocol.codes import CloseCode
from ..protocol.frames import decode_client_frame
from ..protocol.session import State
from ..typing import TransportName
from . import Transport
from .common import error_response, origin_ok, refused_response

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["WebSocketChannel", "WebSocketTransport"]

log = logging.getLogger("transports.websocket")


class WebSocketChannel(SessionChannel):
    """A channel carried by one WebSocket: frames both ways, one per message."""

    transport: ClassVar[TransportName] = "websocket"
    bidirectional: ClassVar[bool] = True

    async def serve(self, socket: Any) -> None:
        """Run the connection: read frames here, write due frames in a writer task."""
        engine, session = self.engine, self.session
        await socket.send(self.hello().text)
        session.last_sent = engine.clock()
        writer = asyncio.create_task(self._write(socket), name="transports-ws-writer")
        code, reason = CloseCode.ABNORMAL, "connection lost"
        limits = engine.limits
        try:
            while session.state is State.OPEN:
                message = await socket.receive()
                if not message:
                    raise ProtocolError("bad_frame", "empty message")
                await self.submit(decode_client_frame(message, limits))
        except PayloadTooBig as exc:
            await engine.close(self, CloseCode.TOO_BIG, exc.message)
        except ProtocolError as exc:
            await engine.close(self, CloseCode.BAD_REQUEST, exc.message)
        except asyncio.CancelledError:
            # The client went away (Quart cancels the handler on disconnect).
            engine.close_now(session, code, reason)
            writer.cancel()
            raise
        # Closing on our side: let the writer deliver the close frame, then end.
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(writer, timeout=5)
        engine.close_now(session, session.close_code or code, session.close_reason)

    async def _write(self, socket: Any) -> None:
        session, clock = self.session, self.engine.clock
        try:
            while True:
                await self.wait_due()
                for _, frame in session.take():
                    if frame.text.startswith("[9,"):
                        await socket.close(session.close_code or 1000, session.close_reason[:120])
                        return
                    await socket.send(frame.ws)
                session.last_sent = clock()
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket broke under us; the reader will see the disconnect
            log.debug("websocket write failed", exc_info=True)


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
                session = await engine.session_for_ticket(websocket.args.get("ticket"), "websocket")
                channel = engine.attach(session, "websocket", lambda s: WebSocketChannel(engine, s))
            except Refused as exc:
                return refused_response(exc)
            assert isinstance(channel, WebSocketChannel)
            await websocket.accept()
            await channel.serve(websocket)
            return None

        blueprint.add_websocket("/ws", "ws", ws_route)
