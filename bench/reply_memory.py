"""What the reply memory costs a client message with Redis, against the in-memory backplane.

Every client message is claimed in the backplane's key-value store before its handler runs, and
its answer stored after (docs/protocol.md §8). With the in-memory backplane both are dictionary
writes; with Redis each is a round trip. This drives the library in this process (the edge with
ASGI events, no ASGI server or client library in the way; ``transports.bench.inproc``) against a
real ``redis-server`` on loopback, the two backplanes interleaved in each repetition:

* ``rtt_p50_us``: one client, one message at a time: the median time from the message queued to
  its REPLY written (what a user waits per message, less the network);
* ``echo50_per_s``: 50 clients, one message in flight each (closed loop), messages per second.

Run: ``python -m bench.reply_memory [--repeat 5] [--echoes 2000] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from typing import Any

from quart import Quart

from bench.scaleout import free_port, stop, wait_port
from transports import Channel, Realtime
from transports.bench.inproc import FakeSocket, open_websocket
from transports.bench.server import REALTIME_SETTINGS

PAYLOAD = json.dumps({"pad": "x" * 89}, separators=(",", ":"))


async def _echo(socket: FakeSocket, ref: int) -> None:
    socket.waiting = asyncio.get_running_loop().create_future()
    socket.push(f'[3,{ref},"echo",{PAYLOAD}]')
    await socket.waiting


async def measure(backplane: str, echoes: int) -> dict[str, float]:
    """One backplane: ``rtt_p50_us`` and ``echo50_per_s`` (see the module docstring)."""
    app = Quart("reply-memory")
    rt = Realtime(app, **{**REALTIME_SETTINGS, "backplane": backplane})

    @rt.on("echo")
    async def echo(channel: Channel, data: Any) -> Any:
        return data

    async with app.test_app() as test_app:
        client = test_app.test_client()
        sockets: list[FakeSocket] = []
        tasks: list[asyncio.Task[None]] = []
        for _ in range(50):
            socket = FakeSocket()
            tasks.append(await open_websocket(app, client, socket))
            sockets.append(socket)
        try:
            for k, socket in enumerate(sockets):  # every connection open and warm
                for i in range(20):
                    await _echo(socket, k * 1000 + i)
            ref = 1_000_000
            times = []
            for _ in range(echoes):
                ref += 1
                started = time.perf_counter()
                await _echo(sockets[0], ref)
                times.append(time.perf_counter() - started)
            per = max(1, echoes // 50)

            async def loop(socket: FakeSocket, first: int) -> None:
                for i in range(per):
                    await _echo(socket, first + i)

            started = time.perf_counter()
            await asyncio.gather(*(loop(s, 10_000_000 * (k + 1)) for k, s in enumerate(sockets)))
            wall = time.perf_counter() - started
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "rtt_p50_us": statistics.median(times) * 1e6,
        "echo50_per_s": per * len(sockets) / wall,
    }


async def run(repeat: int, echoes: int) -> dict[str, Any]:
    port = free_port()
    data = tempfile.TemporaryDirectory()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", data.name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs: dict[str, list[dict[str, float]]] = {"memory": [], "redis": []}
    try:
        await wait_port(port)
        url = f"redis://127.0.0.1:{port}/0"
        for index in range(repeat):
            for name, backplane in (("memory", "memory://"), ("redis", url)):
                figures = await measure(backplane, echoes)
                runs[name].append(figures)
                print(
                    f"repetition {index + 1} {name:6}: round trip p50 "
                    f"{figures['rtt_p50_us']:6.0f} us, 50 clients "
                    f"{figures['echo50_per_s']:7,.0f} msg/s",
                    flush=True,
                )
    finally:
        stop(redis)
        data.cleanup()
    pairs = list(zip(runs["memory"], runs["redis"], strict=True))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{os.cpu_count()} cores (this process and redis-server share them)",
        "echoes": echoes,
        "runs": runs,
        "summary": {
            name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
            for name, rows in runs.items()
        },
        "redis_over_memory": {
            "rtt_p50": statistics.median(r["rtt_p50_us"] / m["rtt_p50_us"] for m, r in pairs),
            "echo50": statistics.median(r["echo50_per_s"] / m["echo50_per_s"] for m, r in pairs),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--echoes", type=int, default=2000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.repeat, args.echoes))
    print(json.dumps({"summary": results["summary"], "ratios": results["redis_over_memory"]}))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")


if __name__ == "__main__":
    main()
