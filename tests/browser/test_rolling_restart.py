"""A rolling restart without a herd and without loss (issue 17).

Two app processes (tests/browser/serve_app.py, each under ``transports.server.run.serve``) share
a real Redis behind a round-robin nginx; each publishes a tick every 50 ms on one topic. Browser
pages and Python clients, on each of the three transports, receive the stream through nginx.
Process A gets SIGTERM, drains, exits and starts again; then process B. Every client must end
with every tick exactly once (offsets gap-free and without repeats, up to the newest), and the
clients each drain moved must have been told to go spread over the drain window, not in one
second.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.redis_server import RedisServer
from tests.scaleout import RoundRobinNginx
from transports.client import Client, Incoming, connect

from .harness import AppServer, open_page, start_client, wait_for

TRANSPORTS = ["websocket", "sse", "longpoll"]
WINDOW = 4.0
GRACE = 3.0


class Listener:
    """Python clients in a thread of their own, one asyncio loop, recording every tick."""

    def __init__(self, base: str, transports: list[str]) -> None:
        self.base = base
        self.transports = transports
        self.offsets: dict[int, list[int]] = {}
        self.moves: dict[int, list[float]] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        clients: list[Client] = []
        try:
            for index, transport in enumerate(self.transports):
                client = await connect(self.base + "/realtime", transports=[transport])
                clients.append(client)
                offsets = self.offsets[index] = []
                moves = self.moves[index] = []
                client.on("state", self._on_state(moves))
                await client.subscribe("tick", self._on_tick(offsets))
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))
        self._ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        for client in clients:
            await client.close()

    @staticmethod
    def _on_state(moves: list[float]) -> Callable[[str], None]:
        def on_state(state: str) -> None:
            if state == "reconnecting":
                moves.append(time.time())

        return on_state

    @staticmethod
    def _on_tick(offsets: list[int]) -> Callable[[Incoming], None]:
        def on_tick(message: Incoming) -> None:
            offsets.append(message.offset or 0)

        return on_tick

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(30), "the Python clients did not connect"
        assert not self.errors, self.errors

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


PAGE_MOVES = """() => {
  window.moves = [];
  window.client.on("state", (s) => {
    if (s.state === "reconnecting") window.moves.push(Date.now() / 1000);
  });
  window.offsets = [];
  window.client.subscribe("tick", (pub) => window.offsets.push(pub.offset));
}"""


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def restart(server: AppServer) -> float:
    """SIGTERM (drain), wait until the process exits, start it again; returns the SIGTERM time."""
    assert server.proc is not None
    sent = time.time()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(WINDOW + GRACE + 15)
    server.start()
    return sent


def check_stream(name: str, offsets: list[int], newest: int) -> None:
    assert offsets, f"{name} received nothing"
    repeats = len(offsets) - len(set(offsets))
    assert repeats == 0, f"{name}: {repeats} tick(s) received twice"
    first, last = offsets[0], offsets[-1]
    missing = sorted(set(range(first, last + 1)) - set(offsets))
    assert not missing, f"{name}: lost ticks {missing[:10]}"
    assert offsets == sorted(offsets), f"{name}: ticks out of order"
    assert last >= newest - 40, f"{name} stopped at {last}, the stream is at {newest}"


def spread(moves: list[float], since: float) -> list[float]:
    return sorted(t for t in moves if since <= t <= since + WINDOW + GRACE)


@pytest.mark.slow
def test_rolling_restart_moves_clients_over_the_window_and_loses_nothing(
    browser: Browser, redis: RedisServer, tmp_path: Path
) -> None:
    settings = {
        "backplane": redis.url,
        "drain_window": WINDOW,
        "drain_grace": GRACE,
        "poll_window": 5,
    }
    servers = [AppServer(tmp_path / f"app{i}.log", tick_ms=50, settings=settings) for i in (0, 1)]
    for server in servers:
        server.start()
    nginx = RoundRobinNginx([server.port for server in servers])
    base = nginx.url
    pages: list[Page] = []
    listener = Listener(base, TRANSPORTS * 2)
    try:
        for transport in TRANSPORTS * 2:
            page = browser.new_context().new_page()  # one context each: no shared 6-connection cap
            open_page(page, base)
            start_client(page, {"transports": [transport], "storage": None})
            wait_for(page, "() => window.rec.ticks > 0", 15_000)
            page.evaluate(PAGE_MOVES)
            pages.append(page)
        listener.start()
        time.sleep(2)
        sigterms = []
        for server in servers:
            sigterms.append(restart(server))
            time.sleep(3)  # both processes up again, clients settled
        time.sleep(2)
        newest = max(max(page.evaluate("() => window.offsets")) for page in pages)
        # Every client catches up (a loaded machine may hold one in its backoff for a while);
        # what must hold is that nothing is lost or doubled, checked below.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lasts = [max(page.evaluate("() => window.offsets") or [0]) for page in pages]
            lasts += [max(offsets or [0]) for offsets in listener.offsets.values()]
            if min(lasts) >= newest:
                break
            time.sleep(0.5)
        for index, page in enumerate(pages):
            check_stream(
                f"page {index} ({TRANSPORTS[index % 3]})",
                page.evaluate("() => window.offsets"),
                newest,
            )
        listener.stop()
        for index, offsets in listener.offsets.items():
            check_stream(f"python client {index} ({TRANSPORTS[index % 3]})", offsets, newest)
        # The clients each drain moved were told to go over the window, not all at once.
        every_move = [page.evaluate("() => window.moves") for page in pages]
        every_move += list(listener.moves.values())
        for sent in sigterms:
            moved = spread([t for moves in every_move for t in moves], sent)
            assert len(moved) >= 3, f"only {len(moved)} client(s) moved after a SIGTERM"
            width = moved[-1] - moved[0]
            print(f"drain: {len(moved)} clients moved over {width:.2f} s (window {WINDOW} s)")
            assert width >= 0.8 * WINDOW, (width, moved)
    finally:
        listener.stop()
        for page in pages:
            page.context.close()
        nginx.stop()
        for server in servers:
            server.stop()
