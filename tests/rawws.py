"""A raw WebSocket client over asyncio streams, for frames no well-behaved library would send.

Everything is built by hand: the HTTP upgrade (with any headers), and each frame's FIN/RSV bits,
opcode, mask and length. Used by the security suite for malformed framing (RSV bits, reserved
opcodes, unmasked or oversized control frames, stray continuations), invalid UTF-8, fragmented
floods and permessage-deflate bombs against a real Hypercorn on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "CONT",
    "TEXT",
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "Frame",
    "HTTPReply",
    "RawWebSocket",
    "build_frame",
    "deflate",
    "read_http_reply",
]

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One WebSocket frame. ``rsv`` is the three RSV bits as 0-7 (RSV1 = 4); ``length``
    overrides the announced payload length (to lie about it)."""
    first = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    size = len(payload) if length is None else length
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head = struct.pack("!BB", first, mask_bit | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _xor(payload, key)


def _xor(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    # XOR in one big-integer operation: fast enough for megabytes.
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    value = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(data), "big")


def deflate(data: bytes) -> bytes:
    """``data`` compressed as one permessage-deflate message (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


@dataclass
class Frame:
    """A frame the server sent."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame (1005 when it has none)."""
        if self.opcode != CLOSE:
            return None
        if len(self.payload) < 2:
            return 1005
        return int(struct.unpack("!H", self.payload[:2])[0])


@dataclass
class HTTPReply:
    """The server's answer to the upgrade request."""

    status: int
    headers: dict[str, str]
    raw: bytes


async def read_http_reply(reader: asyncio.StreamReader, timeout: float = 5.0) -> HTTPReply:
    """Read a status line and headers (not the body)."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return HTTPReply(status, headers, raw)


class RawWebSocket:
    """A connection that performed the upgrade; send raw bytes, read the server's frames."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: HTTPReply
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.reply = reply

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        deflate: bool = False,
        timeout: float = 5.0,
    ) -> RawWebSocket:
        """Open a TCP connection and send the upgrade; ``reply.status`` says how it went
        (101 when accepted; otherwise the connection carries an HTTP error response)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        reply = await read_http_reply(reader, timeout)
        return cls(reader, writer, reply)

    @property
    def accepted(self) -> bool:
        return self.reply.status == 101

    async def refusal(self, timeout: float = 5.0) -> bytes:
        """The body of a refused upgrade (``Content-Length`` bytes)."""
        length = int(self.reply.headers.get("content-length", "0"))
        return await asyncio.wait_for(self.reader.readexactly(length), timeout)

    async def send(self, data: bytes) -> None:
        """Write raw bytes (one or more frames, or garbage)."""
        self.writer.write(data)
        await self.writer.drain()

    async def send_text(self, text: str) -> None:
        await self.send(build_frame(TEXT, text.encode("utf-8")))

    async def read_frame(self, timeout: float = 5.0) -> Frame:
        """The next frame from the server. Raises ``asyncio.IncompleteReadError`` at EOF."""

        async def read() -> Frame:
            head = await self.reader.readexactly(2)
            fin = bool(head[0] & 0x80)
            rsv = (head[0] >> 4) & 7
            opcode = head[0] & 0x0F
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            if head[1] & 0x80:  # servers never mask, but be tolerant
                key = await self.reader.readexactly(4)
                return Frame(fin, rsv, opcode, _xor(await self.reader.readexactly(size), key))
            return Frame(fin, rsv, opcode, await self.reader.readexactly(size))

        return await asyncio.wait_for(read(), timeout)

    async def read_text(self, timeout: float = 5.0) -> str:
        """The next data frame's text (skipping pings)."""
        while True:
            frame = await self.read_frame(timeout)
            if frame.opcode in (TEXT, BINARY):
                return frame.payload.decode("utf-8", "replace")
            if frame.opcode == CLOSE:
                raise ConnectionError(f"closed with {frame.close_code}")

    async def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server's close frame and return its code: 1006 when the connection
        ended without one, None when it is still open after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                frame = await self.read_frame(max(0.01, deadline - loop.time()))
            except (asyncio.IncompleteReadError, ConnectionError):
                return 1006
            except TimeoutError:
                return None
            if frame.opcode == CLOSE:
                code = frame.close_code
                assert code is not None
                return code

    async def aclose(self) -> None:
        """Close the TCP connection (no close handshake)."""
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
