"""The benchmark server, run as a subprocess: one app per process, on Hypercorn, uvicorn or
granian.

``python -m transports.bench.server --app APP --port P [--server hypercorn|uvicorn|granian]``

Apps (every one also answers ``POST /bench/burst`` ``{"n": N, "yield": Y}``: send N messages of
about 100 bytes, ``{"i": i, "t": <monotonic time>, "pad": ...}``, to everything subscribed, as
fast as the server can, and answer ``{"started": <monotonic time the first was sent>}``. The
publisher is the same loop on every app: with ``"yield": true`` (the default) it yields to the
event loop after each message, as a publisher that awaits anything (a backplane, a database)
does; with ``"yield": false`` it never yields until the N messages are handed over, a burst):

* ``realtime``: the library (:class:`transports.Realtime`) with an ``echo`` handler (returns
  its data) and a ``sink`` handler (returns nothing); bursts are ``rt.publish`` on topic
  ``bench``. The limits that cap one client's rate are lifted (``rate_limit``,
  ``negotiate_rate``, ``max_sessions_per_address``) and the outbox is large enough for a
  10,000-message burst; everything else is the library's default (heartbeats 25 s).
  Under ``/realtime`` on every server.
* ``raw``: bare Quart routes, the ceiling: ``websocket /raw/ws`` (echo), ``POST /raw/echo``
  (an HTTP echo: the ceiling of a transport that sends each client message as a request),
  ``websocket /raw/sink?n=N`` (reads N messages, then answers ``done``),
  ``websocket /raw/ws-sub`` and ``GET /raw/sse-sub`` (a subscriber: ``hello`` first, then
  every burst message; a message is encoded once and put in every subscriber's queue).
* ``asgi``: the server's own floor, no framework at all: a bare ASGI callable with
  ``websocket /asgi/ws`` (echo), ``websocket /asgi/sink?n=N`` and ``POST /asgi/echo``, each
  doing only what the raw Quart route of the same name does. What a framework, or the
  library, costs on top of the ASGI server is the distance from these.
* ``sio``: python-socketio's ``AsyncServer(async_mode="asgi")`` as an ``ASGIApp`` (defaults,
  as a user would run it), with events ``echo`` (acknowledged with its data), ``sink``
  (acknowledged with nothing) and ``join`` (enters room ``bench``); bursts are
  ``sio.emit("m", data, room="bench")``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from quart import Quart, Response, request, websocket

PAYLOAD_SIZE = 100
FANOUT_TOPIC = "bench"
ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REALTIME_SETTINGS: dict[str, Any] = {
    "rate_limit": None,
    "negotiate_rate": None,
    "auth_failure_rate": None,
    "max_sessions_per_address": None,
    "outbox_max_frames": 100_000,
    "outbox_max_bytes": 64 * 1024 * 1024,
    "secret_key": b"transports-bench-not-a-secret-000",
}
"""Settings of the library in the benchmark (see the module docstring)."""


def burst_payload(i: int, size: int = PAYLOAD_SIZE) -> dict[str, Any]:
    """The ``i``-th burst message: about ``size`` bytes of JSON, stamped with the send time."""
    t = round(time.monotonic(), 6)
    base = len(json.dumps({"i": i, "t": t, "pad": ""}, separators=(",", ":")))
    return {"i": i, "t": t, "pad": "x" * max(0, size - base)}


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the most an unprivileged process may)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _common_routes(app: Quart) -> None:
    @app.get("/bench/pid")
    async def pid() -> Any:
        return {"pid": os.getpid()}

    marks: dict[str, Any] = {}

    @app.post("/bench/memmark")
    async def memmark() -> Any:
        """With BENCH_TRACEMALLOC=1: remember the allocations now (the baseline)."""
        import tracemalloc

        if not tracemalloc.is_tracing():
            return {"tracing": False}
        marks["base"] = tracemalloc.take_snapshot()
        return {"tracing": True}

    @app.get("/bench/memtop")
    async def memtop() -> Any:
        """With BENCH_TRACEMALLOC=1: what was allocated since the mark, by source line."""
        import tracemalloc

        if not tracemalloc.is_tracing() or "base" not in marks:
            return {"tracing": False}
        group = request.args.get("by", "lineno")
        now = tracemalloc.take_snapshot()
        diff = now.compare_to(marks["base"], group)
        return {
            "tracing": True,
            "total_kib": sum(d.size_diff for d in diff) / 1024,
            "top": [
                {
                    "where": str(d.traceback).replace(str(ROOT_DIR), ""),
                    "kib": round(d.size_diff / 1024, 1),
                    "count": d.count_diff,
                }
                for d in diff[: int(request.args.get("n", "30"))]
            ],
        }


def realtime_app() -> Quart:
    """The library with an echo handler and a burst publisher."""
    from transports import Channel, Realtime

    app = Quart("transports_bench_realtime")
    rt = Realtime(app, **REALTIME_SETTINGS)

    @rt.on("echo")
    async def echo(channel: Channel, data: Any) -> Any:
        return data

    @rt.on("sink")
    async def sink(channel: Channel, data: Any) -> None:
        return None

    @app.post("/bench/burst")
    async def burst() -> Any:
        body = await request.get_json()
        pause = bool(body.get("yield", True))
        started = time.monotonic()
        for i in range(int(body["n"])):
            await rt.publish(FANOUT_TOPIC, "m", burst_payload(i))
            if pause:
                await asyncio.sleep(0)
        return {"ok": True, "started": started}

    @app.get("/bench/stats")
    async def stats() -> Any:
        return {"channels": len(rt.channels), "stats": dict(rt.engine.stats)}

    _common_routes(app)
    return app


def raw_app() -> Quart:
    """Bare Quart routes: the ceiling."""
    app = Quart("transports_bench_raw")
    subscribers: set[asyncio.Queue[str]] = set()

    @app.websocket("/raw/ws")
    async def raw_echo() -> None:
        while True:
            message = await websocket.receive()
            await websocket.send(message)

    @app.post("/raw/echo")
    async def raw_http_echo() -> Response:
        return Response(await request.get_data(), content_type="application/json")

    @app.websocket("/raw/sink")
    async def raw_sink() -> None:
        n = int(websocket.args.get("n", "1"))
        for _ in range(n):
            await websocket.receive()
        await websocket.send("done")

    @app.websocket("/raw/ws-sub")
    async def raw_ws_sub() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        await websocket.accept()
        await websocket.send("hello")
        subscribers.add(queue)
        try:
            while True:
                await websocket.send(await queue.get())
        finally:
            subscribers.discard(queue)

    @app.get("/raw/sse-sub")
    async def raw_sse_sub() -> Response:
        queue: asyncio.Queue[str] = asyncio.Queue()

        async def body() -> AsyncIterator[bytes]:
            subscribers.add(queue)
            try:
                yield b"data: hello\r\n\r\n"
                while True:
                    yield ("data: " + await queue.get() + "\r\n\r\n").encode()
            finally:
                subscribers.discard(queue)

        response = Response(
            body(),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        response.timeout = None
        return response

    @app.post("/bench/burst")
    async def burst() -> Any:
        body = await request.get_json()
        pause = bool(body.get("yield", True))
        started = time.monotonic()
        for i in range(int(body["n"])):
            text = json.dumps(burst_payload(i), separators=(",", ":"))
            for queue in subscribers:
                queue.put_nowait(text)
            if pause:
                await asyncio.sleep(0)
        return {"ok": True, "started": started}

    _common_routes(app)
    return app


def sio_app() -> Any:
    """python-socketio's ASGI app, with a small Quart app beside it for ``/bench/*``."""
    import socketio

    sio = socketio.AsyncServer(async_mode="asgi")
    sinks = {"count": 0}

    @sio.on("echo")  # type: ignore[untyped-decorator]
    async def echo(sid: str, data: Any) -> Any:
        return data

    @sio.on("sink")  # type: ignore[untyped-decorator]
    async def sink(sid: str, data: Any) -> None:
        sinks["count"] += 1

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, data: Any) -> bool:
        await sio.enter_room(sid, FANOUT_TOPIC)
        return True

    side = Quart("transports_bench_sio")

    @side.post("/bench/burst")
    async def burst() -> Any:
        body = await request.get_json()
        pause = bool(body.get("yield", True))
        started = time.monotonic()
        for i in range(int(body["n"])):
            await sio.emit("m", burst_payload(i), room=FANOUT_TOPIC)
            if pause:
                await asyncio.sleep(0)
        return {"ok": True, "started": started}

    _common_routes(side)
    return socketio.ASGIApp(sio, other_asgi_app=side)


async def _asgi_lifespan(receive: Any, send: Any) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _asgi_websocket(scope: Any, receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    remaining = -1
    if scope["path"] == "/asgi/sink":
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        remaining = int(query.get("n", "1"))
    while remaining != 0:
        event = await receive()
        if event["type"] != "websocket.receive":
            return
        if remaining > 0:
            remaining -= 1
        elif event.get("text") is not None:
            await send({"type": "websocket.send", "text": event["text"]})
        else:
            await send({"type": "websocket.send", "bytes": event.get("bytes") or b""})
    await send({"type": "websocket.send", "text": "done"})
    await receive()  # the client closes


async def _asgi_echo(receive: Any, send: Any) -> None:
    body = b""
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def asgi_app() -> Any:
    """A bare ASGI callable, no framework: the server's floor (see the module docstring)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _asgi_lifespan(receive, send)
        elif kind == "websocket":
            await _asgi_websocket(scope, receive, send)
        elif scope["method"] == "POST" and scope["path"] == "/asgi/echo":
            await _asgi_echo(receive, send)
        else:
            headers = [(b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

    return app


APPS = {"realtime": realtime_app, "raw": raw_app, "asgi": asgi_app, "sio": sio_app}


def _quiet_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


async def serve(app_name: str, server: str, host: str, port: int) -> None:
    """Serve ``app_name`` on ``server`` until SIGTERM."""
    app = APPS[app_name]()
    # Hypercorn cancels the connections still open when its graceful timeout ends (the peer's
    # clients do not always finish their disconnect in time), and asyncio's stream callback
    # then logs each cancelled connection task with a traceback: noise, not a failure.
    asyncio.get_running_loop().set_exception_handler(_quiet_cancelled)
    if server == "granian":
        await _granian(app, host, port)
        return
    if server == "uvicorn":
        import uvicorn

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            backlog=4096,
            ws="websockets-sansio",
            timeout_graceful_shutdown=1,
        )
        await uvicorn.Server(config).serve()
        return
    from hypercorn.config import Config

    hconfig = Config()
    hconfig.bind = [f"{host}:{port}"]
    hconfig.accesslog = None
    hconfig.errorlog = "-"
    hconfig.loglevel = "WARNING"
    hconfig.backlog = 4096
    hconfig.graceful_timeout = 1.0  # the harness stops a server after each measurement
    if app_name == "realtime":
        from transports.server.run import serve as realtime_serve

        await realtime_serve(app, hconfig, drain_timeout=1.0)
        return
    from hypercorn.asyncio import serve as hypercorn_serve

    await hypercorn_serve(app, hconfig)


async def _granian(app: Any, host: str, port: int) -> None:
    """Serve ``app`` on granian in this process (its embedded server: the same ASGI worker,
    one Rust runtime thread, as ``granian --interface asgi --workers 1`` runs in its worker
    process, so that the harness reads one process's CPU)."""
    import signal

    from granian.constants import Interfaces  # type: ignore[import-not-found, unused-ignore]
    from granian.server.embed import (  # type: ignore[import-not-found, unused-ignore]
        Server as Granian,
    )

    server = Granian(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        backlog=4096,
        log_enabled=False,
    )
    server.workers_kill_timeout = 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    await server.serve()


def main() -> None:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=sorted(APPS), required=True)
    parser.add_argument(
        "--server", choices=("hypercorn", "uvicorn", "granian"), default="hypercorn"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    if os.environ.get("BENCH_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start(int(os.environ["BENCH_TRACEMALLOC"]))
    asyncio.run(serve(args.app, args.server, args.host, args.port))


if __name__ == "__main__":
    main()
