"""Security and bad input: every case gets its documented answer and hurts nobody else.

The in-process part of the security catalogue (docs: security-and-faults.md §4); each test
names the catalogue cases it covers. Every case checks the exact status or close code and JSON
body; the fixture keeps a healthy control client connected throughout, and afterwards requires
it to still work and sessions, subscribed topics and the library's asyncio tasks to be back to
their baseline (tests/secharness.py ``Baseline``).

The rest of the catalogue, against a real Hypercorn: tests/test_security_frames.py (A, B, C on
every transport), tests/test_security_wire.py (raw sockets), tests/test_security_access.py
(D, E, F, G), tests/test_security_flow.py (H5, L, O), tests/test_security_bomb.py (B3),
tests/test_security_fuzz.py (fuzzing, G7), tests/browser/test_browser_security.py (F6).
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
from .secharness import Baseline

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
    app = make_app(poll_window=0.5, session_ttl=0.5)
    async with app.test_app() as test_app:
        harness = Harness(app, test_app.test_client())
        # A healthy control client on WebSocket, connected throughout.
        info = await harness.negotiate()
        async with harness.client.websocket("/realtime/ws?ticket=" + info["ticket"]) as control:
            assert json.loads(await control.receive())[0] == 0
            await control.send('[3,1,"echo","ready"]')
            assert json.loads(await control.receive()) == [4, 1, "ok", "ready"]
            baseline = Baseline.take(harness.engine)
            yield harness
            # No leak: sessions, topics and library tasks back to where they were.
            await baseline.settle()
            await control.send('[3,2,"echo","still alive"]')
            reply = json.loads(await control.receive())
            while reply == [7]:  # a heartbeat PING may come first
                reply = json.loads(await control.receive())
            assert reply == [4, 2, "ok", "still alive"]


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
        ('[3,1,"x",1e999]', 4500),
        ('[3,1,"x",NaN]', 4500),
        ('[3,1,"x",-Infinity]', 4500),
        (b"[3,1,\xff]", 4500),
        ('[3,1,"x","' + "a" * 70_000 + '"]', 1009),
    ],
)
async def test_websocket_bad_frame_closes(h: Harness, message: str | bytes, code: int) -> None:
    """A1 (not JSON), A2 (wrong shapes, unknown type), A9 (5000 levels deep), A10 (5000-digit
    integer, 1e999, NaN, Infinity), A5 at the application layer (invalid UTF-8 in a binary
    message) and B1 (over the limit): the frame closes that socket with 4500 (1009 when too
    big); the control client is unaffected."""
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
    """B1: a frame of exactly the size limit is accepted (limit+1 and limit+2 on every
    transport: tests/test_security_frames.py)."""
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
        (b'[[3,1,"x",' + b"9" * 5000 + b"]]", 400, "bad_json"),
        (b'[[3,1,"x",NaN]]', 400, "bad_json"),
        (b"[" + b",".join([b"[7]"] * 101) + b"]", 413, "too_many_frames"),
        (b'[[3,1,"x","' + b"a" * 70_000 + b'"]]', 413, "payload_too_large"),
    ],
)
async def test_post_bad_body(h: Harness, body: bytes, status: int, code: str) -> None:
    """A1 (not JSON), A2 (wrong shapes), A9 (deep), A10 (long integer, NaN), C1 (not UTF-8),
    B4/B5 (too many frames, a frame over the limit): bad POST bodies get the documented
    status; the session stays usable."""
    info = await h.open_poll_session()
    assert await error_of(await h.post(info, body)) == (status, code)
    assert (await h.post(info, b'[[3,1,"echo",1]]')).status_code == 204


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'[[3,1,"count",{"key":"atomic"}],[3,2,"count",{"key":"atomic"}],["bad"]]', "bad_frame"),
        (b'[[3,1,"count",{"key":"atomic"}],[3,2,"count",{"key":"ato', "bad_json"),
        (b'[[3,1,"count",{"key":"atomic"}],[3,2,"count",{"key":"atomic"}]]trailing', "bad_json"),
        (b'[[3,1,"count",{"key":"atomic"}]][[3,2,"count",{"key":"atomic"}]]', "bad_json"),
        (b'[[3,1,"count",{"key":"atomic"}],[3,2,"count",{"key":"atomic"}]]\x00', "bad_json"),
    ],
    ids=["bad-frame-last", "truncated", "trailing-garbage", "two-arrays", "trailing-nul"],
)
async def test_post_batch_is_atomic(h: Harness, body: bytes, code: str) -> None:
    """A8: a batch with one bad frame, a truncated batch, a batch with trailing garbage: 400,
    and none of its good frames is applied (a Content-Length that disagrees with the body is
    in tests/test_security_wire.py G6)."""
    info = await h.open_poll_session()
    assert await error_of(await h.post(info, body)) == (400, code)
    await asyncio.sleep(0.05)
    assert h.app.config["APPLIED"]["atomic"] == 0


async def test_post_body_limit_before_reading(h: Harness) -> None:
    """B4: a Content-Length over the limit is refused with 413 before the body is read."""
    info = await h.open_poll_session()
    response = await h.post(info, b"[]", **{"Content-Length": str(10 * 1024 * 1024)})
    assert await error_of(response) == (413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
async def test_post_simple_content_types_refused(h: Harness, content_type: str) -> None:
    """C2: CORS-simple content types (the CSRF shapes) get 415 and nothing is applied."""
    info = await h.open_poll_session()
    response = await h.post(
        info, b'[[3,1,"count",{"key":"csrf"}]]', **{"Content-Type": content_type}
    )
    assert await error_of(response) == (415, "unsupported_media_type")
    assert h.app.config["APPLIED"]["csrf"] == 0


async def test_post_without_session_header(h: Harness) -> None:
    """C3: a POST without the custom session header: 401."""
    response = await h.client.post("/realtime/send", data=b"[[7]]", headers=JSON_HEADERS)
    assert await error_of(response) == (401, "unauthorized")


# --- E: forged, unknown, expired, replayed credentials -----------------------------------


async def test_forged_and_unknown_tokens(h: Harness) -> None:
    """E1 (and E7 for the malformed one): on poll, POST and SSE, a tampered token or ticket is
    refused (401); a well-formed token for no session is unknown (404); no session is ever
    created by them."""
    info = await h.open_poll_session()
    before = h.engine.session_count
    tampered = info["token"][:-4] + ("AAAA" if not info["token"].endswith("AAAA") else "BBBB")
    assert await error_of(await h.poll({"token": tampered}, 0)) == (401, "unauthorized")
    node = info["token"].split(".")[1]
    unknown = f"v1.{node}.{'A' * 22}.{'B' * 22}"
    assert await error_of(await h.poll({"token": unknown}, 0)) == (404, "unknown_session")
    assert await error_of(await h.poll({"token": "garbage"}, 0)) == (401, "unauthorized")
    assert await error_of(await h.post({"token": tampered}, b"[[7]]")) == (401, "unauthorized")
    assert await error_of(await h.post({"token": unknown}, b"[[7]]")) == (404, "unknown_session")
    sse_info = await h.negotiate()
    forged = sse_info["ticket"][:-4] + (
        "AAAA" if not sse_info["ticket"].endswith("AAAA") else "BBBB"
    )
    response = await h.client.get("/realtime/sse?ticket=" + forged)
    assert await error_of(response) == (401, "ticket_invalid")
    assert h.engine.session_count == before


async def test_expired_session_is_never_revived(h: Harness) -> None:
    """E2: a long-poll session with no poll for its idle TTL expires; its token answers 404
    on poll and POST (never resurrected)."""
    info = await h.open_poll_session()
    await asyncio.sleep(1.0)  # poll_window 0.5 s: idle TTL 1 s
    await eventually(lambda: h.engine.session_count == 1, timeout=5)
    assert await error_of(await h.poll(info, 0)) == (404, "unknown_session")
    assert await error_of(await h.post(info, b"[[7]]")) == (404, "unknown_session")


async def test_ticket_single_use_and_transport_binding(h: Harness) -> None:
    """E6 (reused ticket; expired ones in tests/test_security_access.py), G5 and H3 (a
    session bound to one transport refuses another: 400 wrong_transport): a ticket is spent on
    first use; malformed tickets are refused."""
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
    """E5: negotiate ignores any id the client proposes and mints fresh, distinct ids."""
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
    """F1 (WebSocket upgrade from a foreign origin), F3 (``null``, suffix tricks, wrong
    scheme or port), F4 (SSE, poll, POST, negotiate): every endpoint refuses a foreign Origin
    with 403 before doing anything, without CORS headers."""
    bad = {"Origin": origin}
    response = await h.client.post("/realtime/negotiate", json={}, headers=bad)
    assert await error_of(response) == (403, "forbidden_origin")
    assert "Access-Control-Allow-Origin" not in response.headers
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
    """F3 (the control case): the server's own origin passes."""
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
    """G1 (wrong methods: 405 with Allow), G2 (plain GET on the WebSocket URL: 426), G4 (an
    unknown path, a dot-dot segment; more in tests/test_security_access.py): JSON answers."""
    response = await h.client.open(path, method=method)  # type: ignore[call-arg]
    assert await error_of(response) == (status, code)
    if status == 405:
        assert response.headers["Allow"]


async def test_websocket_upgrade_on_http_routes(h: Harness) -> None:
    """G2: a WebSocket upgrade aimed at negotiate, SSE or poll is refused without a crash."""
    for path in ("/realtime/negotiate", "/realtime/sse", "/realtime/poll?cursor=0"):
        async with h.client.websocket(path) as ws:
            with pytest.raises((WebsocketResponseError, WebsocketDisconnectError)):
                await asyncio.wait_for(ws.receive(), 5)


@pytest.mark.parametrize("cursor", ["", "-1", "abc", "1e3", "99999999999999999999"])
async def test_bad_cursor(h: Harness, cursor: str) -> None:
    """G7 (the cursor parameter; fuzzed in tests/test_security_fuzz.py): a malformed cursor is
    400 bad_request."""
    info = await h.open_poll_session()
    response = await h.client.get(
        f"/realtime/poll?cursor={cursor}", headers={"X-Realtime-Session": info["token"]}
    )
    assert await error_of(response) == (400, "bad_request")


async def test_cursor_ahead_refused(h: Harness) -> None:
    """H5 (a cursor ahead): a cursor beyond anything sent is refused (a confused or lying
    client); a cursor going back is in tests/test_security_flow.py."""
    info = await h.open_poll_session()
    assert await error_of(await h.poll(info, 5)) == (400, "bad_request")


# --- H: concurrency on one session ---------------------------------------------------------


async def test_newest_poll_wins(h: Harness) -> None:
    """H1: a second poll supersedes the held one: the older ends empty, nothing is lost or
    doubled."""
    info = await h.open_poll_session()
    first = asyncio.create_task(h.poll(info, 0))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(h.poll(info, 0))
    await asyncio.sleep(0.05)
    assert (await h.post(info, b'[[3,1,"echo","x"]]')).status_code == 204
    old = json.loads(await (await first).get_data())
    new = json.loads(await (await second).get_data())
    assert old == {"cursor": 0, "frames": []}
    # cursor 0: the response opens with HELLO again (protocol §6.1), then the reply
    assert new["frames"][0][0] == 0
    assert new["frames"][1:] == [[4, 1, "ok", "x"]]


async def test_concurrent_post_conflict(h: Harness) -> None:
    """H2: a second POST while one is being applied gets 409; the first completes."""
    info = await h.open_poll_session()
    slow = asyncio.create_task(h.post(info, b'[[3,1,"count",{"key":"slow","delay":0.3}]]'))
    await asyncio.sleep(0.1)
    assert await error_of(await h.post(info, b"[[7]]")) == (409, "conflict")
    assert (await slow).status_code == 204
    assert h.app.config["APPLIED"]["slow"] == 1


async def test_second_sse_stream_conflict(h: Harness) -> None:
    """H4: a second stream for the same SSE session is refused with 409."""
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
    """G7 (the Last-Event-ID header): one that is not a sequence number is 400."""
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
    """A2 at negotiate: bad bodies get documented codes."""
    response = await h.client.post("/realtime/negotiate", data=body, headers=JSON_HEADERS)
    assert await error_of(response) == (status, code)


async def test_negotiate_auth_refused(h: Harness) -> None:
    """E3 (authentication at the door): on_connect refusing (Reject) answers 401; no session
    is made."""
    before = h.engine.session_count
    response = await h.client.post(
        "/realtime/negotiate", json={}, headers={"Authorization": "Bearer nope"}
    )
    assert await error_of(response) == (401, "unauthorized")
    assert h.engine.session_count == before


async def test_negotiate_form_post_refused(h: Harness) -> None:
    """C2 at negotiate: a cross-site form POST shape is refused with 415."""
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
