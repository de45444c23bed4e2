"""The real-network connector, on aiohttp (one well-kept package for HTTP and WebSocket)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp

from .connector import (
    Connector,
    HTTPResponse,
    StreamResponse,
    WebSocketConnection,
    WebSocketRefused,
)

__all__ = ["AiohttpConnector"]


class _Stream(StreamResponse):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = dict(response.headers)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise OSError(str(exc)) from exc

    async def read_all(self) -> bytes:
        try:
            return await self._response.read()
        except aiohttp.ClientError as exc:
            raise OSError(str(exc)) from exc

    async def close(self) -> None:
        self._response.close()


class _Socket(WebSocketConnection):
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._code: int | None = None
        self._reason = ""

    async def send(self, message: str | bytes) -> None:
        try:
            if isinstance(message, str):
                await self._socket.send_str(message)
            else:
                await self._socket.send_bytes(message)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise OSError(str(exc)) from exc

    async def receive(self) -> str | bytes | None:
        message = await self._socket.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            return str(message.data)
        if message.type is aiohttp.WSMsgType.BINARY:
            return bytes(message.data)
        if message.type is aiohttp.WSMsgType.CLOSE:
            self._code = int(message.data or 1005)
            self._reason = str(message.extra or "")
        else:
            self._code = self._socket.close_code or 1006
        return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._socket.close(code=code, message=reason.encode("utf-8"))

    @property
    def close_code(self) -> int | None:
        return self._code if self._code is not None else self._socket.close_code

    @property
    def close_reason(self) -> str:
        return self._reason


class AiohttpConnector(Connector):
    """Talks to a server over the network with one :class:`aiohttp.ClientSession`.

    Proxy environment variables are ignored (``trust_env=False``): a test that means "direct"
    gets a direct connection.
    """

    def __init__(self, *, origin: str | None = None, limit: int = 0) -> None:
        self._origin = origin
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Origin": self._origin} if self._origin else None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, force_close=False),
                headers=headers,
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        try:
            async with self._client().request(
                method,
                url,
                headers=headers,
                data=body,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                data = await response.read()
                return HTTPResponse(response.status, dict(response.headers), data)
        except TimeoutError as exc:
            raise TimeoutError("request timed out") from exc
        except aiohttp.ClientError as exc:
            raise OSError(str(exc)) from exc

    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> StreamResponse:
        try:
            response = await self._client().get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout),
                allow_redirects=False,
            )
        except TimeoutError as exc:
            raise TimeoutError("stream timed out") from exc
        except aiohttp.ClientError as exc:
            raise OSError(str(exc)) from exc
        return _Stream(response)

    async def websocket(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> WebSocketConnection:
        try:
            socket = await self._client().ws_connect(
                url,
                headers=headers,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                autoping=True,
                max_msg_size=0,
                compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise WebSocketRefused(exc.status) from exc
        except TimeoutError as exc:
            raise TimeoutError("websocket timed out") from exc
        except aiohttp.ClientError as exc:
            raise OSError(str(exc)) from exc
        return _Socket(socket)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
