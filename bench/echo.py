"""Round trip and throughput of each transport beside raw Quart routes, in one run.

``python -m bench.echo [--rounds 3] [--quick]``

For every round a fresh server process (``bench.server``) runs; inside it the configurations
are measured one after another, so ratios compare figures taken minutes apart on the same
server under the same load. Figures:

* ``rtt``: sequential echo, one client: p50 and p99 in ms;
* ``pipelined``: echo with 16 messages in flight, one client: messages per second;
* ``down``: server to client, one subscriber, a burst of N messages: messages per second;
* ``srv_us``: server CPU microseconds per message (user + system, from ``/proc`` via psutil),
  the figure least disturbed by a shared machine.

The raw Quart WebSocket echo (and raw SSE stream for ``down``) is the ceiling: ratios are
``config / ceiling`` in the same round (for ``srv_us`` lower is better, the ratio is
``ceiling / config`` so that 1.0 means "as cheap as raw" and above 1.0 is cheaper).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from transports.client import Client, connect

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = {"pad": "x" * 89}  # 100 bytes as JSON


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.server", "--port", str(self.port)], cwd=ROOT
        )
        self.ps = psutil.Process(self.proc.pid)

    async def ready(self) -> None:
        for _ in range(300):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("bench server did not start")

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


Measure = Callable[[ServerProcess, int], Awaitable[dict[str, float]]]


async def timed(
    server: ServerProcess, count: int, work: Callable[[], Awaitable[None]]
) -> dict[str, float]:
    cpu0, t0 = server.cpu(), time.perf_counter()
    await work()
    elapsed, cpu = time.perf_counter() - t0, server.cpu() - cpu0
    return {"rate": count / elapsed, "srv_us": cpu / count * 1e6}


# --- raw Quart (the ceiling) -------------------------------------------------------------


async def raw_rtt(server: ServerProcess, n: int) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.base.replace("http", "ws") + "/raw/ws") as ws,
    ):
        text = json.dumps(PAYLOAD)
        times = []
        for i in range(n + n // 10):
            t0 = time.perf_counter()
            await ws.send_str(text)
            await ws.receive()
            if i >= n // 10:
                times.append(time.perf_counter() - t0)
    return rtt_figures(times)


async def raw_pipelined(server: ServerProcess, n: int) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.base.replace("http", "ws") + "/raw/ws") as ws,
    ):
        text = json.dumps(PAYLOAD)

        async def work() -> None:
            sent = received = 0
            while sent < 16:
                await ws.send_str(text)
                sent += 1
            while received < n:
                await ws.receive()
                received += 1
                if sent < n:
                    await ws.send_str(text)
                    sent += 1

        return await timed(server, n, work)


async def raw_ws_down(server: ServerProcess, n: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:

        async def work() -> None:
            url = server.base.replace("http", "ws") + f"/raw/push?n={n}&size=100"
            async with http.ws_connect(url) as ws:
                got = 0
                while got < n:
                    message = await ws.receive()
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        break
                    got += 1

        return await timed(server, n, work)


async def raw_sse_down(server: ServerProcess, n: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:

        async def work() -> None:
            async with http.get(server.base + f"/raw/sse?n={n}&size=100") as response:
                got = 0
                async for chunk in response.content.iter_any():
                    got += chunk.count(b"\n\n")
                assert got == n, got

        return await timed(server, n, work)


# --- transports through the public client API --------------------------------------------


def rtt_figures(times: list[float]) -> dict[str, float]:
    times.sort()
    return {
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
    }


async def client_for(server: ServerProcess, transport: str) -> Client:
    return await connect(server.base + "/realtime", transports=[transport], send_timeout=60)  # type: ignore[list-item]


def transport_rtt(transport: str) -> Measure:
    async def measure(server: ServerProcess, n: int) -> dict[str, float]:
        client = await client_for(server, transport)
        try:
            times = []
            for i in range(n + n // 10):
                t0 = time.perf_counter()
                await client.send("echo", PAYLOAD)
                if i >= n // 10:
                    times.append(time.perf_counter() - t0)
            return rtt_figures(times)
        finally:
            await client.close()

    return measure


def transport_pipelined(transport: str) -> Measure:
    async def measure(server: ServerProcess, n: int) -> dict[str, float]:
        client = await client_for(server, transport)
        try:

            async def work() -> None:
                window = asyncio.Semaphore(16)

                async def one() -> None:
                    async with window:
                        await client.send("echo", PAYLOAD)

                await asyncio.gather(*(one() for _ in range(n)))

            return await timed(server, n, work)
        finally:
            await client.close()

    return measure


def transport_down(transport: str) -> Measure:
    async def measure(server: ServerProcess, n: int) -> dict[str, float]:
        client = await client_for(server, transport)
        topic = f"down-{transport}-{time.monotonic_ns()}"
        try:
            await client.subscribe(topic)
            async with aiohttp.ClientSession() as http:

                async def work() -> None:
                    async with http.post(
                        server.base + "/bench/burst", json={"topic": topic, "n": n}
                    ) as r:
                        assert r.status == 200
                    for _ in range(n):
                        await client.next_message(60)

                return await timed(server, n, work)
        finally:
            await client.close()

    return measure


CONFIGS: dict[str, dict[str, Measure]] = {
    "rtt": {
        "raw-ws": raw_rtt,
        "websocket": transport_rtt("websocket"),
        "sse": transport_rtt("sse"),
        "longpoll": transport_rtt("longpoll"),
    },
    "pipelined": {
        "raw-ws": raw_pipelined,
        "websocket": transport_pipelined("websocket"),
        "sse": transport_pipelined("sse"),
        "longpoll": transport_pipelined("longpoll"),
    },
    "down": {
        "raw-ws": raw_ws_down,
        "raw-sse": raw_sse_down,
        "websocket": transport_down("websocket"),
        "sse": transport_down("sse"),
        "longpoll": transport_down("longpoll"),
    },
}
CEILING = {"rtt": "raw-ws", "pipelined": "raw-ws", "down": "raw-ws"}


async def run(rounds: int, quick: bool) -> dict[str, Any]:
    counts = {
        "rtt": 300 if quick else 2000,
        "pipelined": 1000 if quick else 5000,
        "down": 1000 if quick else 10000,
    }
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        w: {c: [] for c in configs} for w, configs in CONFIGS.items()
    }
    for index in range(rounds):
        server = ServerProcess()
        try:
            await server.ready()
            for workload, configs in CONFIGS.items():
                for name, measure in configs.items():
                    figures = await measure(server, counts[workload])
                    results[workload][name].append(figures)
                    print(f"round {index + 1} {workload:9} {name:10} {fmt(figures)}", flush=True)
        finally:
            server.stop()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "rounds": rounds,
        "counts": counts,
        "results": results,
    }


def fmt(figures: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:,.2f}" if v < 100 else f"{k}={v:,.0f}" for k, v in figures.items())


def summarize(report: dict[str, Any]) -> str:
    lines = [
        f"Run {report['date']} on {report['machine']}; {report['rounds']} rounds, a fresh server "
        "per round; median [min-max]; ratio = same-round figure / raw Quart WebSocket.",
        "",
        "| workload | config | figure | ratio to raw WS | server CPU us/msg "
        "| CPU ratio (raw/config) |",
        "|---|---|---|---|---|---|",
    ]
    for workload, configs in report["results"].items():
        ceiling = configs[CEILING[workload]]
        for name, runs in configs.items():
            if workload == "rtt":
                p50 = [r["p50_ms"] for r in runs]
                p99 = [r["p99_ms"] for r in runs]
                ratio = [r["p50_ms"] / c["p50_ms"] for r, c in zip(runs, ceiling, strict=True)]
                figure = f"p50 {med(p50):.3f} ms, p99 {med(p99):.3f} ms"
                lines.append(f"| {workload} | {name} | {figure} | p50 x{med(ratio):.2f} | | |")
                continue
            rate = [r["rate"] for r in runs]
            cpu = [r["srv_us"] for r in runs]
            ratio = [r["rate"] / c["rate"] for r, c in zip(runs, ceiling, strict=True)]
            cpu_ratio = [c["srv_us"] / r["srv_us"] for r, c in zip(runs, ceiling, strict=True)]
            spread = f"[{min(rate):,.0f}-{max(rate):,.0f}]"
            lines.append(
                f"| {workload} | {name} | {med(rate):,.0f} msg/s {spread} "
                f"| {med(ratio):.2f} | {med(cpu):.0f} | {med(cpu_ratio):.2f} |"
            )
    return "\n".join(lines)


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "echo.json")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    report = asyncio.run(run(rounds, args.quick))
    table = summarize(report)
    print()
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
