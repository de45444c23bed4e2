"""Scale-out on Redis without sticky sessions: several processes, round-robin nginx in front.

Real parts throughout: separate Hypercorn processes (and one Hypercorn with ``--workers 2``) on a
real ``redis-server``, a real nginx doing plain round-robin, the Python client on every
transport.

Waits are for the event itself, with generous bounds; "nothing more arrived" is shown by a last
publication every client must get after all the others, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from transports.client import Client, connect
from transports.typing import TransportName

from .conftest import TRANSPORTS, eventually
from .redis_server import RedisServer
from .scaleout import AppProcess, RoundRobinNginx

pytestmark = pytest.mark.slow
SECRET = "scale-out-tests-shared-secret-key"


@pytest.fixture
def prefix() -> str:
    return "s" + secrets.token_hex(4)


@pytest.fixture
def two_processes(session_redis: RedisServer, prefix: str) -> Iterator[list[AppProcess]]:
    apps: list[AppProcess] = []
    try:
        for _ in range(2):
            apps.append(AppProcess(session_redis.url, prefix, SECRET))
        yield apps
    finally:
        for app in apps:
            app.stop()


@pytest.fixture
def nginx(two_processes: list[AppProcess]) -> Iterator[RoundRobinNginx]:
    proxy = RoundRobinNginx([app.port for app in two_processes])
    try:
        yield proxy
    finally:
        proxy.stop()


@contextlib.asynccontextmanager
async def clients(base: str, per_transport: int, **options: Any) -> AsyncIterator[list[Client]]:
    opened: list[Client] = []
    try:
        for transport in TRANSPORTS:
            for _ in range(per_transport):
                opened.append(
                    await connect(base + "/realtime", transports=[transport], timeout=30, **options)
                )
        yield opened
    finally:
        for client in opened:
            await client.close()


async def post_json(http: aiohttp.ClientSession, url: str, payload: Any) -> int:
    async with http.post(url, json=payload) as response:
        await response.read()
        return response.status


async def stats(http: aiohttp.ClientSession, app: AppProcess) -> dict[str, Any]:
    async with http.get(app.url + "/stats") as response:
        result: dict[str, Any] = json.loads(await response.read())
        return result


async def collect(client: Client, topic: str, into: list[Any]) -> None:
    async for message in client.messages():
        if message.topic == topic:
            into.append(message.data)


async def publish_last(
    http: aiohttp.ClientSession, app: AppProcess, topic: str, received: list[list[Any]]
) -> None:
    """Publish ``"end"`` on ``topic`` and wait until every client has it: delivery is in order,
    so everything published before it has arrived, and a duplicate of it would have too."""
    assert await post_json(http, app.url + "/publish", {"topic": topic, "data": "end"}) == 200
    await eventually(lambda: all("end" in got for got in received), timeout=60)


async def test_broadcast_from_either_process_reaches_everyone(
    two_processes: list[AppProcess], nginx: RoundRobinNginx
) -> None:
    """Publications made on either process reach clients on both, once each, in order."""
    async with clients(nginx.url, 2) as everyone, aiohttp.ClientSession() as http:
        received: list[list[Any]] = [[] for _ in everyone]
        tasks = [
            asyncio.create_task(collect(c, "news", r))
            for c, r in zip(everyone, received, strict=True)
        ]
        for client in everyone:
            await client.subscribe("news")
        for n in range(40):
            app = two_processes[n % 2]
            assert await post_json(http, app.url + "/publish", {"topic": "news", "data": n}) == 200
        await publish_last(http, two_processes[1], "news", received)
        for task in tasks:
            task.cancel()
        for got in received:
            assert got == [*range(40), "end"]
        states = [await stats(http, app) for app in two_processes]
        assert sum(s["sessions"] for s in states) == len(everyone)


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
async def test_http_sessions_work_across_processes(
    two_processes: list[AppProcess], nginx: RoundRobinNginx, transport: TransportName
) -> None:
    """Polls and POSTs of one session alternate between processes and keep working."""
    async with aiohttp.ClientSession() as http:
        client = await connect(nginx.url + "/realtime", transports=[transport], timeout=30)
        try:
            first_session = client.public_id
            await client.subscribe("echoes")
            for n in range(30):
                assert await client.send("echo", n) == n
            assert (
                await post_json(
                    http, two_processes[0].url + "/publish", {"topic": "echoes", "data": "a"}
                )
                == 200
            )
            assert (
                await post_json(
                    http, two_processes[1].url + "/publish", {"topic": "echoes", "data": "b"}
                )
                == 200
            )
            assert [(await client.next_message(30)).data for _ in range(2)] == ["a", "b"]
            assert client.public_id == first_session
            assert client.stats["reconnects"] == 0
        finally:
            await client.close()
        counts = [(await stats(http, app))["stats"].get("forwarded", 0) for app in two_processes]
        forwarded = sum(counts)
        assert forwarded > 0, "round-robin should have sent some requests to the other process"


async def test_post_on_the_other_process_answers_with_its_replies(
    two_processes: list[AppProcess],
) -> None:
    """A POST /send that lands on the process not holding the session is forwarded there, and
    its answer comes back with the batch's replies (protocol §6.2)."""
    holder, other = two_processes
    async with aiohttp.ClientSession() as http:
        async with http.post(
            holder.url + "/realtime/negotiate", json={"transports": ["longpoll"]}
        ) as r:
            assert r.status == 200
            token = (await r.json())["token"]
        headers = {"X-Realtime-Session": token}
        async with http.get(holder.url + "/realtime/poll?cursor=0", headers=headers) as r:
            assert r.status == 200  # attaches the session on ``holder``
        async with http.post(
            other.url + "/realtime/send",
            data=b'[[3,1,"echo","across"]]',
            headers={**headers, "Content-Type": "application/json", "Accept": "application/json"},
        ) as r:
            assert r.status == 200
            assert await r.json() == {"frames": [[4, 1, "ok", "across"]]}
        counts = [(await stats(http, app))["stats"].get("forwarded", 0) for app in two_processes]
        assert counts[1] >= 1


async def test_killed_process_clients_resume_on_the_other(
    two_processes: list[AppProcess], nginx: RoundRobinNginx
) -> None:
    """A process dies (SIGKILL) mid-stream: its clients reconnect to the other and lose nothing."""
    async with (
        clients(nginx.url, 3, backoff=(0.05, 0.5)) as everyone,
        aiohttp.ClientSession() as http,
    ):
        # Kill the process holding the most sessions; publish on the other.
        held = [(await stats(http, app))["sessions"] for app in two_processes]
        victim = two_processes[held.index(max(held))]
        survivor = two_processes[1 - held.index(max(held))]
        received: list[list[Any]] = [[] for _ in everyone]
        tasks = [
            asyncio.create_task(collect(c, "numbers", r))
            for c, r in zip(everyone, received, strict=True)
        ]
        for client in everyone:
            await client.subscribe("numbers")
        victims = (await stats(http, victim))["sessions"]
        total, rate = 300, 100.0
        start = time.monotonic()
        for n in range(total):
            if n == total // 3:
                victim.kill()
            status = await post_json(
                http, survivor.url + "/publish", {"topic": "numbers", "data": n}
            )
            assert status == 200
            delay = start + (n + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await publish_last(http, survivor, "numbers", received)
        for task in tasks:
            task.cancel()
        lost = sum(total + 1 - len(set(r)) for r in received)
        doubled = sum(len(r) - len(set(r)) for r in received)
        moved = sum(c.stats["reconnects"] for c in everyone)
        print(
            f"\nkilled a process holding {victims} of {len(everyone)} sessions mid-stream: "
            f"{total} messages, {moved} reconnects, lost {lost}, duplicated {doubled}"
        )
        assert victims > 0, "the killed process should have held some sessions"
        for got in received:
            assert got == [*range(total), "end"]


async def test_one_hypercorn_with_two_workers(session_redis: RedisServer, prefix: str) -> None:
    """``hypercorn --workers 2``: connections spread over the workers; every session works."""
    app = AppProcess(session_redis.url, prefix, SECRET, workers=2)
    try:
        async with clients(app.url, 3) as everyone, aiohttp.ClientSession() as http:
            for client in everyone:
                await client.subscribe("news")
            for client in everyone:
                for n in range(10):
                    assert await client.send("echo", n) == n
            for n in range(20):
                assert (
                    await post_json(http, app.url + "/publish", {"topic": "news", "data": n}) == 200
                )
            for client in everyone:
                got = [(await client.next_message(30)).data for _ in range(20)]
                assert got == list(range(20))
                assert client.stats["reconnects"] == 0
            # A new connection each time (the kernel picks the worker that accepts it), a few at
            # once, until both workers have answered: how many it takes is up to the scheduler.
            nodes: set[str] = set()
            asked = 0

            async def ask() -> None:
                async with aiohttp.ClientSession() as fresh:
                    nodes.add((await stats(fresh, app))["node"])

            deadline = time.monotonic() + 60
            while len(nodes) < 2 and asked < 2000 and time.monotonic() < deadline:
                await asyncio.gather(*(ask() for _ in range(4)))
                asked += 4
            assert len(nodes) == 2, f"{asked} connections all reached the same worker"
            print(f"\nboth workers answered within {asked} connections")
    finally:
        app.stop()


async def test_redis_restart_during_a_stream(prefix: str) -> None:
    """Redis dies and comes back empty mid-stream: no crash, publishes fail loudly meanwhile,
    clients are told the history is gone (recovered false) and live delivery resumes."""
    redis = RedisServer()
    redis.start()
    app = AppProcess(redis.url, prefix, SECRET)
    try:
        async with (
            clients(app.url, 1, backoff=(0.1, 1.0)) as everyone,
            aiohttp.ClientSession() as http,
        ):
            outcomes: list[tuple[str, bool]] = []
            for client in everyone:
                client.on("recovered", lambda topic, ok: outcomes.append((topic, ok)))
                await client.subscribe("news")
            for n in range(5):
                assert (
                    await post_json(http, app.url + "/publish", {"topic": "news", "data": n}) == 200
                )
            for client in everyone:
                assert [(await client.next_message(30)).data for _ in range(5)] == list(range(5))
            await redis.astop()
            failed = 0
            for n in range(5, 8):
                status = await post_json(http, app.url + "/publish", {"topic": "news", "data": n})
                failed += status >= 500
            assert failed == 3, "publishing without Redis must fail, not vanish silently"
            assert (await stats(http, app))["pid"] > 0  # the server is still up
            await redis.astart()

            async def published_after_restart() -> bool:
                status = await post_json(
                    http, app.url + "/publish", {"topic": "news", "data": "after"}
                )
                return status == 200

            deadline = time.monotonic() + 60
            while not await published_after_restart():
                assert time.monotonic() < deadline, "publishing never came back"
                await asyncio.sleep(0.2)
            await eventually(lambda: len(outcomes) >= len(everyone), timeout=30)
            # Told the history is gone, a client reloads what it shows; live delivery goes on.
            assert all(ok is False for _, ok in outcomes)
            await eventually(lambda: all(c.state == "open" for c in everyone), timeout=30)
            assert (
                await post_json(http, app.url + "/publish", {"topic": "news", "data": "live"})
                == 200
            )
            for client in everyone:
                seen: list[Any] = []
                with contextlib.suppress(TimeoutError):
                    while "live" not in seen:
                        seen.append((await client.next_message(30)).data)
                assert "live" in seen
    finally:
        app.stop()
        redis.close()
