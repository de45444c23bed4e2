"""The security suite's harness: a live server, a control client and the no-leak baseline.

Every case of the catalogue (docs: security-and-faults.md §4) runs against
:func:`live_server`, which serves the contract app (tests/apps.py) on a real Hypercorn on
loopback, connects a **control client** (the Python client, on WebSocket) before the case, and
records the baseline: sessions, subscribed topics and the library's own asyncio tasks. When the
case ends, :meth:`Baseline.settle` waits until all three are back to that baseline, and the
control client must still answer an echo. Abandoned sessions expire by TTL: the check runs the
sweeper's pass itself with the engine's clock moved past the TTLs (see :meth:`Baseline.settle`);
the cases about expiry itself wait in real time. A case whose documented outcome is that a
session is freed *at once* (the client's CLOSE, a server close delivered) checks it first with
:meth:`Baseline.freed_now`, which holds the engine's clock still, so nothing can expire
meanwhile. The live server runs under :func:`transports.server.run.serve`, as
docs/security.md says to deploy.

:class:`Wire` speaks the protocol by hand over one transport (a WebSocket, an SSE stream plus
``POST /send``, or polls plus ``POST /send``), so a case can send any frame and see every frame
the server sends back, with the exact close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from hypercorn.config import Config
from quart import Quart

from transports.client import Client, connect
from transports.core.engine import Engine
from transports.protocol.sse import SSEParser
from transports.server.run import serve
from transports.typing import TransportName

from .apps import make_app
from .conftest import library_tasks
from .rawws import RawWebSocket

__all__ = [
    "Baseline",
    "Live",
    "LIVE_DEFAULTS",
    "ContractBroken",
    "Wire",
    "expect",
    "live_server",
    "raw_request",
]

LIVE_DEFAULTS: dict[str, Any] = {
    "session_ttl": 0.5,
    "poll_window": 1.0,
    "ticket_ttl": 2.0,
}
"""Settings every live server gets unless a case overrides them: abandoned sessions go fast."""


class ContractBroken(AssertionError):
    """A documented outcome (status, close code, "never applied") did not happen.

    Cases whose documented outcome a known bug breaks are marked
    ``xfail(strict=True, raises=ContractBroken)``: every other assertion of the case (the
    process is alive, nobody else is hurt, the baseline returns) still fails the test for real,
    and the day the bug is fixed the case passes and strict xfail reports it.
    """


def expect(condition: bool, message: str) -> None:
    """Assert a documented outcome (raises :class:`ContractBroken`)."""
    if not condition:
        raise ContractBroken(message)


@dataclass
class Baseline:
    """What the server held before a case: sessions, topics and library tasks."""

    engine: Engine
    sessions: int
    topics: int
    tasks: int

    @classmethod
    def take(cls, engine: Engine) -> Baseline:
        return cls(engine, engine.session_count, engine.hub.topic_count, len(library_tasks()))

    def now(self) -> tuple[int, int, int]:
        engine = self.engine
        return engine.session_count, engine.hub.topic_count, len(library_tasks())

    async def settle(self, timeout: float = 6.0) -> None:
        """Wait until sessions, topics and library tasks are back to the baseline.

        Sessions a client abandoned (no CLOSE, no poll) go when their idle TTL passes. After a
        short real wait, the sweep runs with the engine's clock moved past every TTL (the
        engine takes an injectable clock for this), so the check costs no TTL-long sleeps: a
        session still there after that, or any extra topic or task, is a leak. Because it
        expires sessions, a pass here says nothing about a session being freed *at once*: use
        :meth:`freed_now` for that, before any settling.
        """
        engine = self.engine
        loop = asyncio.get_running_loop()
        started = loop.time()
        real_clock = engine.clock
        horizon = max(engine.settings.idle_ttl, 5.0) + 1.0

        def sweep() -> None:
            if loop.time() - started < 0.05:
                engine.sweep()
                return
            engine.clock = lambda: real_clock() + horizon
            try:
                engine.sweep()
            finally:
                engine.clock = real_clock

        await self._wait(timeout, sweep)

    async def freed_now(self, timeout: float = 5.0) -> None:
        """Wait until sessions, topics and library tasks are back to the baseline **without
        anything expiring**: the engine's clock is held still (at the moment of the call) for
        the wait, so neither an idle TTL nor a closing session's grace period can pass, and
        the wait is in real time, up to a generous ``timeout``.

        What goes meanwhile went because of what the case did (a CLOSE from the client, a
        WebSocket that ended, a server close delivered on a poll), never by expiry. A session
        that only an expiry would free fails this, however long ``timeout`` is.
        """
        engine = self.engine
        real_clock = engine.clock
        frozen = real_clock()
        engine.clock = lambda: frozen
        try:
            await self._wait(timeout, lambda: None)
        finally:
            engine.clock = real_clock

    async def _wait(self, timeout: float, sweep: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        want = (self.sessions, self.topics, self.tasks)
        while True:
            sweep()
            if self.now() == want:
                return
            if loop.time() - started > timeout:
                names = sorted(t.get_name() for t in library_tasks())
                raise AssertionError(
                    f"no return to baseline: (sessions, topics, tasks) {self.now()} != {want}; "
                    f"library tasks {names}"
                )
            await asyncio.sleep(0.02)


@dataclass
class Live:
    """A contract app served by Hypercorn on 127.0.0.1, with a control client connected."""

    app: Quart
    base: str
    http: aiohttp.ClientSession
    control: Client
    baseline: Baseline
    wires: list[Wire] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.base.removeprefix("http://").split(":")[0]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        """The extension's URL prefix."""
        return self.base + "/realtime"

    @property
    def realtime(self) -> Any:
        return self.app.extensions["transports"]

    @property
    def engine(self) -> Engine:
        engine: Engine = self.realtime.engine
        return engine

    @property
    def applied(self) -> Any:
        return self.app.config["APPLIED"]

    @property
    def disconnects(self) -> list[tuple[str, int, str]]:
        result: list[tuple[str, int, str]] = self.app.config["DISCONNECTS"]
        return result

    async def negotiate(
        self,
        transports: list[str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **body: Any,
    ) -> dict[str, Any]:
        """POST /negotiate; the JSON answer (asserting 200)."""
        if transports is not None:
            body["transports"] = transports
        async with self.http.post(self.url + "/negotiate", json=body, headers=headers) as r:
            assert r.status == 200, (r.status, await r.text())
            result: dict[str, Any] = await r.json()
            return result

    async def wire(
        self,
        transport: TransportName,
        *,
        headers: Mapping[str, str] | None = None,
        client: str | None = None,
    ) -> Wire:
        """A new session on ``transport``, spoken by hand (HELLO already read); ``headers``
        go to negotiate and to the transport's requests, ``client`` is the retry key."""
        wire = await Wire.open(self, transport, headers=headers, client=client)
        self.wires.append(wire)
        return wire

    async def raw_ws(
        self,
        ticket: str | None = None,
        *,
        deflate: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> RawWebSocket:
        """A raw WebSocket upgrade to /realtime/ws (negotiating a ticket unless given)."""
        if ticket is None:
            ticket = (await self.negotiate(["websocket"]))["ticket"]
        path = "/realtime/ws" + ("" if ticket == "" else "?ticket=" + ticket)
        return await RawWebSocket.connect(
            self.host, self.port, path, headers=dict(headers or {}), deflate=deflate
        )

    async def raw(self, data: bytes, wait: float = 3.0, linger: float = 0.0) -> bytes:
        """Send raw bytes on a new connection and read the answer (see :func:`raw_request`)."""
        return await raw_request(self.host, self.port, data, wait, linger)

    async def check_alive(self) -> None:
        """The server still serves: the control client echoes, a new negotiate works."""
        assert await self.control.send("echo", "alive?", timeout=5) == "alive?"
        await self.negotiate(["websocket"])


def _complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole HTTP response: one with a ``Content-Length`` body, or a
    204 or 304 (which have no body)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head[9:12] in (b"204", b"304"):
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


async def raw_request(
    host: str, port: int, data: bytes, wait: float = 3.0, linger: float = 0.0
) -> bytes:
    """Write ``data`` on a fresh TCP connection and read the answer.

    Reads until the server closes (the result then ends with ``<EOF>``, or ``<RST>`` for a
    reset), or until nothing more arrives for ``wait`` seconds (the result then ends with
    ``<OPEN>``). Once a whole response is in, it returns at once, or with ``linger`` it waits
    that long to see whether the server closes the connection.
    """
    reader, writer = await asyncio.open_connection(host, port)
    out = b""
    try:
        writer.write(data)
        await writer.drain()
        while True:
            complete = _complete(out)
            if complete and not linger:
                return out
            try:
                chunk = await asyncio.wait_for(reader.read(65536), linger if complete else wait)
            except TimeoutError:
                return out + b"<OPEN>"
            if not chunk:
                return out + b"<EOF>"
            out += chunk
    except (ConnectionResetError, BrokenPipeError):
        return out + b"<RST>"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


@contextlib.asynccontextmanager
async def library_server(app: Quart, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` as the docs say to deploy it: :func:`transports.server.run.serve` (which
    drains realtime clients on shutdown and bounds Hypercorn's WebSocket assembly to the frame
    limit), on 127.0.0.1 and a free port; yield the base URL. ``config`` sets Hypercorn
    ``Config`` attributes (``accesslog``...)."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    hconfig = Config()
    hconfig.bind = [f"fd://{sock.fileno()}"]
    hconfig.accesslog = None
    hconfig.errorlog = None
    hconfig.graceful_timeout = 1
    for key, value in config.items():
        setattr(hconfig, key, value)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, hconfig, shutdown_trigger=stop.wait, drain_timeout=1))
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        sock.detach()  # Hypercorn owns and closed the fd


@contextlib.asynccontextmanager
async def live_server(
    app: Quart | None = None, *, hypercorn: Mapping[str, Any] | None = None, **settings: Any
) -> AsyncIterator[Live]:
    """Serve ``app`` (default: ``make_app(**LIVE_DEFAULTS, **settings)``) with
    :func:`library_server`, with a control client connected; ``hypercorn`` sets Hypercorn
    config attributes.

    On exit (also after a failed case): close the case's wires, then require the baseline and a
    working control client.
    """
    if app is None:
        app = make_app(**{**LIVE_DEFAULTS, **settings})
    async with library_server(app, **(hypercorn or {})) as base:
        async with aiohttp.ClientSession() as http:
            control = await connect(base + "/realtime", transports=["websocket"], timeout=10)
            try:
                assert await control.send("echo", "ready", timeout=5) == "ready"
                engine: Engine = app.extensions["transports"].engine
                await asyncio.sleep(0.05)
                live = Live(app, base, http, control, Baseline.take(engine))
                yield live
                for wire in live.wires:
                    await wire.close()
                await live.baseline.settle()
                assert control.state == "open", control.state
                await live.check_alive()
                await live.baseline.settle()
            finally:
                await control.close()


# --- speaking the protocol by hand ------------------------------------------------------------


class Wire:
    """One session spoken by hand over one transport.

    ``frames`` receives every frame the server sends (decoded JSON arrays; a binary WebSocket
    message becomes ``(header list, raw bytes)``), ``code`` the close code once the server ends
    the session (the WebSocket close code, or the code of the CLOSE frame on SSE/long-poll).
    """

    def __init__(self, live: Live, transport: TransportName, info: dict[str, Any]) -> None:
        self.live = live
        self.transport = transport
        self.info = info
        self.token: str = info["token"]
        self.frames: asyncio.Queue[Any] = asyncio.Queue()
        self.seen: list[Any] = []
        self.code: int | None = None
        self.ended = asyncio.Event()
        self.hello: Any = None
        self.cursor = 0
        self.sse_ids: list[int] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        live: Live,
        transport: TransportName,
        *,
        headers: Mapping[str, str] | None = None,
        client: str | None = None,
    ) -> Wire:
        body = {} if client is None else {"client": client}
        info = await live.negotiate([transport], headers=headers, **body)
        wire = cls(live, transport, info)
        await wire._start(headers)
        wire.hello = await wire.recv()
        assert wire.hello[0] == 0, wire.hello
        return wire

    async def _start(self, headers: Mapping[str, str] | None) -> None:
        live = self.live
        if self.transport == "websocket":
            url = live.url.replace("http://", "ws://") + "/ws?ticket=" + self.info["ticket"]
            self._ws = await live.http.ws_connect(url, headers=headers, max_msg_size=0)
            self._reader = asyncio.create_task(self._read_ws(self._ws))
        elif self.transport == "sse":
            response = await live.http.get(
                live.url + "/sse?ticket=" + self.info["ticket"],
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            )
            assert response.status == 200, response.status
            self._reader = asyncio.create_task(self._read_sse(response))
        else:
            self._reader = asyncio.create_task(self._poll_loop())

    async def _read_ws(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._got(json.loads(message.data))
                elif message.type == aiohttp.WSMsgType.BINARY:
                    head, _, raw = bytes(message.data).partition(b"\x00")
                    self._got((json.loads(head), raw))
        finally:
            self._end(ws.close_code if ws.close_code is not None else 1006)

    async def _read_sse(self, response: aiohttp.ClientResponse) -> None:
        parser = SSEParser()
        try:
            async for chunk in response.content.iter_any():
                for event in parser.feed(chunk):
                    if event.last_event_id:
                        self.sse_ids.append(int(event.last_event_id))
                    self._got(json.loads(event.data))
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            response.close()
            self._end(self.code if self.code is not None else 1006)

    async def _poll_loop(self) -> None:
        live = self.live
        greeted = False
        try:
            while self.code is None and not self._closed:
                async with live.http.get(
                    live.url + f"/poll?cursor={self.cursor}",
                    headers={"X-Realtime-Session": self.token},
                ) as response:
                    if response.status != 200:
                        self._end(4004 if response.status == 404 else 1006)
                        return
                    body = await response.json()
                self.cursor = body["cursor"]
                for frame in body["frames"]:
                    if frame[0] == 0 and greeted:
                        continue  # HELLO opens every answer to cursor 0 (protocol §6.1)
                    greeted = greeted or frame[0] == 0
                    self._got(frame)
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            self._end(self.code if self.code is not None else 1006)

    def _got(self, frame: Any) -> None:
        self.seen.append(frame)
        if isinstance(frame, list) and frame and frame[0] == 9 and self.code is None:
            self.code = int(frame[1])
        self.frames.put_nowait(frame)

    def _end(self, code: int) -> None:
        if self.code is None:
            self.code = code
        self.ended.set()

    # --- talking ---------------------------------------------------------------------------

    async def send(self, *frames: str) -> int:
        """Send text frames: one WebSocket message each, or one ``POST /send`` batch.

        Returns the POST status (0 on WebSocket)."""
        if self._ws is not None:
            for frame in frames:
                await self._ws.send_str(frame)
            return 0
        status, _ = await self.post(("[" + ",".join(frames) + "]").encode())
        return status

    async def send_bytes(self, data: bytes) -> None:
        """A binary WebSocket message."""
        assert self._ws is not None
        await self._ws.send_bytes(data)

    async def post(
        self, body: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, aiohttp.ClientResponse]:
        """``POST /send`` with this session's token; ``(status, response)`` (body read)."""
        merged = {"Content-Type": "application/json", "X-Realtime-Session": self.token}
        merged.update(headers or {})
        async with self.live.http.post(
            self.live.url + "/send", data=body, headers=merged
        ) as response:
            await response.read()
            return response.status, response

    async def recv(self, timeout: float = 5.0, *, pings: bool = False) -> Any:
        """The next frame (skipping PING/PONG unless ``pings``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await asyncio.wait_for(self.frames.get(), max(0.01, deadline - loop.time()))
            if not pings and isinstance(frame, list) and frame and frame[0] in (7, 8):
                continue
            return frame

    async def reply(self, ref: int | str, timeout: float = 5.0) -> list[Any]:
        """The REPLY with ``ref`` (other frames stay in :attr:`seen`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - loop.time()))
            head = frame[0] if isinstance(frame, tuple) else frame
            if head[0] in (4, 20) and head[1] == ref:
                return list(head) if not isinstance(frame, tuple) else [*head, frame[1]]

    async def closed(self, timeout: float = 5.0) -> int | None:
        """The close code once the server ends the session (None if still open)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                if self.transport == "websocket":
                    await self.ended.wait()
                else:
                    while self.code is None:
                        await asyncio.sleep(0.02)
        return self.code

    async def echo(self, ref: int, value: Any = "ok?") -> None:
        """Ask the echo handler and require its answer: the session is still usable."""
        await self.send(json.dumps([3, ref, "echo", value]))
        assert await self.reply(ref) == [4, ref, "ok", value]

    async def close(self) -> None:
        """Leave (CLOSE frame on SSE/long-poll, a close handshake on WebSocket)."""
        if self._closed:
            return
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 3)
        elif self.code is None:
            with contextlib.suppress(Exception):
                await self.post(b'[[9,1000,"bye"]]')
        if self._reader is not None:
            if self.transport != "websocket":
                self._reader.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._reader, 3)
