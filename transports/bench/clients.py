"""Load generators: one connection of each configuration, behind one small interface.

* ``websocket``, ``sse``, ``longpoll``, ``auto``: the library's public Python client
  (:func:`transports.client.connect`; ``auto`` lets it negotiate WebSocket -> SSE -> long-poll);
* ``raw-ws``, ``raw-sse``: aiohttp against the bare Quart routes (the ceiling);
* ``thin-ws``: the library's server through protocol v1 spoken by a bare aiohttp WebSocket (no
  client library: what the server costs, measured as the ceiling is, with the same client);
* ``sio-ws``, ``sio-polling``, ``sio-auto``: python-socketio's own ``socketio.AsyncClient``
  (the peer's public client; ``sio-auto`` is its default, polling then upgrade).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from transports.client import Client, connect
from transports.client.aiohttp_connector import AiohttpConnector

PAYLOAD: dict[str, Any] = {"pad": "x" * 89}
"""The echo message: 100 bytes as JSON."""
PAYLOAD_TEXT = json.dumps(PAYLOAD)

LIBRARY = ("websocket", "sse", "longpoll")
RAW = ("raw-ws", "raw-sse", "raw-http")
FLOOR = ("asgi-ws", "asgi-http")
"""A bare ASGI app on the same server, no framework: what the server itself costs."""
PEER = ("sio-ws", "sio-polling")
BIDIRECTIONAL = ("raw-ws", "raw-http", *FLOOR, "thin-ws", *LIBRARY, *PEER)
"""Configurations that can echo (raw SSE has no upstream)."""
SUBSCRIBERS = ("raw-ws", "raw-sse", "thin-ws", *LIBRARY, *PEER)
"""Configurations that can receive a server burst (a bare HTTP echo cannot)."""
APP_OF = {
    "raw-ws": "raw",
    "raw-sse": "raw",
    "raw-http": "raw",
    "asgi-ws": "asgi",
    "asgi-http": "asgi",
    "thin-ws": "realtime",
    "websocket": "realtime",
    "sse": "realtime",
    "longpoll": "realtime",
    "auto": "realtime",
    "sio-ws": "sio",
    "sio-polling": "sio",
    "sio-auto": "sio",
}


class BenchConnector(AiohttpConnector):
    """The library's aiohttp connector, optionally bound to a local source address.

    Many connections from one source address to one server port run out of ephemeral ports;
    the harness spreads them over 127.0.0.x.
    """

    def __init__(self, local_addr: str | None = None) -> None:
        super().__init__(origin=None, limit=0)
        self.local_addr = local_addr

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(self.local_addr)
        return self._session


def new_session(local_addr: str | None = None) -> aiohttp.ClientSession:
    """An aiohttp session with no connection limit, from ``local_addr`` when given."""
    connector = aiohttp.TCPConnector(
        limit=0, local_addr=(local_addr, 0) if local_addr else None, force_close=False
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)


class Unsupported(Exception):
    """A workload step a configuration cannot do (a raw SSE stream has no upstream)."""

    def __init__(self, config: str, step: str) -> None:
        super().__init__(f"{config} cannot {step}")


class Conn:
    """One benchmark connection. Subclasses implement what their configuration can do."""

    name = "conn"

    def __init__(self, base: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base = base
        self.session = session
        self.transport: str | None = None
        self.fallback: str = ""

    async def open(self, timeout: float = 30.0) -> None:
        """Connect (for subscribers: also subscribe to the fan-out group)."""
        raise Unsupported(self.name, "open")

    async def echo(self) -> None:
        """One round trip of the 100-byte payload."""
        raise Unsupported(self.name, "echo")

    async def pipelined(self, n: int, window: int) -> None:
        """``n`` echoes with ``window`` in flight."""
        sem = asyncio.Semaphore(window)

        async def one() -> None:
            async with sem:
                await self.echo()

        await asyncio.gather(*(one() for _ in range(n)))

    async def up(self, n: int, window: int) -> None:
        """Send ``n`` 100-byte messages to the server (acknowledged where the API does)."""
        raise Unsupported(self.name, "up")

    async def subscribe(self) -> None:
        """Join the fan-out group (topic / room / raw subscriber stream)."""
        raise Unsupported(self.name, "subscribe")

    async def next_message(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message of the fan-out group (its decoded data)."""
        raise Unsupported(self.name, "next_message")

    async def close(self) -> None:
        raise Unsupported(self.name, "close")


class LibraryConn(Conn):
    """The library's Python client."""

    def __init__(
        self,
        base: str,
        transports: Sequence[str],
        session: aiohttp.ClientSession | None = None,
        connector: AiohttpConnector | None = None,
    ) -> None:
        super().__init__(base, session)
        self.transports = list(transports)
        self.connector = connector
        self.client: Client | None = None

    async def open(self, timeout: float = 30.0) -> None:
        self.client = await connect(
            self.base + "/realtime",
            transports=self.transports,
            connector=self.connector,
            timeout=timeout,
            send_timeout=120,
        )
        self.transport = self.client.transport
        self.fallback = self.client.fallback_reason

    def _c(self) -> Client:
        assert self.client is not None
        return self.client

    async def echo(self) -> None:
        await self._c().send("echo", PAYLOAD)

    async def up(self, n: int, window: int) -> None:
        client = self._c()
        sem = asyncio.Semaphore(window)

        async def one() -> None:
            async with sem:
                await client.send("sink", PAYLOAD)

        await asyncio.gather(*(one() for _ in range(n)))

    async def subscribe(self) -> None:
        await self._c().subscribe("bench")

    async def next_message(self, timeout: float | None = None) -> dict[str, Any]:
        message = await self._c().next_message(timeout)
        data: Any = message.data
        return data  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class RawWSConn(Conn):
    """aiohttp WebSocket against the bare Quart routes (or, with ``path="/asgi/ws"``, the bare
    ASGI app's; the sink is beside the path)."""

    ws: aiohttp.ClientWebSocketResponse

    def __init__(
        self, base: str, session: aiohttp.ClientSession | None = None, path: str = "/raw/ws"
    ) -> None:
        super().__init__(base, session)
        self.path = path
        self.prefix = path.rsplit("/", 1)[0]
        self.own = session is None
        self.transport = "websocket"

    async def open(self, timeout: float = 30.0) -> None:
        if self.session is None:
            self.session = new_session()
        url = self.base.replace("http", "ws", 1) + self.path
        self.ws = await self.session.ws_connect(
            url, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0), max_msg_size=0
        )
        if self.path == "/raw/ws-sub":
            async with asyncio.timeout(timeout):
                await self._receive()  # hello

    async def _receive(self) -> str:
        message = await self.ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise OSError(f"raw websocket ended: {message.type!r}")
        return str(message.data)

    async def echo(self) -> None:
        await self.ws.send_str(PAYLOAD_TEXT)
        await self._receive()

    async def pipelined(self, n: int, window: int) -> None:
        sent = received = 0
        while sent < min(window, n):
            await self.ws.send_str(PAYLOAD_TEXT)
            sent += 1
        while received < n:
            await self._receive()
            received += 1
            if sent < n:
                await self.ws.send_str(PAYLOAD_TEXT)
                sent += 1

    async def up(self, n: int, window: int) -> None:
        assert self.session is not None
        url = self.base.replace("http", "ws", 1) + f"{self.prefix}/sink?n={n}"
        async with self.session.ws_connect(url) as ws:
            for _ in range(n):
                await ws.send_str(PAYLOAD_TEXT)
            message = await ws.receive()
            if message.data != "done":
                raise OSError("raw sink did not finish")

    async def subscribe(self) -> None:
        if self.path != "/raw/ws-sub":
            raise RuntimeError("open a raw subscriber with path=/raw/ws-sub")

    async def next_message(self, timeout: float | None = None) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            data: dict[str, Any] = json.loads(await self._receive())
        return data

    async def close(self) -> None:
        await self.ws.close()
        if self.own and self.session is not None:
            await self.session.close()


class ThinWSConn(Conn):
    """Protocol v1 over a bare aiohttp WebSocket: negotiate, ``/realtime/ws?ticket=``, then
    EVENT frames answered by REPLY frames, a SUB and PUB frames; PINGs answered. No retries,
    no validation beyond what the measurement needs: the library's server measured with the
    client the ceiling is measured with."""

    ws: aiohttp.ClientWebSocketResponse

    def __init__(self, base: str, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(base, session)
        self.own = session is None
        self.transport = "websocket"
        self.ref = 0
        self.echo_text = ""

    async def open(self, timeout: float = 30.0) -> None:
        if self.session is None:
            self.session = new_session()
        async with asyncio.timeout(timeout):
            async with self.session.post(
                self.base + "/realtime/negotiate",
                data=json.dumps({"v": 1, "transports": ["websocket"]}),
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status != 200:
                    raise OSError(f"negotiate answered {response.status}")
                info = await response.json()
            url = self.base.replace("http", "ws", 1) + info["urls"]["websocket"]
            self.ws = await self.session.ws_connect(
                url + "?ticket=" + info["ticket"],
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                max_msg_size=0,
            )
            hello = await self._frame()
            if hello[0] != 0:
                raise OSError(f"no HELLO: {hello!r}")

    async def _frame(self) -> list[Any]:
        while True:
            message = await self.ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise OSError(f"websocket ended: {message.type!r}")
            frame: list[Any] = json.loads(message.data)
            if frame[0] == 7:  # PING
                await self.ws.send_str("[8]")
                continue
            return frame

    def _event(self, event: str) -> str:
        self.ref += 1
        return f'[3,{self.ref},"{event}",{PAYLOAD_TEXT}]'

    async def _reply(self) -> None:
        frame = await self._frame()
        if frame[0] != 4 or frame[2] != "ok":
            raise OSError(f"unexpected frame {frame!r}"[:200])

    async def echo(self) -> None:
        await self.ws.send_str(self._event("echo"))
        await self._reply()

    async def pipelined(self, n: int, window: int, event: str = "echo") -> None:
        sent = received = 0
        while sent < min(window, n):
            await self.ws.send_str(self._event(event))
            sent += 1
        while received < n:
            await self._reply()
            received += 1
            if sent < n:
                await self.ws.send_str(self._event(event))
                sent += 1

    async def up(self, n: int, window: int) -> None:
        await self.pipelined(n, window, "sink")

    async def subscribe(self) -> None:
        self.ref += 1
        await self.ws.send_str(f'[5,{self.ref},"bench",null]')
        await self._reply()

    async def next_message(self, timeout: float | None = None) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._frame()
                if frame[0] == 1:
                    data: dict[str, Any] = frame[3]
                    return data

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.own and self.session is not None:
            await self.session.close()


class RawHTTPConn(Conn):
    """aiohttp POSTs to a bare Quart route that answers with the body (one request per
    message: the floor under any transport that sends client messages as requests), or with
    ``prefix="/asgi"`` to the bare ASGI app's."""

    def __init__(
        self, base: str, session: aiohttp.ClientSession | None = None, prefix: str = "/raw"
    ) -> None:
        super().__init__(base, session)
        self.url = base + prefix + "/echo"
        self.own = session is None
        self.transport = "http"
        self.headers = {"Content-Type": "application/json"}

    async def open(self, timeout: float = 30.0) -> None:
        if self.session is None:
            self.session = new_session()

    async def echo(self) -> None:
        assert self.session is not None
        async with self.session.post(self.url, data=PAYLOAD_TEXT, headers=self.headers) as response:
            await response.read()
            if response.status != 200:
                raise OSError(f"raw echo answered {response.status}")

    async def up(self, n: int, window: int) -> None:
        await self.pipelined(n, window)

    async def close(self) -> None:
        if self.own and self.session is not None:
            await self.session.close()


class RawSSEConn(Conn):
    """aiohttp streaming GET of the bare Quart SSE route."""

    def __init__(self, base: str, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(base, session)
        self.own = session is None
        self.buffer = b""
        self.events: list[bytes] = []
        self.response: aiohttp.ClientResponse | None = None
        self.transport = "sse"

    async def open(self, timeout: float = 30.0) -> None:
        if self.session is None:
            self.session = new_session()
        async with asyncio.timeout(timeout):
            self.response = await self.session.get(
                self.base + "/raw/sse-sub", timeout=aiohttp.ClientTimeout(total=None)
            )
            if self.response.status != 200:
                raise OSError(f"raw sse answered {self.response.status}")
            await self._event()  # hello

    async def _event(self) -> bytes:
        assert self.response is not None
        while not self.events:
            chunk = await self.response.content.readany()
            if not chunk:
                raise OSError("raw sse stream ended")
            self.buffer += chunk
            *events, self.buffer = self.buffer.split(b"\r\n\r\n")
            self.events.extend(events)
        return self.events.pop(0)

    async def subscribe(self) -> None:
        return None

    async def next_message(self, timeout: float | None = None) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            event = await self._event()
        data: dict[str, Any] = json.loads(event[len(b"data: ") :])
        return data

    async def close(self) -> None:
        if self.response is not None:
            self.response.close()
        if self.own and self.session is not None:
            await self.session.close()


class SioConn(Conn):
    """python-socketio's ``AsyncClient``."""

    def __init__(
        self,
        base: str,
        transports: Sequence[str] | None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(base, session)
        import socketio

        self.transports = list(transports) if transports else None
        # python-engineio leaves the aiohttp session it creates itself open when a disconnect
        # is cut short (see close()), so the harness always hands it one and closes it.
        self.own = session is None
        self.session = session if session is not None else new_session()
        self.sio = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, http_session=self.session
        )
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_message(data: dict[str, Any]) -> None:
            self.queue.put_nowait(data)

        self.sio.on("m", on_message)

    async def open(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            await self.sio.connect(self.base, transports=self.transports, wait_timeout=timeout)
        self.transport = str(self.sio.transport())

    async def echo(self) -> None:
        await self.sio.call("echo", PAYLOAD, timeout=120)

    async def up(self, n: int, window: int) -> None:
        sem = asyncio.Semaphore(window)

        async def one() -> None:
            async with sem:
                await self.sio.call("sink", PAYLOAD, timeout=120)

        await asyncio.gather(*(one() for _ in range(n)))

    async def subscribe(self) -> None:
        await self.sio.call("join", {}, timeout=60)

    async def next_message(self, timeout: float | None = None) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def close(self) -> None:
        # On polling, disconnect() waits for the held poll to come back (up to 25 s).
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sio.disconnect(), 1.0)
        finally:
            if self.own and self.session is not None:
                await self.session.close()


def make_conn(
    config: str,
    base: str,
    *,
    subscriber: bool = False,
    session: aiohttp.ClientSession | None = None,
    connector: AiohttpConnector | None = None,
) -> Conn:
    """A connection of ``config`` to the server at ``base`` (``http://host:port``)."""
    if config in LIBRARY:
        return LibraryConn(base, [config], session, connector)
    if config == "auto":
        return LibraryConn(base, list(LIBRARY), session, connector)
    if config == "raw-ws":
        return RawWSConn(base, session, "/raw/ws-sub" if subscriber else "/raw/ws")
    if config == "raw-sse":
        return RawSSEConn(base, session)
    if config == "raw-http":
        return RawHTTPConn(base, session)
    if config == "asgi-ws":
        return RawWSConn(base, session, "/asgi/ws")
    if config == "asgi-http":
        return RawHTTPConn(base, session, "/asgi")
    if config == "thin-ws":
        return ThinWSConn(base, session)
    if config == "sio-ws":
        return SioConn(base, ["websocket"], session)
    if config == "sio-polling":
        return SioConn(base, ["polling"], session)
    if config == "sio-auto":
        return SioConn(base, None, session)
    raise ValueError(f"unknown configuration {config!r}")


async def open_many(
    factory: Callable[[int], Conn],
    count: int,
    *,
    concurrency: int = 50,
    subscribe: bool = True,
    timeout: float = 60.0,
) -> tuple[list[Conn], list[str]]:
    """Open ``count`` connections, ``concurrency`` at a time; the open ones and the errors."""
    conns: list[Conn] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with sem:
            conn = factory(index)
            try:
                await conn.open(timeout)
                if subscribe:
                    await asyncio.wait_for(conn.subscribe(), timeout)
            except Exception as exc:  # counted and reported, never raised
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
                return
            conns.append(conn)

    await asyncio.gather(*(one(i) for i in range(count)))
    return conns, errors


async def close_many(conns: list[Conn], concurrency: int = 200) -> None:
    """Close connections, bounded in time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(conn: Conn) -> None:
        async with sem:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    await asyncio.gather(*(one(c) for c in conns))


async def timed(work: Callable[[], Awaitable[None]]) -> float:
    """Seconds ``work`` took."""
    t0 = time.perf_counter()
    await work()
    return time.perf_counter() - t0
