"""The workloads. Each measurement starts a fresh server, measures one configuration, stops it.

Every function returns a flat ``{figure: number}`` dict (plus a few strings under keys that
start with ``_``); a failure to measure raises, and the harness records the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from .clients import APP_OF, BIDIRECTIONAL, SUBSCRIBERS, Conn, close_many, make_conn, open_many
from .procs import Nginx, Server, Worker
from .proxy import RecordingProxy

Figures = dict[str, Any]


@dataclass
class Plan:
    """Counts and switches for one run (``--quick`` makes them small)."""

    quick: bool = False
    rtt: int = 1000
    pipelined: int = 5000
    window: int = 16
    clients: int = 50
    per_client: int = 100
    up: int = 5000
    down: int = 5000
    connects: int = 10
    fanout_clients: int = 1000
    fanout_messages: int = 100
    fanout_deadline: float = 90.0
    memory_conns: int = 2000
    idle_conns: int = 15000
    idle_window: float = 60.0
    wire_messages: int = 50
    workers: int = 2
    server: str = "hypercorn"
    profile_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            rtt=100,
            pipelined=300,
            clients=10,
            per_client=10,
            up=300,
            down=300,
            connects=2,
            fanout_clients=40,
            fanout_messages=10,
            fanout_deadline=20.0,
            memory_conns=40,
            idle_conns=150,
            idle_window=3.0,
            wire_messages=5,
        )


BEFORE = "~before"
"""A configuration named ``name~before`` (or ``name~before@server``) runs its server from the
source tree in ``$BENCH_BEFORE`` (another checkout): a change measured against the code before
it, interleaved in one run, as ratios of the two."""


def app_and_server(config: str, plan: Plan) -> tuple[str, str]:
    """The server app and ASGI server of ``config`` (``name@uvicorn`` runs on uvicorn)."""
    name, _, server = config.partition("@")
    return APP_OF[name.removesuffix(BEFORE)], server or plan.server


def base_config(config: str) -> str:
    return config.partition("@")[0].removesuffix(BEFORE)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def me() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


class Measured:
    """Server and client CPU over a phase."""

    def __init__(self, server: Server, workers: list[Worker] | None = None) -> None:
        self.server = server
        self.workers = workers or []
        self.wall = time.perf_counter()
        self.srv = server.cpu()
        self.cli = me() if not self.workers else sum(w.cpu() for w in self.workers)

    def end(self, count: int) -> Figures:
        wall = time.perf_counter() - self.wall
        srv = self.server.cpu() - self.srv
        cli = (me() if not self.workers else sum(w.cpu() for w in self.workers)) - self.cli
        return {
            "wall_s": wall,
            "rate": count / wall if wall else 0.0,
            "srv_us": srv / count * 1e6 if count else float("nan"),
            "cli_us": cli / count * 1e6 if count else float("nan"),
            "srv_pct": srv / wall * 100 if wall else 0.0,
            "cli_pct": cli / wall * 100 if wall else 0.0,
        }


def server_for(config: str, plan: Plan, label: str) -> Server:
    app, server = app_and_server(config, plan)
    profile = None
    if plan.profile_dir is not None:
        profile = plan.profile_dir / f"{label}-{config}.txt"
    root = None
    if BEFORE in config:
        root = os.environ.get("BENCH_BEFORE")
        if not root:
            raise RuntimeError(f"{config}: set BENCH_BEFORE to the source tree to compare with")
    return Server(app, server, profile, root=root).start()


async def burst(base: str, n: int, pause: bool = True) -> float:
    """Have the server publish ``n`` messages (yielding after each with ``pause``); the
    server's monotonic time when it started."""
    async with (
        aiohttp.ClientSession(trust_env=False) as http,
        http.post(
            base + "/bench/burst",
            json={"n": n, "yield": pause},
            timeout=aiohttp.ClientTimeout(300),
        ) as r,
    ):
        if r.status != 200:
            raise RuntimeError(f"burst answered {r.status}")
        answer = await r.json()
    return float(answer.get("started", 0.0))


# --- messages: round trip, pipelined echo, 50 clients, up, down ---------------------------


async def messages(config: str, plan: Plan) -> Figures:
    """Echo RTT (1 client), pipelined echo, N clients closed-loop, upstream, downstream."""
    server = server_for(config, plan, "messages")
    name = base_config(config)
    out: Figures = {}
    try:
        base = server.base
        if name in BIDIRECTIONAL:
            conn = make_conn(name, base)
            await conn.open()
            try:
                for _ in range(max(10, plan.rtt // 10)):  # warm-up
                    await conn.echo()
                times = []
                for _ in range(plan.rtt):
                    t0 = time.perf_counter()
                    await conn.echo()
                    times.append(time.perf_counter() - t0)
                out["rtt_p50_ms"] = percentile(times, 0.5) * 1000
                out["rtt_p99_ms"] = percentile(times, 0.99) * 1000

                m = Measured(server)
                await conn.pipelined(plan.pipelined, plan.window)
                fig = m.end(plan.pipelined)
                out.update(pipe_msg_s=fig["rate"], pipe_srv_us=fig["srv_us"])
                out.update(pipe_cli_us=fig["cli_us"], pipe_srv_pct=fig["srv_pct"])

                m = Measured(server)
                await conn.up(plan.up, plan.window)
                fig = m.end(plan.up)
                out.update(up_msg_s=fig["rate"], up_srv_us=fig["srv_us"])
            finally:
                await conn.close()

            conns, errors = await open_many(
                lambda i: make_conn(name, base), plan.clients, subscribe=False
            )
            if errors:
                raise RuntimeError(f"{len(errors)} clients failed: {errors[0]}")
            try:
                lat: list[float] = []

                async def closed_loop(c: Conn) -> None:
                    for _ in range(plan.per_client):
                        t0 = time.perf_counter()
                        await c.echo()
                        lat.append(time.perf_counter() - t0)

                for c in conns:  # warm-up
                    await c.echo()
                total = plan.clients * plan.per_client
                m = Measured(server)
                await asyncio.gather(*(closed_loop(c) for c in conns))
                fig = m.end(total)
                out.update(c50_msg_s=fig["rate"], c50_srv_us=fig["srv_us"])
                out.update(c50_cli_us=fig["cli_us"], c50_srv_pct=fig["srv_pct"])
                out.update(c50_cli_pct=fig["cli_pct"])
                out["c50_p50_ms"] = percentile(lat, 0.5) * 1000
                out["c50_p99_ms"] = percentile(lat, 0.99) * 1000
            finally:
                await close_many(conns)

        if name not in SUBSCRIBERS:
            return out
        # downstream: a burst to one subscriber
        conn = make_conn(name, base, subscriber=True)
        await conn.open()
        try:
            await conn.subscribe()
            m = Measured(server)
            sender = asyncio.create_task(burst(base, plan.down))
            got = 0
            last = time.perf_counter()
            try:
                for _ in range(plan.down):
                    await conn.next_message(10)
                    got += 1
                    last = time.perf_counter()
            except TimeoutError:
                # python-engineio's client drops the connection when one poll response holds
                # more than 16 packets: record what arrived.
                out["_down_incomplete"] = True
            await sender
            fig = m.end(max(got, 1))
            wall = last - m.wall
            out.update(down_got=got, down_msg_s=got / wall if wall > 0 else 0.0)
            out.update(down_srv_us=fig["srv_us"], down_cli_us=fig["cli_us"])
        finally:
            await conn.close()
    finally:
        server.stop()
    return out


# --- connect time -----------------------------------------------------------------------

EXPECTED_FAILURES = {
    ("a-no-upgrade", "websocket"),
    ("a-no-upgrade", "raw-ws"),
    ("a-no-upgrade", "sio-ws"),
    ("b-buffering", "websocket"),
    ("b-buffering", "raw-ws"),
    ("b-buffering", "sio-ws"),
    ("b-buffering", "sse"),
    ("b-buffering", "raw-sse"),
}
"""What each nginx profile breaks (tests/browser/nginx/*.conf.tmpl headers)."""


async def connect_time(setup: str, config: str, plan: Plan) -> Figures:
    """From ``connect()`` (negotiate) to the first message, ``plan.connects`` times."""
    server = server_for(config, plan, f"connect-{setup}")
    proxy: Nginx | None = None
    name = base_config(config)
    expected_fail = (setup, name) in EXPECTED_FAILURES
    try:
        base = server.base
        if setup != "direct":
            proxy = Nginx(setup, server.port).start()
            base = proxy.base
        times: list[float] = []
        errors: list[str] = []
        used: dict[str, int] = {}
        fallback = ""
        timeout = 4.0 if plan.quick else 6.0
        for _ in range(plan.connects):
            conn = make_conn(name, base)
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    await conn.open(timeout)
                    if name == "raw-sse":
                        pass  # open() returns on the first event
                    else:
                        await conn.echo()
                times.append(time.perf_counter() - t0)
                used[str(conn.transport)] = used.get(str(conn.transport), 0) + 1
                fallback = fallback or conn.fallback
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:160])
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
            if len(errors) >= (1 if expected_fail else 3):
                break
        out: Figures = {"ok": len(times), "failed": len(errors)}
        if times:
            out.update(
                p50_ms=statistics.median(times) * 1000,
                min_ms=min(times) * 1000,
                max_ms=max(times) * 1000,
            )
        out["_transport"] = ",".join(sorted(used)) or "-"
        out["_fallback"] = fallback[:160]
        out["_error"] = errors[0] if errors else ""
        out["_expected_failure"] = expected_fail
        if not times and not expected_fail:
            raise RuntimeError(f"every connect failed: {errors[:1]}")
        return out
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()


# --- fan-out ------------------------------------------------------------------------------


def local_addrs(index: int, per_worker: int) -> list[str]:
    """Source addresses for worker ``index``: 127.0.0.x, one per ~10k connections."""
    first = 2 + index * 4
    return [f"127.0.0.{first + k}" for k in range(max(1, per_worker // 10000 + 1))]


async def start_workers(
    base: str,
    configs: list[str],
    total: int,
    workers: int,
    expect: int,
    ready_timeout: float,
    stall: float = 15.0,
) -> list[Worker]:
    procs: list[Worker] = []
    share = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    for index, count in enumerate(share):
        if count == 0:
            continue
        worker = Worker(
            {
                "base": base,
                "configs": configs,
                "count": count,
                "expect": expect,
                "local_addrs": local_addrs(index, count),
                "concurrency": 50,
                "timeout": 60,
                "stall": stall,
            }
        )
        await worker.start()
        procs.append(worker)
    try:
        await asyncio.gather(*(w.wait_ready(ready_timeout) for w in procs))
    except BaseException:
        await asyncio.gather(*(w.kill() for w in procs), return_exceptions=True)
        raise
    return procs


async def fanout(config: str, plan: Plan, pause: bool = True) -> Figures:
    """``fanout_clients`` subscribers in worker processes; ``fanout_messages`` published by
    the same loop on every server, yielding after each message (``pause``) or in one burst.

    ``first_ms`` is when the first message reached the first client, ``first_p50_ms`` the
    median over clients of when their first message arrived, both from the moment the
    server's publishing loop started."""
    server = server_for(config, plan, "fanout" if pause else "burst")
    name = base_config(config)
    n, count = plan.fanout_messages, plan.fanout_clients
    workers: list[Worker] = []
    try:
        stall = 5.0 if plan.quick else 15.0
        workers = await start_workers(server.base, [name], count, plan.workers, n, 300, stall)
        connected = sum(int(w.ready["opened"]) for w in workers)
        await asyncio.sleep(0.3 if plan.quick else 1.0)
        m = Measured(server, workers)
        t0 = time.monotonic()
        started = await burst(server.base, n, pause)
        complete = True
        try:
            await asyncio.gather(*(w.line("complete", plan.fanout_deadline) for w in workers))
        except TimeoutError:
            complete = False
        t_end = time.monotonic()
        srv_s, cli_s = server.cpu() - m.srv, sum(w.cpu() for w in workers) - m.cli
        reports = await asyncio.gather(*(w.finish() for w in workers))
        got = [g for r in reports for g in r["got"]]
        last = [t for r in reports for t in r["last"] if t]
        firsts = sorted(t - started for r in reports for t in r.get("first", []) if t)
        total = max(sum(got), 1)
        wall = t_end - t0
        lat = [x for r in reports for x in r["latencies_ms"]]
        done = sorted(t - t0 for t in last)
        last_s = (done[-1] if done else t_end - t0) if complete else t_end - t0
        return {
            "connected": connected,
            "all_ok": sum(1 for g in got if g >= n),
            "last_s": last_s,
            "median_s": statistics.median(done) if done else float("nan"),
            "deliv_s": total / last_s if last_s else 0.0,
            "first_ms": firsts[0] * 1000 if firsts else float("nan"),
            "first_p50_ms": statistics.median(firsts) * 1000 if firsts else float("nan"),
            "lat_p50_ms": percentile(lat, 0.5),
            "lat_p99_ms": percentile(lat, 0.99),
            "srv_us": srv_s / total * 1e6,
            "cli_us": cli_s / total * 1e6,
            "srv_pct": srv_s / wall * 100,
            "cli_pct": cli_s / wall * 100,
            "_complete": complete,
        }
    finally:
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
        server.stop()


# --- idle memory and idle CPU -------------------------------------------------------------


async def memory(config: str, plan: Plan) -> Figures:
    """Server RSS growth with ``memory_conns`` idle subscribers (worker processes)."""
    server = server_for(config, plan, "memory")
    name = base_config(config)
    workers: list[Worker] = []
    try:
        # Warm up: load every code path a connection uses, so the base includes them.
        warm, _ = await open_many(lambda i: make_conn(name, server.base, subscriber=True), 5)
        await close_many(warm)
        await asyncio.sleep(0.5 if plan.quick else 1.5)
        base_mib = server.rss()
        workers = await start_workers(server.base, [name], plan.memory_conns, plan.workers, 0, 300)
        opened = sum(int(w.ready["opened"]) for w in workers)
        # Past Hypercorn's keep-alive timeout (5 s), so the connections of the set-up POSTs
        # (subscribe on SSE and long-poll) are closed and only the idle connections count.
        await asyncio.sleep(1.0 if plan.quick else 7.0)
        final_mib = server.rss()
        client_mib = sum(w.ps.memory_info().rss for w in workers if w.ps) / 2**20
        if opened == 0:
            raise RuntimeError("no connection opened")
        return {
            "opened": opened,
            "base_mib": base_mib,
            "final_mib": final_mib,
            "kib_per_conn": (final_mib - base_mib) * 1024 / opened,
            "client_mib": client_mib,
        }
    finally:
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
        server.stop()


async def idle_cpu(plan: Plan) -> Figures:
    """Many idle library connections (WebSocket, SSE, long-poll in turn), heartbeats on:
    server CPU over ``idle_window`` seconds once they are all open."""
    server = server_for("websocket", plan, "idle")
    workers: list[Worker] = []
    try:
        base_mib = server.rss()
        t0 = time.monotonic()
        nworkers = max(plan.workers, 4 if plan.idle_conns > 4000 else plan.workers)
        workers = await start_workers(
            server.base, ["websocket", "sse", "longpoll"], plan.idle_conns, nworkers, 0, 900
        )
        opened = sum(int(w.ready["opened"]) for w in workers)
        failed = sum(int(w.ready["failed"]) for w in workers)
        kinds: dict[str, int] = {}
        for w in workers:
            for k, v in w.ready["transports"].items():
                kinds[k] = kinds.get(k, 0) + int(v)
        connect_s = time.monotonic() - t0
        await asyncio.sleep(5.0 if not plan.quick else 1.0)
        m = Measured(server, workers)
        await asyncio.sleep(plan.idle_window)
        fig = m.end(1)
        async with (
            aiohttp.ClientSession(trust_env=False) as http,
            http.get(server.base + "/bench/stats") as r,
        ):
            stats = await r.json()
        return {
            "opened": opened,
            "failed": failed,
            "open_at_end": int(stats["channels"]),
            "websocket": kinds.get("websocket", 0),
            "sse": kinds.get("sse", 0),
            "longpoll": kinds.get("longpoll", 0),
            "connect_s": connect_s,
            "window_s": fig["wall_s"],
            "srv_pct": fig["srv_pct"],
            "cli_pct": fig["cli_pct"],
            "rss_mib": server.rss(),
            "kib_per_conn": (server.rss() - base_mib) * 1024 / max(opened, 1),
        }
    finally:
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
        server.stop()


# --- bytes on the wire ------------------------------------------------------------------


async def wire(config: str, plan: Plan) -> Figures:
    """Bytes per 100-byte message each way, through a counting proxy, one message at a time
    (every message on its own: the framing overhead) and in a burst of 100 (batched)."""
    server = server_for(config, plan, "wire")
    proxy = RecordingProxy(server.port)
    await proxy.start()
    name = base_config(config)
    k = plan.wire_messages
    out: Figures = {}
    try:
        if name in BIDIRECTIONAL:
            conn = make_conn(name, proxy.base)
            await conn.open()
            try:
                await conn.echo()
                await asyncio.sleep(0.2)
                up0, down0 = proxy.snapshot()
                for _ in range(k):
                    await conn.up(1, 1) if name != "raw-ws" else await conn.echo()
                await asyncio.sleep(0.2)
                up1, down1 = proxy.snapshot()
                out["up_b"] = (up1 - up0) / k
                out["up_ack_b"] = (down1 - down0) / k
            finally:
                await conn.close()
        conn = make_conn(name, proxy.base, subscriber=True)
        await conn.open()
        try:
            await conn.subscribe()
            await burst(server.base, 1)
            await conn.next_message(30)
            await asyncio.sleep(0.2)
            up0, down0 = proxy.snapshot()
            for _ in range(k):
                await burst(server.base, 1)
                await conn.next_message(30)
            await asyncio.sleep(0.2)
            up1, down1 = proxy.snapshot()
            out["down_b"] = (down1 - down0) / k
            out["down_req_b"] = (up1 - up0) / k
            count = 100
            await burst(server.base, count, pause=False)
            try:
                for _ in range(count):
                    await conn.next_message(2 if plan.quick else 5)
            except TimeoutError:
                # python-engineio's client cannot decode a poll response of more than 16
                # packets: it drops the connection, and the burst never arrives.
                out["_burst_error"] = "the client dropped the connection during the burst"
            else:
                await asyncio.sleep(0.2)
                up2, down2 = proxy.snapshot()
                out["burst_down_b"] = (down2 - down1) / count
                out["burst_req_b"] = (up2 - up1) / count
        finally:
            await conn.close()
    finally:
        await proxy.stop()
        server.stop()
    return out


Measure = Callable[[str, Plan], Awaitable[Figures]]
