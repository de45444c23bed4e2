"""Idle WebSocket connections held by several worker processes, heartbeats on (issue 19).

``python -m bench.idle_scale [--quick] [--layouts 3x16667,2x19000] [--window 60]``

For each layout ``WxN`` (``W`` worker processes, ``N`` connections per worker, ``W * N`` in
all) the same sequence of fresh servers, each ``python -m transports.server.run
bench.idle_scale_app:app --workers W`` (the workers share the parent's listening socket):

* ``raw``: a bare Quart ``websocket /raw/ws`` route on the same Hypercorn (no heartbeat: the
  floor), held by the same client;
* ``library``: the library's app at the default heartbeat;
* ``library-short``: the library's app with ``TRANSPORTS_HEARTBEAT`` short (``--short``).

Connections come from client processes of their own (``--clients``), each binding its own
loopback source addresses 127.0.0.x (one source address and one server port give about 28,000
ephemeral ports, and no process here may hold more than its hard ``RLIMIT_NOFILE`` of 20,000
descriptors): protocol v1 over a bare aiohttp WebSocket for the library (negotiate, then the
socket, every PING answered with PONG, as docs/protocol.md §4 and §9 require), a bare aiohttp
WebSocket for the raw route. They open at a bounded rate with bounded concurrency.

Per worker (psutil, children of the server's parent process): RSS and USS before the
connections and after (memory per connection = growth / connections), descriptors, established
connections on the server port (the kernel's share of each worker), CPU over an idle window of
``--window`` seconds. The clients count the PINGs each connection received in the window and
report every connection that closed. Results: ``bench/results/issue19/idle-scale/results.json``
and ``results.md`` (rendered from the JSON: ``--from-json`` re-renders it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from transports.bench import procs
from transports.bench.clients import Conn, RawWSConn, ThinWSConn, close_many, open_many
from transports.bench.server import raise_fd_limit
from transports.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "issue19" / "idle-scale"
DEFAULT_HEARTBEAT = Settings().heartbeat
FD_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

# --- the client process ------------------------------------------------------------------


def client_session(local_addr: str) -> aiohttp.ClientSession:
    """An aiohttp session of one connection, from ``local_addr``: the negotiate POST and the
    WebSocket upgrade after it travel on the same TCP connection, hence reach the same worker
    (with the in-memory backplane a session lives in the process that answered negotiate; a
    WebSocket that reached another worker would be refused ``404 unknown_session``)."""
    connector = aiohttp.TCPConnector(limit=1, local_addr=(local_addr, 0))
    return aiohttp.ClientSession(connector=connector, trust_env=False)


class Holder:
    """The connections of one client process, each read by its own task until it closes."""

    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.pings: list[int] = []
        self.marked: list[int] = []
        self.closed: dict[int, int | None] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def hold(self, conn: Conn) -> None:
        index = len(self.conns)
        self.conns.append(conn)
        self.pings.append(0)
        self.marked.append(0)
        self.tasks.append(asyncio.create_task(self._read(index, conn)))

    async def _read(self, index: int, conn: Conn) -> None:
        ws: aiohttp.ClientWebSocketResponse = conn.ws  # type: ignore[attr-defined]
        try:
            while True:
                message = await ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    frame = json.loads(message.data)
                    if isinstance(frame, list) and frame and frame[0] == 7:  # PING
                        self.pings[index] += 1
                        await ws.send_str("[8]")  # PONG
                elif message.type is not aiohttp.WSMsgType.BINARY:
                    break
        except Exception:
            pass
        finally:
            self.closed[index] = ws.close_code

    def stats(self) -> dict[str, Any]:
        """Totals, and per connection the PINGs since the previous call (the window)."""
        window = [p - m for p, m in zip(self.pings, self.marked, strict=True)]
        self.marked = list(self.pings)
        codes: dict[str, int] = {}
        for code in self.closed.values():
            codes[str(code)] = codes.get(str(code), 0) + 1
        return {
            "held": len(self.conns),
            "open": len(self.conns) - len(self.closed),
            "closed": len(self.closed),
            "close_codes": codes,
            "pings": sum(self.pings),
            "window_pings": sum(window),
            "window_min_pings": min(window, default=0),
        }


async def client_run(spec: dict[str, Any]) -> None:
    """Open ``count`` idle connections to ``base`` (kind ``thin`` or ``raw``) from
    ``local_addrs`` in turn, at most ``rate`` per second, ``concurrency`` at a time; then
    answer the harness's ``stats`` and ``stop`` lines on stdin."""
    base: str = spec["base"]
    kind: str = spec["kind"]
    count: int = spec["count"]
    addrs: list[str] = spec["local_addrs"]
    rate: float = spec["rate"]
    concurrency: int = spec["concurrency"]
    sessions: list[aiohttp.ClientSession] = []
    holder = Holder()
    errors: list[str] = []

    def factory(index: int) -> Conn:
        session = client_session(addrs[index % len(addrs)])
        sessions.append(session)
        if kind == "raw":
            return RawWSConn(base, session, "/raw/ws")
        return ThinWSConn(base, session)

    # Paced: connection i starts no earlier than i / rate seconds in, and no more than
    # ``concurrency`` are opening at once (a slow one holds up nothing but its own slot).
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        conn = factory(index)
        try:
            await conn.open(spec["timeout"])
        except Exception as exc:  # counted and reported, never raised
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
        else:
            holder.hold(conn)
        finally:
            slots.release()

    t0 = time.monotonic()
    opening = []
    for index in range(count):
        await slots.acquire()
        await asyncio.sleep(max(0.0, t0 + index / rate - time.monotonic()))
        opening.append(asyncio.create_task(one(index)))
    await asyncio.gather(*opening)
    ready = {
        "opened": len(holder.conns),
        "failed": len(errors),
        "errors": sorted(set(errors))[:10],
        "open_s": time.monotonic() - t0,
    }
    print("ready " + json.dumps(ready), flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while True:
        line = (await stdin.readline()).strip()
        if line == b"stats":
            print("stats " + json.dumps(holder.stats()), flush=True)
        elif not line or line == b"stop":
            break
    usage = resource.getrusage(resource.RUSAGE_SELF)
    done = {**holder.stats(), "cpu_s": usage.ru_utime + usage.ru_stime}
    print("done " + json.dumps(done), flush=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(close_many(holder.conns, 500), 30)
    for task in holder.tasks:
        task.cancel()
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


class IdleClient(procs.Worker):
    """A client process of this benchmark (``python -m bench.idle_scale --client SPEC``),
    driven through :class:`transports.bench.procs.Worker`'s line protocol."""

    def __init__(self, spec: dict[str, Any], log: Path) -> None:
        super().__init__(spec)
        self.log = log

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.idle_scale",
                "--client",
                json.dumps(self.spec),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=16 * 1024 * 1024,
            )
        self.ps = psutil.Process(self.proc.pid)

    async def stats(self, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        result: dict[str, Any] = json.loads(await self.line("stats", timeout))
        return result

    async def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """Its last stats; then it closes its connections and exits (killed if it does not)."""
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"stop\n")
            await self.proc.stdin.drain()
            result: dict[str, Any] = json.loads(await self.line("done", timeout))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 40)
        finally:
            await self.kill()
        return result


# --- the server --------------------------------------------------------------------------


class MultiServer:
    """``python -m transports.server.run bench.idle_scale_app:app --workers N``; readings per
    worker process (the parent's children that run ``spawn_main``)."""

    def __init__(self, app: str, workers: int, heartbeat: float | None, log: Path) -> None:
        self.app = app
        self.nworkers = workers
        self.heartbeat = heartbeat
        self.log = log
        self.port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.workers: list[psutil.Process] = []

    def start(self, timeout: float = 60.0) -> MultiServer:
        env = {**os.environ, "BENCH_IDLE_APP": self.app}
        env.pop("TRANSPORTS_HEARTBEAT", None)
        if self.heartbeat is not None:
            env["TRANSPORTS_HEARTBEAT"] = str(self.heartbeat)
        argv = [sys.executable, "-m", "transports.server.run", "bench.idle_scale_app:app"]
        argv += ["--bind", f"127.0.0.1:{self.port}", "--workers", str(self.nworkers)]
        argv += ["--graceful-timeout", "1"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        parent = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} (see {self.log})")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not up after {timeout} s (see {self.log})")
            with contextlib.suppress(psutil.Error):
                self.workers = [
                    p for p in parent.children() if "spawn_main" in " ".join(p.cmdline())
                ]
            if len(self.workers) == self.nworkers and procs.port_open(self.port):
                break
            time.sleep(0.1)
        return self

    def readings(self, connections: bool = False) -> list[dict[str, Any]]:
        """Per worker: pid, RSS and USS (MiB), descriptors, CPU seconds; with ``connections``
        also its established TCP connections on the server port."""
        out = []
        for p in self.workers:
            with p.oneshot():
                times = p.cpu_times()
                row: dict[str, Any] = {
                    "pid": p.pid,
                    "rss_mib": p.memory_info().rss / 2**20,
                    "uss_mib": p.memory_full_info().uss / 2**20,
                    "fds": p.num_fds(),
                    "cpu_s": times.user + times.system,
                }
            if connections:
                row["established"] = sum(
                    1
                    for c in p.net_connections("tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr[1] == self.port
                )
            out.append(row)
        return out

    def parent_cpu(self) -> float:
        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        """SIGTERM the parent (its workers drain, then stop); SIGKILL by PID what is left."""
        if self.proc is not None:
            procs.stop_pid(self.proc, 30)
        for p in self.workers:
            with contextlib.suppress(psutil.Error):
                if p.is_running():
                    p.send_signal(signal.SIGKILL)
                    p.wait(10)


# --- one measurement ---------------------------------------------------------------------


async def measure(
    name: str, workers: int, per_worker: int, args: argparse.Namespace, logdir: Path
) -> dict[str, Any]:
    """One fresh server of configuration ``name`` holding ``workers * per_worker``
    connections."""
    app = "raw" if name == "raw" else "realtime"
    heartbeat = args.short if name == "library-short" else None
    kind = "raw" if app == "raw" else "thin"
    total = workers * per_worker
    server = MultiServer(app, workers, heartbeat, logdir / f"server-{workers}w-{name}.log")
    clients: list[IdleClient] = []
    nclients = min(args.clients, max(1, total // 250))
    try:
        server.start()
        # Warm up: every worker runs each code path a connection uses before the baseline.
        warm = RawWSConn if kind == "raw" else ThinWSConn
        sessions = [client_session("127.0.0.1") for _ in range(30 * workers)]
        try:
            conns, errors = await open_many(
                lambda i: warm(server.base, sessions[i]), len(sessions), subscribe=False
            )
            if errors:
                raise RuntimeError(f"warm-up failed: {errors[:3]}")
            await close_many(conns)
        finally:
            await asyncio.gather(*(s.close() for s in sessions))
        await asyncio.sleep(args.settle)
        before = server.readings()
        t0 = time.monotonic()
        for index in range(nclients):
            share = total // nclients + (1 if index < total % nclients else 0)
            addrs = [f"127.0.0.{2 + index * args.addrs + k}" for k in range(args.addrs)]
            spec = {
                "base": server.base,
                "kind": kind,
                "count": share,
                "local_addrs": addrs,
                "rate": args.rate / nclients,
                "concurrency": args.concurrency,
                "timeout": 120,
            }
            client = IdleClient(spec, logdir / f"client-{workers}w-{name}-{index}.log")
            await client.start()
            clients.append(client)
        ready = await asyncio.gather(*(c.wait_ready(args.open_timeout) for c in clients))
        open_s = time.monotonic() - t0
        opened = sum(int(r["opened"]) for r in ready)
        failed = sum(int(r["failed"]) for r in ready)
        await asyncio.sleep(args.settle)
        after = server.readings()
        start = await asyncio.gather(*(c.stats() for c in clients))  # marks the window's start
        wall0, parent0 = time.monotonic(), server.parent_cpu()
        # Longer than the server's patience (2 x heartbeat) even when the window is short.
        window = max(args.window, 2 * heartbeat + 1) if heartbeat else args.window
        await asyncio.sleep(window)
        wall = time.monotonic() - wall0
        end = server.readings(connections=True)
        parent_s = server.parent_cpu() - parent0
        stats = await asyncio.gather(*(c.stats() for c in clients))
        cpu_s = sum(e["cpu_s"] for e in end) - sum(a["cpu_s"] for a in after)
        window_pings = sum(int(s["window_pings"]) for s in stats)
        open_at_end = sum(int(s["open"]) for s in stats)
        codes: dict[str, int] = {}
        for s in stats:
            for code, n in s["close_codes"].items():
                codes[code] = codes.get(code, 0) + int(n)
        per_worker_rows = []
        for b, a, e in zip(before, after, end, strict=True):
            held = int(e["established"])
            per_worker_rows.append(
                {
                    "pid": e["pid"],
                    "connections": held,
                    "fds": e["fds"],
                    "rss_before_mib": b["rss_mib"],
                    "rss_after_mib": a["rss_mib"],
                    "rss_end_mib": e["rss_mib"],
                    "uss_before_mib": b["uss_mib"],
                    "uss_after_mib": a["uss_mib"],
                    "kib_per_conn_rss": (a["rss_mib"] - b["rss_mib"]) * 1024 / max(held, 1),
                    "cpu_pct": (e["cpu_s"] - a["cpu_s"]) / wall * 100,
                }
            )
        rss_delta = sum(a["rss_mib"] for a in after) - sum(b["rss_mib"] for b in before)
        uss_delta = sum(a["uss_mib"] for a in after) - sum(b["uss_mib"] for b in before)
        established = sum(r["connections"] for r in per_worker_rows)
        result = {
            "config": name,
            "app": app,
            "heartbeat_s": None if app == "raw" else (heartbeat or DEFAULT_HEARTBEAT),
            "workers": workers,
            "target": total,
            "clients": nclients,
            "opened": opened,
            "failed": failed,
            "errors": sorted({e for r in ready for e in r["errors"]})[:10],
            "open_s": open_s,
            "established_at_end": established,
            "open_at_window_start": sum(int(s["open"]) for s in start),
            "open_at_end": open_at_end,
            "closed": sum(int(s["closed"]) for s in stats),
            "close_codes": codes,
            "rss_delta_mib": rss_delta,
            "uss_delta_mib": uss_delta,
            "kib_per_conn_rss": rss_delta * 1024 / max(opened, 1),
            "kib_per_conn_uss": uss_delta * 1024 / max(opened, 1),
            "window_s": wall,
            "cpu_s": cpu_s,
            "cpu_pct": cpu_s / wall * 100,
            "parent_cpu_pct": parent_s / wall * 100,
            "window_pings": window_pings,
            "window_min_pings": min(int(s["window_min_pings"]) for s in stats),
            "us_per_ping": cpu_s / window_pings * 1e6 if window_pings else None,
            "per_worker": per_worker_rows,
        }
        finals = await asyncio.gather(*(c.stop() for c in clients))
        result["client_cpu_s"] = sum(float(f["cpu_s"]) for f in finals)
        print(
            f"{workers}w {name:13}: {opened}/{total} open ({failed} failed) in {open_s:.0f} s, "
            f"per worker {[r['connections'] for r in per_worker_rows]}, "
            f"{result['kib_per_conn_rss']:.1f} KiB/conn RSS, {result['cpu_pct']:.1f}% CPU, "
            f"{window_pings} pings, {open_at_end} open at end",
            flush=True,
        )
        return result
    finally:
        await asyncio.gather(*(c.kill() for c in clients), return_exceptions=True)
        server.stop()


def derive(layout: dict[str, Any]) -> None:
    """Ratios against the raw route of the same layout, and heartbeat CPU net of its floor."""
    runs = {r["config"]: r for r in layout["runs"]}
    raw = runs.get("raw")
    for run in layout["runs"]:
        if raw is None or run is raw:
            continue
        if not run["closed"]:  # a run that lost connections has no comparable memory figure
            run["kib_ratio_rss"] = run["kib_per_conn_rss"] / raw["kib_per_conn_rss"]
            run["kib_ratio_uss"] = run["kib_per_conn_uss"] / raw["kib_per_conn_uss"]
        else:
            run.pop("kib_ratio_rss", None)
            run.pop("kib_ratio_uss", None)
        net = run["cpu_s"] - raw["cpu_pct"] / 100 * run["window_s"]
        run["net_cpu_pct"] = net / run["window_s"] * 100
        pings = run["window_pings"]
        run["net_us_per_ping"] = net / pings * 1e6 if pings else None
    default, short = runs.get("library"), runs.get("library-short")
    layout.pop("marginal_us_per_ping", None)
    layout.pop("no_ping_cpu_pct", None)
    # Only when both kept every connection (closes change the count the CPU is spent on).
    if default is not None and short is not None and not default["closed"] + short["closed"]:
        # Two heartbeats, as many connections: the CPU the extra PINGs cost, per PING (the
        # marginal cost), and what is left at no PING at all (the sweep over every session).
        cpu = short["cpu_s"] / short["window_s"] - default["cpu_s"] / default["window_s"]
        rate = (
            short["window_pings"] / short["window_s"]
            - default["window_pings"] / default["window_s"]
        )
        if rate > 0:
            marginal = cpu / rate
            layout["marginal_us_per_ping"] = marginal * 1e6
            sweep = (
                default["cpu_s"] / default["window_s"]
                - marginal * default["window_pings"] / default["window_s"]
            )
            layout["no_ping_cpu_pct"] = sweep * 100


# --- the report --------------------------------------------------------------------------


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def markdown(data: dict[str, Any]) -> str:
    """results.md, from results.json alone."""
    m = data["machine"]
    lines = [
        "# Idle connections across worker processes (issue 19)",
        "",
        "<!-- --8<-- [start:header] -->",
        f"`{data['command']}`: {data['date']} UTC, commit {m['commit']}, {m['cores']} cores "
        f"({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, hard `RLIMIT_NOFILE` "
        f"{data['fd_limit']:,} per process, ephemeral ports {data['port_range']}."
        + (
            f" Not yet committed at that commit: {', '.join(data['uncommitted'])}."
            if data.get("uncommitted")
            else ""
        ),
        "<!-- --8<-- [end:header] -->",
        "",
        "<!-- --8<-- [start:idle-scale] -->",
    ]
    for layout in data["layouts"]:
        w, n = layout["workers"], layout["per_worker"]
        lines += [
            f"**{w} workers x {n:,} = {w * n:,} connections** ({layout['arithmetic']})",
            "",
            "| server | heartbeat | open / target (failed) | per worker | open at end "
            "| KiB/conn RSS (USS) | vs raw | CPU % of a core | PINGs in window "
            "| µs per PING | net of raw |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in layout["runs"]:
            heartbeat = "none" if r["heartbeat_s"] is None else f"{r['heartbeat_s']:g} s"
            ratio = (
                f"{r['kib_ratio_rss']:.2f}x ({r['kib_ratio_uss']:.2f}x)"
                if "kib_ratio_rss" in r
                else "-"
            )
            shares = " + ".join(f"{p['connections']:,}" for p in r["per_worker"])
            lines.append(
                f"| {r['config']} | {heartbeat} | {r['opened']:,} / {r['target']:,} "
                f"({r['failed']:,}) | {shares} "
                f"| {r['open_at_end']:,} | {_f(r['kib_per_conn_rss'])} "
                f"({_f(r['kib_per_conn_uss'])}) | {ratio} | {_f(r['cpu_pct'])} "
                f"| {r['window_pings']:,} (min {r['window_min_pings']} per conn) "
                f"| {_f(r['us_per_ping'], 0)} | {_f(r.get('net_us_per_ping'), 0)} |"
            )
        for r in layout["runs"]:
            if r["closed"]:
                codes = ", ".join(f"{n:,} x {code}" for code, n in sorted(r["close_codes"].items()))
                lines += [
                    "",
                    f"{r['config']}: {r['closed']:,} connections were closed before the end "
                    f"({codes}; 4000 is the server's heartbeat timeout, docs/protocol.md §9): "
                    "the row's memory per connection divides by the connections opened, so it "
                    "is not comparable with the others.",
                ]
        if "marginal_us_per_ping" in layout:
            lines += [
                "",
                f"From the two heartbeats: each extra PING (and its PONG) costs "
                f"{_f(layout['marginal_us_per_ping'], 0)} µs of worker CPU; at no PING at all "
                f"the library's workers would still use {_f(layout['no_ping_cpu_pct'])}% of a "
                "core for these connections (the once-a-second pass over every session that "
                "sends the PINGs and closes the silent).",
            ]
        lines.append("")
    lines += [
        f"Idle window {data['window_s']:g} s per server (at least twice the heartbeat and a "
        "second), after every connection was open. "
        "KiB/conn: growth of the workers' RSS (USS) from before the connections to after, over "
        "the connections opened (sockets' kernel buffers are not in it). CPU: the workers' user "
        "+ system time over the window, as a share of one core; µs per PING: that CPU over the "
        "PINGs the clients received in the window (each answered with a PONG the server reads), "
        "and net of the raw route's CPU over the same window (the raw route has no heartbeat: "
        "its CPU is the floor). Per worker: established connections on the server port at the "
        "end (the kernel hands each accepted connection to whichever worker accepts first). "
        "CPU figures move with whatever else the machine runs: they are indicative.",
        "<!-- --8<-- [end:idle-scale] -->",
        "",
    ]
    return "\n".join(lines)


def write(data: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "results.md").write_text(markdown(data))


def arithmetic(workers: int, per_worker: int) -> str:
    total = workers * per_worker
    limit = FD_LIMIT
    return (
        f"{total:,} = {workers} x {per_worker:,}; each worker holds its connections plus a few "
        f"dozen descriptors of its own under the hard limit of {limit:,}, so {workers} workers "
        f"hold at most about {workers * (limit - 100):,}"
    )


def uncommitted() -> list[str]:
    """Files of the checkout that differ from the commit the run names (``git status``)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "transports", "bench"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        return sorted(line[3:] for line in status.splitlines() if line.strip())
    return []


async def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Every layout's measurements; the results are written after each one (a run cut short
    keeps what it measured)."""
    from transports.bench.__main__ import machine

    logdir = Path(tempfile.mkdtemp(prefix="idle-scale-logs-"))
    print(f"server and client logs in {logdir}", flush=True)
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    data: dict[str, Any] = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": machine(),
        "uncommitted": uncommitted(),
        "fd_limit": FD_LIMIT,
        "port_range": "-".join(ports),
        "window_s": args.window,
        "short_heartbeat_s": args.short,
        "default_heartbeat_s": DEFAULT_HEARTBEAT,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "layouts": [],
    }
    for spec in args.layouts.split(","):
        w, _, n = spec.partition("x")
        workers, per_worker = int(w), int(n)
        layout: dict[str, Any] = {
            "workers": workers,
            "per_worker": per_worker,
            "arithmetic": arithmetic(workers, per_worker),
            "runs": [],
        }
        data["layouts"].append(layout)
        for name in args.servers.split(","):
            layout["runs"].append(await measure(name, workers, per_worker, args, logdir))
            derive(layout)
            write(data, args.out)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="2 workers x 500, short windows")
    parser.add_argument("--layouts", default="3x16667,2x19000", help="WxN,... (workers x each)")
    parser.add_argument(
        "--servers",
        default="raw,library,library-short",
        help="which of raw, library, library-short to run (default all, in that order)",
    )
    parser.add_argument("--window", type=float, default=60.0, help="idle window, seconds")
    parser.add_argument("--short", type=float, default=5.0, help="the short heartbeat, seconds")
    parser.add_argument("--clients", type=int, default=6, help="client processes (at most)")
    parser.add_argument("--addrs", type=int, default=4, help="source addresses per client")
    parser.add_argument("--rate", type=float, default=1500, help="connections opened per second")
    parser.add_argument("--concurrency", type=int, default=64, help="opening at once, per client")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before readings")
    parser.add_argument("--open-timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, help="re-render results.md from this JSON")
    args = parser.parse_args(argv)
    if args.client:
        raise_fd_limit()
        asyncio.run(client_run(json.loads(args.client)))
        return
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        for layout in data["layouts"]:
            derive(layout)
        write(data, args.from_json.parent)
        return
    if args.quick:
        args.layouts, args.window, args.short = "2x500", 3.0, 4.0
        args.clients, args.addrs, args.settle, args.rate = 2, 2, 1.0, 1000
    if args.out is None:
        args.out = OUT if not args.quick else Path(tempfile.gettempdir()) / "idle-scale-quick"
    command = "python -m bench.idle_scale " + " ".join(argv if argv is not None else sys.argv[1:])
    data = asyncio.run(run(args, command.strip()))
    write(data, args.out)
    print(f"wrote {args.out / 'results.json'} and results.md")


if __name__ == "__main__":
    main()
