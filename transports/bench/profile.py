"""Profile one phase of one configuration with py-spy: where the server (or client) spends it.

``python -m transports.bench.profile --config sse --phase c50 [--side server|client]``

Starts a fresh server, opens the connections of the phase, then records the server process
(``--side server``) or this client process (``--side client``) with ``py-spy record -f raw``
while the phase runs, and prints the top functions by self time and by inclusive time
(``% of samples``). Phases: ``rtt`` (sequential echo, 1 client), ``pipe`` (pipelined echo,
window 16), ``c50`` (50 clients closed-loop echo), ``fanout`` is not offered here (use
``python -m transports.bench --profile DIR --workloads fanout``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from .clients import APP_OF, Conn, close_many, make_conn, open_many
from .procs import PYSPY, Server

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short_frame(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (pkg/file.py)``."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    parts = path.replace("\\", "/").split("/")
    for anchor in ("site-packages", "transports", "lib"):
        if anchor in parts:
            index = len(parts) - 1 - parts[::-1].index(anchor)
            parts = parts[index + 1 :] if anchor != "transports" else parts[index:]
            break
    return f"{match.group('func')} ({'/'.join(parts[-3:])})"


def top(raw: str, n: int = 25) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, the top ``n`` frames by self samples and by inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [short_frame(f) for f in stack.split(";") if f]
        # py-spy puts the thread name first ("process 123:..." / "thread (0x...)")
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return total, own.most_common(n), inclusive.most_common(n)


def format_top(raw: str, n: int = 25) -> str:
    total, own, inclusive = top(raw, n)
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{c * 100 / max(total, 1):5.1f}  {f}" for f, c in own]
    lines += ["", "incl %  function"]
    lines += [f"{c * 100 / max(total, 1):5.1f}  {f}" for f, c in inclusive]
    return "\n".join(lines)


async def phase(config: str, name: str, server: Server, seconds: float) -> tuple[Conn, ...]:
    """Run ``name`` against ``server`` for about ``seconds``."""
    deadline = time.monotonic() + seconds
    if name == "c50":
        conns, errors = await open_many(
            lambda i: make_conn(config, server.base), 50, subscribe=False
        )
        if errors:
            raise RuntimeError(errors[0])

        async def loop(c: Conn) -> None:
            while time.monotonic() < deadline:
                await c.echo()

        await asyncio.gather(*(loop(c) for c in conns))
        await close_many(conns)
        return ()
    conn = make_conn(config, server.base)
    await conn.open()
    while time.monotonic() < deadline:
        if name == "rtt":
            await conn.echo()
        else:
            await conn.pipelined(500, 16)
    await conn.close()
    return ()


async def run(args: argparse.Namespace) -> str:
    server = Server(APP_OF[args.config], args.server).start()
    out = Path(args.out or f"/tmp/profile-{args.config}-{args.phase}-{args.side}.txt")
    try:
        # warm up (code paths, caches) before recording
        await phase(args.config, args.phase, server, 1.0)
        pid = server.pid if args.side == "server" else os.getpid()
        spy = subprocess.Popen(
            [
                PYSPY,
                "record",
                "-p",
                str(pid),
                "-f",
                "raw",
                "-r",
                "250",
                "-o",
                str(out),
                "-d",
                str(int(args.seconds) + 5),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)
        cpu0, t0 = server.cpu(), time.perf_counter()
        await phase(args.config, args.phase, server, args.seconds)
        cpu = server.cpu() - cpu0
        wall = time.perf_counter() - t0
        os.kill(spy.pid, signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    finally:
        server.stop()
    header = (
        f"profile of the {args.side} ({args.config}, phase {args.phase}, {args.server}): "
        f"server CPU {cpu / wall * 100:.0f}% over {wall:.1f} s; raw stacks in {out}"
    )
    return header + "\n\n" + format_top(out.read_text() if out.exists() else "", args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--phase", choices=("rtt", "pipe", "c50"), default="c50")
    parser.add_argument("--side", choices=("server", "client"), default="server")
    parser.add_argument("--server", choices=("hypercorn", "uvicorn"), default="hypercorn")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if not os.path.exists(PYSPY):
        sys.exit(f"py-spy not found at {PYSPY}")
    print(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
