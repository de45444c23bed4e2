"""Metrics (issue 16): the Prometheus exposition of a live server, scraped while Python clients
of each transport connect, send, get publications, reconnect with resume and report a
fallback; the validation of the reported fallback; the missing-extra error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from transports.client import Client, connect
from transports.client.aiohttp_connector import AiohttpConnector
from transports.client.connector import WebSocketConnection, WebSocketRefused
from transports.client.incoming import Incoming
from transports.core.metrics import DELIVERY_SAMPLE
from transports.protocol.negotiation import parse_negotiate
from transports.protocol.policy import POLICY

from .apps import make_app
from .conftest import TRANSPORTS, eventually
from .servers import hypercorn_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: aiohttp.ClientSession, base: str) -> Samples:
    """Every sample of ``/metrics``, by (name, sorted labels)."""
    async with http.get(base + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def collect(into: list[Any], message: Incoming) -> None:
    into.append(message.data)


def is_open(client: Client) -> bool:
    return client.state == "open"


class NoUpgrade(AiohttpConnector):
    """A connector whose WebSocket upgrade is refused, as behind a proxy without ``Upgrade``."""

    async def websocket(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> WebSocketConnection:
        raise WebSocketRefused(400)


async def test_scrape_a_live_server() -> None:
    assert DELIVERY_SAMPLE == 4  # the counts of timed deliveries below assume it
    app = make_app(metrics_path="/metrics", poll_window=1.0, heartbeat=1.0)
    realtime = app.extensions["transports"]
    async with hypercorn_server(app) as base, aiohttp.ClientSession() as http:
        before = await scrape(http, base)
        assert value(before, "transports_deliveries_total") == 0
        assert value(before, "transports_delivery_seconds_count") == 0

        clients: dict[str, Client] = {}
        got: dict[str, list[Any]] = {name: [] for name in TRANSPORTS}
        for name in TRANSPORTS:
            clients[name] = client = await connect(
                base + "/realtime", transports=[name], backoff=(0.02, 0.1)
            )
            await client.subscribe("news", partial(collect, got[name]))
            for n in range(3):
                assert await client.send("echo", n) == n
        for n in range(4):
            await realtime.publish("news", "n", n)
        await eventually(lambda: all(len(g) == 4 for g in got.values()), timeout=10)

        async def written() -> bool:
            samples = await scrape(http, base)
            return value(samples, "transports_delivery_seconds_count") == 3

        await eventually_async(written)
        first = await scrape(http, base)
        for name in TRANSPORTS:
            assert value(first, "transports_connections", transport=name) == 1
            assert value(first, "transports_negotiations_total", transport=name) == 1
            # a SUB and three EVENTs at least (PINGs and PONGs count too)
            assert value(first, "transports_messages_total", transport=name, direction="in") >= 4
            # the SUB reply, three replies, four publications at least
            assert value(first, "transports_messages_total", transport=name, direction="out") >= 8
        assert value(first, "transports_deliveries_total") == 12
        # one publication in DELIVERY_SAMPLE (the first of four here), on each of 3 subscribers
        assert value(first, "transports_delivery_seconds_count") == 3
        assert 0 < value(first, "transports_delivery_seconds_sum") < 3 * 5
        assert value(first, "transports_delivery_seconds_bucket", le="+Inf") == 3
        assert value(first, "transports_fallbacks_total", **{"from": "websocket"}) == 0

        # Reconnect with resume: the client subscribes again from its position.
        for client in clients.values():
            await client.force_reconnect()
        for client in clients.values():
            await eventually(partial(is_open, client), timeout=10)
        await realtime.publish("news", "n", 4)
        await eventually(lambda: all(len(g) == 5 for g in got.values()), timeout=10)

        # A client whose WebSocket upgrade is refused falls back to SSE and says so.
        connector = NoUpgrade(origin=None)
        fallen = await connect(
            base + "/realtime", transports=["websocket", "sse"], connector=connector
        )
        assert fallen.transport == "sse"
        second = await scrape(http, base)
        for name in TRANSPORTS:
            reconnects = "transports_reconnects_total"
            assert value(second, reconnects, transport=name, recovered="true") == 1
            assert value(second, reconnects, transport=name, recovered="false") == 0
        fallback = {"from": "websocket", "to": "sse", "reason": "refused"}
        assert value(second, "transports_fallbacks_total", **fallback) == 1
        assert value(second, "transports_deliveries_total") == 15
        assert value(second, "transports_delivery_seconds_count") == 6  # the fifth is timed
        assert value(second, "transports_slow_consumer_closes_total") == 0
        assert value(second, "transports_forwarded_total") == 0
        assert value(second, "transports_backplane_errors_total") == 0
        # The same numbers from Python, without Prometheus.
        assert realtime.metrics()["fallbacks"]["websocket,sse,refused"] == 1
        assert b"transports_fallbacks_total" in realtime.prometheus()

        await fallen.close()
        await connector.close()
        for client in clients.values():
            await client.close()

        async def all_closed() -> bool:
            samples = await scrape(http, base)
            return all(
                value(samples, "transports_connections", transport=name) == 0 for name in TRANSPORTS
            )

        await eventually_async(all_closed, timeout=15)


async def eventually_async(check: Any, timeout: float = 10.0) -> None:
    """Wait until the coroutine function ``check`` returns true."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"{check.__name__} still false after {timeout} s"
        await asyncio.sleep(0.05)


async def test_metrics_path_is_outside_the_origin_check() -> None:
    app = make_app(metrics_path="/ops/metrics", allowed_origins=["https://app.example"])
    async with hypercorn_server(app) as base, aiohttp.ClientSession() as http:
        headers = {"Origin": "https://evil.example"}
        async with http.get(base + "/ops/metrics", headers=headers) as response:
            assert response.status == 200
            assert "transports_connections" in await response.text()
        async with http.get(base + "/metrics") as response:
            assert response.status == 404


def body(fallback: object) -> bytes:
    import json

    return json.dumps({"v": 1, "fallback": fallback}).encode()


@pytest.mark.parametrize("reason", POLICY.fallback_reasons)
def test_a_valid_fallback_is_parsed(reason: str) -> None:
    report = {"from": "websocket", "to": "longpoll", "reason": reason}
    assert parse_negotiate(body(report)).fallback == ("websocket", "longpoll", reason)


@pytest.mark.parametrize(
    "fallback",
    [
        None,
        "websocket",
        ["websocket", "sse", "timeout"],
        {"from": "websocket", "to": "sse"},
        {"from": "websocket", "to": "sse", "reason": "cosmic rays"},
        {"from": "carrier-pigeon", "to": "sse", "reason": "timeout"},
        {"from": "sse", "to": "sse", "reason": "timeout"},
        {"from": "websocket", "to": "sse", "reason": "timeout", "extra": 1},
        {"from": 1, "to": "sse", "reason": "timeout"},
        {"from": "websocket" * 100, "to": "sse", "reason": "timeout"},
    ],
)
def test_an_invalid_fallback_is_ignored(fallback: object) -> None:
    """Untrusted input: anything but a well-formed report is dropped, the negotiate goes on."""
    assert parse_negotiate(body(fallback)).fallback is None


def test_fallback_names_must_be_known_to_the_server() -> None:
    report = {"from": "webtransport", "to": "sse", "reason": "timeout"}
    known: Sequence[str] = ("webtransport", "sse")
    assert parse_negotiate(body(report)).fallback is None
    assert parse_negotiate(body(report), known).fallback == ("webtransport", "sse", "timeout")


def test_missing_prometheus_client_names_the_extra() -> None:
    """Without prometheus-client, enabling metrics raises MissingDependency naming the extra."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None
        sys.modules["prometheus_client.core"] = None
        from quart import Quart
        from transports import MissingDependency, Realtime
        Realtime(Quart(__name__))  # off by default: no need for the package
        try:
            Realtime(Quart(__name__), metrics_path="/metrics")
        except MissingDependency as exc:
            assert exc.extra == "metrics", exc.extra
            assert "pip install 'transports[metrics]'" in str(exc), str(exc)
            print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
