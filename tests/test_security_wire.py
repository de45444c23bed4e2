"""Security catalogue, raw sockets: frames and requests no client library would send.

Cases of docs security-and-faults.md §4 that need hand-built bytes against the real stack
(Hypercorn + h11 + wsproto + the library): broken WebSocket framing (A5, A7, B2, B9), the upgrade
without a ticket (A3), oversized and smuggling-shaped HTTP (B5, B6, G3, G6) and unsolicited
control frames (O2). Each case runs on :func:`tests.secharness.live_server`: a control client is
connected before it, and afterwards sessions, topics and the library's tasks must be back to
their baseline and the control client must still echo.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from .rawws import BINARY, CONT, PING, PONG, TEXT, build_frame
from .secharness import ContractBroken, Live, expect, live_server

HYPERCORN_DROPS = (
    "Hypercorn answers a WebSocket protocol error by dropping the TCP connection without the "
    "close frame wsproto asks for (wsproto yields CloseConnection(code); Hypercorn only sends a "
    "close reply in REMOTE_CLOSING), so clients see 1006 instead of the documented code"
)


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async with live_server() as server:
        yield server


def status_of(answer: bytes) -> int:
    """The status code of the first response in ``answer`` (0: none)."""
    if not answer.startswith(b"HTTP/1.1 "):
        return 0
    return int(answer[9:12])


def json_body(answer: bytes) -> dict[str, str]:
    """The JSON error body of the first response in ``answer``."""
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body: dict[str, str] = json.loads(rest[:length])
    return body


# --- A3: no frame before authentication -----------------------------------------------------


@pytest.mark.parametrize(
    ("ticket", "origin", "status", "code"),
    [
        ("", None, 401, "ticket_invalid"),
        ("undefined", None, 401, "ticket_invalid"),
        ("forged", None, 401, "ticket_invalid"),
        ("valid", "https://evil.example", 403, "forbidden_origin"),
    ],
)
async def test_a3_upgrade_without_valid_ticket_never_accepted(
    live: Live, ticket: str, origin: str | None, status: int, code: str
) -> None:
    """A3 (command before handshake/auth). Not applicable as such by design: a WebSocket
    authenticates with its ticket during the HTTP upgrade, so there is no phase where frames
    arrive before authentication. Proven instead: an upgrade without a valid ticket (or from a
    foreign origin) is answered with an HTTP error and never reaches ``accept``; no session or
    channel opens, and frames sent after the refusal are never read as frames."""
    if ticket == "valid":
        ticket = (await live.negotiate(["websocket"]))["ticket"]
    elif ticket == "forged":
        real = (await live.negotiate(["websocket"]))["ticket"]
        ticket = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    opened = live.engine.stats["opened"]
    headers = {"Origin": origin} if origin else {}
    ws = await live.raw_ws(ticket, headers=headers)
    try:
        assert ws.reply.status == status
        body = json.loads(await ws.refusal())
        assert body["error"] == code and set(body) == {"error", "message"}
        # A SUB frame after the refusal is not a frame to the server (the handshake failed):
        # it is read as the next HTTP request, which is refused, and the connection ends.
        await ws.send(build_frame(TEXT, b'[5,1,"a3",null]'))
        rest = await asyncio.wait_for(ws.reader.read(), 10)  # until the server ends it
        assert not rest.startswith(b"\x81"), rest[:80]
    finally:
        await ws.aclose()
    assert live.engine.stats["opened"] == opened
    assert live.engine.hub.subscribers("a3") == 0


# --- A5 / A7: broken WebSocket framing -----------------------------------------------------


@pytest.mark.xfail(strict=True, raises=ContractBroken, reason=HYPERCORN_DROPS)
@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([build_frame(TEXT, b'[3,1,"count",{"key":"a5","x":"\xff"}]')], id="byte-ff"),
        pytest.param(
            [
                build_frame(TEXT, b'[3,1,"count",{"key":"a5","x":"', fin=False),
                build_frame(CONT, b'\xe2\x82"}]'),
            ],
            id="truncated-sequence-across-fragments",
        ),
        pytest.param(
            [build_frame(TEXT, b'[3,1,"count",{"key":"a5","x":"\xed\xa0\x80"}]')], id="surrogate"
        ),
    ],
)
async def test_a5_invalid_utf8_text_frame(live: Live, frames: list[bytes]) -> None:
    """A5: invalid UTF-8 in a text frame: close 1007 from the server stack; the application
    never sees the message."""
    ws = await live.raw_ws()
    assert ws.accepted
    await ws.read_text()  # HELLO
    for frame in frames:
        await ws.send(frame)
    code = await ws.close_code(10)
    await ws.aclose()
    assert code is not None, "the connection must end"
    await live.check_alive()
    assert live.applied["a5"] == 0
    expect(code == 1007, f"closed with {code}, documented 1007")


A7_SHAPES = [
    pytest.param(build_frame(TEXT, b'[3,1,"count",{"key":"a7"}]', rsv=4), id="rsv1-no-extension"),
    pytest.param(build_frame(TEXT, b'[3,1,"count",{"key":"a7"}]', rsv=2), id="rsv2"),
    pytest.param(build_frame(TEXT, b'[3,1,"count",{"key":"a7"}]', rsv=1), id="rsv3"),
    pytest.param(build_frame(0x3, b'[3,1,"count",{"key":"a7"}]'), id="reserved-opcode-3"),
    pytest.param(build_frame(0xB, b"x"), id="reserved-control-opcode-b"),
    pytest.param(build_frame(TEXT, b'[3,1,"count",{"key":"a7"}]', mask=False), id="unmasked"),
    pytest.param(build_frame(PING, b"x" * 126), id="control-frame-126-bytes"),
    pytest.param(build_frame(PING, b"x", fin=False), id="fragmented-control-frame"),
    pytest.param(build_frame(CONT, b'[3,1,"count",{"key":"a7"}]'), id="continuation-first"),
    pytest.param(
        build_frame(TEXT, b'[3,1,"count",', fin=False) + build_frame(TEXT, b'{"key":"a7"}]'),
        id="new-message-inside-fragmented-one",
    ),
]


@pytest.mark.xfail(strict=True, raises=ContractBroken, reason=HYPERCORN_DROPS)
@pytest.mark.parametrize("data", A7_SHAPES)
async def test_a7_framing_violation_closes_1002(live: Live, data: bytes) -> None:
    """A7: RSV bits without an extension, reserved opcodes, an unmasked client frame, an
    oversized or fragmented control frame, a continuation without a start: close 1002 (the
    engine.io CVE-2022-21676 class); the process keeps serving everyone else, nothing is
    applied."""
    ws = await live.raw_ws()
    assert ws.accepted
    await ws.read_text()  # HELLO
    await ws.send(data)
    code = await ws.close_code(10)
    await ws.aclose()
    assert code is not None, "the connection must end"
    await live.check_alive()
    assert live.applied["a7"] == 0
    expect(code == 1002, f"closed with {code}, documented 1002")


# --- B2: a fragmented flood ----------------------------------------------------------------


async def test_b2_many_small_continuations_past_the_limit(live: Live) -> None:
    """B2: continuation frames of 1 KiB each, running total past the message limit: close
    1009 as soon as the total passes the limit, not when the message ends (under
    ``transports.server.run.serve``, which bounds Hypercorn's assembly to the frame limit;
    plain Hypercorn assembles up to its own 16 MiB first, docs/security.md#limits). The message
    never ends unless the server leaves it open: a close before that is the early one, however
    long it takes to come."""
    limit = live.engine.settings.max_message_size
    ws = await live.raw_ws()
    assert ws.accepted
    await ws.read_text()
    await ws.send(build_frame(TEXT, b'[3,1,"count",{"key":"b2","pad":"', fin=False))
    for _ in range(4 * limit // 1024):
        await ws.send(build_frame(CONT, b"a" * 1024, fin=False))
    early = await ws.close_code(10)
    if early is None:  # the server is still collecting: finish the message
        await ws.send(build_frame(CONT, b'"}]'))
        late = await ws.close_code(10)
        assert late == 1009, f"a complete message over the limit must close 1009, got {late}"
    await ws.aclose()
    await live.check_alive()
    assert live.applied["b2"] == 0
    expect(early == 1009, f"still open after {4 * limit} bytes of one message ({early})")


async def test_b2_fragmented_message_over_limit_when_complete(live: Live) -> None:
    """B2 (complete message): a message assembled from many continuation frames and larger
    than the limit closes with 1009 and is not applied; one just under the limit works."""
    limit = live.engine.settings.max_message_size
    ws = await live.raw_ws()
    assert ws.accepted
    await ws.read_text()
    head = b'[3,1,"echo","'
    body = b"a" * (limit - len(head) - 2)
    await ws.send(build_frame(TEXT, head, fin=False))
    for start in range(0, len(body), 1000):
        await ws.send(build_frame(CONT, body[start : start + 1000], fin=False))
    await ws.send(build_frame(CONT, b'"]'))
    reply = json.loads(await ws.read_text())
    assert reply[:3] == [4, 1, "ok"] and len(reply[3]) == len(body)
    await ws.send(build_frame(TEXT, b'[3,2,"count",{"key":"b2","pad":"', fin=False))
    for _ in range(limit // 1000 + 1):
        await ws.send(build_frame(CONT, b"a" * 1000, fin=False))
    await ws.send(build_frame(CONT, b'"}]'))
    assert await ws.close_code(10) == 1009
    await ws.aclose()
    assert live.applied["b2"] == 0


# --- B5 / B6: oversized HTTP ---------------------------------------------------------------


async def test_b5_chunked_body_past_limit_refused_when_crossed(live: Live) -> None:
    """B5: a chunked POST with no Content-Length is refused with 413 as soon as it passes the
    body limit, while the client is still sending (the body is not buffered to the end)."""
    wire = await live.wire("longpoll")
    limit = live.engine.settings.max_body_size
    head = (
        f"POST /realtime/send HTTP/1.1\r\nHost: {live.host}:{live.port}\r\n"
        "Content-Type: application/json\r\n"
        f"X-Realtime-Session: {wire.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(live.host, live.port)
    try:
        writer.write(head + b"%x\r\n" % 31 + b'[[3,1,"count",{"key":"b5","x":"' + b"\r\n")
        chunk = b"a" * 65536
        for _ in range(limit // len(chunk) + 2):  # just past the limit; the body never ends
            writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()
    assert status_of(answer) == 413
    assert json_body(answer)["error"] == "payload_too_large"
    await wire.echo(1)  # the session is still usable (and its batches are applied in order)
    assert live.applied["b5"] == 0


@pytest.mark.parametrize(
    ("name", "status"),
    [("request-line-100k", 431), ("ticket-param-100k", 431), ("2000-headers-100k", 431)],
)
async def test_b6_huge_request_line_or_headers(live: Live, name: str, status: int) -> None:
    """B6: a 100 KiB request line, a 100 KiB ticket parameter on the WebSocket upgrade, 2000
    headers of 100 KiB in all: 431 from the server and the connection closed; no crash
    (ws CVE-2024-37890 class)."""
    host = f"Host: {live.host}:{live.port}\r\n".encode()
    if name == "request-line-100k":
        data = b"GET /realtime/poll?cursor=" + b"1" * 100_000 + b" HTTP/1.1\r\n" + host + b"\r\n"
    elif name == "ticket-param-100k":
        data = (
            b"GET /realtime/ws?ticket="
            + b"A" * 100_000
            + b" HTTP/1.1\r\n"
            + host
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    else:
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(2000))
        data = b"GET /realtime/negotiate HTTP/1.1\r\n" + host + headers + b"\r\n"
    answer = await live.raw(data, wait=10, linger=10)  # bounds: the server closes at once
    assert status_of(answer) == status
    assert answer.endswith(b"<EOF>")


async def test_b6_two_thousand_small_headers_served(live: Live) -> None:
    """B6 (many headers, small in all): 2000 one-byte headers fit h11's 16 KiB head limit;
    the request is served normally, with no crash."""
    host = f"Host: {live.host}:{live.port}\r\n".encode()
    headers = b"".join(b"a:b\r\n" for _ in range(2000))
    data = (
        b"POST /realtime/negotiate HTTP/1.1\r\n"
        + host
        + b"Content-Type: application/json\r\nContent-Length: 2\r\n"
        + headers
        + b"\r\n{}"
    )
    answer = await live.raw(data, wait=10)
    assert status_of(answer) == 200
    assert b'"token"' in answer


# --- B9: no multi-part messages --------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(b"\x00\x01\x02\x03", id="raw-bytes-without-header"),
        pytest.param(b"\xff\xfe\x00\x01", id="non-utf8-header"),
        pytest.param(b'[5,1,"b9",null]\x00\x01', id="attachment-on-a-sub"),
        pytest.param(b'[19,1,"count",{"key":"b9"}]\x00\x01', id="data-not-null"),
        pytest.param(b'[3,1,"count",null]\x00\x01', id="attachment-without-binary-type"),
    ],
)
async def test_b9_binary_frame_without_its_header_refused(live: Live, message: bytes) -> None:
    """B9 (announced multi-part message that never completes). Not applicable by design: the
    protocol has no multi-part messages, a binary message carries its JSON header and its bytes
    in one WebSocket message (protocol §2.2), so there is no partial state to expire. Proven
    instead: a binary message without a valid header, or with bytes where none may be, closes
    with 4500 and applies nothing."""
    wire = await live.wire("websocket")
    await wire.send_bytes(message)
    assert await wire.closed() == 4500
    assert live.applied["b9"] == 0
    assert live.engine.hub.subscribers("b9") == 0


async def test_b9_unfinished_fragmented_message_freed_on_disconnect(live: Live) -> None:
    """B9 (disconnect mid-message): a WebSocket message whose last fragment never comes, then
    the client vanishes: the session and its state are freed at once (the connection ended:
    no expiry needed), and the unfinished message was never applied (the ``count`` handler
    counts a binary message under its bytes, so the check is on every key)."""
    ws = await live.raw_ws()
    await ws.read_text()
    await ws.send(build_frame(BINARY, b'[19,1,"count",null]\x00', fin=False))
    await ws.send(build_frame(CONT, b"\x01" * 1000, fin=False))
    await ws.aclose()
    await live.baseline.freed_now()
    assert sum(live.applied.values()) == 0, "the unfinished message was applied"


# --- G3: CONNECT, TRACE, absolute-form --------------------------------------------------------


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"CONNECT example.com:443 HTTP/1.1", 404),
        (b"CONNECT /realtime/send HTTP/1.1", 405),
        (b"TRACE /realtime/send HTTP/1.1", 405),
        (b"TRACE /realtime/poll?cursor=0 HTTP/1.1", 405),
        (b"OPTIONS * HTTP/1.1", 404),
    ],
)
async def test_g3_connect_and_trace_refused(live: Live, request_line: bytes, status: int) -> None:
    """G3: CONNECT and TRACE are refused (404 outside the prefix, 405 on our routes); TRACE
    never echoes the request (no cross-site tracing); the server keeps serving."""
    data = (
        request_line
        + b"\r\nHost: "
        + f"{live.host}:{live.port}".encode()
        + b"\r\nX-Realtime-Session: secret-g3-value\r\n\r\n"
    )
    answer = await live.raw(data, wait=10)
    assert status_of(answer) == status
    assert b"secret-g3-value" not in answer


@pytest.mark.parametrize("method", [b"TRACE", b"CONNECT"])
async def test_g3_refusal_is_json_with_true_allow(live: Live, method: bytes) -> None:
    """G3 (contract): the 405 for TRACE/CONNECT on ``/realtime/send`` is the JSON
    ``method_not_allowed`` with ``Allow: POST``."""
    data = method + b" /realtime/send HTTP/1.1\r\nHost: " + f"{live.host}:{live.port}".encode()
    answer = await live.raw(data + b"\r\n\r\n", wait=10)
    assert status_of(answer) == 405
    head = answer.split(b"\r\n\r\n")[0].lower()
    expect(b"content-type: application/json" in head, "405 body is not JSON")
    expect(b"\r\nallow: post\r\n" in head + b"\r\n", f"Allow header: {head!r}")


async def test_g3_absolute_form_target(live: Live) -> None:
    """G3 (absolute-form): ``POST http://evil.example/realtime/...`` is routed like the
    origin-form path, and neither authentication nor the origin check is bypassed: without a
    token ``/send`` is 401; an ``Origin`` equal to the absolute target's host is still foreign
    (403), because the server's own origin comes from ``Host``."""
    host = f"Host: {live.host}:{live.port}\r\n".encode()
    answer = await live.raw(
        b"POST http://evil.example/realtime/send HTTP/1.1\r\n"
        + host
        + b"Content-Type: application/json\r\nContent-Length: 5\r\n\r\n[[7]]",
        wait=10,
    )
    assert status_of(answer) == 401
    assert json_body(answer)["error"] == "unauthorized"
    answer = await live.raw(
        b"POST http://evil.example/realtime/negotiate HTTP/1.1\r\n"
        + host
        + b"Origin: http://evil.example\r\n"
        + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        wait=10,
    )
    assert status_of(answer) == 403
    assert json_body(answer)["error"] == "forbidden_origin"


# --- G6: smuggling shapes on POST /send ----------------------------------------------------


SMUGGLE_REASON_CLTE = (
    "Content-Length together with Transfer-Encoding is accepted (h11 lets chunked win, "
    "Hypercorn#279) and the batch is applied, where RFC 9112 §6.3 says to treat it as an error "
    "and close; the library does not refuse such requests on its routes"
)
SMUGGLE_REASON_LF = (
    "h11 accepts a bare LF as the line terminator of the request head (RFC 9112 §2.2 allows "
    "it) and the batch is applied; a front proxy that disagrees can be desynchronised, and the "
    "library does not refuse such requests"
)


def smuggle(name: str, token: str, host: bytes, body: bytes) -> bytes:
    head = (
        b"POST /realtime/send HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
        b"X-Realtime-Session: " + token.encode() + b"\r\n"
    )
    if name == "cl-and-te":
        return (
            head
            + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(body)
            + body
            + b"\r\n0\r\n\r\n"
        )
    if name == "two-different-content-lengths":
        return head + b"Content-Length: %d\r\nContent-Length: 5\r\n\r\n" % len(body) + body
    if name == "bad-chunk-footer":
        return head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
    if name == "bad-chunk-footer-valid-batch":
        return (
            head
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(body)
            + body
            + b"XX0\r\n\r\n"
        )
    if name == "bare-lf-chunk-footer":
        return (
            head
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(body)
            + body
            + b"\n0\r\n\r\n"
        )
    if name == "bare-lf-chunk-size-line":
        return (
            head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\n" % len(body) + body + b"\n0\n\n"
        )
    assert name == "bare-lf-head"
    return (head + b"Content-Length: %d\r\n\r\n" % len(body) + body).replace(b"\r\n", b"\n")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("cl-and-te", 400),
        ("two-different-content-lengths", 400),
        ("bad-chunk-footer", 400),
        ("bad-chunk-footer-valid-batch", 400),
        ("bare-lf-chunk-footer", 400),
        # h11 waits for a CRLF that never comes: the body deadline answers (408), closed.
        ("bare-lf-chunk-size-line", 408),
    ],
)
async def test_g6_smuggling_shapes_refused(name: str, status: int) -> None:
    """G6: request-smuggling shapes on ``POST /send`` (CL+TE, two Content-Lengths, a bad chunk
    footer as in h11 CVE-2025-43859, bare LF): refused with 400 and the connection closed; the
    batch is never applied."""
    async with live_server(body_timeout=1.0) as live:
        wire = await live.wire("longpoll")
        host = f"Host: {live.host}:{live.port}\r\n".encode()
        body = b'[[3,1,"count",{"key":"g6"}]]'
        answer = await live.raw(smuggle(name, wire.token, host, body), wait=10, linger=10)
        await wire.echo(2)
        await live.check_alive()
        expect(live.applied["g6"] == 0, f"the smuggled batch was applied: {answer[:60]!r}")
        expect(status_of(answer) == status, f"answered {answer[:40]!r}, documented {status}")
        expect(answer.endswith(b"<EOF>"), "the connection stayed open")


async def test_g6_bare_lf_request_head_is_an_ordinary_request() -> None:
    """G6 (bare LF): RFC 9112 §2.2 lets a server accept LF alone as the line terminator of a
    request head, and h11 does: such a request is served like any other (applied once, the
    connection kept). docs/security.md says so and asks that a front proxy agree."""
    async with live_server(body_timeout=1.0) as live:
        wire = await live.wire("longpoll")
        host = f"Host: {live.host}:{live.port}\r\n".encode()
        body = b'[[3,1,"count",{"key":"lf"}]]'
        answer = await live.raw(smuggle("bare-lf-head", wire.token, host, body), wait=10)
        assert status_of(answer) == 204
        await wire.echo(2)
        await live.check_alive()
        assert live.applied["lf"] == 1


# --- O2: an unsolicited WebSocket PONG -------------------------------------------------------


async def test_o2_unsolicited_websocket_pong_ignored(live: Live) -> None:
    """O2 (WebSocket control frame): a PONG the server never asked for, before any PING,
    is ignored; the connection keeps working."""
    ws = await live.raw_ws()
    await ws.read_text()
    for _ in range(3):
        await ws.send(build_frame(PONG, b"unsolicited"))
    await ws.send_text('[3,1,"echo","after pong"]')
    assert json.loads(await ws.read_text()) == [4, 1, "ok", "after pong"]
    await ws.aclose()
