"""Presence at scale on Redis: two Hypercorn processes, one topic with ``--members`` members.

``python -m bench.presence [--members 10000] [--quick] [--clients 4] [--probes 20]``

A fresh ``redis-server`` and two single-process Hypercorn servers (``bench.presence_app``,
``TRANSPORTS_PRESENCE=room:*``, ``TRANSPORTS_PRESENCE_TIMEOUT`` 5 s) per run. Members are bare
aiohttp WebSockets speaking protocol v1 (negotiate with a ``client`` key, the WebSocket with the
ticket, then ``[5, ref, topic, null]``: no presence option, so no join/leave fan-out to them),
spread over ``--clients`` processes, half on each server. Measured:

1. joins per second: from the first SUB to ``presence_count == N`` (polled through
   ``GET /count/room:big`` on A), beside the clients' own SUB-reply rate; the same connections
   first subscribe to ``plain:big`` (no presence) for comparison;
2. memory per member: server RSS (psutil) and Redis ``used_memory`` after the N connections
   opened, after they subscribed to ``plain:big``, after they subscribed to ``room:big``; what
   presence adds per member is the ``room:big`` step minus the ``plain:big`` step, over N;
3. time for a member to appear on the other process: a watcher on A (the library's client,
   ``subscribe(..., presence=True)``) and a new member on B; from B's SUB send to A's join event;
4. time to drop a killed process's members: SIGKILL B, then time until the count seen from A
   is what A holds and until a watcher on A received every leave (counted on the wire, and by
   the library's client).

Client, servers and Redis share this machine's cores: say so when quoting the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import redis.asyncio as aioredis

from transports.client import connect

ROOT = Path(__file__).resolve().parent.parent
HYPERCORN = str(Path(sys.executable).with_name("hypercorn"))
ROOM = "room:big"
FIRST = "plain:first"
PLAIN = "plain:big"
EVENTS = "$presence:" + ROOM


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


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop ``proc`` (started in its own session) and its group, by its PID."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rss(proc: subprocess.Popen[bytes]) -> int:
    return int(psutil.Process(proc.pid).memory_info().rss)


def cpu(pid: int) -> float:
    with contextlib.suppress(psutil.NoSuchProcess):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    return 0.0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- a bare protocol-v1 member ------------------------------------------------------------------


@dataclass(eq=False)
class Member:
    """One WebSocket session spoken by hand: answers PING, resolves REPLYs by ref."""

    ws: aiohttp.ClientWebSocketResponse
    id: str
    pending: dict[int, asyncio.Future[tuple[float, str]]] = field(default_factory=dict)
    next_ref: int = 1
    task: asyncio.Task[None] | None = None
    on_pub: Any = None

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            kind = frame[0]
            if kind == 7:
                await self.ws.send_str("[8]")
            elif kind == 4:
                future = self.pending.pop(frame[1], None)
                if future is not None and not future.done():
                    future.set_result((time.monotonic(), str(frame[2])))
            elif kind == 1 and self.on_pub is not None:
                self.on_pub(frame)
        for future in self.pending.values():
            if not future.done():
                future.set_result((time.monotonic(), "closed"))

    async def subscribe(self, topic: str, presence: bool = False) -> tuple[float, float, str]:
        """SUB ``topic``: (time sent, time answered, status)."""
        ref, self.next_ref = self.next_ref, self.next_ref + 1
        future: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        frame: list[Any] = [5, ref, topic, None]
        if presence:
            frame.append({"presence": True})
        sent = time.monotonic()
        await self.ws.send_str(json.dumps(frame))
        answered, status = await asyncio.wait_for(future, 300)
        return sent, answered, status


async def open_member(http: aiohttp.ClientSession, base: str, user: str) -> Member:
    body = {"v": 1, "client": secrets.token_urlsafe(12), "transports": ["websocket"]}
    headers = {"Authorization": f"Bearer {user}"}
    async with http.post(base + "/realtime/negotiate", json=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"negotiate: {response.status} {await response.text()}")
        answer = await response.json()
    ws = await http.ws_connect(
        base + answer["urls"]["websocket"], params={"ticket": answer["ticket"]}, max_msg_size=0
    )
    hello = await ws.receive(timeout=60)
    if hello.type is not aiohttp.WSMsgType.TEXT or json.loads(hello.data)[0] != 0:
        raise RuntimeError(f"no HELLO: {hello!r}")
    member = Member(ws, str(answer["id"]))
    member.task = asyncio.create_task(member.read())
    return member


# --- client processes ---------------------------------------------------------------------------


def worker(conn: multiprocessing.connection.Connection) -> None:
    """A client process: opens, subscribes and closes members when told (over ``conn``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_work(conn))


async def _open_all(
    http: aiohttp.ClientSession, bases: list[str], users: list[str], concurrency: int
) -> tuple[list[Member], Counter[str]]:
    """Open a member per (base, user), ``concurrency`` at a time, each tried up to 5 times."""
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()

    async def one(base: str, user: str) -> Member | None:
        for attempt in range(5):
            async with gate:
                try:
                    return await open_member(http, base, user)
                except Exception as exc:
                    failures[type(exc).__name__ + ": " + str(exc)[:70]] += 1
            await asyncio.sleep(0.5 * 2**attempt)
        return None

    opened = await asyncio.gather(*(one(b, u) for b, u in zip(bases, users, strict=True)))
    return [m for m in opened if m is not None], failures


async def _subscribe_all(
    members: list[Member], topic: str, window: int
) -> list[tuple[float, float, str]]:
    """SUB every member to ``topic``, at most ``window`` unanswered at a time."""
    gate = asyncio.Semaphore(window)

    async def sub(member: Member) -> tuple[float, float, str]:
        async with gate:
            return await member.subscribe(topic)

    return list(await asyncio.gather(*(sub(m) for m in members)))


async def _work(conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    members: list[Member] = []
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))
    try:
        while True:
            command, args = await loop.run_in_executor(None, conn.recv)
            if command == "open":
                bases, users, concurrency = args
                started = time.monotonic()
                opened, failures = await _open_all(http, bases, users, concurrency)
                members.extend(opened)
                conn.send(
                    {
                        "opened": len(opened),
                        "seconds": time.monotonic() - started,
                        "failures": dict(failures),
                    }
                )
            elif command == "sub":
                topic, window = args
                cpu0 = time.process_time()
                results = await _subscribe_all(members, topic, window)
                statuses = Counter(status for _, _, status in results)
                conn.send(
                    {
                        "first_sent": min(r[0] for r in results),
                        "last_sent": max(r[0] for r in results),
                        "last_reply": max(r[1] for r in results),
                        "reply_ms": sorted((r[1] - r[0]) * 1000 for r in results),
                        "statuses": dict(statuses),
                        "cpu": time.process_time() - cpu0,
                    }
                )
            elif command == "close":
                for member in members:
                    with contextlib.suppress(Exception):
                        await member.ws.close()
                members.clear()
                conn.send({"closed": True})
                return
    finally:
        await http.close()


class Clients:
    """``count`` client processes, each with a pipe."""

    def __init__(self, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for _ in range(count):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(theirs,), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    async def ask(self, commands: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        return list(await asyncio.gather(*(loop.run_in_executor(None, p.recv) for p in self.pipes)))

    def cpu(self) -> float:
        return sum(cpu(p.pid) for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


# --- the run ------------------------------------------------------------------------------------


def log_summary(lines: list[str]) -> dict[str, int]:
    """The servers' log lines (tracebacks left out), counted."""
    return dict(
        Counter(
            line[:160]
            for line in lines
            if line
            and not line.startswith((" ", "Traceback", "During", "The above"))
            and "Running on" not in line
        ).most_common(20)
    )


class Phases:
    """What the servers logged during each phase of the run."""

    def __init__(self, log: Path) -> None:
        self.log, self.seen = log, 0
        self.by_phase: dict[str, dict[str, int]] = {}

    def mark(self, phase: str) -> None:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        self.by_phase[phase] = log_summary(lines[self.seen :])
        self.seen = len(lines)


def start_redis(port: int, data: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", data],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_server(port: int, redis_url: str, timeout: float, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BENCH_REDIS": redis_url,
        "TRANSPORTS_SECRET_KEY": "bench-presence-key",
        "TRANSPORTS_PRESENCE": "room:*",
        "TRANSPORTS_PRESENCE_TIMEOUT": str(timeout),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [HYPERCORN, "bench.presence_app:app", "--bind", f"127.0.0.1:{port}"]
            + ["--workers", "0", "--backlog", "4096"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def redis_figures(client: aioredis.Redis) -> dict[str, Any]:
    memory = await client.info("memory")
    stats = await client.info("commandstats")
    return {
        "used_memory": int(memory["used_memory"]),
        "commands": {
            name.removeprefix("cmdstat_"): {"calls": v["calls"], "usec": v["usec"]}
            for name, v in stats.items()
        },
    }


def command_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, int]]:
    out = {}
    for name, now in after["commands"].items():
        then = before["commands"].get(name, {"calls": 0, "usec": 0})
        calls = now["calls"] - then["calls"]
        if calls:
            out[name] = {"calls": calls, "usec": now["usec"] - then["usec"]}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["calls"]))


class Counting:
    """Polls ``GET /count/<ROOM>`` on one server; records when the count reaches a target."""

    def __init__(self, http: aiohttp.ClientSession, base: str, every: float = 0.05) -> None:
        self.http, self.base, self.every = http, base, every
        self.trace: list[tuple[float, int]] = []
        self.task: asyncio.Task[None] | None = None

    async def now(self) -> int:
        async with self.http.get(f"{self.base}/count/{ROOM}") as response:
            return int((await response.json())["count"])

    async def until(
        self, target: int, limit: float, done: asyncio.Future[Any] | None = None
    ) -> float | None:
        """Poll until the count is ``target``; the time it was first seen so, or None after
        ``limit`` seconds, or once ``done`` is done and the count stood still for 10 s."""
        deadline = time.monotonic() + limit
        changed, last = time.monotonic(), -1
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, ValueError, KeyError):
                value = await self.now()
                seen = time.monotonic()
                self.trace.append((seen, value))
                if value == target:
                    return seen
                if value != last:
                    changed, last = seen, value
                elif done is not None and done.done() and seen - changed > 10:
                    print(f"  the count stays at {value}, not {target}", flush=True)
                    return None
            await asyncio.sleep(self.every)
        return None


async def server_stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/stats") as response:
        return dict(await response.json())


async def settle(procs: list[subprocess.Popen[bytes]], seconds: float = 2.0) -> list[int]:
    """RSS of ``procs`` once their CPU went quiet (at most ``seconds`` more)."""
    deadline = time.monotonic() + seconds
    last = [cpu(p.pid) for p in procs]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = [cpu(p.pid) for p in procs]
        busy = any(b - a > 0.05 for a, b in zip(last, now, strict=True))
        last = now
        if not busy:
            break
    return [rss(p) for p in procs]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n: int = args.members
    timeout: float = args.presence_timeout
    tmp = tempfile.TemporaryDirectory()
    log = Path(tmp.name) / "servers.log"
    phases = Phases(log)
    redis_port, ports = free_port(), [free_port(), free_port()]
    redis_proc = start_redis(redis_port, tmp.name)
    servers: list[subprocess.Popen[bytes]] = []
    clients: Clients | None = None
    watcher = None
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{os.cpu_count()} cores shared by clients, servers and Redis",
        "members": n,
        "clients": args.clients,
        "sub_window_per_client": args.window,
        "open_concurrency_per_client": args.open_concurrency,
        "presence_timeout": timeout,
        "load_average_at_start": os.getloadavg(),
    }
    try:
        await wait_port(redis_port)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        rdb = aioredis.Redis(port=redis_port)
        servers = [start_server(p, redis_url, timeout, log) for p in ports]
        for port in ports:
            await wait_port(port)
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        clients = Clients(args.clients)
        http = aiohttp.ClientSession()
        counting = Counting(http, bases[0])
        for base in bases:  # warm each server up: a first negotiate, a first count
            async with aiohttp.ClientSession() as warm:
                member = await open_member(warm, base, "warm")
                await member.subscribe("warm")
                await member.ws.close()
            async with http.get(f"{base}/count/{ROOM}") as response:
                assert response.status == 200, await response.text()
        await asyncio.sleep(1)

        rss_base = await settle(servers)
        redis_base = await redis_figures(rdb)

        # --- open N connections, half on each server -----------------------------------------
        share = [n // args.clients + (i < n % args.clients) for i in range(args.clients)]
        commands: list[tuple[str, Any]] = []
        first = 0
        for count in share:
            users = [f"u{first + j}" for j in range(count)]
            targets = [bases[(first + j) % 2] for j in range(count)]
            commands.append(("open", (targets, users, args.open_concurrency)))
            first += count
        started = time.monotonic()
        opened = await clients.ask(commands)
        open_seconds = time.monotonic() - started
        total_open: int = sum(o["opened"] for o in opened)
        failures: Counter[str] = Counter()
        for o in opened:
            failures.update(o["failures"])
        print(f"opened {total_open}/{n} connections in {open_seconds:.1f} s", flush=True)
        if failures:
            print("  failures:", dict(failures), flush=True)
        phases.mark("open")
        report["open"] = {
            "opened": total_open,
            "seconds": open_seconds,
            "per_second": total_open / open_seconds,
            "failures": dict(failures),
        }
        stats = [await server_stats(http, b) for b in bases]
        report["sessions_per_server"] = [s["sessions"] for s in stats]
        rss_open = await settle(servers)
        redis_open = await redis_figures(rdb)

        async def subscribe_all(topic: str) -> dict[str, Any]:
            assert clients is not None
            cpu_servers = [cpu(p.pid) for p in servers]
            cpu_clients, cpu_redis = clients.cpu(), cpu(redis_proc.pid)
            before = await redis_figures(rdb)
            begun = time.monotonic()
            asked = asyncio.ensure_future(clients.ask([("sub", (topic, args.window))] * len(share)))
            counted: float | None = None
            figures_count: int | None = None
            if topic == ROOM:
                counted = await counting.until(total_open, 600, asked)
                figures_count = counting.trace[-1][1] if counting.trace else None
            replies = await asked
            ended = time.monotonic()
            after = await redis_figures(rdb)
            first_sent = min(r["first_sent"] for r in replies)
            last_reply = max(r["last_reply"] for r in replies)
            statuses: Counter[str] = Counter()
            reply_ms: list[float] = []
            for r in replies:
                statuses.update(r["statuses"])
                reply_ms.extend(r["reply_ms"])
            ok = statuses.get("ok", 0)
            wall = ended - begun
            figures: dict[str, Any] = {
                "sub_replies": ok,
                "statuses": dict(statuses),
                "client_sub_reply_rate": ok / (last_reply - first_sent),
                "last_sub_sent_after": max(r["last_sent"] for r in replies) - first_sent,
                "last_reply_after": last_reply - first_sent,
                "reply_ms_median": statistics.median(reply_ms),
                "reply_ms_p95": quantile(reply_ms, 0.95),
                "cpu_seconds": {
                    "servers": [cpu(p.pid) - c for p, c in zip(servers, cpu_servers, strict=True)],
                    "clients": clients.cpu() - cpu_clients,
                    "redis": cpu(redis_proc.pid) - cpu_redis,
                    "wall": wall,
                },
                "redis_commands": command_delta(before, after),
            }
            if topic == ROOM:
                figures["count_final"] = figures_count
                if counting.trace:
                    final_seen = next(
                        t for t, c in counting.trace if c == figures_count and t >= first_sent
                    )
                    figures["count_final_first_seen_after"] = final_seen - first_sent
                    figures["joins_per_second_to_final"] = (figures_count or 0) / (
                        final_seen - first_sent
                    )
                figures["count_reached_after"] = None if counted is None else counted - first_sent
                figures["joins_per_second"] = (
                    None if counted is None else total_open / (counted - first_sent)
                )
                figures["count_trace"] = [
                    (round(t - first_sent, 3), c) for t, c in counting.trace if t >= first_sent
                ][:: max(1, len(counting.trace) // 60)]
            return figures

        # A first subscription pays for per-session structures: subscribe to one topic without
        # presence first, then compare a second one without presence with the presence one.
        first_sub = await subscribe_all(FIRST)
        rss_first = await settle(servers)
        redis_first = await redis_figures(rdb)
        plain = await subscribe_all(PLAIN)
        print(
            f"SUB {FIRST} then {PLAIN} (no presence): {first_sub['client_sub_reply_rate']:,.0f}"
            f" and {plain['client_sub_reply_rate']:,.0f} replies/s, statuses "
            f"{first_sub['statuses']} {plain['statuses']}",
            flush=True,
        )
        rss_plain = await settle(servers)
        redis_plain = await redis_figures(rdb)
        joins = await subscribe_all(ROOM)
        print(
            f"SUB {ROOM} (presence): {joins['client_sub_reply_rate']:,.0f} replies/s, count "
            f"reached {total_open} after {joins['count_reached_after']} s "
            f"({joins['joins_per_second'] or 0:,.0f} joins/s), statuses {joins['statuses']}",
            flush=True,
        )
        rss_room = await settle(servers)
        redis_room = await redis_figures(rdb)
        # used_memory also moves with keys expiring meanwhile (spent tickets): the members'
        # hash itself, measured exactly, is what presence keeps per member in Redis.
        members_hash = await rdb.memory_usage(f"transports:{{{ROOM}}}:members", samples=0)
        report["subscribe_first"] = first_sub
        report["subscribe_plain"] = plain
        report["members_here_after_joins"] = [
            (await server_stats(http, b))["members_here"] for b in bases
        ]
        phases.mark("subscribe")
        report["joins"] = joins

        def per(a: list[int], b: list[int]) -> float:
            return float(sum(b) - sum(a)) / total_open

        plain_step, room_step = per(rss_first, rss_plain), per(rss_plain, rss_room)
        redis_plain_step = (redis_plain["used_memory"] - redis_first["used_memory"]) / total_open
        redis_room_step = (redis_room["used_memory"] - redis_plain["used_memory"]) / total_open
        report["memory"] = {
            "rss": {
                "base": rss_base,
                "open": rss_open,
                "first": rss_first,
                "plain": rss_plain,
                "room": rss_room,
            },
            "rss_per_connection": per(rss_base, rss_open),
            "rss_per_first_subscription": per(rss_open, rss_first),
            "rss_per_plain_subscription": plain_step,
            "rss_per_presence_subscription": room_step,
            "rss_presence_adds_per_member": room_step - plain_step,
            "redis_used_memory": {
                "base": redis_base["used_memory"],
                "open": redis_open["used_memory"],
                "first": redis_first["used_memory"],
                "plain": redis_plain["used_memory"],
                "room": redis_room["used_memory"],
            },
            "redis_per_connection": (redis_open["used_memory"] - redis_base["used_memory"])
            / total_open,
            "redis_per_plain_subscription": redis_plain_step,
            "redis_presence_adds_per_member": redis_room_step - redis_plain_step,
            "redis_members_hash_bytes": members_hash,
            "redis_members_hash_per_member": (members_hash or 0) / total_open,
        }
        mem = report["memory"]
        print(
            f"memory per member added by presence: {mem['rss_presence_adds_per_member']:,.0f} B "
            f"RSS (servers), {mem['redis_presence_adds_per_member']:,.0f} B Redis",
            flush=True,
        )

        # --- a new member on B, seen by a watcher on A -----------------------------------------
        watcher = await connect(bases[0] + "/realtime", transports=["websocket"], token="watch")
        seen: dict[str, asyncio.Future[float]] = {}
        library_leaves: list[float] = []

        def on_join(topic: str, member: dict[str, Any]) -> None:
            future = seen.get(member["id"])
            if future is not None and not future.done():
                future.set_result(time.monotonic())

        watcher.on("join", on_join)
        watcher.on("leave", lambda topic, member: library_leaves.append(time.monotonic()))
        await watcher.subscribe(ROOM, presence=True)
        listed = len(watcher.members(ROOM))
        # The same on the wire: a bare member on A following presence, counting every leave.
        wire_leaves: list[float] = []

        def on_pub(frame: list[Any]) -> None:
            if frame[1] == EVENTS and frame[2] == "leave":
                wire_leaves.append(time.monotonic())

        raw = await open_member(http, bases[0], "wire")
        raw.on_pub = on_pub
        await raw.subscribe(ROOM, presence=True)
        probes = [await open_member(http, bases[1], f"p{i}") for i in range(args.probes)]
        delays: list[float] = []
        for probe in probes:
            seen[probe.id] = asyncio.get_running_loop().create_future()
            sent, _, status = await probe.subscribe(ROOM)
            assert status == "ok", status
            delays.append((await asyncio.wait_for(seen[probe.id], 30) - sent) * 1000)
            await asyncio.sleep(0.1)
        phases.mark("probes")
        report["appear_on_other_process_ms"] = {
            "samples": [round(d, 2) for d in delays],
            "median": statistics.median(delays),
            "p95": quantile(delays, 0.95),
            "max": max(delays),
            "watcher_listed_members": listed,
        }
        print(
            f"join seen on the other process: median {statistics.median(delays):.1f} ms, "
            f"p95 {quantile(delays, 0.95):.1f} ms over {len(delays)}",
            flush=True,
        )

        # --- SIGKILL B --------------------------------------------------------------------------
        stats = [await server_stats(http, b) for b in bases]
        before = await counting.now()
        target = int(stats[0]["members_here"])  # what A holds stays
        on_b = before - target
        cpu_a, cpu_redis = cpu(servers[0].pid), cpu(redis_proc.pid)
        redis_before = await redis_figures(rdb)
        counting.trace.clear()
        killed = time.monotonic()
        os.killpg(servers[1].pid, signal.SIGKILL)
        servers[1].wait()
        dropped = await counting.until(target, timeout * 4 + 90)
        deadline, heard, last_heard = time.monotonic() + 300, -1, time.monotonic()
        while len(wire_leaves) < on_b and time.monotonic() < deadline:
            if len(wire_leaves) != heard:
                heard, last_heard = len(wire_leaves), time.monotonic()
            elif time.monotonic() - last_heard > 20 and dropped is not None:
                print(f"  no leave for 20 s; {heard} of {on_b}", flush=True)
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # any late leave
        redis_after = await redis_figures(rdb)
        report["kill"] = {
            "members_on_killed": on_b,
            "count_before": before,
            "count_target": target,
            "count_reached_after": None if dropped is None else dropped - killed,
            "wire_leaves": len(wire_leaves),
            "first_wire_leave_after": wire_leaves[0] - killed if wire_leaves else None,
            "last_wire_leave_after": wire_leaves[-1] - killed if wire_leaves else None,
            "library_client_leaves": len(library_leaves),
            "bound_timeout_plus_interval": timeout + timeout / 3,
            "survivor_cpu_seconds": cpu(servers[0].pid) - cpu_a,
            "redis_cpu_seconds": cpu(redis_proc.pid) - cpu_redis,
            "redis_commands": command_delta(redis_before, redis_after),
            "count_trace": [(round(t - killed, 3), c) for t, c in counting.trace][
                :: max(1, len(counting.trace) // 60)
            ],
        }
        phases.mark("kill")
        k = report["kill"]
        print(
            f"killed B ({on_b} members): count {target} after {k['count_reached_after']} s; "
            f"{len(wire_leaves)} leaves on the wire, first after {k['first_wire_leave_after']} s, "
            f"last after {k['last_wire_leave_after']} s; the library client reported "
            f"{len(library_leaves)}; bound {timeout + timeout / 3:.2f} s",
            flush=True,
        )
        await raw.ws.close()
        await http.close()
        await rdb.aclose()
    finally:
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.close()
        if clients is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(clients.ask([("close", None)] * len(clients.pipes)), 60)
            clients.stop()
        for proc in servers:
            stop(proc)
        stop(redis_proc)
        text = log.read_text(errors="replace") if log.exists() else ""
        phases.mark("end")
        report["server_log_by_phase"] = phases.by_phase
        report["server_log_summary"] = log_summary(text.splitlines())
        tmp.cleanup()
    return report


async def flap(args: argparse.Namespace) -> dict[str, Any]:
    """A process whose lease lapsed once (SIGSTOP past presence_timeout, then SIGCONT) and that
    dies soon after (SIGKILL): how long its members stay on the other process."""
    n, timeout = args.members, args.presence_timeout
    tmp = tempfile.TemporaryDirectory()
    log = Path(tmp.name) / "servers.log"
    redis_port, ports = free_port(), [free_port(), free_port()]
    redis_proc = start_redis(redis_port, tmp.name)
    servers: list[subprocess.Popen[bytes]] = []
    clients: Clients | None = None
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "members": n}
    try:
        await wait_port(redis_port)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        servers = [start_server(p, redis_url, timeout, log) for p in ports]
        for port in ports:
            await wait_port(port)
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        clients = Clients(1)
        targets = [bases[j % 2] for j in range(n)]
        await clients.ask([("open", (targets, [f"u{j}" for j in range(n)], 16))])
        await clients.ask([("sub", (ROOM, 32))])
        async with aiohttp.ClientSession() as http:
            counting = Counting(http, bases[0])
            assert await counting.until(n, 30) is not None
            half = n - n // 2  # A holds the even ones
            stopped = time.monotonic()
            os.killpg(servers[1].pid, signal.SIGSTOP)
            reaped = await counting.until(half, timeout * 3)
            os.killpg(servers[1].pid, signal.SIGCONT)
            resumed = time.monotonic()
            readded = await counting.until(n, timeout * 3)
            killed = time.monotonic()
            os.killpg(servers[1].pid, signal.SIGKILL)
            servers[1].wait()
            dropped = await counting.until(half, 120)
        report.update(
            {
                "stopped_for": resumed - stopped,
                "reaped_while_stopped_after": None if reaped is None else reaped - stopped,
                "readded_after_resume": None if readded is None else readded - resumed,
                "killed_after_first_reap": None if reaped is None else killed - reaped,
                "dropped_after_kill": None if dropped is None else dropped - killed,
                "bound_timeout_plus_interval": timeout + timeout / 3,
            }
        )
    finally:
        if clients is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(clients.ask([("close", None)]), 60)
            clients.stop()
        for proc in servers:
            stop(proc)
        stop(redis_proc)
        text = log.read_text(errors="replace") if log.exists() else ""
        report["server_log_summary"] = log_summary(text.splitlines())
        tmp.cleanup()
    return report


def markdown(report: dict[str, Any], command: str) -> str:
    j, p, m = report["joins"], report["subscribe_plain"], report["memory"]
    a, k = report["appear_on_other_process_ms"], report["kill"]
    cs = j["cpu_seconds"]

    def fmt(value: float | None, unit: str = "s") -> str:
        return "n/a" if value is None else f"{value:.2f} {unit}"

    lines = [
        "# Presence at scale (Redis, two Hypercorn processes)",
        "",
        f"`{command}` on {report['date']}; {report['machine']} (load average "
        f"{report['load_average_at_start'][0]:.1f} at the start: other work shared them).",
        f"{report['members']:,} members in `{ROOM}`, half on each process, opened by "
        f"{report['clients']} client processes (bare protocol-v1 WebSockets, SUB without the "
        f"presence option, at most {report['sub_window_per_client']:,} SUBs in flight per client"
        f" process); presence_timeout {report['presence_timeout']} s.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| connections opened | {report['open']['opened']:,} in {report['open']['seconds']:.1f}"
        f" s ({report['open']['per_second']:,.0f}/s); {sum(report['open']['failures'].values())}"
        " failed attempts, retried |",
        (
            f"| joins/s (first SUB to `presence_count == N`) | "
            f"{j['joins_per_second']:,.0f} ({fmt(j['count_reached_after'])}) |"
            if j["joins_per_second"] is not None
            else f"| joins/s (first SUB to `presence_count == N`) | never: the count stopped at "
            f"{j['count_final']:,} after {j['count_final_first_seen_after']:.2f} s "
            f"({j['joins_per_second_to_final']:,.0f} joins/s to there) though "
            f"{j['statuses'].get('ok', 0):,} SUBs were answered ok |"
        ),
        f"| client SUB-reply rate, presence topic | {j['client_sub_reply_rate']:,.0f}/s, "
        f"reply median {j['reply_ms_median']:.0f} ms, p95 {j['reply_ms_p95']:.0f} ms |",
        f"| client SUB-reply rate, topic without presence | {p['client_sub_reply_rate']:,.0f}/s |",
        f"| CPU during the joins (s, over {cs['wall']:.1f} s wall) | servers "
        f"{' + '.join(f'{c:.1f}' for c in cs['servers'])}, clients {cs['clients']:.1f}, "
        f"Redis {cs['redis']:.1f} |",
        f"| RSS presence adds per member (servers) | {m['rss_presence_adds_per_member']:,.0f} B "
        f"({m['rss_per_presence_subscription']:,.0f} B presence SUB - "
        f"{m['rss_per_plain_subscription']:,.0f} B plain SUB) |",
        f"| Redis presence per member: `used_memory` step / the members' hash (`MEMORY USAGE`) "
        f"| {m['redis_presence_adds_per_member']:,.0f} B / "
        f"{m['redis_members_hash_per_member']:,.0f} B |",
        f"| per connection (RSS servers / Redis directory) | {m['rss_per_connection']:,.0f} B / "
        f"{m['redis_per_connection']:,.0f} B |",
        f"| a join on B seen by a watcher on A | median {a['median']:.1f} ms, p95 "
        f"{a['p95']:.1f} ms ({len(a['samples'])} joins) |",
        f"| SIGKILL B ({k['members_on_killed']:,} members): count right on A | "
        f"{fmt(k['count_reached_after'])} |",
        f"| ... every leave at a watcher on A (wire) | {k['wire_leaves']:,} leaves, first "
        f"{fmt(k['first_wire_leave_after'])}, last {fmt(k['last_wire_leave_after'])} |",
        f"| ... leaves the library's client reported | {k['library_client_leaves']:,} "
        f"(its snapshot listed {a['watcher_listed_members']:,}) |",
        f"| bound: presence_timeout + one check | {k['bound_timeout_plus_interval']:.2f} s |",
        "",
        "Redis commands per join (presence SUB): "
        + ", ".join(
            f"{name} {v['calls'] / max(1, j['sub_replies']):.2f}"
            for name, v in list(j["redis_commands"].items())[:8]
        )
        + "; per SUB without presence: "
        + ", ".join(
            f"{name} {v['calls'] / max(1, p['sub_replies']):.2f}"
            for name, v in list(p["redis_commands"].items())[:8]
        )
        + ".",
        "Redis commands while reaping the killed process: "
        + ", ".join(f"{name} {v['calls']:,}" for name, v in list(k["redis_commands"].items())[:6])
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="300 members, 5 probes")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--probes", type=int, default=20, help="joins timed across processes")
    parser.add_argument(
        "--window", type=int, default=32, help="SUBs in flight per client process (a burst: 0)"
    )
    parser.add_argument("--open-concurrency", type=int, default=16, help="per client process")
    parser.add_argument("--presence-timeout", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--flap",
        action="store_true",
        help="instead: a lease that lapsed once, then SIGKILL (default 200 members)",
    )
    args = parser.parse_args()
    if args.flap:
        if args.members == 10_000:
            args.members = 200
        flapped = asyncio.run(flap(args))
        print(json.dumps(flapped, indent=1))
        path = args.out or ROOT / "bench" / "results" / "presence-flap.json"
        path.write_text(json.dumps(flapped, indent=1))
        return
    if args.quick:
        args.members, args.probes = 300, 5
    if args.window <= 0:
        args.window = args.members
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = ROOT / "bench" / "results"
    out: Path = args.out or results / ("presence-quick.json" if args.quick else "presence.json")
    report = asyncio.run(run(args))
    command = " ".join(["python -m bench.presence", *sys.argv[1:]])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report, command))
    print("wrote", out, out.with_suffix(".md"))


if __name__ == "__main__":
    main()
