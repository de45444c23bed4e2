"""A client process holding many connections (fan-out subscribers, idle connections).

``python -m transports.bench.worker '<json>'`` with ``{"base", "configs", "count",
"expect", "local_addrs", "concurrency"}``: opens ``count`` subscriber connections (the
configurations of ``configs`` in turn, each from the next source address of ``local_addrs``),
then talks to the harness by lines:

* out ``ready {"opened", "errors", "transports"}`` once every connection is open and subscribed;
* out ``complete`` once every connection has received ``expect`` messages (if ``expect`` > 0);
* in ``stop``: report and exit;
* out ``done {"got", "first", "last", "latencies_ms", "cpu_s", "rss_mib"}``: per connection
  the number of messages received and the monotonic times of the first and the last one; every
  message's latency (arrival minus the server's send time, both ``time.monotonic()``, one clock
  for every process here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from typing import Any

import aiohttp

from .clients import BenchConnector, Conn, close_many, make_conn, new_session, open_many
from .server import raise_fd_limit


async def run(spec: dict[str, Any]) -> None:
    base: str = spec["base"]
    configs: list[str] = spec["configs"]
    count: int = spec["count"]
    expect: int = spec.get("expect", 0)
    addrs: list[str | None] = spec.get("local_addrs") or [None]
    connectors = {addr: BenchConnector(addr) for addr in addrs}
    sessions: dict[str | None, aiohttp.ClientSession] = {}

    def factory(index: int) -> Conn:
        addr = addrs[index % len(addrs)]
        config = configs[index % len(configs)]
        if config.startswith(("sio", "raw", "thin")):
            if addr not in sessions:
                sessions[addr] = new_session(addr)
            return make_conn(config, base, subscriber=True, session=sessions[addr])
        return make_conn(config, base, subscriber=True, connector=connectors[addr])

    conns, errors = await open_many(
        factory, count, concurrency=spec.get("concurrency", 50), timeout=spec.get("timeout", 60)
    )
    transports: dict[str, int] = {}
    for conn in conns:
        transports[str(conn.transport)] = transports.get(str(conn.transport), 0) + 1
    got = [0] * len(conns)
    first = [0.0] * len(conns)
    last = [0.0] * len(conns)
    latencies: list[float] = []
    remaining = {"n": len(conns)}
    complete = asyncio.Event()
    if expect <= 0 or not conns:
        complete.set()

    async def reader(index: int, conn: Conn) -> None:
        while got[index] < expect:
            data = await conn.next_message()
            now = time.monotonic()
            got[index] += 1
            if not first[index]:
                first[index] = now
            last[index] = now
            stamp = data.get("t") if isinstance(data, dict) else None
            if isinstance(stamp, float | int):
                latencies.append(round((now - stamp) * 1000, 2))
        remaining["n"] -= 1
        if remaining["n"] == 0:
            complete.set()

    readers = [asyncio.create_task(reader(i, c)) for i, c in enumerate(conns)] if expect else []
    print(
        "ready "
        + json.dumps(
            {
                "opened": len(conns),
                "errors": errors[:20],
                "failed": len(errors),
                "transports": transports,
            }
        ),
        flush=True,
    )

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    stall: float = spec.get("stall", 15.0)

    async def announce() -> None:
        # "complete" when every connection has everything, or when deliveries stopped for
        # ``stall`` seconds after the first one (connections that dropped never complete).
        while not complete.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(complete.wait(), 0.5)
            seen = [t for t in last if t]
            if seen and time.monotonic() - max(seen) > stall:
                break
        if expect:
            print("complete", flush=True)

    announcer = asyncio.create_task(announce())
    while True:
        line = await stdin.readline()
        if not line or line.strip() == b"stop":
            break
    announcer.cancel()
    for task in readers:
        task.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "got": got,
        "first": first,
        "last": last,
        "latencies_ms": latencies,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
    }
    print("done " + json.dumps(report), flush=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(close_many(conns), 20)
    for connector in connectors.values():
        with contextlib.suppress(Exception):
            await connector.close()
    for session in sessions.values():
        with contextlib.suppress(Exception):
            await session.close()


def main() -> None:
    raise_fd_limit()
    asyncio.run(run(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
