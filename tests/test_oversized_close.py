"""Issue 12: a refusal in the middle of a message must end the connection, never pin it.

A WebSocket message over the limit is refused with close 1009, and then the server must close
the TCP connection, whether the client answers the close or not: a client must not be able to
keep a socket (and a server shutdown) waiting by sending one big message. Checked with a plain
``websockets`` client and with a raw socket that never answers, at sizes well past every buffer
(1 MiB, 16 MiB), with and without permessage-deflate, under
:func:`transports.server.run.serve`, which makes Hypercorn itself refuse a message as soon as it
passes the frame limit (transports/server/hardening.py makes that refusal end the connection,
and applies it to deflated messages too).

The same for the HTTP refusals: an oversized ``POST /send`` gets its 413 and the connection ends,
and a request whose body stops arriving (``Content-Length`` larger than what is sent) is
answered (408, or the poll's answer) and its connection ends, instead of being held.

Every bound here is generous (seconds where the server needs milliseconds): they tell a
connection the server closes from one it holds, not how fast it is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import zlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from .conftest import eventually
from .rawws import CLOSE, CONT, TEXT, build_frame, deflate
from .secharness import Live, live_server

MiB = 1024 * 1024
CLOSED_WITHIN = 10.0
"""Seconds the server gets to close a refused connection (it needs well under one)."""


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async with live_server(body_timeout=1.0) as server:
        yield server


def message(size: int, compressible: bool) -> str:
    """A text message of ``size`` characters: one letter repeated, or base64 of random bytes
    (which deflate cannot shrink much, so the compressed frame is as large on the wire)."""
    if compressible:
        return "a" * size
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


# --- WebSocket -----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "deflate"])
@pytest.mark.parametrize("size", [MiB, 16 * MiB], ids=["1MiB", "16MiB"])
async def test_websocket_oversized_message_closes_the_connection(
    live: Live, size: int, compression: str | None
) -> None:
    """One text message of ``size`` from a plain ``websockets`` client: the client receives
    close 1009, and the server closes the TCP connection. The client would wait a minute
    (``close_timeout``) before closing on its own, so a connection that ends within
    :data:`CLOSED_WITHIN` was closed by the server. The session is freed, and other clients
    keep working."""
    sessions = live.engine.session_count
    ticket = (await live.negotiate(["websocket"]))["ticket"]
    url = f"ws://{live.host}:{live.port}/realtime/ws?ticket={ticket}"
    ws = await ws_connect(
        url, compression=compression, max_size=None, close_timeout=60, ping_interval=None
    )
    try:
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in extensions) == (compression is not None)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))[0] == 0  # HELLO
        # With deflate the payload is random text, so the frame on the wire is megabytes too.
        await ws.send(message(size, compressible=compression is None))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), CLOSED_WITHIN)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await asyncio.wait_for(ws.wait_closed(), CLOSED_WITHIN)
    finally:
        ws.transport.abort()  # whatever happened, do not leave the socket behind
    await eventually(lambda: live.engine.session_count == sessions, CLOSED_WITHIN)
    await live.check_alive()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflate"])
async def test_websocket_oversized_message_closed_when_the_client_never_answers(
    live: Live, compressed: bool
) -> None:
    """A raw client sends a 1 MiB message and then reads, never answering the server's close:
    it still receives close 1009 and then the end of the connection (the server does not wait
    for a close reply forever)."""
    ws = await live.raw_ws(deflate=compressed)
    try:
        assert ws.accepted
        assert ("permessage-deflate" in ws.reply.headers.get("sec-websocket-extensions", "")) == (
            compressed
        )
        await ws.read_text()  # HELLO
        payload = message(MiB, compressible=False).encode()
        if compressed:
            ws.writer.write(build_frame(TEXT, deflate(payload), rsv=4))
        else:
            ws.writer.write(build_frame(TEXT, payload))
        # Not drained before reading: a server that refuses early may stop reading.
        assert await ws.close_code(CLOSED_WITHIN) == 1009
        ended = await asyncio.wait_for(ws.reader.read(), CLOSED_WITHIN)
        assert ended == b"", "nothing after the close frame, then the end of the connection"
    finally:
        await ws.aclose()
    await live.check_alive()


async def test_websocket_deflated_message_refused_before_it_ends(live: Live) -> None:
    """A deflated message sent as fragments, past four times the limit once inflated, that
    never ends: closed with 1009 while it is still arriving (as an uncompressed one is), not
    read for as long as the client keeps sending; after the client's close reply the server
    ends the connection. Nothing is applied."""
    limit = live.engine.settings.max_message_size
    ws = await live.raw_ws(deflate=True)
    try:
        assert "permessage-deflate" in ws.reply.headers.get("sec-websocket-extensions", "")
        await ws.read_text()  # HELLO
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        head = b'[3,1,"count",{"key":"inflated","pad":"'
        data = compressor.compress(head) + compressor.flush(zlib.Z_SYNC_FLUSH)
        ws.writer.write(build_frame(TEXT, data, fin=False, rsv=4))
        for _ in range(4 * limit // 4096):
            chunk = os.urandom(2048).hex().encode()  # 4 KiB that deflate halves at best
            data = compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)
            ws.writer.write(build_frame(CONT, data, fin=False))
        assert await ws.close_code(CLOSED_WITHIN) == 1009
        ws.writer.write(build_frame(CLOSE, struct.pack("!H", 1009)))
        ended = await asyncio.wait_for(ws.reader.read(), CLOSED_WITHIN)
        assert ended == b""
    finally:
        await ws.aclose()
    assert live.applied["inflated"] == 0
    await live.check_alive()


# --- HTTP: oversized bodies and bodies that stop arriving ----------------------------------


async def exchange(live: Live, request: bytes) -> tuple[bytes, str]:
    """Send ``request`` on a new connection and read until the connection ends:
    ``(what arrived, "eof" | "reset")``. Fails if the server still holds the connection after
    :data:`CLOSED_WITHIN` seconds.

    Writing and reading are separate tasks on a plain socket, so that a write the server
    refuses (it answered and closed before the body was in) does not stop the reading: the
    answer already received is still read, as a browser would."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    out = b""

    async def write() -> None:
        with contextlib.suppress(OSError):
            await loop.sock_sendall(sock, request)

    writing: asyncio.Task[None] | None = None
    try:
        await loop.sock_connect(sock, (live.host, live.port))
        writing = asyncio.create_task(write())
        async with asyncio.timeout(CLOSED_WITHIN):
            while chunk := await loop.sock_recv(sock, 65536):
                out += chunk
        return out, "eof"
    except TimeoutError:
        raise AssertionError(f"the server holds the connection; it sent {out[:200]!r}") from None
    except ConnectionResetError:
        return out, "reset"
    finally:
        if writing is not None:
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
        sock.close()


def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer_of(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and ``Content-Length`` body of the first response in ``data``."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = rest[: int(headers.get("content-length", "0"))]
    return int(lines[0].split(" ", 2)[1]), headers, body


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("shape", ["length-2MiB", "length-16MiB", "length-only", "chunked-2MiB"])
async def test_send_oversized_body_answered_and_connection_ended(live: Live, shape: str) -> None:
    """``POST /send`` with a body over ``max_body_size`` (announced by ``Content-Length`` and
    sent, announced only, or chunked without a length): ``413 payload_too_large`` with its JSON
    body, and the server ends that connection (the rest of the body is never read); nothing is
    applied and other clients keep working.

    With 16 MiB on the way the server's close can reach the client as a reset (unread data);
    the 413 must still have arrived before it."""
    wire = await live.wire("sse")
    headers = {"Content-Type": "application/json", "X-Realtime-Session": wire.token}
    limit = live.engine.settings.max_body_size
    frame = '[3,1,"count",{"key":"big","pad":"'
    size = 16 * MiB if shape == "length-16MiB" else 2 * MiB
    body = ("[" + frame + "a" * (size - len(frame) - 5) + '"}]]').encode()
    assert len(body) > limit
    if shape == "chunked-2MiB":
        request = http_request(
            "POST", "/realtime/send", {**headers, "Transfer-Encoding": "chunked"}, chunked(body)
        )
    else:
        headers["Content-Length"] = str(len(body))
        request = http_request(
            "POST", "/realtime/send", headers, b"" if shape == "length-only" else body
        )
    out, _ = await exchange(live, request)
    status, response_headers, response = answer_of(out)
    assert status == 413
    assert response_headers.get("content-type") == "application/json"
    assert json.loads(response)["error"] == "payload_too_large"
    assert live.applied["big"] == 0
    await wire.echo(2)  # the session itself is fine
    await live.check_alive()


@pytest.mark.parametrize("route", ["send", "negotiate"])
async def test_post_cut_mid_body_answered_408_and_connection_ended(live: Live, route: str) -> None:
    """A POST that announces 1000 bytes, sends 3 and stops: once ``body_timeout`` (1 s here)
    passes the server answers ``408 request_timeout`` and ends the connection, instead of
    waiting for the rest."""
    headers = {"Content-Type": "application/json", "Content-Length": "1000"}
    if route == "send":
        wire = await live.wire("sse")
        headers["X-Realtime-Session"] = wire.token
    out, _ = await exchange(live, http_request("POST", f"/realtime/{route}", headers, b"[  "))
    status, _, response = answer_of(out)
    assert status == 408
    assert json.loads(response)["error"] == "request_timeout"
    await live.check_alive()


async def test_poll_cut_mid_body_answered_and_connection_ended(live: Live) -> None:
    """A long-poll ``GET /poll`` that announces a body and sends only part of it: the poll is
    answered all the same (it never reads a body) and the connection ends after the answer;
    the session stays usable."""
    wire = await live.wire("longpoll")
    headers = {"X-Realtime-Session": wire.token, "Content-Length": "1000"}
    out, _ = await exchange(
        live, http_request("GET", f"/realtime/poll?cursor={wire.cursor}", headers, b"xx")
    )
    status, _, response = answer_of(out)
    assert status == 200
    assert "frames" in json.loads(response)
    await wire.echo(1)
    await live.check_alive()


async def test_sse_cut_mid_body_streams_and_is_freed_when_the_client_goes(live: Live) -> None:
    """``GET /sse`` that announces a body and sends only part of it: the stream starts anyway
    (HELLO arrives; nothing waits for the body), and once the client goes the session's stream
    ends (the harness then requires the baseline: no session, topic or task left behind). A
    refused one (bad ticket) is answered and its connection ended."""
    info = await live.negotiate(["sse"])
    reader, writer = await asyncio.open_connection(live.host, live.port)
    try:
        writer.write(
            http_request(
                "GET", "/realtime/sse?ticket=" + info["ticket"], {"Content-Length": "1000"}, b"xx"
            )
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        stream = b""
        async with asyncio.timeout(5):
            while b"data: [0," not in stream:
                stream += await reader.read(4096)
        channel_count = len(live.engine.channels)
    finally:
        writer.transport.abort()
    await eventually(lambda: len(live.engine.channels) < channel_count, CLOSED_WITHIN)

    out, _ = await exchange(
        live, http_request("GET", "/realtime/sse?ticket=bad", {"Content-Length": "1000"}, b"xx")
    )
    assert answer_of(out)[0] == 401
