"""Failures inside the server get a documented answer, never a dropped connection or silence.

Found by auditing docs/protocol.md against the code: a backplane failure while applying a
client message, a retry whose first answer was never remembered, an ``on_connect`` hook that
raises, a disconnected WebSocket's close code, CORS headers on refused requests, a lost first
long-poll response, close reasons on every transport, and settings given as strings.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest
from quart import Quart

from tests.apps import make_app
from tests.conftest import eventually
from tests.secharness import LIVE_DEFAULTS, live_server
from transports import BackplaneError, Realtime
from transports.backplanes.memory import MemoryBackplane
from transports.client import connect
from transports.protocol.frames import clip_reason
from transports.settings import Settings
from transports.typing import TransportName

TRANSPORTS: list[TransportName] = ["websocket", "sse", "longpoll"]


class FlakyBackplane(MemoryBackplane):
    """The in-memory backplane, whose reply memory can be made to fail on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_claim = False
        self.fail_store = False

    async def claim(self, key: str, ttl: float, value: str = "1") -> bool:
        if self.fail_claim and key.startswith("reply:"):
            raise BackplaneError("backplane down (test)")
        return await super().claim(key, ttl, value)

    async def store(self, key: str, value: str, ttl: float) -> None:
        if self.fail_store and key.startswith("reply:"):
            raise BackplaneError("backplane down (test)")
        await super().store(key, value, ttl)

    # Every claim and store goes through the two above, as with a shared backplane.
    def claim_now(self, key: str, ttl: float) -> bool | None:
        return None

    def store_now(self, key: str, value: str, ttl: float) -> bool:
        return False


def flaky_app() -> tuple[Quart, FlakyBackplane]:
    backplane = FlakyBackplane()
    return make_app(**{**LIVE_DEFAULTS, "backplane": backplane}), backplane


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_backplane_down_while_applying_a_message(transport: TransportName) -> None:
    """With the reply memory unreachable, a client message is answered ``unavailable`` and not
    applied (a retry could otherwise apply it twice); the connection stays open and the same
    message, sent again once the backplane is back, is applied once."""
    app, backplane = flaky_app()
    async with live_server(app) as live:
        wire = await live.wire(transport)
        backplane.fail_claim = True
        await wire.send('[3,1,"count",{"key":"k1"}]')
        reply = await wire.reply(1)
        assert reply[:3] == [4, 1, "unavailable"]
        assert app.config["APPLIED"]["k1"] == 0
        # counted, and exported as transports_backplane_errors_total (docs/operations.md)
        assert app.extensions["transports"].metrics()["backplane_errors"][""] == 1
        backplane.fail_claim = False
        await wire.send('[3,1,"count",{"key":"k1"}]')
        reply = await wire.reply(1)
        assert reply[2] == "ok"
        assert app.config["APPLIED"]["k1"] == 1
        assert wire.code is None, f"the connection ended with {wire.code}"


async def test_retry_whose_answer_was_not_remembered_is_answered() -> None:
    """A message is applied but its answer cannot be stored; its retry (same ref, within the
    window) must get an answer (``unavailable``), not silence, and is not applied again."""
    app, backplane = flaky_app()
    async with live_server(app) as live:
        wire = await live.wire("websocket")
        backplane.fail_store = True
        await wire.send('[3,7,"count",{"key":"k2"}]')
        assert (await wire.reply(7))[2] == "ok"
        await wire.send('[3,7,"count",{"key":"k2"}]')
        reply = await wire.reply(7, timeout=10)
        assert reply[:3] == [4, 7, "unavailable"]
        assert app.config["APPLIED"]["k2"] == 1
        backplane.fail_store = False


async def test_on_connect_that_raises_gets_a_json_500() -> None:
    """An exception in ``on_connect`` is the server's fault: 500 with the documented JSON body
    (never Quart's HTML error page, never the exception's text)."""
    app = Quart(__name__)
    rt = Realtime(app, secret_key=b"failure-answers-secret")

    @rt.on_connect
    async def broken(request: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    client = app.test_client()
    response = await client.post("/realtime/negotiate", json={})
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    body = await response.get_json()
    assert body["error"] == "internal_error"
    assert "hunter2" not in json.dumps(body)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_close_reaches_on_disconnect_as_a_clean_close(
    transport: TransportName,
) -> None:
    """A client that closes cleanly is reported to ``on_disconnect`` with 1000 on every
    transport: the client sends CLOSE before it goes (Hypercorn reports every WebSocket end,
    a closing handshake included, as 1006, so the close code alone cannot tell)."""
    async with live_server() as live:
        client = await connect(live.url, transports=[transport], timeout=10)
        channel_id = (await client.send("whoami", None, timeout=5))["id"]
        await client.close()
        await eventually(lambda: any(d[0] == channel_id for d in live.disconnects))
        assert [d[1] for d in live.disconnects if d[0] == channel_id] == [1000]


async def test_websocket_client_close_on_uvicorn_is_a_clean_close() -> None:
    """On an ASGI server that passes the client's close code on (uvicorn), a WebSocket client's
    clean close reaches ``on_disconnect`` as 1000 "closed by the client"; a dropped connection
    is still 1006."""
    import uvicorn

    app = make_app(**LIVE_DEFAULTS)
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=10)
        base = f"http://127.0.0.1:{port}/realtime"
        disconnects: list[tuple[str, int, str]] = app.config["DISCONNECTS"]
        client = await connect(base, transports=["websocket"], timeout=10)
        clean_id = (await client.send("whoami", None, timeout=5))["id"]
        await client.close()
        await eventually(lambda: any(d[0] == clean_id for d in disconnects))
        assert [d[1:] for d in disconnects if d[0] == clean_id] == [(1000, "closed by the client")]

        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/negotiate", json={}) as response:
                ticket = (await response.json())["ticket"]
            ws = await http.ws_connect(base.replace("http", "ws") + "/ws?ticket=" + ticket)
            hello = json.loads((await ws.receive()).data)
            transport = ws._response.connection.transport  # type: ignore[union-attr]
            assert transport is not None
            transport.abort()  # no closing handshake
            dropped_id = hello[1]["id"]
            await eventually(lambda: any(d[0] == dropped_id for d in disconnects))
            assert [d[1] for d in disconnects if d[0] == dropped_id] == [1006]
            await ws.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("path", ["/poll?cursor=0", "/send"])
async def test_refused_origin_gets_no_cors_headers(path: str) -> None:
    """A request from an origin outside the allow-list is refused with 403 and carries no
    ``Access-Control-Allow-*`` header (an allowed origin gets them, with ``Retry-After``
    exposed so that a cross-origin page can read it)."""
    async with live_server(allowed_origins=("https://app.example",)) as live:
        method = live.http.get if path.startswith("/poll") else live.http.post
        headers = {"Origin": "https://evil.example", "Content-Type": "application/json"}
        async with method(live.url + path, headers=headers, data=b"[]") as response:
            assert response.status == 403
            assert (await response.json())["error"] == "forbidden_origin"
            assert not [h for h in response.headers if h.lower().startswith("access-control-")]
        headers["Origin"] = "https://app.example"
        async with method(live.url + path, headers=headers, data=b"[]") as response:
            assert response.status in (400, 401, 404)  # no session: refused, but CORS-readable
            assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


async def test_first_poll_response_lost_still_greets() -> None:
    """The first long-poll response (HELLO) lost in transit: the next poll with cursor 0 gets
    HELLO again, so the client can still open the session."""
    async with live_server() as live:
        info = await live.negotiate(["longpoll"])
        headers = {"X-Realtime-Session": info["token"]}
        url = live.url + "/poll?cursor=0"
        async with live.http.get(url, headers=headers) as response:  # "lost": never used
            assert (await response.json())["frames"][0][0] == 0
        async with live.http.get(url, headers=headers) as response:
            body = await response.json()
        assert body["frames"] and body["frames"][0][0] == 0, body


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_close_reason_is_clipped_on_every_transport(transport: TransportName) -> None:
    """An application's long close reason reaches every transport cut the same way: 120
    characters and at most 123 UTF-8 bytes (the WebSocket close frame's room)."""
    assert clip_reason("x" * 500) == "x" * 120
    async with live_server() as live:
        if transport == "websocket":
            info = await live.negotiate(["websocket"])
            url = live.url.replace("http://", "ws://") + "/ws?ticket=" + info["ticket"]
            async with live.http.ws_connect(url) as ws:
                hello = json.loads((await ws.receive()).data)
                await close_channel(live, hello[1]["id"])
                message = await ws.receive(timeout=5)
                while message.type is aiohttp.WSMsgType.TEXT:  # frames before the close
                    message = await ws.receive(timeout=5)
                assert message.type is aiohttp.WSMsgType.CLOSE
                code, reason = message.data, message.extra
        else:
            wire = await live.wire(transport)
            await close_channel(live, wire.hello[1]["id"])
            code = await wire.closed()
            reason = next(f for f in wire.seen if isinstance(f, list) and f[0] == 9)[2]
        assert code == 4000
        assert reason == "é" * 61


async def close_channel(live: Any, channel_id: str) -> None:
    channel = next(c for c in live.realtime.channels if c.id == channel_id)
    await channel.close(4000, "é" * 300)


def test_numeric_settings_from_strings() -> None:
    """``TRANSPORTS_*`` values given as strings (as the environment gives them) are read as
    numbers; a value of the wrong kind is a ValueError at start-up, not a 500 later."""
    settings = Settings.from_config(
        {"TRANSPORTS_HEARTBEAT": "5", "TRANSPORTS_RATE_LIMIT": "200", "TRANSPORTS_MAX_DEPTH": "8"},
        {},
    )
    assert (settings.heartbeat, settings.rate_limit, settings.max_depth) == (5.0, 200.0, 8)
    for bad in ({"TRANSPORTS_HEARTBEAT": "soon"}, {"TRANSPORTS_MAX_DEPTH": "1.5"}):
        with pytest.raises(ValueError):
            Settings.from_config(bad, {})
    with pytest.raises(ValueError):
        Settings.from_config({}, {"harden_websocket_deflate": "maybe"})
