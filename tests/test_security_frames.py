"""Security catalogue, frames and payloads on every transport (groups A, B and C).

Each case speaks the protocol by hand (:class:`tests.secharness.Wire`) over WebSocket, SSE + POST
and long-poll + POST against a real Hypercorn, with a control client connected throughout; when
the case ends, sessions, topics and the library's tasks must be back to their baseline and the
control client must still echo (:func:`tests.secharness.live_server`).

A9 at the catalogue's full depth (10^5 levels, arrays and objects) is here: every decoder of the
server and of the Python client, then a WebSocket message and a ``POST /send`` body over a real
server whose size limits are raised so that the depth guard, not the size limit, refuses them.
Cases A1, A2, A8, A9 (5000 levels, in-process), A10, B1 (in-process), B4, C1, C2 and C3 live in
tests/test_security.py; raw-socket cases (A3, A5, A7, B2, B5, B6, B9, G3, G6) in
tests/test_security_wire.py; the decompression bomb (B3) in tests/test_security_bomb.py; the JS
client's side of A11 in tests/js/prototype.test.mjs and tests/browser/test_browser_security.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from transports.client import Client
from transports.client.connector import (
    Connector,
    HTTPResponse,
    StreamResponse,
    WebSocketConnection,
)
from transports.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from transports.protocol.frames import (
    Limits,
    decode_batch,
    decode_client_frame,
    decode_server_frame,
)
from transports.protocol.longpoll import decode_poll
from transports.protocol.negotiation import parse_negotiate
from transports.protocol.sse import SSEParser
from transports.typing import TransportName

from .conftest import TRANSPORTS
from .secharness import Live, Wire, live_server


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async with live_server() as server:
        yield server


async def refused_frame(wire: Wire, frame: str, ref: int = 900) -> None:
    """``frame`` breaks the protocol: WebSocket closes 4500; POST answers 400 ``bad_frame`` or
    ``bad_json``, applies nothing and leaves the session usable."""
    if wire.transport == "websocket":
        await wire.send(frame)
        assert await wire.closed() == 4500
        return
    status, response = await wire.post(("[" + frame + "]").encode())
    assert status == 400
    assert (await response.json())["error"] in ("bad_frame", "bad_json")
    await wire.echo(ref)


# --- A4: no second handshake ----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a4_second_handshake_is_a_protocol_error(
    live: Live, transport: TransportName
) -> None:
    """A4 (second handshake/auth on the same connection): the handshake is the HTTP request
    (negotiate, ticket, token), never a frame; a client that sends a HELLO frame (the server's
    greeting) breaks the protocol: 4500 on WebSocket, 400 on POST with nothing applied."""
    wire = await live.wire(transport)
    hello = json.dumps([0, {"v": 1, "id": "someone-else", "transport": transport}])
    await refused_frame(wire, hello)
    assert wire.hello[1]["id"] != "someone-else"


# --- A6: binary where text is expected ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a6_binary_data_is_protocol_defined(live: Live, transport: TransportName) -> None:
    """A6 (binary frame where only text is allowed): binary is part of the protocol (§2.2), so
    nothing closes with 1003. A binary EVENT (type 19: raw bytes after a NUL on WebSocket,
    base64 on SSE/long-poll) reaches the handler as bytes and its reply comes back binary; a
    WebSocket binary message holding plain UTF-8 JSON is read as a text frame; binary data on a
    frame type that has none is a protocol error (tests/test_security_wire.py B9)."""
    wire = await live.wire(transport)
    raw = b"\x00\x01\x02\xff"
    if transport == "websocket":
        await wire.send_bytes(b'[19,1,"echo",null]\x00' + raw)
        assert await wire.reply(1) == [20, 1, "ok", None, raw]
        await wire.send_bytes(b'[3,2,"echo","json in a binary message"]')
        assert await wire.reply(2) == [4, 2, "ok", "json in a binary message"]
    else:
        await wire.send(json.dumps([19, 1, "echo", base64.b64encode(raw).decode()]))
        assert await wire.reply(1) == [20, 1, "ok", base64.b64encode(raw).decode()]
    await refused_frame(wire, '[21,3,"topic",null]')


# --- A9 at full depth: 10^5 levels of nesting ------------------------------------------------

DEPTH = 100_000
NESTINGS = {
    "array": "[" * DEPTH + "]" * DEPTH,
    "object": '{"a":' * DEPTH + "0" + "}" * DEPTH,
}
"""10^5 levels of arrays (200,000 bytes) and of objects (600,001 bytes): both over the default
64 KiB frame limit, so the cases that must reach the depth guard raise the size limits."""
TOO_DEEP = "JSON nested too deep"
"""The message of the depth guard (``bad_json``), distinct from every size refusal."""
BIG_LIMITS = Limits(max_message_size=1 << 20, max_body_size=2 << 20)
"""Limits under which a 10^5-level frame is not refused for its size."""
BIG_SETTINGS: dict[str, Any] = {
    "max_message_size": 1 << 20,
    "max_body_size": 2 << 20,
    # The deflate bound is process-wide (the largest limit of any app wins); these cases use
    # no compression, so leave the bound of the rest of the run at the default frame limit.
    "harden_websocket_deflate": False,
}


def deep_data_frame(nesting: str, kind: int = 3) -> str:
    """An EVENT (or with ``kind`` 19 a binary EVENT header) whose data is ``nesting``."""
    return f'[{kind},1,"count",{{"key":"a9","deep":{nesting}}}]'


def flat_echo(ref: int, size: int) -> str:
    """An echo EVENT of exactly ``size`` bytes with no nesting (a string of ``a``)."""
    head = f'[3,{ref},"echo","'
    return head + "a" * (size - len(head) - 2) + '"]'


def refused_as_too_deep(decode: Any, *args: Any) -> ProtocolError:
    """``decode(*args)`` raises the library's ``ProtocolError`` (never ``RecursionError``,
    never a size refusal); its elapsed time is printed, not asserted."""
    started = time.perf_counter()
    with pytest.raises(ProtocolError) as info:
        decode(*args)
    elapsed = (time.perf_counter() - started) * 1000
    print(f"\nA9 {getattr(decode, '__name__', decode)}: {info.value.code} in {elapsed:.1f} ms")
    assert not isinstance(info.value, PayloadTooBig), info.value
    assert info.value.code == "bad_json"
    return info.value


@pytest.mark.parametrize("nesting", NESTINGS, ids=list(NESTINGS))
def test_a9_full_depth_server_decoders(nesting: str) -> None:
    """A9 at the catalogue's depth (10^5 levels of arrays, and of objects), through every
    decoder of client input: a WebSocket text message, a WebSocket binary message holding
    UTF-8 JSON, a binary message (header, NUL, raw bytes) whose header is deep, a POST batch
    with a deep frame, and a POST body that is itself the deep array. Each is refused with
    ``bad_json`` "JSON nested too deep" (the depth guard; the limits are raised so that size is
    not what refuses them) and no ``RecursionError`` escapes. With the default limits the same
    frames are refused for size first, which is why the limits are raised."""
    deep = NESTINGS[nesting]
    frame = deep_data_frame(deep)
    assert len(frame) > Limits().max_message_size
    with pytest.raises(PayloadTooBig):
        decode_client_frame(frame)
    binary = deep_data_frame(deep, kind=19).encode() + b"\x00\x01raw\xff"
    cases: list[tuple[Any, str | bytes]] = [
        (decode_client_frame, frame),
        (decode_client_frame, frame.encode()),
        (decode_client_frame, binary),
        (decode_batch, ("[" + frame + "]").encode()),
        (decode_batch, ("[" + deep + "]").encode()),
    ]
    for decode, message in cases:
        assert refused_as_too_deep(decode, message, BIG_LIMITS).message == TOO_DEEP


def test_a9_full_depth_negotiate_body() -> None:
    """A9 on the last server decoder, the negotiate body: its 4 KiB cap refuses 10^5 levels
    for size before parsing, and the deepest body that fits (2047 levels) is ``bad_json``."""
    with pytest.raises(PayloadTooBig):
        parse_negotiate(NESTINGS["array"].encode())
    levels = 4096 // 2 - 1
    refused_as_too_deep(parse_negotiate, ("[" * levels + "]" * levels).encode())


@pytest.mark.parametrize("nesting", NESTINGS, ids=list(NESTINGS))
def test_a9_full_depth_client_decoders(nesting: str) -> None:
    """A9 in the Python client's decoders (a hostile or broken server): a WebSocket text
    frame, a binary frame (deep header, NUL, raw bytes), an SSE event's data (through the
    client's ``SSEParser``) and a long-poll response are refused with ``bad_json`` and no
    ``RecursionError``; frame decoders say "JSON nested too deep", the poll decoder (which
    parses the whole response first) "poll response is not JSON"."""
    deep = NESTINGS[nesting]
    pub = '[1,"t","e",' + deep + ',1,"epoch"]'
    binary = ('[17,"t","e",' + deep + ',1,"epoch"]').encode() + b"\x00raw"
    events = SSEParser().feed(b"id: 1\r\ndata: " + pub.encode() + b"\r\n\r\n")
    assert len(events) == 1 and events[0].data == pub
    for message in (pub, binary, events[0].data):
        assert refused_as_too_deep(decode_server_frame, message).message == TOO_DEEP
    poll = ('{"cursor":1,"frames":[' + pub + "]}").encode()
    refused_as_too_deep(decode_poll, poll)


class AnswersNegotiate(Connector):
    """A server that answers every negotiate with ``body`` and opens nothing else."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        self.calls = 0

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        self.calls += 1
        return HTTPResponse(self.status, {}, self.body)

    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> StreamResponse:
        raise OSError("no streams here")

    async def websocket(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> WebSocketConnection:
        raise OSError("no websockets here")

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "body", "state"),
    [
        (200, NESTINGS["array"], "reconnecting"),
        (200, NESTINGS["object"], "reconnecting"),
        (200, "[]", "reconnecting"),
        (503, NESTINGS["object"], "reconnecting"),
        (400, NESTINGS["array"], "closed"),
    ],
    ids=["200-array", "200-object", "200-not-an-object", "503-deep-error", "400-deep-error"],
)
async def test_a9_python_client_survives_deep_negotiate_answer(
    status: int, body: str, state: str
) -> None:
    """A9 in the Python client's one decoder outside transports/protocol/: the negotiate
    answer (and the JSON error body of a refused negotiate). A 10^5-level answer (or one that
    is not an object) is a failed attempt, retried with backoff and reported as an ``error``
    event; a deep 400 error body is the terminal refusal it would be anyway. The client's task
    never dies of a ``RecursionError`` and ``close()`` returns normally."""
    connector = AnswersNegotiate(status, body.encode())
    client = Client(
        "http://127.0.0.1:9/realtime", connector, transports=["websocket"], backoff=(0.01, 0.02)
    )
    errors: list[BaseException] = []
    client.on("error", errors.append)
    client.start()
    for _ in range(200):
        if client.state == state and errors and (state == "closed" or connector.calls >= 3):
            break
        await asyncio.sleep(0.01)
    assert client.state == state
    assert errors and not any(isinstance(e, RecursionError) for e in errors), errors
    if state == "closed":
        assert isinstance(errors[0], NegotiationError)
    else:
        assert connector.calls >= 3  # it keeps trying
        assert client._runner is not None and not client._runner.done()
    await client.close()


async def deep_websocket_close(live: Live, message: str | bytes) -> tuple[int | None, str]:
    """Send ``message`` as the first message of a new WebSocket; the close code and reason."""
    ticket = (await live.negotiate(["websocket"]))["ticket"]
    url = live.url.replace("http://", "ws://") + "/ws?ticket=" + ticket
    async with live.http.ws_connect(url, max_msg_size=0) as ws:
        assert (await ws.receive_json(timeout=5))[0] == 0  # HELLO
        started = time.perf_counter()
        if isinstance(message, str):
            await ws.send_str(message)
        else:
            await ws.send_bytes(message)
        while True:
            received = await ws.receive(timeout=10)
            if received.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                break
        elapsed = (time.perf_counter() - started) * 1000
        reason = received.extra if received.type == aiohttp.WSMsgType.CLOSE else ""
        print(f"\nA9 WebSocket {len(message)} bytes: close {ws.close_code} in {elapsed:.0f} ms")
        return ws.close_code, str(reason or "")


async def test_a9_full_depth_websocket_live() -> None:
    """A9 at 10^5 levels over a real server, on WebSocket: a text frame nested 10^5 arrays deep,
    one nested 10^5 objects deep, and a binary message whose header is 10^5 arrays deep each
    close their socket with 4500 and the depth guard's reason "JSON nested too deep". The frame
    limit is raised to 1 MiB, so size is not what refuses them: a flat frame of the same size
    as the largest is accepted and echoed. A WebSocket and an SSE session opened before are
    unaffected, nothing is applied, and the harness checks the process still serves."""
    async with live_server(**BIG_SETTINGS) as live:
        limit = live.engine.settings.max_message_size
        others = [await live.wire("websocket"), await live.wire("sse")]
        messages: list[str | bytes] = [
            deep_data_frame(NESTINGS["array"]),
            deep_data_frame(NESTINGS["object"]),
            deep_data_frame(NESTINGS["array"], kind=19).encode() + b"\x00raw",
        ]
        for ref, message in enumerate(messages, start=1):
            assert Limits().max_message_size < len(message) <= limit
            assert await deep_websocket_close(live, message) == (4500, TOO_DEEP)
            for other in others:
                await other.echo(ref, f"after deep message {ref}")
        assert any(code == 4500 and why == TOO_DEEP for _, code, why in live.disconnects)
        assert live.applied["a9"] == 0
        flat = flat_echo(9, len(messages[1]))
        assert len(flat) == len(messages[1])
        await others[0].send(flat)
        assert (await others[0].reply(9, timeout=10))[:3] == [4, 9, "ok"]


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
async def test_a9_full_depth_post_live(transport: TransportName) -> None:
    """A9 at 10^5 levels over a real server, on ``POST /send``: a batch whose frame is nested
    10^5 arrays deep, one nested 10^5 objects deep, and a body that is itself 10^5 arrays deep
    are answered ``400 {"error": "bad_json", "message": "JSON nested too deep"}``, with nothing
    applied; the limits are raised (frame 1 MiB, body 2 MiB) so size is not what refuses them:
    a flat body of the same size as the largest is accepted. The session and a WebSocket opened
    before stay usable, and the harness checks the process still serves."""
    async with live_server(**BIG_SETTINGS) as live:
        wire = await live.wire(transport)
        other = await live.wire("websocket")
        bodies = [
            "[" + deep_data_frame(NESTINGS["array"]) + "]",
            "[" + deep_data_frame(NESTINGS["object"]) + "]",
            "[" + NESTINGS["array"] + "]",
        ]
        for ref, body in enumerate(bodies, start=1):
            assert Limits().max_message_size < len(body) <= live.engine.settings.max_body_size
            started = time.perf_counter()
            status, response = await wire.post(body.encode())
            elapsed = (time.perf_counter() - started) * 1000
            print(f"\nA9 POST /send {len(body)} bytes: {status} in {elapsed:.0f} ms")
            assert status == 400
            assert response.content_type == "application/json"
            assert await response.json() == {"error": "bad_json", "message": TOO_DEEP}
            await wire.echo(ref, f"after deep body {ref}")
            await other.echo(ref, f"after deep body {ref}")
        assert live.applied["a9"] == 0
        flat = "[" + flat_echo(9, len(bodies[1]) - 2) + "]"
        assert len(flat) == len(bodies[1])
        status, _ = await wire.post(flat.encode())
        assert status == 204
        assert (await wire.reply(9, timeout=10))[:3] == [4, 9, "ok"]


# --- A11: duplicate keys, prototype keys, many keys -----------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a11_duplicate_and_prototype_keys(live: Live, transport: TransportName) -> None:
    """A11: duplicate JSON keys keep the last value (the policy of Python's and the browser's
    JSON parsers alike); ``__proto__``/``constructor`` keys are plain data, echoed unchanged;
    2000 keys in one payload are fine within the frame limit. (The browser client's side of
    this case, no prototype merge, is in tests/js/prototype.test.mjs and
    tests/browser/test_browser_security.py.)"""
    wire = await live.wire(transport)
    await wire.send('[3,1,"echo",{"a":1,"a":2,"b":{"c":1,"c":[3]}}]')
    assert await wire.reply(1) == [4, 1, "ok", {"a": 2, "b": {"c": [3]}}]
    proto = {"__proto__": {"polluted": True}, "constructor": {"prototype": {"x": 1}}}
    await wire.send(json.dumps([3, 2, "echo", proto]))
    assert await wire.reply(2) == [4, 2, "ok", proto]
    many = {f"k{i}": i for i in range(2000)}
    await wire.send(json.dumps([3, 3, "echo", many], separators=(",", ":")))
    assert await wire.reply(3) == [4, 3, "ok", many]


# --- A12: invalid topic and event names -----------------------------------------------------


BAD_TOPICS = ["a b", "a*", "a#b", "caf\u00e9", "a\nb", "a\u0000b", "$sys.x", "$", "+*?"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a12_bad_topics_get_error_replies(live: Live, transport: TransportName) -> None:
    """A12: topics outside the alphabet, with control characters, or reserved (``$...``) get
    the error reply ``bad_topic`` on SUB and PUBLISH; the connection stays usable and nothing
    is subscribed or published (protocol §2.1)."""
    wire = await live.wire(transport)
    for ref, topic in enumerate(BAD_TOPICS, start=1):
        await wire.send(json.dumps([5, ref, topic, None]))
        reply = await wire.reply(ref)
        assert reply[:3] == [4, ref, "bad_topic"] and set(reply[3]) == {"message"}
        await wire.send(json.dumps([10, 100 + ref, topic, "e", 1]))
        assert (await wire.reply(100 + ref))[:3] == [4, 100 + ref, "bad_topic"]
    assert live.engine.hub.topic_count == live.baseline.topics
    await wire.echo(999)
    with pytest.raises(ProtocolError):
        await live.realtime.publish("$sys.x", "e", 1)
    with pytest.raises(ProtocolError):
        await live.realtime.publish("ok", "bad event\n", 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "frame",
    [
        '[5,1,"",null]',
        '[5,1,"' + "a" * 201 + '",null]',
        "[5,1,7,null]",
        '[3,1,"bad event",1]',
        '[3,1,"' + "e" * 101 + '",1]',
        '[3,1,"",1]',
    ],
    ids=["empty-topic", "topic-201", "topic-not-string", "event-space", "event-101", "event-empty"],
)
async def test_a12_name_of_wrong_length_or_type(
    live: Live, transport: TransportName, frame: str
) -> None:
    """A12 (lengths and types): a topic or event name of the wrong type or length breaks the
    field rules of §2.1: a protocol error (4500 / 400 ``bad_frame``), nothing subscribed."""
    wire = await live.wire(transport)
    await refused_frame(wire, frame)
    assert live.engine.hub.topic_count == live.baseline.topics


# --- A13: SSE field injection ---------------------------------------------------------------


INJECTIONS = [
    "a\n\ndata: forged\nid: 999\n\n",
    "line\rbreak",
    "crlf\r\n\r\nevent: x",
    "nul\u0000byte",
    "separator\u2028and\u2029paragraph",
    "id: 7\nretry: 1",
]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a13_no_event_stream_injection(live: Live, transport: TransportName) -> None:
    """A13: publications whose text holds CR, LF, blank lines, ``data:``/``id:``/``retry:``
    fields, NUL and U+2028/U+2029 arrive as exactly one PUB each with identical data; on SSE
    the event ids stay the server's consecutive sequence numbers (no forged ``id: 999``)."""
    wire = await live.wire(transport)
    await wire.send('[5,1,"inject",null]')
    await wire.reply(1)
    for text in INJECTIONS:
        await live.realtime.publish("inject", "msg", {"text": text, "raw": text})
    got = [await wire.recv() for _ in INJECTIONS]
    assert [frame[3] for frame in got] == [{"text": t, "raw": t} for t in INJECTIONS]
    assert all(frame[:3] == [1, "inject", "msg"] for frame in got)
    if transport == "sse":
        assert wire.sse_ids == list(range(1, len(wire.sse_ids) + 1))
        assert 999 not in wire.sse_ids
    await wire.echo(2)


# --- A14: refs ------------------------------------------------------------------------------


GOOD_REFS: list[Any] = [0, 2**32 - 1, 2**53 - 1, "s", "x" * 64, "caf\u00e9"]
BAD_REFS: list[Any] = [2**53, -1, 1.5, True, None, "", "x" * 65, [1], {"a": 1}]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a14_ref_edge_values(live: Live, transport: TransportName) -> None:
    """A14: refs 0, 2^32-1, 2^53-1 and strings of 1-64 characters are answered with the same
    ref; 2^53, negative, fractional, boolean, null, empty, 65 characters, arrays and objects
    are protocol errors (4500 / 400 with nothing applied)."""
    wire = await live.wire(transport)
    for ref in GOOD_REFS:
        await wire.send(json.dumps([3, ref, "echo", "r"]))
        assert await wire.reply(ref) == [4, ref, "ok", "r"]
    if transport == "websocket":  # one close is enough to prove the rule on a socket
        await refused_frame(wire, json.dumps([3, BAD_REFS[0], "count", {"key": "a14"}]))
    else:
        for ref in BAD_REFS:
            await refused_frame(wire, json.dumps([3, ref, "count", {"key": "a14"}]))
    assert live.applied["a14"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a14_duplicate_ref_in_flight_applied_once(
    live: Live, transport: TransportName
) -> None:
    """A14 (duplicate ref in flight): the same ref sent again while the first is being applied
    is not applied twice; both get the same reply (protocol §8)."""
    wire = await live.wire(transport)
    frame = '[3,7,"count",{"key":"a14dup","delay":0.2}]'
    await wire.send(frame, frame)
    first, second = await wire.reply(7), await wire.reply(7)
    assert first == second == [4, 7, "ok", 1]
    assert live.applied["a14dup"] == 1


# --- B1: the frame size boundary, on every transport -----------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("extra", [0, 1, 2])
async def test_b1_frame_size_boundary(live: Live, transport: TransportName, extra: int) -> None:
    """B1: a frame of exactly the limit is accepted; limit+1 and limit+2 bytes close with 1009
    (WebSocket) or answer ``413 payload_too_large`` (POST), nothing applied."""
    limit = live.engine.settings.max_message_size
    head = '[3,1,"count",{"key":"b1","pad":"'
    frame = head + "a" * (limit - len(head) - 3 + extra) + '"}]'
    assert len(frame) == limit + extra
    wire = await live.wire(transport)
    if transport == "websocket":
        await wire.send(frame)
        if extra:
            assert await wire.closed() == 1009
        else:
            assert await wire.reply(1) == [4, 1, "ok", 1]
    else:
        status, response = await wire.post(("[" + frame + "]").encode())
        if extra:
            assert status == 413
            assert (await response.json())["error"] == "payload_too_large"
        else:
            assert status == 204
            assert await wire.reply(1) == [4, 1, "ok", 1]
    assert live.applied["b1"] == (0 if extra else 1)


# --- B7: a publication larger than a subscriber's outbox -------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_b7_oversized_publication_never_half_sent(transport: TransportName) -> None:
    """B7 (outbound publication larger than the client can take). By design the publisher is
    not refused (a publication goes to many subscribers with their own limits); each subscriber
    whose outbox cannot hold it is closed as a slow consumer (4008, resume by position) and gets
    nothing of it: never a truncated or partial frame. Non-subscribers are untouched."""
    async with live_server(outbox_max_bytes=64 * 1024) as live:
        wire = await live.wire(transport)
        other = await live.wire("websocket")
        await wire.send('[5,1,"big",null]')
        await wire.reply(1)
        await other.send('[5,1,"small",null]')
        await other.reply(1)
        record = await live.realtime.publish("big", "blob", "x" * 100_000)
        assert record.offset == 1
        assert await wire.closed() == 4008
        assert not any(isinstance(f, list) and f[0] == 1 for f in wire.seen)
        await live.realtime.publish("small", "note", "fine")
        assert (await other.recv())[:4] == [1, "small", "note", "fine"]
    async with live_server() as live:  # with the default 1 MiB outbox it arrives whole
        wire = await live.wire(transport)
        await wire.send('[5,1,"big",null]')
        await wire.reply(1)
        await live.realtime.publish("big", "blob", "x" * 100_000)
        frame = await wire.recv()
        assert frame[:3] == [1, "big", "blob"] and frame[3] == "x" * 100_000


# --- B8: a long-poll backlog ----------------------------------------------------------------


async def test_b8_longpoll_backlog_capped_and_complete() -> None:
    """B8: 10^4 publications queued for a long-poll session that is not polling come back in
    responses capped at ``poll_max_bytes`` (one frame may pass it), over several polls, every
    one exactly once and in order."""
    count, cap = 10_000, 64 * 1024
    async with live_server(
        outbox_max_frames=count + 100,
        outbox_max_bytes=64 * 1024 * 1024,
        poll_max_bytes=cap,
        session_ttl=30,
        rate_limit=None,
    ) as live:
        info = await live.negotiate(["longpoll"])
        headers = {"X-Realtime-Session": info["token"], "Content-Type": "application/json"}

        async def poll(cursor: int) -> tuple[int, list[Any], int]:
            async with live.http.get(live.url + f"/poll?cursor={cursor}", headers=headers) as r:
                assert r.status == 200
                raw = await r.read()
            body = json.loads(raw)
            return body["cursor"], body["frames"], len(raw)

        cursor, frames, _ = await poll(0)
        async with live.http.post(live.url + "/send", data=b'[[5,1,"bulk",null]]', headers=headers):
            pass
        cursor, frames, _ = await poll(cursor)
        frames = [f for f in frames if f[0] != 0]  # HELLO again: the cursor was still 0
        assert frames[0][:3] == [4, 1, "ok"]
        for n in range(count):
            await live.realtime.publish("bulk", "n", n)
        got: list[int] = []
        polls = 0
        while len(got) < count:
            cursor, frames, size = await poll(cursor)
            polls += 1
            # The cap counts the frames' bytes; the envelope adds a comma per frame.
            assert size - len(frames) - 40 <= cap, size
            got += [frame[3] for frame in frames if frame[0] == 1]
        assert got == list(range(count))
        assert polls > 1
        async with live.http.post(live.url + "/send", data=b'[[9,1000,""]]', headers=headers):
            pass


# --- C4: binary publications on text transports ---------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_c4_binary_publication(live: Live, transport: TransportName) -> None:
    """C4: a binary publication reaches an SSE or long-poll subscriber base64-encoded in a PUB
    of type 17, and a WebSocket subscriber as a binary message (header, NUL, the raw bytes)."""
    wire = await live.wire(transport)
    await wire.send('[5,1,"bin",null]')
    await wire.reply(1)
    raw = bytes(range(256))
    record = await live.realtime.publish("bin", "blob", raw)
    frame = await wire.recv()
    if transport == "websocket":
        header, data = frame
        assert header == [17, "bin", "blob", None, record.offset, record.epoch]
        assert data == raw
    else:
        assert frame == [17, "bin", "blob", base64.b64encode(raw).decode(), 1, record.epoch]


async def test_c4_sse_stream_is_text(live: Live) -> None:
    """C4 (content type): the SSE stream of a binary publication is still UTF-8 text/event-stream
    (the bytes never appear raw)."""
    info = await live.negotiate(["sse"])
    async with live.http.get(
        live.url + "/sse?ticket=" + info["ticket"],
        timeout=aiohttp.ClientTimeout(total=10),
    ) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        await response.content.readuntil(b"\r\n\r\n")
        async with live.http.post(
            live.url + "/send",
            data=b'[[5,1,"bin2",null]]',
            headers={"Content-Type": "application/json", "X-Realtime-Session": info["token"]},
        ) as posted:
            assert posted.status == 204
        await live.realtime.publish("bin2", "blob", b"\xff\xfe\x00raw")
        received = b""
        while b"17," not in received:
            received += await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 5)
        received.decode("utf-8")
        assert b"\xff\xfe\x00raw" not in received
        assert base64.b64encode(b"\xff\xfe\x00raw") in received
        async with live.http.post(
            live.url + "/send",
            data=b'[[9,1000,""]]',
            headers={"Content-Type": "application/json", "X-Realtime-Session": info["token"]},
        ):
            pass
