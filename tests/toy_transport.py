"""A fourth transport, added from outside the library through the two registries only.

``loopback`` carries the protocol over a WebSocket like the built-in transport, but every
message travels inside an envelope of its own (``L`` + the message), on its own route
(``/loopback``). It touches nothing in ``transports/core``, ``transports/protocol`` or
``transports/server``: a carrier and a client connection, each registered with one call.
``tests/test_toy_transport.py`` runs the channel contract suite over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from transports.carriers import REGISTRY, Carrier, Reply, Request, Socket, Upgrade, register
from transports.carriers.websocket import WebSocketChannel
from transports.client.connection import Link
from transports.client.connector import (
    Connector,
    HTTPResponse,
    StreamResponse,
    WebSocketConnection,
)
from transports.client.registry import CONNECTIONS
from transports.client.websocket import WebSocket
from transports.core.answer import Answer
from transports.core.connection import CarrierTraits
from transports.protocol.errors import Refused
from transports.protocol.session import Retention
from transports.protocol.types import TransportName

NAME = "loopback"
MARK = "L"

TRAITS = CarrierTraits(
    name=NAME, bidirectional=True, retention=Retention.NONE, must_answer_pings=True
)


def wrap(message: str | bytes) -> str | bytes:
    return MARK + message if isinstance(message, str) else MARK.encode() + message


def unwrap(message: str | bytes) -> str | bytes:
    if isinstance(message, str):
        if not message.startswith(MARK):
            raise ValueError("not a loopback envelope")
        return message[1:]
    if not message.startswith(MARK.encode()):
        raise ValueError("not a loopback envelope")
    return message[1:]


class EnvelopedSocket:
    """The server side's socket, every message in the envelope."""

    def __init__(self, socket: Socket) -> None:
        self.socket = socket

    async def receive(self) -> str | bytes:
        return unwrap(await self.socket.receive())

    async def send(self, message: str | bytes) -> None:
        await self.socket.send(wrap(message))

    async def close(self, code: int, reason: str = "") -> None:
        await self.socket.close(code, reason)


class LoopbackChannel(WebSocketChannel):
    traits = TRAITS


class LoopbackCarrier(Carrier):
    traits = TRAITS
    routes = (("WEBSOCKET", "/loopback"),)

    async def handle(self, request: Request) -> Reply:
        core = self.core
        try:
            session = await core.session_for_ticket(
                request.query.get("ticket"), TRAITS, address=request.address
            )
            channel = core.attach(session, TRAITS, lambda s: LoopbackChannel(core, s))
        except Refused as exc:
            return Answer.refused(exc)
        assert isinstance(channel, LoopbackChannel)

        async def serve(socket: Socket) -> None:
            await channel.serve(EnvelopedSocket(socket))

        return Upgrade(serve)


class EnvelopedConnection(WebSocketConnection):
    """The client side's socket, every message in the envelope."""

    def __init__(self, socket: WebSocketConnection) -> None:
        self.socket = socket

    @property
    def close_code(self) -> int | None:
        return self.socket.close_code

    @property
    def close_reason(self) -> str:
        return self.socket.close_reason

    async def receive(self) -> str | bytes | None:
        message = await self.socket.receive()
        return None if message is None else unwrap(message)

    async def send(self, message: str | bytes) -> None:
        await self.socket.send(wrap(message))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.socket.close(code, reason)


class EnvelopingConnector(Connector):
    """The client's connector, with its WebSockets in the envelope."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        return await self.inner.request(method, url, headers=headers, body=body, timeout=timeout)

    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> StreamResponse:
        return await self.inner.stream(url, headers=headers, timeout=timeout)

    async def websocket(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> WebSocketConnection:
        socket = await self.inner.websocket(url, headers=headers, timeout=timeout)
        return EnvelopedConnection(socket)

    async def close(self) -> None:
        await self.inner.close()


class Loopback(WebSocket):
    """The client's connection: the WebSocket connection's loop, on ``/loopback``, enveloped."""

    name: ClassVar[TransportName] = NAME

    def __init__(self, link: Link, info: dict[str, Any]) -> None:
        super().__init__(link, info)
        self.connector = EnvelopingConnector(self.connector)

    def url(self, name: str) -> str:
        return super().url(NAME)


def install() -> None:
    """Register the carrier and the client connection (idempotent)."""
    if NAME not in REGISTRY:
        register(LoopbackCarrier)
    CONNECTIONS.setdefault(NAME, Loopback)
