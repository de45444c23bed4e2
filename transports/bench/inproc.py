"""The library's own cost per message, without an ASGI server or a network: CPU time per echo
and per fan-out delivery, the edge driven with ASGI events in this process.

``python -m transports.bench.inproc [--echo N] [--fanout CLIENTS] [--messages M] [--raw]``
``python -m transports.bench.inproc --instructions``
``python -m transports.bench.inproc --sweep SESSIONS``

A WebSocket's ``receive`` hands the next client frame at once and its ``send`` only counts, so
what is measured is everything the library does between the ASGI server's events: decode,
dispatch, the reply memory, the handler call, encode, the writer task, the hub. It prints one
JSON line: microseconds of CPU per echo (one client, one frame at a time: the round trip's
work; and 50 clients closed-loop) and per fan-out delivery (publisher yielding after each
message, and in one burst), and the time from the burst's start to the first ``send``.

The figures are for comparing two versions of the library on one machine (run this module
from each source tree in turn, several times, and compare medians), not for the report: the
ASGI server's share, which a real measurement includes, is left out. ``--raw`` also drives a
bare Quart echo route (the comparison's ``raw-ws``) the same way.

``--instructions`` counts instructions per 50-client echo under valgrind's callgrind, for the
library and for the bare route: the difference of a 2,600- and a 600-echo run over their
difference, so start-up cancels. Unlike CPU time it does not move with the machine's load, so
two versions can be compared on a shared machine (run it in each source tree).

``--sweep SESSIONS`` opens that many idle WebSockets and gives the CPU of one pass of the
heartbeat sweeper over them (it runs about once a second in every worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import MutableMapping
from typing import Any

from quart import Quart

from .server import FANOUT_TOPIC, REALTIME_SETTINGS, burst_payload, raw_app

Event = MutableMapping[str, Any]
PAYLOAD = json.dumps({"pad": "x" * 89}, separators=(",", ":"))


class FakeSocket:
    """One WebSocket as an ASGI server presents it: a queue of incoming events, and sends that
    resolve waiters."""

    def __init__(self, answer: str = "[4,") -> None:
        self.answer = answer
        """How the message that answers a :func:`send_event` starts (a REPLY; the raw echo's own
        frame back)."""
        self.incoming: asyncio.Queue[Event] = asyncio.Queue()
        self.sent = 0
        self.first_sent = 0.0
        self.waiting: asyncio.Future[str] | None = None
        self.expect = 0
        self.done: asyncio.Future[None] | None = None

    async def receive(self) -> Event:
        return await self.incoming.get()

    async def send(self, message: Event) -> None:
        if message["type"] != "websocket.send":
            return
        self.sent += 1
        if not self.first_sent:
            self.first_sent = time.monotonic()
        text = message.get("text") or ""
        waiting = self.waiting
        if waiting is not None and not waiting.done() and text.startswith(self.answer):
            waiting.set_result(text)
        if self.done is not None and self.sent >= self.expect and not self.done.done():
            self.done.set_result(None)

    def push(self, text: str) -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})


def websocket_scope(ticket: str, path: str = "/realtime/ws") -> dict[str, Any]:
    """The ASGI scope of a WebSocket to ``path`` with ``ticket`` (the edge driven by hand, no
    ASGI server)."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": ("ticket=" + ticket).encode(),
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
        "extensions": {},
    }


def start_websocket(app: Quart, socket: Any, scope: dict[str, Any]) -> asyncio.Task[None]:
    """Run ``app``'s WebSocket ``scope`` over ``socket`` (its ``receive`` and ``send``) in a
    task, the connect event already queued."""
    socket.incoming.put_nowait({"type": "websocket.connect"})
    return asyncio.create_task(app.asgi_app(scope, socket.receive, socket.send))  # type: ignore[arg-type]


async def open_websocket(app: Quart, client: Any, socket: Any) -> asyncio.Task[None]:
    """Negotiate a WebSocket session with Quart's test ``client`` and run it over ``socket``."""
    response = await client.post("/realtime/negotiate", json={"v": 1, "transports": ["websocket"]})
    info = await response.get_json()
    return start_websocket(app, socket, websocket_scope(info["ticket"]))


async def _open(app: Quart, client: Any) -> tuple[FakeSocket, asyncio.Task[None]]:
    socket = FakeSocket()
    task = await open_websocket(app, client, socket)
    while socket.sent < 1:  # HELLO
        await asyncio.sleep(0)
    return socket, task


async def send_event(socket: FakeSocket, ref: int, event: str = "echo") -> None:
    """Send EVENT ``event`` with ref ``ref`` and the benchmark's payload on ``socket``, and
    wait for its answer."""
    socket.waiting = asyncio.get_running_loop().create_future()
    socket.push(f'[3,{ref},"{event}",{PAYLOAD}]')
    await socket.waiting


def _cpu() -> float:
    return time.process_time()


async def _end(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the connections' tasks and wait for them, inside the app's context (a task left
    to the garbage collector would end outside it)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _closed_loop(sockets: list[FakeSocket], per: int, base: int = 0) -> float:
    """Every socket echoes ``per`` messages, one at a time, all sockets at once (closed loop):
    microseconds of CPU per echo."""

    async def loop(socket: FakeSocket, first: int) -> None:
        for i in range(per):
            await send_event(socket, first + i)

    t0 = _cpu()
    await asyncio.gather(*(loop(s, base * (k + 1)) for k, s in enumerate(sockets)))
    return (_cpu() - t0) / (per * len(sockets)) * 1e6


async def measure_raw(echoes: int) -> float:
    """CPU per echo of a bare Quart WebSocket echo route (the comparison's ``raw-ws``) driven
    the same way, 50 sockets closed-loop: what the library's ``echo50_us`` compares with."""
    app = raw_app()
    async with app.test_app():
        sockets = [FakeSocket(answer="[3,") for _ in range(50)]  # the frame itself comes back
        tasks = [start_websocket(app, s, websocket_scope("", "/raw/ws")) for s in sockets]
        await _closed_loop(sockets, 4)  # every handler started and warm
        cpu = await _closed_loop(sockets, max(1, echoes // 50))
        await _end(tasks)
        return cpu


async def measure(args: argparse.Namespace) -> dict[str, float]:
    from transports import Channel, Realtime

    app = Quart("inproc")
    rt = Realtime(app, **REALTIME_SETTINGS)

    @rt.on("echo")
    async def echo(channel: Channel, data: Any) -> Any:
        return data

    out: dict[str, float] = {}
    async with app.test_app() as test_app:
        client = test_app.test_client()
        socket, task = await _open(app, client)
        ref = 0
        for _ in range(200):
            ref += 1
            await send_event(socket, ref)
        if not args.only_echo50:
            t0 = _cpu()
            for _ in range(args.echo):
                ref += 1
                await send_event(socket, ref)
            out["echo_us"] = (_cpu() - t0) / args.echo * 1e6

        sockets, tasks = [socket], [task]
        for _ in range(49):
            socket, task = await _open(app, client)
            sockets.append(socket)
            tasks.append(task)
        out["echo50_us"] = await _closed_loop(sockets, max(1, args.echo // 50), 10_000_000)
        if args.only_echo50:
            await _end(tasks)
            return out

        subs: list[FakeSocket] = []
        for k in range(args.fanout):
            if k < len(sockets):
                s = sockets[k]
            else:
                s, task = await _open(app, client)
                tasks.append(task)
            s.waiting = asyncio.get_running_loop().create_future()
            s.push(f'[5,{90_000_000 + k},"{FANOUT_TOPIC}",null]')
            await s.waiting
            subs.append(s)

        for pause in (True, False):
            for s in subs:
                s.sent, s.first_sent = 0, 0.0
                s.expect = args.messages
                s.done = asyncio.get_running_loop().create_future()
            t0 = _cpu()
            started = time.monotonic()
            for i in range(args.messages):
                await rt.publish(FANOUT_TOPIC, "m", burst_payload(i))
                if pause:
                    await asyncio.sleep(0)
            await asyncio.gather(*(s.done for s in subs if s.done is not None))
            cpu = _cpu() - t0
            name = "fanout" if pause else "burst"
            out[f"{name}_us"] = cpu / (args.messages * len(subs)) * 1e6
            firsts = sorted(s.first_sent - started for s in subs)
            out[f"{name}_first_ms"] = firsts[0] * 1000
            out[f"{name}_first_p50_ms"] = statistics.median(firsts) * 1000
        await _end(tasks)
    return out


_VALGRIND_RUNS = (600, 2600)
"""Echoes of the two runs whose difference gives instructions per echo (start-up cancels)."""


def _instructions(extra: list[str]) -> float:
    """Instructions per 50-client echo, counted by valgrind (callgrind): the difference of two
    runs of this module, over the difference of their echoes."""
    counts = []
    for echoes in _VALGRIND_RUNS:
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        argv += [sys.executable, "-m", "transports.bench.inproc", "--echo", str(echoes), *extra]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise RuntimeError("valgrind printed no instruction count:\n" + done.stderr[-2000:])
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / (_VALGRIND_RUNS[1] - _VALGRIND_RUNS[0])


async def measure_sweep(sessions: int) -> float:
    """Milliseconds of CPU of one heartbeat pass (the engine's sweeper) over ``sessions`` idle
    WebSockets opened through the edge: the least of 20 passes."""
    from transports import Realtime

    app = Quart("inproc_sweep")
    rt = Realtime(app, **REALTIME_SETTINGS)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        tasks = [(await _open(app, client))[1] for _ in range(sessions)]
        passes = []
        for _ in range(20):
            t0 = _cpu()
            rt.engine.sweep()
            passes.append(_cpu() - t0)
        await _end(tasks)
    return min(passes) * 1000


async def _main(args: argparse.Namespace) -> None:
    if args.sweep:
        print(
            json.dumps({"sweep_sessions": args.sweep, "sweep_ms": await measure_sweep(args.sweep)})
        )
        return
    if args.only_raw:
        print(json.dumps({"echo50_raw_us": await measure_raw(args.echo)}))
        return
    out = await measure(args)
    if args.raw:
        out["echo50_raw_us"] = await measure_raw(args.echo)
        out["echo50_vs_raw"] = out["echo50_us"] / out["echo50_raw_us"]
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--echo", type=int, default=5000)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument(
        "--raw",
        action="store_true",
        help="also drive a bare Quart echo route the same way (echo50_raw_us, echo50_vs_raw)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per 50-client echo under valgrind, library and bare Quart "
        "(deterministic: for comparing versions on a busy machine; about 2 minutes)",
    )
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        metavar="SESSIONS",
        help="instead: CPU of one heartbeat pass over this many idle WebSockets (sweep_ms)",
    )
    parser.add_argument("--only-echo50", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only-raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.instructions:
        library = _instructions(["--only-echo50"])
        raw = _instructions(["--only-raw"])
        result = {"echo50_instructions": library, "echo50_raw_instructions": raw}
        print(json.dumps(result | {"echo50_instructions_vs_raw": library / raw}))
        return
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
