"""Fixtures shared by the suites: the contract app, served in-process or by real Hypercorn."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart

from transports.client import Client, connect
from transports.core.engine import Engine
from transports.server.testing import QuartTestConnector
from transports.typing import TransportName

from .apps import make_app
from .redis_server import RedisServer
from .servers import hypercorn_server

TRANSPORTS: list[TransportName] = ["websocket", "sse", "longpoll"]
if os.environ.get("TRANSPORTS_TOY") == "1":  # tests/test_toy_transport.py: a fourth one
    from .toy_transport import NAME, install

    install()
    TRANSPORTS.append(NAME)


@dataclass
class Server:
    """A running contract app and a way to connect Python clients to it."""

    app: Quart
    base: str
    mode: str
    connect: Callable[..., Awaitable[Client]]
    clients: list[Client] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        return self.app.extensions["transports"].engine  # type: ignore[no-any-return]

    @property
    def realtime(self) -> Any:
        return self.app.extensions["transports"]

    @property
    def applied(self) -> Any:
        return self.app.config["APPLIED"]

    async def client(self, transport: TransportName, **options: Any) -> Client:
        client = await self.connect(transport, **options)
        self.clients.append(client)
        return client


@pytest.fixture(scope="session")
def session_redis() -> Iterator[RedisServer]:
    """One real redis-server for the whole run (tests keep apart by key prefix)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["inprocess", "hypercorn", "redis"])
async def serve(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """Start the contract app (with settings) in-process, on real Hypercorn with the memory
    backplane, or on real Hypercorn with a real Redis backplane."""
    mode: str = request.param
    stack: list[Any] = []
    servers: list[Server] = []

    async def start(**settings: Any) -> Server:
        if mode == "redis":
            from transports.backplanes.redis import RedisBackplane

            redis_url = request.getfixturevalue("session_redis").url
            settings["backplane"] = RedisBackplane(
                redis_url,
                prefix="t" + secrets.token_hex(4),
                history_size=settings.get("history_size", 1000),
            )
        app = make_app(**settings)
        if mode == "inprocess":
            test_manager = app.test_app()
            test_app = await test_manager.__aenter__()
            stack.append(test_manager)
            base = "http://localhost/realtime"

            async def open_client(transport: TransportName, **options: Any) -> Client:
                connector = QuartTestConnector(test_app.test_client())
                return await connect(base, transports=[transport], connector=connector, **options)
        else:
            manager = hypercorn_server(app)
            url = await manager.__aenter__()
            stack.append(manager)
            base = url + "/realtime"

            async def open_client(transport: TransportName, **options: Any) -> Client:
                return await connect(base, transports=[transport], **options)

        server = Server(app, base, mode, open_client)
        servers.append(server)
        return server

    yield start
    for server in servers:
        for client in server.clients:
            await client.close()
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, failing the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def library_tasks() -> list[asyncio.Task[object]]:
    """Running tasks whose coroutine lives in the ``transports`` package (not the server's)."""
    tasks = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if "/transports/" in filename and "/transports/client/" not in filename:
            tasks.append(task)
    return tasks
