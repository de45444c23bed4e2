"""Serve an app with Hypercorn so that a shutdown moves realtime clients first.

ASGI gives an application no notice between "the server stops accepting" and "the server
cancels open connections": Hypercorn waits ``graceful_timeout`` for requests to end and then
cancels them, and only afterwards runs the app's shutdown hooks. Realtime connections never end
on their own, so under the plain ``hypercorn`` command their clients just see the connection
drop (WebSocket 1011 or 1006, a cut SSE stream) and reconnect after noticing it.

:func:`serve` closes that gap: on SIGINT/SIGTERM (or your ``shutdown_trigger``) it first calls
:meth:`Realtime.drain`, which refuses new sessions and tells the clients to move, one after
another over ``drain_window`` (no herd), and then lets Hypercorn stop.

The command line does the same for one process or several::

    python -m transports.server.run app:app --bind 127.0.0.1:8000 --workers 2

With ``--workers N`` a parent process holds the listening sockets and runs N worker processes
(as ``hypercorn --workers`` does); SIGTERM or SIGINT to the parent (or to the whole process
group, as systemd and container runtimes do) makes every worker drain, then stop. A worker that
dies on its own stops the others and the parent exits 1, so a supervisor restarts the service
instead of running with fewer workers unnoticed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.synchronize import Event as EventType
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from quart import Quart

__all__ = ["main", "serve"]

log = logging.getLogger("transports.run")


async def serve(
    app: Quart,
    config: Config | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    drain_timeout: float | None = None,
    sockets: Sockets | None = None,
) -> None:
    """Run ``app`` on Hypercorn until a signal (or ``shutdown_trigger``), draining first.

    ``drain_timeout`` is how long, after the drain window, the last clients may take to leave
    (default: the ``drain_grace`` setting). ``sockets`` are listening sockets made by a parent
    process (the ``--workers`` command line); by default Hypercorn binds ``config.bind``.
    """
    config = config or Config()
    realtime = app.extensions.get("transports")
    if realtime is not None:
        # Hypercorn assembles whole WebSocket messages up to its own limit (16 MiB) before the
        # app sees them: make that the library's limit (plus room for framing) instead.
        limit = realtime.settings.max_message_size + 1024
        config.websocket_max_message_size = min(config.websocket_max_message_size, limit)
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    triggers: list[Callable[[], Awaitable[Any]]] = [signalled.wait]
    if shutdown_trigger is not None:
        triggers.append(shutdown_trigger)

    async def drain_then_stop() -> None:
        waiting = [asyncio.ensure_future(trigger()) for trigger in triggers]
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiting:
                task.cancel()
        realtime = app.extensions.get("transports")
        if realtime is not None:
            await realtime.drain(timeout=drain_timeout)

    await worker_serve(
        wrap_app(app, config.wsgi_max_body_size, None),
        config,
        sockets=sockets,
        shutdown_trigger=drain_then_stop,
    )


def _load(path: str) -> Quart:
    module_name, _, attribute = path.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app")
    if not isinstance(app, Quart):
        raise SystemExit(f"{path} is not a Quart app")
    return app


async def _event_set(event: EventType) -> None:
    while not event.is_set():
        await asyncio.sleep(0.1)


def _worker(path: str, config: Config, sockets: Sockets, stop: EventType) -> None:
    if "" not in sys.path:
        sys.path.insert(0, "")
    app = _load(path)
    asyncio.run(serve(app, config, sockets=sockets, shutdown_trigger=lambda: _event_set(stop)))


def _run_workers(path: str, config: Config, workers: int) -> int:
    context = multiprocessing.get_context("spawn")
    sockets = config.create_sockets()
    stop = context.Event()
    # Children inherit this: the parent alone decides when they stop (they still drain on a
    # signal sent to the whole group).
    processes = [
        context.Process(target=_worker, args=(path, config, sockets, stop), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    status = 0
    while any(process.is_alive() for process in processes):
        for process in processes:
            process.join(0.2)
            if not stopping and process.exitcode is not None:
                log.error(
                    "worker %s exited with %s; stopping the others", process.pid, process.exitcode
                )
                status = 1
                stopping = True
                stop.set()
    for kind in (sockets.secure_sockets, sockets.insecure_sockets, sockets.quic_sockets):
        for sock in kind:
            with contextlib.suppress(OSError):
                sock.close()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transports.server.run MODULE:APP [--bind ...] [--workers N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m transports.server.run",
        description="Serve a Quart app with Hypercorn; SIGTERM drains realtime clients first.",
    )
    parser.add_argument("app", help="the app to serve, as module:attribute (e.g. app:app)")
    parser.add_argument(
        "--bind", action="append", help="host:port to listen on (repeatable; 127.0.0.1:8000)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--certfile", help="TLS certificate (with --keyfile: HTTPS and HTTP/2)")
    parser.add_argument("--keyfile", help="TLS private key")
    parser.add_argument(
        "--backlog",
        type=int,
        default=1024,
        help="connections the kernel queues before they are accepted (default 1024; Hypercorn's "
        "own default is 100, short for the clients a drain or a restart sends back at once; "
        "Linux caps it at net.core.somaxconn)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=3.0,
        help="seconds Hypercorn waits for requests after the drain (default 3)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.backlog < 1:
        parser.error("--backlog must be at least 1")
    logging.basicConfig(level=logging.INFO, format="[%(process)d] %(levelname)s %(message)s")
    config = Config()
    config.bind = args.bind or ["127.0.0.1:8000"]
    config.graceful_timeout = args.graceful_timeout
    config.backlog = args.backlog
    config.accesslog = None
    if args.certfile:
        config.certfile, config.keyfile = args.certfile, args.keyfile
    if "" not in sys.path:
        sys.path.insert(0, "")
    if args.workers == 1:
        asyncio.run(serve(_load(args.app), config))
        return 0
    app = _load(args.app)  # fail here, in the parent, when the app cannot be imported
    realtime = app.extensions.get("transports")
    if realtime is not None and realtime.single_process:
        log.warning(
            "%d workers on the in-memory backplane (memory://): each worker has its own "
            "sessions, so a request that reaches another worker than its negotiate is refused "
            "(404 unknown_session) and a publication reaches one worker's clients only; set a "
            "shared backplane (TRANSPORTS_BACKPLANE=redis://...) or run one worker",
            args.workers,
        )
    return _run_workers(args.app, config, args.workers)


if __name__ == "__main__":
    raise SystemExit(main())
