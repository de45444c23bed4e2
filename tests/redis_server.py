"""A real ``redis-server`` for tests, on 127.0.0.1 and a free port, without persistence.

:class:`RedisServer` manages one process by PID: :meth:`~RedisServer.start`,
:meth:`~RedisServer.stop` (SIGTERM, bounded wait, SIGKILL fallback), :meth:`~RedisServer.restart`
on the same port (empty: nothing is saved), :meth:`~RedisServer.flushall` and
:meth:`~RedisServer.command`. The synchronous methods suit module-scoped fixtures; the ``a``-
prefixed ones run them in a thread so an async test's event loop keeps turning meanwhile.
:func:`redis_server` is the async context manager around it. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from typing import IO

__all__ = ["RedisReplyError", "RedisServer", "Reply", "redis_available", "redis_server"]

HOST = "127.0.0.1"


def _binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def redis_available() -> bool:
    """True when a ``redis-server`` binary is installed."""
    return _binary() is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _encode(*args: str | bytes | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


Reply = str | bytes | int | None | list["Reply"]


class RedisReplyError(Exception):
    """redis-server answered with an error."""


def _read_reply(stream: IO[bytes]) -> Reply:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis-server closed the connection")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RedisReplyError(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"unexpected reply {line!r}")


class RedisServer:
    """One ``redis-server`` process on loopback.

    Args:
        port: the port to use (a free one by default); kept across restarts.
        start_timeout: seconds to wait for PING after starting.
        stop_timeout: seconds to wait after SIGTERM before SIGKILL.
    """

    def __init__(
        self, port: int | None = None, *, start_timeout: float = 5.0, stop_timeout: float = 5.0
    ) -> None:
        binary = _binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = port or _free_port()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="transports-redis-")
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- synchronous ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            return
        if self._log is None:
            self._log = open(os.path.join(self._dir, "redis.log"), "ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                self._dir,
                "--loglevel",
                "warning",
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            with contextlib.suppress(OSError):
                if self.command("PING", timeout=0.5) == "PONG":
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server by PID: SIGTERM, a bounded wait, then SIGKILL."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=self.stop_timeout)
        else:
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port. No persistence: it comes back empty."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def command(self, *args: str | bytes | int, timeout: float = 2.0) -> Reply:
        """Send one command on a new connection and return its parsed reply.

        Simple strings come back as ``str``, bulk strings as ``bytes``, integers as ``int``,
        arrays as lists; an error reply raises :class:`RedisReplyError`.
        """
        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(_encode(*args))
            with sock.makefile("rb") as stream:
                return _read_reply(stream)

    def flushall(self) -> None:
        """Delete every key."""
        self.command("FLUSHALL")

    # --- async wrappers ---------------------------------------------------------------------

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)

    async def aflushall(self) -> None:
        await asyncio.to_thread(self.flushall)

    async def acommand(self, *args: str | bytes | int, timeout: float = 2.0) -> Reply:
        return await asyncio.to_thread(self.command, *args, timeout=timeout)


@contextlib.asynccontextmanager
async def redis_server(
    port: int | None = None, *, start_timeout: float = 5.0, stop_timeout: float = 5.0
) -> AsyncIterator[RedisServer]:
    """Start a :class:`RedisServer`, yield it (``.url`` is its URL), stop it by PID."""
    server = RedisServer(port, start_timeout=start_timeout, stop_timeout=stop_timeout)
    try:
        await server.astart()
        yield server
    finally:
        await asyncio.to_thread(server.close)
