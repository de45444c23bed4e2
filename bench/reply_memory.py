"""What a client message costs with the Redis backplane, against the in-memory backplane.

Every client message is claimed in the backplane's key-value store before its handler runs, and
its answer stored after (docs/protocol.md §8). With the in-memory backplane both are dictionary
writes; with Redis each is a command to a real ``redis-server`` on loopback. This drives the
library in one process (the edge with ASGI events, no ASGI server or client library in the way,
as ``transports.bench.inproc`` does), each measurement in a fresh process, the configurations
interleaved in each repetition (which version goes first alternates):

* ``rtt_p50_us``: one client, one message at a time: the median time from the message queued to
  its REPLY written (what a user waits per message, less the network and the ASGI server);
* ``echo50_per_s``: 50 clients, one message in flight each (closed loop; five times as many
  messages as the single client's, so that even the fastest run lasts a fair fraction of a
  second), messages per second;
* ``relay50_per_s`` and ``relay50_cpu_us``: the same, with a handler that publishes each message
  to a topic (nobody subscribed) before it answers: what a chat room's message costs;
  ``echo50_cpu_us``: this process's CPU per message meanwhile (redis-server's not counted): the
  steadier figure on a shared machine.

With ``--before TREE`` the library of another checkout (a ``git worktree`` with this file copied
into its ``bench/``) is measured the same way in the same run.

Run: ``python -m bench.reply_memory [--repeat 5] [--echoes 2000] [--before TREE] [--out DIR]``;
``--from-json FILE`` renders results.md again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BACKPLANES = ("memory", "redis")
FIGURES = ("rtt_p50_us", "echo50_per_s", "echo50_cpu_us", "relay50_per_s", "relay50_cpu_us")


async def measure(backplane: str, echoes: int) -> dict[str, float]:
    """One backplane, in this process: ``rtt_p50_us`` and ``echo50_per_s``."""
    from quart import Quart

    from transports import Channel, Realtime
    from transports.bench.inproc import FakeSocket, open_websocket, send_event
    from transports.bench.server import REALTIME_SETTINGS

    app = Quart("reply-memory")
    rt = Realtime(app, **{**REALTIME_SETTINGS, "backplane": backplane})

    @rt.on("echo")
    async def echo(channel: Channel, data: Any) -> Any:
        return data

    @rt.on("relay")
    async def relay(channel: Channel, data: Any) -> None:
        await rt.publish("relayed", "m", data)  # nobody listens: the publication's own cost

    async with app.test_app() as test_app:
        client = test_app.test_client()
        sockets: list[FakeSocket] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            for _ in range(50):
                socket = FakeSocket()
                tasks.append(await open_websocket(app, client, socket))
                sockets.append(socket)
            for k, socket in enumerate(sockets):  # every connection open and warm
                for i in range(20):
                    await send_event(socket, k * 1000 + i)
            ref = 1_000_000
            times = []
            for _ in range(echoes):
                ref += 1
                started = time.perf_counter()
                await send_event(sockets[0], ref)
                times.append(time.perf_counter() - started)
            per = max(1, echoes // 10)  # 50 clients x echoes / 10: five times one client's

            async def loop(socket: FakeSocket, first: int, event: str) -> None:
                for i in range(per):
                    await send_event(socket, first + i, event)

            closed_loop: dict[str, tuple[float, float]] = {}
            for n, event in enumerate(("echo", "relay")):
                started, cpu = time.perf_counter(), time.process_time()
                await asyncio.gather(
                    *(loop(s, 10_000_000 * (k + 1) + n * per, event) for k, s in enumerate(sockets))
                )
                closed_loop[event] = (time.perf_counter() - started, time.process_time() - cpu)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    count = per * len(sockets)
    return {
        "rtt_p50_us": statistics.median(times) * 1e6,
        "echo50_per_s": count / closed_loop["echo"][0],
        "echo50_cpu_us": closed_loop["echo"][1] / count * 1e6,
        "relay50_per_s": count / closed_loop["relay"][0],
        "relay50_cpu_us": closed_loop["relay"][1] / count * 1e6,
    }


def _measure_in(tree: Path, backplane: str, echoes: int) -> dict[str, float]:
    """:func:`measure` in a fresh process, with the library (and this file) of ``tree``."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.reply_memory", "--one", backplane, "--echoes", str(echoes)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"a measurement in {tree} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _commit(tree: Path) -> str:
    """The tree's commit, with "+changes" when its library or benchmarks differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "transports").strip() else "")


def run(repeat: int, echoes: int, before: Path | None) -> dict[str, Any]:
    from bench.scaleout import free_port, stop, wait_port

    trees = {"after": ROOT} | ({"before": before} if before is not None else {})
    port = free_port()
    data = tempfile.TemporaryDirectory()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", data.name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    runs: dict[str, list[dict[str, float]]] = {
        f"{version}/{name}": [] for version in trees for name in BACKPLANES
    }
    try:
        asyncio.run(wait_port(port))
        for index in range(repeat):
            order = list(trees.items())
            if index % 2:  # alternate which version goes first (the machine drifts)
                order.reverse()
            for version, tree in order:
                for name in BACKPLANES:
                    figures = _measure_in(tree, url if name == "redis" else "memory://", echoes)
                    runs[f"{version}/{name}"].append(figures)
                    print(
                        f"repetition {index + 1} {version:6} {name:6}: round trip p50 "
                        f"{figures['rtt_p50_us']:6.0f} us, 50 clients "
                        f"{figures['echo50_per_s']:7,.0f} msg/s",
                        flush=True,
                    )
    finally:
        stop(redis)
        data.cleanup()
    command = "python -m bench.reply_memory " + " ".join(sys.argv[1:])
    return {
        "command": command.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cores": os.cpu_count(),
        "commits": {version: _commit(tree) for version, tree in trees.items()},
        "echoes": echoes,
        "repeat": repeat,
        "runs": runs,
        "summary": _summary(runs),
    }


def _summary(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Medians per configuration, and the medians of per-repetition ratios: Redis over memory
    in each version, after over before for each backplane."""
    out: dict[str, dict[str, float]] = {
        name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for name, rows in runs.items()
    }

    def ratio(top: str, bottom: str, key: str) -> float:
        pairs = zip(runs[top], runs[bottom], strict=True)
        return statistics.median(t[key] / b[key] for t, b in pairs)

    for version in {name.split("/")[0] for name in runs}:
        out[f"{version}/redis-over-memory"] = {
            key: ratio(f"{version}/redis", f"{version}/memory", key) for key in FIGURES
        }
    if "before/redis" in runs:
        for name in BACKPLANES:
            out[f"after-over-before/{name}"] = {
                key: ratio(f"after/{name}", f"before/{name}", key) for key in FIGURES
            }
    return out


def markdown(data: dict[str, Any]) -> str:
    """results.md, from results.json alone."""
    s = data["summary"]
    commits = ", ".join(f"{version} {commit}" for version, commit in data["commits"].items())
    lines = [
        "# A client message with the Redis backplane (issue 19)",
        "",
        "<!-- --8<-- [start:header] -->",
        f"`{data['command']}`: {data['date']} UTC, {data['cores']} cores shared by this process "
        f"and redis-server, {data['repeat']} repetitions (medians; ratios are medians of "
        f"per-repetition ratios), {data['echoes']:,} messages for one client and "
        f"{data['echoes'] * 5:,} for 50 per measurement; library "
        f"{commits}.",
        "<!-- --8<-- [end:header] -->",
        "",
        "<!-- --8<-- [start:reply-memory] -->",
        "Redis rows: the figure, then its ratio to the in-memory backplane's.",
        "",
        "| library | backplane | round trip p50 | 50 clients, echo | CPU per message "
        "| 50 clients, relay | CPU per message |",
        "|---|---|---|---|---|---|---|",
    ]
    units = {"rtt_p50_us": "µs", "echo50_cpu_us": "µs", "relay50_cpu_us": "µs"}
    for version in data["commits"]:
        for name in BACKPLANES:
            row = s[f"{version}/{name}"]
            vs = s[f"{version}/redis-over-memory"] if name == "redis" else None
            cells = [
                f"{row[key]:,.0f} {units.get(key, 'msg/s')}"
                + ("" if vs is None else f" ({vs[key]:.2f}x)")
                for key in FIGURES
            ]
            lines.append(
                f"| {version} ({data['commits'][version]}) | {name} | {' | '.join(cells)} |"
            )
    if "after-over-before/redis" in s:
        lines += [
            "",
            "| after over before | round trip p50 | 50 clients, echo | CPU per message "
            "| 50 clients, relay | CPU per message |",
            "|---|---|---|---|---|---|",
        ]
        for name in BACKPLANES:
            row = s[f"after-over-before/{name}"]
            lines.append(f"| {name} | " + " | ".join(f"{row[key]:.2f}x" for key in FIGURES) + " |")
    lines += ["<!-- --8<-- [end:reply-memory] -->", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--echoes", type=int, default=2000)
    parser.add_argument("--before", type=Path, help="also measure the library of this tree")
    parser.add_argument("--out", type=Path, help="write results.json and results.md here")
    parser.add_argument("--from-json", type=Path, help="only render results.md from this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one measurement, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(measure(args.one, args.echoes))))
        return
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        (args.from_json.parent / "results.md").write_text(markdown(data))
        return
    data = run(args.repeat, args.echoes, args.before)
    print(markdown(data))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
        (args.out / "results.md").write_text(markdown(data))


if __name__ == "__main__":
    main()
