"""Captured exchanges: what each transport (and the peer) writes on the wire.

``python -m transports.bench.capture [--out FILE]`` starts a fresh server per configuration,
puts the recording proxy (:mod:`.proxy`) between it and one client, and runs the same short
script through the public client: connect, subscribe, one echo, one published message (a
100-byte burst message from the server), close. It prints (or writes) Markdown with every byte
each way, per TCP connection, in time order; WebSocket frames are decoded (the client's are
masked on the wire) and shown one per line with their header size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from .clients import APP_OF, BIDIRECTIONAL, make_conn
from .procs import Server
from .proxy import Chunk, RecordingProxy
from .workloads import burst

CONFIGS = ["websocket", "sse", "longpoll", "raw-ws", "raw-sse", "sio-ws", "sio-polling"]
TITLES = {
    "websocket": "transports, WebSocket",
    "sse": "transports, SSE + POST",
    "longpoll": "transports, long-poll",
    "raw-ws": "raw Quart WebSocket (the ceiling)",
    "raw-sse": "raw Quart SSE (the ceiling)",
    "sio-ws": "python-socketio, WebSocket",
    "sio-polling": "python-socketio, polling",
}


def _ws_frames(data: bytes) -> tuple[list[str], bytes]:
    """Decode complete WebSocket frames from ``data``; the lines and the unparsed rest."""
    lines = []
    while len(data) >= 2:
        b0, b1 = data[0], data[1]
        opcode, masked, length = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        pos = 2
        if length == 126:
            if len(data) < 4:
                break
            length, pos = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            if len(data) < 10:
                break
            length, pos = int.from_bytes(data[2:10], "big"), 10
        mask = b""
        if masked:
            mask, pos = data[pos : pos + 4], pos + 4
        if len(data) < pos + length:
            break
        payload = data[pos : pos + length]
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        kind = {1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}.get(opcode, str(opcode))
        if opcode == 8 and len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            body = f"code {code} {payload[2:].decode(errors='replace')!r}"
        else:
            body = payload.decode("utf-8", errors="replace")
        lines.append(f"[ws {kind}, {pos}+{length} bytes] {body}")
        data = data[pos + length :]
    return lines, data


def render(chunks: list[Chunk], limit: int = 700) -> str:
    """The recorded chunks as one text block: ``C>S``/``S>C`` per connection, WebSocket
    frames decoded after a ``101`` response."""
    if not chunks:
        return ""
    t0 = chunks[0].at
    upgraded: set[int] = set()
    pending: dict[tuple[int, bool], bytes] = {}
    out = []
    for chunk in chunks:
        arrow = "C>S" if chunk.up else "S>C"
        head = f"#{chunk.conn} {arrow} +{(chunk.at - t0) * 1000:6.1f} ms"
        if chunk.conn in upgraded:
            key = (chunk.conn, chunk.up)
            lines, rest = _ws_frames(pending.get(key, b"") + chunk.data)
            pending[key] = rest
            for line in lines:
                out.append(f"{head}  {line[:limit]}")
            continue
        text = chunk.data.decode("utf-8", errors="replace")
        frames: list[str] = []
        if not chunk.up and chunk.data.startswith(b"HTTP/1.1 101"):
            upgraded.add(chunk.conn)
            header, _, rest_bytes = chunk.data.partition(b"\r\n\r\n")
            text = header.decode() + "\r\n\r\n"
            if rest_bytes:
                frames, rest = _ws_frames(rest_bytes)
                pending[(chunk.conn, False)] = rest
        shown = text if len(text) <= limit else text[:limit] + f"... ({len(text)} bytes)"
        shown = shown.replace("\r\n", "\\r\\n\n")
        block = "\n".join("    " + line for line in shown.rstrip("\n").split("\n"))
        out.append(f"{head} ({len(chunk.data)} bytes)\n{block}")
        out.extend(f"{head}  {line[:limit]}" for line in frames)
    return "\n".join(out)


async def capture(config: str) -> str:
    """One configuration's exchange, rendered."""
    server = Server(APP_OF[config]).start()
    proxy = RecordingProxy(server.port, record=True)
    await proxy.start()
    try:
        conn = make_conn(config, proxy.base, subscriber=True)
        await conn.open()
        await conn.subscribe()
        if config in BIDIRECTIONAL and config != "raw-ws":
            await conn.echo()
        await burst(server.base, 1)
        await conn.next_message(10)
        await asyncio.sleep(0.2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 3)
        await asyncio.sleep(0.3)
    finally:
        await proxy.stop()
        server.stop()
    return render(proxy.chunks)


async def run(configs: list[str]) -> str:
    parts = [
        "<!-- written by `python -m transports.bench.capture`; do not edit by hand -->",
        "",
    ]
    for config in configs:
        text = await capture(config)
        parts += [f"#### Captured: {TITLES.get(config, config)}", "", "```text", text, "```", ""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    text = asyncio.run(run([c for c in args.configs.split(",") if c]))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
