"""The Python client against what a server (or a proxy in front of it) may answer.

* limits (protocol §11): uplink batches never pass ``limits.body``; a frame over
  ``limits.message`` is refused locally, and the connection stays up;
* negotiate statuses (§3): only 408, 429, 5xx and network errors are retried, waiting at least
  ``Retry-After``; every other answer is final. ``POST /send`` and ``GET /poll`` answered 429 or
  503 are asked again after ``Retry-After`` without ending the connection (§6);
* the server's ``retry`` hint is a lower bound on every reconnect delay (§10.1);
* a well-formed frame of an unknown type is ignored (§2: later versions may add types), a
  malformed one still fails the connection.

Most cases run a real Hypercorn on 127.0.0.1 (tests/secharness.py); a request the real server
never answers the way a case needs (a 405 on negotiate, a 503 on a poll) comes from a tiny
aiohttp server or from :class:`FaultConnector`, the real connector with answers injected as a
misbehaving proxy would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from transports import ChannelClosed, ReplyError
from transports.client import Client, connect
from transports.client.aiohttp_connector import AiohttpConnector
from transports.client.connector import HTTPResponse
from transports.exceptions import NegotiationError, ProtocolError
from transports.protocol.frames import (
    OutFrame,
    UnknownFrameType,
    decode_client_frame,
    decode_server_frame,
)
from transports.typing import TransportName

from .apps import make_app
from .conftest import eventually
from .secharness import Live, live_server
from .servers import hypercorn_server

pytestmark = pytest.mark.e2e

HTTP: list[TransportName] = ["sse", "longpoll"]
ALL: list[TransportName] = ["websocket", "sse", "longpoll"]


# --- helpers -----------------------------------------------------------------------------------


@dataclass
class _Fault:
    method: str
    suffix: str
    status: int
    headers: dict[str, str]
    times: int


class FaultConnector(AiohttpConnector):
    """The real aiohttp connector, answering chosen requests itself (like a proxy would).

    ``log`` records ``(time, method, path, status)`` of every request, injected or not.
    """

    def __init__(self) -> None:
        super().__init__(origin=None)
        self.faults: list[_Fault] = []
        self.log: list[tuple[float, str, str, int]] = []

    def inject(
        self,
        method: str,
        suffix: str,
        status: int,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` ``method`` requests to a path ending in ``suffix``."""
        self.faults.append(_Fault(method, suffix, status, dict(headers or {}), times))

    def times(self, method: str, suffix: str) -> list[float]:
        return [t for t, m, path, _ in self.log if m == method and path.endswith(suffix)]

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        path = urlsplit(url).path
        now = asyncio.get_running_loop().time()
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and path.endswith(fault.suffix):
                fault.times -= 1
                self.log.append((now, method, path, fault.status))
                body = json.dumps({"error": "injected", "message": "injected"}).encode()
                return HTTPResponse(fault.status, fault.headers, body)
        response = await super().request(method, url, headers=headers, body=body, timeout=timeout)
        self.log.append((now, method, path, response.status))
        return response


@contextlib.asynccontextmanager
async def opened(
    live: Live, transport: TransportName, connector: FaultConnector | None = None, **options: Any
) -> AsyncIterator[Client]:
    """A Python client connected to ``live`` on ``transport``, closed on exit."""
    client = await connect(
        live.url, transports=[transport], connector=connector, timeout=10, **options
    )
    try:
        yield client
    finally:
        await client.close()
        if connector is not None:
            await connector.close()


@dataclass
class FakeNegotiate:
    """A tiny server whose ``POST /realtime/negotiate`` answers ``status`` every time."""

    status: int
    headers: dict[str, str]
    calls: list[float]
    url: str = ""


@contextlib.asynccontextmanager
async def fake_negotiate(
    status: int, headers: Mapping[str, str] | None = None
) -> AsyncIterator[FakeNegotiate]:
    fake = FakeNegotiate(status, dict(headers or {}), [])

    async def negotiate(request: web.Request) -> web.Response:
        await request.read()
        fake.calls.append(asyncio.get_running_loop().time())
        return web.json_response(
            {"error": "x", "message": "fake"}, status=fake.status, headers=fake.headers
        )

    app = web.Application()
    app.router.add_post("/realtime/negotiate", negotiate)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}/realtime"
    try:
        yield fake
    finally:
        await runner.cleanup()


def background_client(url: str, **options: Any) -> tuple[Client, AiohttpConnector, list[Any]]:
    """A client connecting in the background, with its ``error`` events collected."""
    connector = AiohttpConnector(origin=None)
    client = Client(url, connector, backoff=(0.01, 0.02), **options)
    errors: list[Any] = []
    client.on("error", errors.append)
    client.start()
    return client, connector, errors


def session_of(live: Live, client: Client) -> Any:
    """The server-side session of ``client``."""
    assert client.public_id is not None
    channel = live.engine.channel(client.public_id)
    assert channel is not None
    return channel.session


# --- 1. limits.body and limits.message -----------------------------------------------------------


@pytest.mark.parametrize("transport", HTTP)
async def test_uplink_batches_never_pass_limits_body(transport: TransportName) -> None:
    """Twenty 1.5 KB messages sent at once (30 KB, under ``limits.batch`` frames) against
    ``limits.body`` = 4 KiB: the client splits them into POSTs that fit, every one is
    acknowledged, the server never answers 413 and the connection is never dropped. (Batching
    by count only put them in one 30 KB POST: 413, reconnect, the same POST again, forever.)"""
    async with live_server(max_body_size=4096, max_message_size=2048, session_ttl=10) as live:
        connector = FaultConnector()
        async with opened(live, transport, connector) as client:
            session_id = client.public_id
            payloads = [f"{n:02d}" + "x" * 1500 for n in range(20)]
            replies = await asyncio.gather(*(client.send("echo", p, timeout=10) for p in payloads))
            assert replies == payloads
            posts = [status for _, m, path, status in connector.log if path.endswith("/send")]
            assert posts and all(status == 200 for status in posts), posts
            assert len(posts) >= 30_000 // 4096
            assert client.stats["reconnects"] == 0
            assert client.public_id == session_id


@pytest.mark.parametrize("transport", ALL)
async def test_frame_over_limits_message_refused_locally(transport: TransportName) -> None:
    """A message whose frame passes ``limits.message`` fails at once with
    ``ReplyError("payload_too_large")`` and is never sent: no 1009 close (terminal for the
    whole client on WebSocket), no 413 and reconnect loop (SSE, long-poll). The connection
    stays up and keeps working."""
    async with live_server(max_message_size=1024, session_ttl=10) as live:
        async with opened(live, transport) as client:
            session_id = client.public_id
            with pytest.raises(ReplyError) as info:
                await client.send("count", {"key": "big", "pad": "x" * 2000}, timeout=10)
            assert info.value.code == "payload_too_large"
            assert "1024" in str(info.value)
            assert not client._pending
            assert await client.send("echo", "still here", timeout=10) == "still here"
            assert live.applied["big"] == 0
            assert client.state == "open"
            assert client.stats["reconnects"] == 0
            assert client.public_id == session_id


@pytest.mark.parametrize(("transport", "refused"), [("websocket", False), ("sse", True)])
async def test_binary_frame_measured_as_it_travels(transport: TransportName, refused: bool) -> None:
    """900 raw bytes under ``limits.message`` = 1024: a WebSocket binary message of ~930 bytes
    fits, the same data as base64 text on SSE (~1230 bytes) does not (protocol §2.1)."""
    async with live_server(max_message_size=1024, session_ttl=10) as live:
        async with opened(live, transport) as client:
            data = bytes(range(256)) * 3 + bytes(132)
            if refused:
                with pytest.raises(ReplyError) as info:
                    await client.send("echo", data, timeout=10)
                assert info.value.code == "payload_too_large"
            else:
                assert await client.send("echo", data, timeout=10) == data
            assert await client.send("echo", 1, timeout=10) == 1
            assert client.stats["reconnects"] == 0


async def test_message_queued_before_connecting_checked_against_the_limit() -> None:
    """A message queued before any connection (the limit not known yet) is checked when the
    connection opens: the oversized one fails with ``payload_too_large``, the small one is
    delivered, and the WebSocket is not closed with 1009."""
    async with live_server(max_message_size=1024, session_ttl=10) as live:
        client = await connect(live.url, transports=["websocket"], wait=False)
        try:
            big = asyncio.ensure_future(client.send("count", {"key": "early", "pad": "x" * 2000}))
            small = asyncio.ensure_future(client.send("echo", "small"))
            with pytest.raises(ReplyError) as info:
                await big
            assert info.value.code == "payload_too_large"
            assert await small == "small"
            # A round trip after both: a 1009 close for the big one would have come before it.
            assert await client.send("echo", "after", timeout=10) == "after"
            assert client.state == "open"
            assert client.stats["reconnects"] == 0
            assert live.applied["early"] == 0
        finally:
            await client.close()


@pytest.mark.parametrize("transport", HTTP)
async def test_post_413_splits_the_batch_and_drops_only_the_refused_frame(
    transport: TransportName,
) -> None:
    """A server (or a proxy) that refuses bodies the negotiate answer allowed: on 413 the
    client sends smaller batches; a frame refused on its own fails its message with
    ``payload_too_large``; the others are delivered and the connection is never dropped."""
    async with live_server(max_body_size=4096, max_message_size=8192, session_ttl=10) as live:
        async with opened(live, transport) as client:
            connection = client._connection
            assert connection is not None
            connection.max_body = 1 << 20  # as if the negotiate answer said 1 MiB
            sends = [client.send("echo", f"{n}" + "y" * 1000, timeout=10) for n in range(10)]
            big = client.send("count", {"key": "big", "pad": "z" * 5000}, timeout=10)
            results = await asyncio.gather(*sends, big, return_exceptions=True)
            assert results[:10] == [f"{n}" + "y" * 1000 for n in range(10)]
            assert isinstance(results[10], ReplyError)
            assert results[10].code == "payload_too_large"
            assert live.applied["big"] == 0
            assert await client.send("echo", "after", timeout=10) == "after"
            assert client.stats["reconnects"] == 0


# --- 2. negotiate statuses, Retry-After ----------------------------------------------------------


async def test_negotiate_404_from_a_real_server_is_final() -> None:
    """A wrong URL prefix: the real server answers negotiate 404. The client stops at once
    with a NegotiationError instead of retrying for ever."""
    async with live_server() as live:
        client, connector, errors = background_client(live.base + "/nowhere")
        try:
            await eventually(lambda: client.state == "closed", timeout=10)
            assert len(errors) == 1 and isinstance(errors[0], NegotiationError), errors
            assert "404" in str(errors[0])
            with pytest.raises(ChannelClosed):
                await client.wait_open(1)
        finally:
            await client.close()
            await connector.close()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 415])
async def test_negotiate_final_statuses(status: int) -> None:
    """Protocol §3: every answer but 408, 429 and 5xx is final: one request, then closed with
    NegotiationError."""
    async with fake_negotiate(status) as fake:
        client, connector, errors = background_client(fake.url)
        try:
            await eventually(lambda: client.state == "closed", timeout=10)
            # Its background task has ended: nothing can ask again after this.
            await eventually(lambda: client._runner is not None and client._runner.done())
            assert len(fake.calls) == 1
            assert len(errors) == 1 and isinstance(errors[0], NegotiationError), errors
            assert str(status) in str(errors[0])
        finally:
            await client.close()
            await connector.close()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_negotiate_transient_statuses_retried(status: int) -> None:
    """408, 429 and 5xx (no Retry-After) are retried with backoff; the client keeps trying."""
    async with fake_negotiate(status) as fake:
        client, connector, errors = background_client(fake.url)
        try:
            await eventually(lambda: len(fake.calls) >= 3, timeout=10)
            assert client.state == "reconnecting"
            assert not any(isinstance(e, NegotiationError) for e in errors), errors
        finally:
            await client.close()
            await connector.close()


@pytest.mark.parametrize("status", [429, 503])
async def test_negotiate_retry_after_is_the_least_delay(status: int) -> None:
    """A negotiate answered 429 or 503 with ``Retry-After: 1`` is asked again no sooner than a
    second later, however short the client's own backoff (10-20 ms here)."""
    async with fake_negotiate(status, {"Retry-After": "1"}) as fake:
        client, connector, _ = background_client(fake.url)
        try:
            await eventually(lambda: len(fake.calls) >= 2, timeout=15)
            assert fake.calls[1] - fake.calls[0] >= 0.95, fake.calls
        finally:
            await client.close()
            await connector.close()


async def test_negotiate_rate_limited_by_a_real_server() -> None:
    """The real server's negotiate rate limit (1 a second, burst 1) answers 429 with
    ``Retry-After: 1``: the client waits that second and is in on its second attempt, instead
    of hammering the server every few milliseconds until a token frees up."""
    app = make_app(negotiate_rate=1.0, negotiate_burst=1)
    async with hypercorn_server(app) as base:
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/realtime/negotiate", json={}) as response:
                assert response.status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        client, connector, errors = background_client(base + "/realtime", transports=["sse"])
        try:
            await client.wait_open(15)
            assert loop.time() - started >= 0.9
            assert len(errors) == 1, errors
            assert "429" in str(errors[0])
        finally:
            await client.close()
            await connector.close()


@pytest.mark.parametrize("transport", HTTP)
async def test_post_send_429_from_the_rate_limit_keeps_the_session(
    transport: TransportName,
) -> None:
    """The session's rate limit answers ``POST /send`` 429 with ``Retry-After`` and applies
    nothing (protocol §6.2): the client sends the same frames again after that delay, on the
    same session, and each message is applied once. (It used to end the connection and
    renegotiate.)"""
    async with live_server(rate_limit=2.0, rate_burst=3, session_ttl=10) as live:
        connector = FaultConnector()
        async with opened(live, transport, connector) as client:
            session_id = client.public_id
            first = await asyncio.gather(
                *(client.send("count", {"key": f"a{n}"}, timeout=10) for n in range(3))
            )
            assert first == [1, 1, 1]
            assert await client.send("count", {"key": "b"}, timeout=10) == 1
            statuses = [status for _, m, p, status in connector.log if p.endswith("/send")]
            assert 429 in statuses, statuses
            limited = next(t for t, m, p, s in connector.log if p.endswith("/send") and s == 429)
            # The reply may come down before the POST's own 204 is logged.
            await eventually(
                lambda: any(t > limited for t in connector.times("POST", "/send")), timeout=10
            )
            again = next(t for t in connector.times("POST", "/send") if t > limited)
            assert again - limited >= 0.95
            assert client.stats["reconnects"] == 0
            assert client.public_id == session_id
            assert live.applied["b"] == 1


@pytest.mark.parametrize("transport", HTTP)
async def test_batch_over_the_rate_burst_still_gets_through(transport: TransportName) -> None:
    """Six frames in one POST against a burst of 3: the same batch can never pass, so after a
    second 429 the client sends smaller batches; all six arrive once, on the same session."""
    async with live_server(rate_limit=5.0, rate_burst=3, session_ttl=20) as live:
        async with opened(live, transport) as client:
            session_id = client.public_id
            results = await asyncio.gather(
                *(client.send("count", {"key": f"k{n}"}, timeout=20) for n in range(6))
            )
            assert results == [1] * 6
            assert client.stats["reconnects"] == 0
            assert client.public_id == session_id


async def test_poll_503_retry_after_is_the_least_delay() -> None:
    """A poll answered 503 with ``Retry-After: 1`` (a proxy, or the server without its
    backplane) is sent again with the same cursor after that second, on the same session."""
    async with live_server(session_ttl=10, poll_window=1.0) as live:
        connector = FaultConnector()
        async with opened(live, "longpoll", connector) as client:
            session_id = client.public_id
            connector.inject("GET", "/poll", 503, {"Retry-After": "1"})
            await eventually(lambda: any(s == 503 for *_, s in connector.log), timeout=10)
            failed = next(t for t, m, p, s in connector.log if s == 503)
            await eventually(
                lambda: any(t > failed for t in connector.times("GET", "/poll")), timeout=10
            )
            again = next(t for t in connector.times("GET", "/poll") if t > failed)
            assert again - failed >= 0.95
            assert await client.send("echo", "alive", timeout=10) == "alive"
            assert client.stats["reconnects"] == 0
            assert client.public_id == session_id


# --- 3. the server's retry hint ------------------------------------------------------------------


@pytest.mark.parametrize("code", [1006, 1001, 4000, 4008, 1012])
async def test_retry_hint_is_a_lower_bound_on_every_reconnect(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protocol §10.1: the negotiate answer's ``retry`` (600 ms here) is a lower bound under
    every reconnect delay, whatever reconnect code ended the connection; backoff jitter goes on
    top of it. (It used to apply only after 1012, 1013 and 4029.) The delay the client chose is
    checked, not how long the machine took to get there."""
    async with live_server(retry=0.6, session_ttl=10) as live:
        connector = FaultConnector()
        async with opened(live, "websocket", connector, backoff=(0.01, 0.02)) as client:
            chosen: list[float] = []
            reconnect_delay = client._reconnect_delay

            def recording(attempt: int, retry_after: float = 0.0) -> float:
                delay = reconnect_delay(attempt, retry_after)
                chosen.append(delay)
                return delay

            monkeypatch.setattr(client, "_reconnect_delay", recording)
            loop = asyncio.get_running_loop()
            ended = loop.time()
            await client.force_reconnect(code, "test")
            await eventually(
                lambda: client.stats["reconnects"] == 1 and client.state == "open", timeout=10
            )
            assert len(chosen) == 1, chosen
            # The hint, plus at most the 20 ms backoff.
            assert 0.6 <= chosen[0] <= 0.6 + 0.02, chosen
            negotiated = [t for t in connector.times("POST", "/negotiate") if t > ended]
            assert negotiated, connector.log
            assert negotiated[0] - ended >= 0.6


async def test_retry_hint_applies_after_a_failed_negotiate_too() -> None:
    """A reconnect whose negotiate fails (502, no Retry-After) waits at least ``retry`` before
    the next negotiate as well."""
    async with live_server(retry=0.6, session_ttl=10) as live:
        connector = FaultConnector()
        async with opened(live, "websocket", connector, backoff=(0.01, 0.02)) as client:
            connector.inject("POST", "/negotiate", 502)
            await client.force_reconnect(1006, "test")
            await eventually(
                lambda: client.stats["reconnects"] == 1 and client.state == "open", timeout=10
            )
            failed = next(t for t, m, p, s in connector.log if s == 502)
            after = [t for t in connector.times("POST", "/negotiate") if t > failed]
            assert after and after[0] - failed >= 0.6


# --- 4. frames of unknown types ------------------------------------------------------------------


@pytest.mark.parametrize("text", ['[42,"later",{"x":1}]', "[12]", "[-1]", '[28,1,"a",null]'])
def test_unknown_server_frame_type_is_distinct(text: str) -> None:
    """A JSON array starting with an integer type v1 does not know: UnknownFrameType (still a
    ProtocolError, so callers that catch ProtocolError are unchanged)."""
    with pytest.raises(UnknownFrameType) as info:
        decode_server_frame(text)
    assert isinstance(info.value, ProtocolError)
    assert info.value.kind == json.loads(text)[0]


@pytest.mark.parametrize(
    "text", ["[1]", '[1,"t"]', '["x"]', "[true]", "[]", "{}", "nope", '[3,1,"e",null]']
)
def test_malformed_server_frames_are_not_unknown(text: str) -> None:
    """Not an array, no integer type, a known type with missing fields, a client-only type:
    malformed, the plain ProtocolError."""
    with pytest.raises(ProtocolError) as info:
        decode_server_frame(text)
    assert not isinstance(info.value, UnknownFrameType)


@pytest.mark.parametrize("text", ["[42]", '[42,"later"]', "[12]"])
def test_server_side_decoder_unchanged_for_unknown_types(text: str) -> None:
    """What the server accepts from clients does not change: an unknown type is a protocol
    error there (4500 / 400 bad_frame), not something to ignore."""
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(text)
    assert not isinstance(info.value, UnknownFrameType)
    assert info.value.code == "bad_frame"


@pytest.mark.parametrize("transport", ALL)
async def test_unknown_frame_types_are_ignored(transport: TransportName) -> None:
    """Frames of types a later server version might add reach the client on every transport
    (text, and a binary WebSocket message): the client ignores them, keeps the connection and
    gets the MSG that follows."""
    async with live_server(session_ttl=10) as live:
        async with opened(live, transport) as client:
            session = session_of(live, client)
            session.push(OutFrame('[42,"from a later version",{"x":[1,2]}]'))
            session.push(OutFrame("[12]"))
            if transport == "websocket":
                session.push(
                    OutFrame('[43,"a","AAE="]', payload=b"\x00\x01", binary_header="[43,null]")
                )
            await live.engine.send(client.public_id or "", "direct", {"after": True})
            message = await client.next_message(timeout=10)
            assert (message.event, message.data) == ("direct", {"after": True})
            assert await client.send("echo", "ok", timeout=10) == "ok"
            assert client.stats["reconnects"] == 0
            assert client.state == "open"


@pytest.mark.parametrize("transport", ALL)
async def test_malformed_frame_still_fails_the_connection(transport: TransportName) -> None:
    """A PUB without its fields is malformed, not unknown: the client drops that connection and
    reconnects (a reconnect code, so the client itself stays usable)."""
    async with live_server(session_ttl=10, retry=0.05) as live:
        async with opened(live, transport, backoff=(0.01, 0.02)) as client:
            session_of(live, client).push(OutFrame('[1,"t"]'))
            await eventually(lambda: client.stats["reconnects"] >= 1, timeout=10)
            await client.wait_open(10)
            assert await client.send("echo", "back", timeout=10) == "back"


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_refused_subscribe_leaves_no_unretrieved_exception(
    transport: TransportName, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscribe the server refuses raises ReplyError from ``subscribe()``, and nothing else
    about it is logged later (asyncio's "Future exception was never retrieved")."""
    import gc

    async with live_server() as live:
        client = await connect(live.url, transports=[transport], timeout=10)
        try:
            with pytest.raises(ReplyError) as refused:
                await client.subscribe("private:someone")
            assert refused.value.code == "forbidden"
            await client.subscribe("open:news")  # the connection is still usable
        finally:
            await client.close()
        gc.collect()
        await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_transport_the_server_does_not_offer_is_a_recorded_fallback() -> None:
    """Asked for WebSocket first by a server that offers only SSE and long-poll, the Python
    client opens SSE and says why, in the same words as the browser client."""
    app = make_app(transports=("sse", "longpoll"))
    async with hypercorn_server(app) as base:
        client = await connect(base + "/realtime", transports=["websocket", "sse"])
        try:
            assert client.transport == "sse"
            assert client.fallback_reason == "websocket: not offered by the server"
            assert client.stats["fallbacks"][-1] == {
                "from": "websocket",
                "to": "sse",
                "reason": "websocket: not offered by the server",
            }
        finally:
            await client.close()
