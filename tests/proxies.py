"""Small misbehaving proxies on loopback, for the diagnose tool's and the clients' tests.

* :class:`SilentUpgradeProxy` forwards plain HTTP both ways, and of a WebSocket upgrade only
  the request head and the ``101`` answer's head: every byte after that is read and dropped,
  both ways (an antivirus or middlebox that accepts the upgrade and then holds the frames).
* :class:`IdleCutProxy` forwards everything and cuts (RST) a connection that carried no byte
  either way for ``idle`` seconds (a load balancer's or NAT's idle timeout).
* :class:`StreamBufferingProxy` forwards everything, but holds the body of an event stream
  (``text/event-stream``) and lets it go every ``every`` seconds, in one write (a buffering
  proxy that flushes when its buffer is full or a timer fires).
* :class:`FlappingUpgradeProxy` forwards everything, and cuts (RST) each WebSocket connection
  ``after`` seconds after its ``101``, while ``cutting`` is set (a middlebox that lets a
  WebSocket open and work, then kills it); plain HTTP passes untouched.
* :class:`ConnectRefusingProxy` is a forward proxy that answers ``403`` to every request,
  ``CONNECT`` included (stock squid's ``http_access deny CONNECT !SSL_ports``).

Each looks at the head of the *first* request of a connection only; the diagnose tool opens a
new connection per request. They run in the caller's event loop (``async with``), or in a
thread of their own for synchronous tests (:func:`in_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

_HEAD_LIMIT = 64 * 1024


class _Proxy:
    """A TCP server on 127.0.0.1 and a free port; subclasses handle each connection."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Any:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        # A closed writer lets go of its socket a turn of the loop later: let those turns run
        # before the caller stops this loop (else the sockets are reported unclosed when the
        # garbage collector finds them, in whatever test runs then).
        for _ in range(3):
            await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


async def _head(reader: asyncio.StreamReader) -> bytes:
    """An HTTP head, up to and including its blank line."""
    return await reader.readuntil(b"\r\n\r\n")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Any) -> None:
    while data := await reader.read(65536):
        seen()
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def _drop(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _both(*coros: Any) -> None:
    """Run the coroutines until one ends (a side closed), then stop the others."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SilentUpgradeProxy(_Proxy):
    """Forwards to ``127.0.0.1:upstream``; drops everything after a WebSocket's ``101``."""

    def __init__(self, upstream: int) -> None:
        super().__init__()
        self.upstream = upstream
        self.upgrades = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _head(reader)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        try:
            up_writer.write(head)
            await up_writer.drain()
            if b"\r\nupgrade: websocket" not in head.lower():
                await _both(_pipe(reader, up_writer, _nothing), _pipe(up_reader, writer, _nothing))
                return
            answer = await _head(up_reader)
            writer.write(answer)
            await writer.drain()
            if answer.startswith(b"HTTP/1.1 101"):
                self.upgrades += 1
                await _both(_drop(reader), _drop(up_reader))
            else:
                await _both(_pipe(reader, up_writer, _nothing), _pipe(up_reader, writer, _nothing))
        finally:
            up_writer.close()


def _nothing() -> None:
    pass


class IdleCutProxy(_Proxy):
    """Forwards to ``127.0.0.1:upstream``; cuts a connection after ``idle`` s of silence."""

    def __init__(self, upstream: int, idle: float) -> None:
        super().__init__()
        self.upstream = upstream
        self.idle = idle
        self.cuts = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        loop = asyncio.get_running_loop()
        last = loop.time()

        def seen() -> None:
            nonlocal last
            last = loop.time()

        async def watch() -> None:
            while (left := last + self.idle - loop.time()) > 0:
                await asyncio.sleep(left)
            self.cuts += 1
            _abort(writer)
            _abort(up_writer)

        try:
            await _both(_pipe(reader, up_writer, seen), _pipe(up_reader, writer, seen), watch())
        finally:
            up_writer.close()


class StreamBufferingProxy(_Proxy):
    """Forwards to ``127.0.0.1:upstream``; an event stream's body leaves every ``every`` s."""

    def __init__(self, upstream: int, every: float) -> None:
        super().__init__()
        self.upstream = upstream
        self.every = every
        self.flushes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        try:
            up = asyncio.ensure_future(_pipe(reader, up_writer, _nothing))
            try:
                answer = await _head(up_reader)
                writer.write(answer)
                await writer.drain()
                if b"text/event-stream" in answer.lower():
                    await self._held(up_reader, writer)
                else:
                    await _pipe(up_reader, writer, _nothing)
            finally:
                up.cancel()
                await asyncio.gather(up, return_exceptions=True)
        finally:
            up_writer.close()

    async def _held(self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = bytearray()

        async def fill() -> None:
            while data := await up_reader.read(65536):
                held.extend(data)

        async def flush() -> None:
            while True:
                await asyncio.sleep(self.every)
                if held:
                    self.flushes += 1
                    writer.write(bytes(held))
                    held.clear()
                    await writer.drain()

        await _both(fill(), flush())


class FlappingUpgradeProxy(_Proxy):
    """Forwards to ``127.0.0.1:upstream``; cuts each WebSocket ``after`` s after its ``101``
    while ``cutting`` (set it to False to "fix" the path: later upgrades live on)."""

    def __init__(self, upstream: int, after: float) -> None:
        super().__init__()
        self.upstream = upstream
        self.after = after
        self.cutting = True
        self.upgrades = 0
        self.cuts = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _head(reader)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        try:
            up_writer.write(head)
            await up_writer.drain()
            if b"\r\nupgrade: websocket" not in head.lower():
                await _both(_pipe(reader, up_writer, _nothing), _pipe(up_reader, writer, _nothing))
                return
            answer = await _head(up_reader)
            writer.write(answer)
            await writer.drain()
            pipes = (_pipe(reader, up_writer, _nothing), _pipe(up_reader, writer, _nothing))
            if not answer.startswith(b"HTTP/1.1 101"):
                await _both(*pipes)
                return
            self.upgrades += 1
            if not self.cutting:
                await _both(*pipes)
                return

            async def cut() -> None:
                await asyncio.sleep(self.after)
                self.cuts += 1
                _abort(writer)
                _abort(up_writer)

            await _both(*pipes, cut())
        finally:
            up_writer.close()


class ConnectRefusingProxy(_Proxy):
    """A forward proxy that refuses everything with ``403``; counts the CONNECTs it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.connects = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _head(reader)
        if head.startswith(b"CONNECT "):
            self.connects += 1
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()


@contextlib.contextmanager
def in_thread(proxy: _Proxy) -> Iterator[Any]:
    """Run ``proxy`` in an event loop of its own thread (for synchronous tests)."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop: asyncio.Future[None] | None = None

    async def main() -> None:
        nonlocal stop
        stop = loop.create_future()
        async with proxy:
            ready.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(5):
        raise RuntimeError("the proxy did not start")
    try:
        yield proxy
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(5)
        loop.close()
