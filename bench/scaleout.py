"""Fan-out on Redis: one Hypercorn process against ``--workers 2``, measured in one run.

``python -m bench.scaleout [--subscribers 400] [--messages 50] [--rounds 3]``

Each round starts a fresh ``redis-server`` and, for each configuration, a fresh server
(``hypercorn bench.scaleout_app:app --workers N``). Subscribers (the library's Python client over
WebSocket, in this process) subscribe to one topic; one request asks the server to publish
``messages`` publications as fast as it can; the figure is deliveries per second until the last
subscriber has the last message, plus the servers' CPU seconds per delivery (all worker
processes). Configurations are interleaved inside each round and the ratio is taken inside the
round. Client and servers share this machine's cores: say so when quoting the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from transports.bench import report as bench_report
from transports.client import Client, connect

ROOT = Path(__file__).resolve().parent.parent
HYPERCORN = str(Path(sys.executable).with_name("hypercorn"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing on port {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cpu_of(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds of ``proc`` and all its children (Hypercorn's workers)."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        parent = psutil.Process(proc.pid)
        for p in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = p.cpu_times()
                total += times.user + times.system
    return total


async def measure(
    redis_url: str, workers: int, subscribers: int, messages: int
) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "BENCH_REDIS": redis_url, "TRANSPORTS_SECRET_KEY": "bench-scaleout-key"}
    proc = subprocess.Popen(
        [
            HYPERCORN,
            "bench.scaleout_app:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    clients: list[Client] = []
    try:
        await wait_port(port)
        base = f"http://127.0.0.1:{port}"
        clients = list(
            await asyncio.gather(
                *(
                    connect(base + "/realtime", transports=["websocket"], timeout=60)
                    for _ in range(subscribers)
                )
            )
        )
        for client in clients:
            await client.subscribe("fan")
        done = asyncio.Event()
        remaining = [subscribers]

        async def count(client: Client) -> None:
            for _ in range(messages):
                await client.next_message(120)
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

        counters = [asyncio.create_task(count(c)) for c in clients]
        cpu0 = cpu_of(proc)
        start = time.perf_counter()
        async with (
            aiohttp.ClientSession() as http,
            http.post(base + "/bench/burst", json={"topic": "fan", "n": messages}) as response,
        ):
            assert response.status == 200
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - start
        cpu = cpu_of(proc) - cpu0
        await asyncio.gather(*counters)
        deliveries = subscribers * messages
        return {"rate": deliveries / elapsed, "srv_us": cpu / deliveries * 1e6, "seconds": elapsed}
    finally:
        for client in clients:
            await client.close()
        stop(proc)


async def run(subscribers: int, messages: int, rounds: int) -> dict[str, Any]:
    results: dict[str, list[dict[str, float]]] = {"1 process": [], "2 workers": []}
    for index in range(rounds):
        port = free_port()
        data = tempfile.TemporaryDirectory()
        redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                data.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            await wait_port(port)
            url = f"redis://127.0.0.1:{port}/0"
            for name, workers in (("1 process", 1), ("2 workers", 2)):
                figures = await measure(url, workers, subscribers, messages)
                results[name].append(figures)
                print(
                    f"round {index + 1} {name:9}: {figures['rate']:8,.0f} deliveries/s, "
                    f"{figures['srv_us']:5.0f} us server CPU/delivery, "
                    f"last delivery after {figures['seconds']:.2f} s",
                    flush=True,
                )
        finally:
            stop(redis)
            data.cleanup()
    ratios = [
        b["rate"] / a["rate"]
        for a, b in zip(results["1 process"], results["2 workers"], strict=True)
    ]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{os.cpu_count()} cores (client and servers share them)",
        "subscribers": subscribers,
        "messages": messages,
        "results": results,
        "ratio_2_workers_over_1": ratios,
        "summary": {
            name: {
                "rate_median": statistics.median(r["rate"] for r in runs),
                "srv_us_median": statistics.median(r["srv_us"] for r in runs),
            }
            for name, runs in results.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=400)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scaleout.json")
    args = parser.parse_args()
    report = asyncio.run(run(args.subscribers, args.messages, args.rounds))
    ratios = report["ratio_2_workers_over_1"]
    print(
        f"\n2 workers / 1 process, deliveries per second: median {statistics.median(ratios):.2f} "
        f"[{min(ratios):.2f}-{max(ratios):.2f}] over {len(ratios)} rounds"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    results = ROOT / "bench" / "results"
    if args.out.resolve() == (results / "scaleout.json").resolve():
        # The committed run changed: render scaleout.txt and the table docs/scaling.md
        # includes (bench/results/figures.md).
        for path in bench_report.write_docs_snippets(results, ROOT / "bench" / "templates"):
            print("rendered", path)


if __name__ == "__main__":
    main()
