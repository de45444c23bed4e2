"""Security catalogue B3: the permessage-deflate bomb, with the server's memory measured.

The app runs in a subprocess (tests/browser/serve_app.py, under ``transports.server.run.serve``)
so that its peak resident memory can be read from ``/proc/<pid>/status`` (``VmHWM``, reset
before the bomb through ``/proc/<pid>/clear_refs``). A WebSocket that negotiated
permessage-deflate sends, as its first message, 64 MiB of ``"0"`` compressed to about 64 KiB.
With the library's hardening (``harden_websocket_deflate``, the default) inflation stops at the
frame limit; without it, wsproto inflates a whole 64 KiB read before anything checks the size.
Both peaks are printed (``-s``) and recorded as user properties; only the hardened one is
asserted. Then 100 bombs arrive at once (the catalogue's "with 100 parallel bombs the process
survives"): what is asserted is that every one of those connections ends and the process and
a client connected before survive, and that the burst's peak memory growth (all 100
connections' buffers, inflaters and sessions together) stays under 1 MiB per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from transports.client import connect

from .browser.harness import AppServer
from .rawws import TEXT, RawWebSocket, build_frame, deflate
from .secharness import expect

BOMB_SIZE = 64 * 1024 * 1024
MiB = 1024 * 1024
HARDENED_PEAK_LIMIT = 16 * MiB
"""About three times the 64 KiB message limit per connection, plus room for the allocator."""
PARALLEL_BOMBS = 100
"""Bombs sent at once after the measured one (catalogue B3: "with 100 parallel bombs the
process survives")."""

HYPERCORN_DROPS_1009 = (
    "with harden_websocket_deflate the inflater returns MESSAGE_TOO_BIG, which wsproto turns "
    "into a failed connection (CloseConnection 1009 from a ParseFailed) and Hypercorn drops "
    "the TCP connection without sending that close frame: the client sees 1006 (reconnect) "
    "instead of 1009 (stop), and a client that retries sends the bomb again"
)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """64 MiB of zeros (the digit), deflated: about 64 KiB."""
    return deflate(b"0" * BOMB_SIZE)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux clear_refs 5); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def subprocess_app(tmp_path: Path, **settings: Any) -> Iterator[AppServer]:
    server = AppServer(tmp_path / "app.log", tick_ms=0, settings=settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def send_bomb(server: AppServer, payload: bytes) -> int | None:
    """Negotiate, open a WebSocket with permessage-deflate, send ``payload`` as one compressed
    text message (the first after HELLO); the close code the client sees."""
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/realtime/negotiate", json={}) as response:
            ticket = (await response.json())["ticket"]
    ws = await RawWebSocket.connect(
        "127.0.0.1", server.port, "/realtime/ws?ticket=" + ticket, deflate=True
    )
    try:
        assert ws.accepted
        assert "permessage-deflate" in ws.reply.headers.get("sec-websocket-extensions", "")
        await ws.read_text()  # HELLO
        await ws.send(build_frame(TEXT, payload, rsv=4))  # RSV1: compressed
        return await ws.close_code(20)
    finally:
        await ws.aclose()


async def warm_up(server: AppServer) -> None:
    """One ordinary compressed message and echo, so first-use allocations are behind us."""
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/realtime/negotiate", json={}) as response:
            ticket = (await response.json())["ticket"]
        url = server.url.replace("http://", "ws://") + "/realtime/ws?ticket=" + ticket
        async with http.ws_connect(url, compress=15) as ws:
            await ws.receive()  # HELLO
            await ws.send_str('[3,1,"echo","' + "0" * 60_000 + '"]', compress=15)
            reply = await ws.receive_json(timeout=5)
            assert reply[:3] == [4, 1, "ok"]


async def measured_bomb(server: AppServer, payload: bytes) -> tuple[int | None, int]:
    """The close code and the peak memory growth (bytes) of one bomb."""
    assert server.proc is not None
    pid = server.proc.pid
    await warm_up(server)
    await asyncio.sleep(0.2)
    before = memory(pid)
    baseline = before["VmRSS"] if reset_peak(pid) else before["VmHWM"]
    code = await send_bomb(server, payload)
    await asyncio.sleep(0.2)
    return code, memory(pid)["VmHWM"] - baseline


async def test_b3_deflate_bomb_hardened(tmp_path: Path, bomb: bytes, record_property: Any) -> None:
    """B3: a 64 KiB permessage-deflate message inflating to 64 MiB, as the first message of a
    connection: refused with 1009 while the server's peak memory grows by less than 16 MiB
    (about three times the 64 KiB limit plus allocator slack); a client connected before is
    unaffected and the server keeps serving; then ``PARALLEL_BOMBS`` (100) bombs at once, as
    the catalogue asks: every one of those connections ends, the process survives and the
    control client still echoes. All 100 come from 127.0.0.1; the app's defaults admit them
    (``max_sessions_per_address`` 1000, ``negotiate_burst`` 200 covers the 103 negotiations of
    this test), so no limit is raised."""
    with subprocess_app(tmp_path) as server:
        control = await connect(server.url + "/realtime", transports=["websocket"])
        try:
            code, growth = await measured_bomb(server, bomb)
            print(f"\nB3 hardened: close {code}, peak RSS growth {growth / MiB:.1f} MiB")
            record_property("b3_hardened_peak_growth_bytes", growth)
            assert code is not None, "the bomb's connection must end"
            assert growth < HARDENED_PEAK_LIMIT, f"peak grew by {growth / MiB:.1f} MiB"
            assert await control.send("echo", "after one bomb", timeout=5) == "after one bomb"
            assert server.proc is not None
            pid = server.proc.pid
            before = memory(pid)
            baseline = before["VmRSS"] if reset_peak(pid) else before["VmHWM"]
            started = time.monotonic()
            codes = await asyncio.gather(*(send_bomb(server, bomb) for _ in range(PARALLEL_BOMBS)))
            elapsed = time.monotonic() - started
            after = memory(pid)
            print(
                f"B3 hardened, {PARALLEL_BOMBS} bombs at once: closes "
                f"{dict(sorted(Counter(codes).items(), key=str))}, in {elapsed:.1f} s, "
                f"peak RSS growth {(after['VmHWM'] - baseline) / MiB:.1f} MiB "
                f"(RSS {after['VmRSS'] / MiB:.0f} MiB, peak {after['VmHWM'] / MiB:.0f} MiB)"
            )
            record_property("b3_parallel_peak_growth_bytes", after["VmHWM"] - baseline)
            # Unhardened, each bomb alone peaks at some 190 MiB; hardened, the whole burst must
            # stay within 1 MiB per connection (measured: about 0.35 MiB).
            burst_growth = after["VmHWM"] - baseline
            assert burst_growth < PARALLEL_BOMBS * MiB, f"burst peak {burst_growth / MiB:.0f} MiB"
            assert all(c is not None for c in codes)
            assert server.proc.poll() is None
            after_all = f"after {PARALLEL_BOMBS}"
            assert await control.send("echo", after_all, timeout=5) == after_all
        finally:
            await control.close()
    expect(code == 1009, f"the bomb's connection closed with {code}, documented 1009")


async def test_b3_deflate_bomb_unhardened_for_comparison(
    tmp_path: Path, bomb: bytes, record_property: Any
) -> None:
    """B3 (reference, nothing asserted about memory): the same bomb with
    ``harden_websocket_deflate=False``, in a fresh process, to quote what the hardening saves;
    the connection still ends with 1009 (Hypercorn's own size check, after inflating)."""
    with subprocess_app(tmp_path, harden_websocket_deflate=False) as server:
        code, growth = await measured_bomb(server, bomb)
        print(f"\nB3 without hardening: close {code}, peak RSS growth {growth / MiB:.1f} MiB")
        record_property("b3_unhardened_peak_growth_bytes", growth)
        assert server.proc is not None and server.proc.poll() is None
        assert code == 1009


def test_b3_bomb_is_what_it_claims(bomb: bytes) -> None:
    """B3 (the fixtures): the compressed message is small and inflates to 64 MiB, and the
    memory probe reads a process's resident and peak memory (a peak that moves when the
    process allocates), so the growth the cases assert is a measurement."""
    import zlib

    assert len(bomb) < 100 * 1024
    inflater = zlib.decompressobj(-15)
    assert len(inflater.decompress(bomb + b"\x00\x00\xff\xff")) == BOMB_SIZE
    pid = os.getpid()
    reset_peak(pid)
    before = memory(pid)
    assert set(before) == {"VmRSS", "VmHWM"} and 0 < before["VmRSS"] <= before["VmHWM"]
    # Past the peak by 32 MiB (bytearray zero-fills: every page is touched).
    block = bytearray(before["VmHWM"] - before["VmRSS"] + 32 * MiB)
    after = memory(pid)
    del block
    assert after["VmHWM"] - before["VmHWM"] >= 16 * MiB, (before, after)
