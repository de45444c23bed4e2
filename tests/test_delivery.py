"""Delivery you can count on: through a proxy that cuts connections, nothing lost, nothing doubled.

A producer on the server publishes numbered messages at a steady rate while a seeded
fault-injecting proxy (tests/faultproxy.py) cuts every client connection at random moments and
right after forwarding server responses. Every client must end with every message exactly once,
in order, and every message a client sent must be applied exactly once on the server.

No test waits a fixed time or asserts how long something took: each waits for the event itself
(with a generous bound), and "nothing more arrived" is shown by a last publication that every
client must get after all the others. Latency is printed, not asserted; the benchmark
(``python -m transports.bench``) is where speed is measured.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from typing import Any

import aiohttp
import pytest

from transports.client import Client, connect
from transports.typing import TransportName

from .apps import make_app
from .conftest import TRANSPORTS, eventually
from .faultproxy import FaultProxy
from .servers import hypercorn_server

SEED = int(os.environ.get("TRANSPORTS_FAULT_SEED", "20261129"))
MESSAGES = 600
RATE = 200.0  # publications per second
CLIENTS = 3
SENDS = 40  # messages each client sends while the cuts go on


async def drain(client: Client, into: list[Any]) -> None:
    async for message in client.messages():
        if message.topic == "numbers":
            into.append(message.data)


async def produce(app: Any, count: int, rate: float, first: int = 0) -> int:
    """Publish ``first``..``first + count - 1`` on ``numbers``, paced at ``rate`` a second."""
    realtime = app.extensions["transports"]
    start = time.monotonic()
    last = 0
    for n in range(count):
        record = await realtime.publish("numbers", "n", first + n)
        last = record.offset
        delay = start + (n + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return last


async def send_numbered(client: Client, name: str, replies: list[Any]) -> None:
    for i in range(SENDS):
        replies.append(await client.send("count", {"key": f"{name}:{i}"}, timeout=60))
        await asyncio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_exactly_once_through_random_cuts(transport: TransportName) -> None:
    """Every client gets every publication once, in order, and every send is applied once."""
    app = make_app(history_size=10_000)
    async with hypercorn_server(app) as base:
        upstream = int(base.rsplit(":", 1)[1])
        async with FaultProxy(upstream, seed=SEED, mean_life=0.5, cut_after_response=0.03) as proxy:
            clients: list[Client] = []
            for _ in range(CLIENTS):
                client = await connect(
                    proxy.url + "/realtime",
                    transports=[transport],
                    backoff=(0.02, 0.3),
                    send_timeout=60,
                    timeout=60,
                )
                clients.append(client)
            received: list[list[Any]] = [[] for _ in clients]
            drains = [
                asyncio.create_task(drain(c, got)) for c, got in zip(clients, received, strict=True)
            ]
            for client in clients:
                await client.subscribe("numbers")
            replies: list[list[Any]] = [[] for _ in clients]
            senders = [
                asyncio.create_task(send_numbered(c, f"{transport}{i}", replies[i]))
                for i, c in enumerate(clients)
            ]
            last = await produce(app, MESSAGES, RATE)
            await asyncio.gather(*senders)
            cuts = proxy.cuts
            proxy.enabled = False  # let everyone settle on a clean network
            # A last publication: once every client has it, everything before it has come (in
            # order), and a duplicate of anything before it would show.
            await app.extensions["transports"].publish("numbers", "n", MESSAGES)
            try:
                try:
                    await eventually(lambda: all(MESSAGES in got for got in received), timeout=90)
                except AssertionError:
                    for client, got in zip(clients, received, strict=True):
                        print(
                            "STUCK",
                            client.state,
                            client.transport,
                            len(got),
                            client.stats,
                            client.position("numbers"),
                            client.fallback_reason,
                        )
                    raise
            finally:
                for task in drains:
                    task.cancel()
                for client in clients:
                    await client.close()
            lost = sum(MESSAGES + 1 - len(set(got)) for got in received)
            doubled = sum(len(got) - len(set(got)) for got in received)
            reconnects = sum(c.stats["reconnects"] for c in clients)
            print(
                f"\n{transport}: {CLIENTS} clients x {MESSAGES} messages at {RATE:.0f}/s, "
                f"{cuts} cuts, {reconnects} reconnects, lost {lost}, duplicated {doubled}, "
                f"client sends {CLIENTS * SENDS}, applied twice "
                f"{sum(1 for v in app.config['APPLIED'].values() if v > 1)}"
            )
            assert cuts >= 5, "the proxy should have cut connections"
            assert last == MESSAGES
            for got in received:
                assert got == list(range(MESSAGES + 1))
            applied = app.config["APPLIED"]
            for i in range(CLIENTS):
                for n in range(SENDS):
                    assert applied[f"{transport}{i}:{n}"] == 1
                assert replies[i] == [1] * SENDS


@pytest.mark.slow
@pytest.mark.parametrize(
    ("first", "second"), [("websocket", "sse"), ("sse", "longpoll"), ("longpoll", "websocket")]
)
async def test_transport_switch_mid_stream(first: TransportName, second: TransportName) -> None:
    """Moving to another transport in the middle of a stream loses and repeats nothing.

    The producer publishes 150, waits for the switch to begin, then publishes 150 more while
    the client moves: the switch is mid-stream however fast or slow the machine is."""
    app = make_app(history_size=10_000)
    async with hypercorn_server(app) as base:
        client = await connect(base + "/realtime", transports=[first], backoff=(0.02, 0.1))
        got: list[Any] = []
        drainer = asyncio.create_task(drain(client, got))
        await client.subscribe("numbers")
        switching = asyncio.Event()

        async def around_the_switch() -> None:
            await produce(app, 150, 300.0)
            await switching.wait()
            await produce(app, 150, 300.0, first=150)

        producer = asyncio.create_task(around_the_switch())
        await eventually(lambda: len(got) >= 100, timeout=30)
        client.transports = [second]
        await client.force_reconnect()
        switching.set()
        await eventually(lambda: client.transport == second, timeout=30)
        await asyncio.wait_for(producer, 60)
        # The last one: once it is in, everything before it is (and a duplicate would show).
        await app.extensions["transports"].publish("numbers", "n", 300)
        await eventually(lambda: 300 in got, timeout=30)
        drainer.cancel()
        await client.close()
        assert got == list(range(301))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_history_too_short_says_not_recovered(transport: TransportName) -> None:
    """A gap longer than the history is reported (recovered False), never silently skipped."""
    app = make_app(history_size=5)
    realtime = app.extensions["transports"]
    async with hypercorn_server(app) as base:
        client = await connect(base + "/realtime", transports=[transport], backoff=(0.3, 0.3))
        outcomes: list[tuple[str, bool]] = []
        client.on("recovered", lambda topic, ok: outcomes.append((topic, ok)))
        await client.subscribe("numbers")
        await realtime.publish("numbers", "n", 0)
        assert (await client.next_message(5)).data == 0
        await client.force_reconnect()
        for n in range(1, 21):  # 20 more while away (no await yields to the client); 5 kept
            await realtime.publish("numbers", "n", n)
        await eventually(lambda: outcomes != [], timeout=10)
        assert outcomes == [("numbers", False)]
        position = client.position("numbers")
        assert position is not None and position.offset == 21
        await realtime.publish("numbers", "n", 21)
        assert (await client.next_message(5)).data == 21  # live again; nothing partial replayed
        await client.close()


async def stalled_consumer(base: str, transport: TransportName, topic: str) -> asyncio.StreamWriter:
    """A raw-socket client that subscribes to ``topic`` and then never reads again."""
    host, port = base.removeprefix("http://").split(":")
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/realtime/negotiate", json={}) as response:
            info = await response.json()
        reader, writer = await asyncio.open_connection(host, int(port))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if transport == "websocket":
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                f"GET /realtime/ws?ticket={info['ticket']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
            payload = f'[5,1,"{topic}",null]'.encode()
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        else:
            writer.write(
                f"GET /realtime/sse?ticket={info['ticket']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            assert b" 200 " in await reader.readuntil(b"\r\n\r\n")
            async with http.post(
                base + "/realtime/send",
                data=f'[[5,1,"{topic}",null]]'.encode(),
                headers={"Content-Type": "application/json", "X-Realtime-Session": info["token"]},
            ) as response:
                assert response.status == 204
        await writer.drain()
    return writer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_slow_consumer_is_closed_and_others_unharmed(transport: TransportName) -> None:
    """L1, L2, L4 (security catalogue): a client that stops reading is closed as slow (4008),
    and only it; the healthy clients beside it get every publication once, in order, and never
    reconnect (the 4008 and no-leak half: tests/test_security_flow.py).

    Their delivery latency (alone, beside the stalled consumer, after it was closed) is printed,
    not asserted: how fast is the benchmark's business, and a busy machine makes it anything."""
    app = make_app(outbox_max_bytes=256 * 1024, write_timeout=2.0, heartbeat=60)
    realtime = app.extensions["transports"]
    engine = realtime.engine
    published = 0

    async def publish(phase: str, pad: int) -> None:
        nonlocal published
        data = {"n": published, "phase": phase, "t": time.perf_counter(), "pad": "x" * pad}
        published += 1
        await realtime.publish("feed", "tick", data)

    async with hypercorn_server(app) as base:
        healthy = [await connect(base + "/realtime", transports=[transport]) for _ in range(3)]
        for client in healthy:
            await client.subscribe("feed")
        # (n, phase, latency ms) of every publication each healthy client got.
        received: list[list[tuple[int, str, float]]] = [[] for _ in healthy]

        async def collect(client: Client, into: list[tuple[int, str, float]]) -> None:
            async for message in client.messages():
                data = message.data
                into.append((data["n"], data["phase"], (time.perf_counter() - data["t"]) * 1000))

        collectors = [
            asyncio.create_task(collect(c, r)) for c, r in zip(healthy, received, strict=True)
        ]

        async def everyone_has_everything() -> None:
            await eventually(lambda: all(len(r) >= published for r in received), timeout=60)

        async def phase(name: str, count: int) -> None:
            for _ in range(count):
                await publish(name, 4000)
                await asyncio.sleep(0.005)
            await everyone_has_everything()

        stalled: asyncio.StreamWriter | None = None
        try:
            await phase("alone", 100)
            # A consumer that subscribes, then never reads again (its socket buffers fill up).
            stalled = await stalled_consumer(base, transport, "feed")
            await eventually(lambda: engine.hub.subscribers("feed") == 4, timeout=30)
            await phase("beside", 100)
            # Keep publishing until the stalled consumer is found out (outbox overflow or no
            # write progress for write_timeout).
            for _ in range(3000):
                if engine.stats["slow_consumers"] >= 1:
                    break
                await publish("detect", 8000)
                await asyncio.sleep(0.002)
            assert engine.stats["slow_consumers"] == 1, engine.stats
            await eventually(lambda: engine.hub.subscribers("feed") == 3, timeout=30)
            await everyone_has_everything()
            await phase("after", 50)
            for client, got in zip(healthy, received, strict=True):
                assert [n for n, _, _ in got] == list(range(published))
                assert client.state == "open"
                assert client.stats["reconnects"] == 0
        finally:
            for task in collectors:
                task.cancel()
            for client in healthy:
                await client.close()
            if stalled is not None:
                stalled.close()

    def figures(name: str) -> str:
        values = [ms for got in received for _, p, ms in got if p == name]
        return f"p50 {percentile(values, 0.5):.1f} p99 {percentile(values, 0.99):.1f}"

    print(
        f"\n{transport} delivery latency to 3 healthy clients (ms, not asserted): "
        f"alone {figures('alone')}; beside a stalled consumer {figures('beside')}; "
        f"after it was closed {figures('after')}; slow closes {engine.stats['slow_consumers']}, "
        f"write timeouts {engine.stats['write_timeouts']}"
    )
