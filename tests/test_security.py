"""Security and bad input: every case gets its documented answer and hurts nobody else.

Every case checks the exact status or close code and JSON body; the module-level fixture keeps a
healthy control client connected throughout and checks it still works afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import typing as quart_typing
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError

from .apps import make_app
from .conftest import eventually

JSON_HEADERS = {"Content-Type": "application/json"}


class Harness:
    def __init__(self, app: Any, client: quart_typing.TestClientProtocol) -> None:
        self.app = app
        self.client = client

    @property
    def engine(self) -> Any:
        return self.app.extensions["transports"].engine

    async def negotiate(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/realtime/negotiate", json={"v": 1, **body})
        assert response.status_code == 200
        result: dict[str, Any] = await response.get_json()
        return result

    async def open_poll_session(self) -> dict[str, Any]:
        info = await self.negotiate()
        response = await self.poll(info, 0)
        assert response.status_code == 200
        return info

    async def poll(self, info: dict[str, Any], cursor: int) -> Any:
        return await self.client.get(
            f"/realtime/poll?cursor={cursor}", headers={"X-Realtime-Session": info["token"]}
        )

    async def post(self, info: dict[str, Any], body: bytes | str, **headers: str) -> Any:
        merged = {**JSON_HEADERS, "X-Realtime-Session": info["token"], **headers}
        return await self.client.post("/realtime/send", data=body, headers=merged)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    app = make_app(poll_window=0.5)
    async with app.test_app() as test_app:
        harness = Harness(app, test_app.test_client())
        # A healthy control client on WebSocket, connected throughout.
        info = await harness.negotiate()
        async with harness.client.websocket("/realtime/ws?ticket=" + info["ticket"]) as control:
            assert json.loads(await control.receive())[0] == 0
            yield harness
            await control.send('[3,1,"echo","still alive"]')
            assert json.loads(await control.receive()) == [4, 1, "ok", "still alive"]


async def error_of(response: Any) -> tuple[int, str]:
    body = await response.get_json()
    assert set(body) == {"error", "message"}
    return response.status_code, body["error"]


# --- A / B: malformed and oversized frames on WebSocket --------------------------------


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("this is not a protocol frame", 4500),
        ("{}", 4500),
        ('["3",1,"x",null]', 4500),
        ("[99]", 4500),
        ('[3,1,"bad event name",null]', 4500),
        ('[3,1,"x",' + "[" * 5000 + "]" * 5000 + "]", 4500),
        ('[3,1,"x",' + "9" * 5000 + "]", 4500),
        (b"[3,1,\xff]", 4500),
        ('[3,1,"x","' + "a" * 70_000 + '"]', 1009),
    ],
)
async def test_websocket_bad_frame_closes(h: Harness, message: str | bytes, code: int) -> None:
    """A frame that breaks the protocol closes that socket with 4500 (1009 when too big)."""
    info = await h.negotiate()
    async with h.client.websocket("/realtime/ws?ticket=" + info["ticket"]) as ws:
        await ws.receive()  # HELLO
        await ws.send(message)
        with pytest.raises(WebsocketDisconnectError) as closed:
            while True:
                await asyncio.wait_for(ws.receive(), 5)
        assert closed.value.args[0] == code
    await eventually(lambda: h.engine.session_count == 1)  # only the control client is left


async def test_websocket_frame_at_limit_accepted(h: Harness) -> None:
    """A frame of exactly the size limit is accepted."""
    info = await h.negotiate()
    limit = info["limits"]["message"]
    head = '[3,1,"echo","'
    frame = head + "a" * (limit - len(head) - 2) + '"]'
    assert len(frame) == limit
    async with h.client.websocket("/realtime/ws?ticket=" + info["ticket"]) as ws:
        await ws.receive()
        await ws.send(frame)
        reply = json.loads(await ws.receive())
        assert reply[:3] == [4, 1, "ok"]


# --- A / B / C: the POST upstream --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "bad_json"),
        (b"\xff\xfe", 400, "bad_json"),
        (b"[]", 400, "bad_frame"),
        (b'{"a":1}', 400, "bad_frame"),
        (b"[[99]]", 400, "bad_frame"),
        (b"[" + b"[" * 5000 + b"]" * 5000 + b"]", 400, "bad_json"),
        (b"[" + b",".join([b"[7]"] * 101) + b"]", 413, "too_many_frames"),
        (b'[[3,1,"x","' + b"a" * 70_000 + b'"]]', 413, "payload_too_large"),
    ],
)
async def test_post_bad_body(h: Harness, body: bytes, status: int, code: str) -> None:
    """Bad POST bodies get the documented status; the session stays usable."""
    info = await h.open_poll_session()
    assert await error_of(await h.post(info, body)) == (status, code)
    assert (await h.post(info, b'[[3,1,"echo",1]]')).status_code == 204


async def test_post_batch_is_atomic(h: Harness) -> None:
    """A batch with one bad frame applies none of its good frames."""
    info = await h.open_poll_session()
    body = b'[[3,1,"count",{"key":"atomic"}],[3,2,"count",{"key":"atomic"}],["bad"]]'
    assert await error_of(await h.post(info, body)) == (400, "bad_frame")
    await asyncio.sleep(0.05)
    assert h.app.config["APPLIED"]["atomic"] == 0


async def test_post_body_limit_before_reading(h: Harness) -> None:
    """A Content-Length over the limit is refused with 413 before the body is read."""
    info = await h.open_poll_session()
    response = await h.post(info, b"[]", **{"Content-Length": str(10 * 1024 * 1024)})
    assert await error_of(response) == (413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
async def test_post_simple_content_types_refused(h: Harness, content_type: str) -> None:
    """CORS-simple content types (the CSRF shapes) get 415 and nothing is applied."""
    info = await h.open_poll_session()
    response = await h.post(
        info, b'[[3,1,"count",{"key":"csrf"}]]', **{"Content-Type": content_type}
    )
    assert await error_of(response) == (415, "unsupported_media_type")
    assert h.app.config["APPLIED"]["csrf"] == 0


async def test_post_without_session_header(h: Harness) -> None:
    """No session token: 401."""
    response = await h.client.post("/realtime/send", data=b"[[7]]", headers=JSON_HEADERS)
    assert await error_of(response) == (401, "unauthorized")


# --- E: forged, unknown, expired, replayed credentials -----------------------------------


async def test_forged_and_unknown_tokens(h: Harness) -> None:
    """A tampered token is refused; a well-formed token for no session is unknown; no session
    is ever created by a poll."""
    info = await h.open_poll_session()
    before = h.engine.session_count
    tampered = info["token"][:-4] + ("AAAA" if not info["token"].endswith("AAAA") else "BBBB")
    assert await error_of(await h.poll({"token": tampered}, 0)) == (401, "unauthorized")
    node = info["token"].split(".")[1]
    unknown = f"v1.{node}.{'A' * 22}.{'B' * 22}"
    assert await error_of(await h.poll({"token": unknown}, 0)) == (404, "unknown_session")
    assert await error_of(await h.poll({"token": "garbage"}, 0)) == (401, "unauthorized")
    assert h.engine.session_count == before


async def test_expired_session_is_never_revived(h: Harness) -> None:
    """A long-poll session with no poll for 2 x poll_window expires; its token answers 404."""
    info = await h.open_poll_session()
    await asyncio.sleep(1.0)  # poll_window 0.5 s: idle TTL 1 s
    await eventually(lambda: h.engine.session_count == 1, timeout=5)
    assert await error_of(await h.poll(info, 0)) == (404, "unknown_session")
    assert await error_of(await h.post(info, b"[[7]]")) == (404, "unknown_session")


async def test_ticket_single_use_and_transport_binding(h: Harness) -> None:
    """A ticket is spent on first use; a session bound to one transport refuses another."""
    info = await h.negotiate()
    async with h.client.websocket("/realtime/ws?ticket=" + info["ticket"]) as ws:
        await ws.receive()
        async with h.client.websocket("/realtime/ws?ticket=" + info["ticket"]) as again:
            with pytest.raises(WebsocketResponseError) as refused:
                await again.receive()
            assert refused.value.response.status_code == 401
            assert (await refused.value.response.get_json())["error"] == "ticket_used"
        assert await error_of(await h.poll(info, 0)) == (400, "wrong_transport")
        assert await error_of(await h.post(info, b"[[7]]")) == (400, "wrong_transport")
    poll_info = await h.open_poll_session()
    response = await h.client.get("/realtime/sse?ticket=" + poll_info["ticket"])
    assert await error_of(response) == (400, "wrong_transport")  # the session is long-poll
    for bad in ("", "x", "a.b.c.d.e", info["ticket"][:-3] + "xyz"):
        async with h.client.websocket("/realtime/ws?ticket=" + bad) as ws:
            with pytest.raises(WebsocketResponseError) as refused:
                await ws.receive()
            assert refused.value.response.status_code == 401


async def test_client_cannot_choose_its_session(h: Harness) -> None:
    """Negotiate ignores any id the client proposes and mints fresh, distinct ids."""
    first = await h.negotiate(id="chosen-by-client", token="v1.x.y.z")
    second = await h.negotiate()
    assert first["id"] != "chosen-by-client" and first["token"] != "v1.x.y.z"
    assert first["id"] != second["id"] and first["token"] != second["token"]


# --- F: origin -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "http://localhost.evil.com",
        "https://localhost",
        "http://localhost:81",
    ],
)
async def test_foreign_origin_refused_everywhere(h: Harness, origin: str) -> None:
    """Every endpoint refuses a foreign Origin with 403 before doing anything."""
    bad = {"Origin": origin}
    response = await h.client.post("/realtime/negotiate", json={}, headers=bad)
    assert await error_of(response) == (403, "forbidden_origin")
    info = await h.negotiate()
    async with h.client.websocket("/realtime/ws?ticket=" + info["ticket"], headers=bad) as ws:
        with pytest.raises(WebsocketResponseError) as refused:
            await ws.receive()
        assert refused.value.response.status_code == 403
    response = await h.client.get("/realtime/sse?ticket=" + info["ticket"], headers=bad)
    assert await error_of(response) == (403, "forbidden_origin")
    poll_info = await h.open_poll_session()
    response = await h.client.get(
        "/realtime/poll?cursor=0", headers={"X-Realtime-Session": poll_info["token"], **bad}
    )
    assert await error_of(response) == (403, "forbidden_origin")
    assert await error_of(await h.post(poll_info, b'[[3,1,"count",{"key":"o"}]]', **bad)) == (
        403,
        "forbidden_origin",
    )
    assert h.app.config["APPLIED"]["o"] == 0


async def test_same_origin_accepted(h: Harness) -> None:
    """The server's own origin passes."""
    response = await h.client.post(
        "/realtime/negotiate", json={}, headers={"Origin": "http://localhost"}
    )
    assert response.status_code == 200


# --- G: method and route confusion -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/realtime/send", 405, "method_not_allowed"),
        ("PUT", "/realtime/send", 405, "method_not_allowed"),
        ("POST", "/realtime/poll", 405, "method_not_allowed"),
        ("POST", "/realtime/sse", 405, "method_not_allowed"),
        ("GET", "/realtime/negotiate", 405, "method_not_allowed"),
        ("GET", "/realtime/ws", 426, "upgrade_required"),
        ("GET", "/realtime/jsonp", 404, "not_found"),
        ("GET", "/realtime/%2e%2e/poll", 404, "not_found"),
    ],
)
async def test_wrong_method_or_route(
    h: Harness, method: str, path: str, status: int, code: str
) -> None:
    """Wrong methods and unknown paths under the prefix answer JSON, with Allow on 405."""
    response = await h.client.open(path, method=method)  # type: ignore[call-arg]
    assert await error_of(response) == (status, code)
    if status == 405:
        assert response.headers["Allow"]


async def test_websocket_upgrade_on_http_routes(h: Harness) -> None:
    """A WebSocket upgrade aimed at negotiate, SSE or poll is refused without a crash."""
    for path in ("/realtime/negotiate", "/realtime/sse", "/realtime/poll?cursor=0"):
        async with h.client.websocket(path) as ws:
            with pytest.raises((WebsocketResponseError, WebsocketDisconnectError)):
                await asyncio.wait_for(ws.receive(), 5)


@pytest.mark.parametrize("cursor", ["", "-1", "abc", "1e3", "99999999999999999999"])
async def test_bad_cursor(h: Harness, cursor: str) -> None:
    """A malformed cursor is 400 bad_request."""
    info = await h.open_poll_session()
    response = await h.client.get(
        f"/realtime/poll?cursor={cursor}", headers={"X-Realtime-Session": info["token"]}
    )
    assert await error_of(response) == (400, "bad_request")


async def test_cursor_ahead_refused(h: Harness) -> None:
    """A cursor beyond anything sent is refused (a confused or lying client)."""
    info = await h.open_poll_session()
    assert await error_of(await h.poll(info, 5)) == (400, "bad_request")


# --- H: concurrency on one session ---------------------------------------------------------


async def test_newest_poll_wins(h: Harness) -> None:
    """A second poll supersedes the held one: the older ends empty, nothing is lost or doubled."""
    info = await h.open_poll_session()
    first = asyncio.create_task(h.poll(info, 0))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(h.poll(info, 0))
    await asyncio.sleep(0.05)
    assert (await h.post(info, b'[[3,1,"echo","x"]]')).status_code == 204
    old = json.loads(await (await first).get_data())
    new = json.loads(await (await second).get_data())
    assert old == {"cursor": 0, "frames": []}
    assert new["frames"] == [[4, 1, "ok", "x"]]


async def test_concurrent_post_conflict(h: Harness) -> None:
    """A second POST while one is being applied gets 409; the first completes."""
    info = await h.open_poll_session()
    slow = asyncio.create_task(h.post(info, b'[[3,1,"count",{"key":"slow","delay":0.3}]]'))
    await asyncio.sleep(0.1)
    assert await error_of(await h.post(info, b"[[7]]")) == (409, "conflict")
    assert (await slow).status_code == 204
    assert h.app.config["APPLIED"]["slow"] == 1


async def test_second_sse_stream_conflict(h: Harness) -> None:
    """A second stream for the same SSE session is refused with 409."""
    info = await h.negotiate()
    async with h.client.request("/realtime/sse?ticket=" + info["ticket"]) as stream:
        await stream.send_complete()
        assert (await stream.receive()).startswith(b"data: [0,")
        response = await h.client.get(
            "/realtime/sse?ticket=" + info["ticket"], headers={"Last-Event-ID": "0"}
        )
        assert await error_of(response) == (409, "conflict")
        await stream.disconnect()


async def test_bad_last_event_id(h: Harness) -> None:
    """A Last-Event-ID that is not a sequence number is 400."""
    info = await h.negotiate()
    response = await h.client.get(
        "/realtime/sse?ticket=" + info["ticket"], headers={"Last-Event-ID": "not-a-number"}
    )
    assert await error_of(response) == (400, "bad_request")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"v":2}', 400, "unsupported_version"),
        (b'{"transports":["carrier-pigeon"]}', 400, "no_transport"),
        (b"{not json", 400, "bad_json"),
        (b'{"client":"x"}', 400, "bad_json"),
    ],
)
async def test_negotiate_bad_bodies(h: Harness, body: bytes, status: int, code: str) -> None:
    """Negotiate refuses bad bodies with documented codes."""
    response = await h.client.post("/realtime/negotiate", data=body, headers=JSON_HEADERS)
    assert await error_of(response) == (status, code)


async def test_negotiate_auth_refused(h: Harness) -> None:
    """on_connect refusing (Reject) answers 401 with the app's message; no session is made."""
    before = h.engine.session_count
    response = await h.client.post(
        "/realtime/negotiate", json={}, headers={"Authorization": "Bearer nope"}
    )
    assert await error_of(response) == (401, "unauthorized")
    assert h.engine.session_count == before


async def test_negotiate_form_post_refused(h: Harness) -> None:
    """A cross-site form POST shape to negotiate is refused with 415."""
    response = await h.client.post(
        "/realtime/negotiate",
        data=b"v=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert await error_of(response) == (415, "unsupported_media_type")


async def test_draining_refuses_new_sessions() -> None:
    """drain() tells connected clients 1001 and makes negotiate answer 503 with Retry-After."""
    app = make_app()
    async with app.test_app() as test_app:
        h = Harness(app, test_app.test_client())
        info = await h.negotiate()
        async with h.client.websocket("/realtime/ws?ticket=" + info["ticket"]) as ws:
            await ws.receive()
            await app.extensions["transports"].drain(timeout=0.5)
            with pytest.raises(WebsocketDisconnectError) as closed:
                await asyncio.wait_for(ws.receive(), 5)
            assert closed.value.args[0] == 1001
        response = await h.client.post("/realtime/negotiate", json={})
        assert await error_of(response) == (503, "unavailable")
        assert response.headers["Retry-After"] == "1"
